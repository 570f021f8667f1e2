"""Self-contained HTML reports (plotly with its JavaScript embedded; nothing is fetched)."""

from __future__ import annotations

from html import escape  # not `import html`: the submodule report.html would shadow it

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\n"
    ".warn{background:#fff4d6;border-left:4px solid #e0a800;padding:.6em 1em}\n"
    "table{border-collapse:collapse}th,td{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}\n"
)


def page_start(title: str, disclaimer: str) -> str:
    """The head of a report page: title, shared style, heading and the research-use warning."""
    title = escape(title)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
        f"<style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
        f'<p class="warn">{escape(disclaimer)}</p>\n'
    )

"""Self-contained HTML reports (plotly with its JavaScript embedded; nothing is fetched)."""

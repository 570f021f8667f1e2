"""Shared pieces of the command line: the app, consoles, the user-error wrapper, formatters."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infusim import __version__
from infusim.errors import InfusimError
from infusim.units import time_label as _time_label  # noqa: F401 (re-exported for the commands)

app = typer.Typer(
    name="infusim",
    help=(
        "Simulate stem cell infusion therapy: where infused cells go in a human, mouse or rat, and what "
        "live-cell, DNA and radiolabel measurements would show. Research use only; not medical advice."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # docstrings are hard-wrapped at 110 columns: markdown joins the lines of a paragraph so that help
    # text reflows to the terminal instead of breaking twice
    rich_markup_mode="markdown",
)
#: Tables are read in terminals and in logs; off a terminal use a width that keeps rows whole.
console = Console(width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True)

DEMO_EXAMPLE = "msc-iv-human.yaml"


def _user_errors(command):
    """Turn ``InfusimError`` into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InfusimError as exc:
            errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"infusim {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """infusim command line."""


OutOption = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output folder. Created if missing; an earlier infusim output there is replaced, "
        "anything else is refused.",
    ),
]


def _p_text(p: float | None) -> str:
    """'p = 0.031', or 'p < 1e-16' where the value underflows (never 'p = 0')."""
    if p is None:
        return "p n/a"
    return "p < 1e-16" if p < 1e-16 else f"p = {p:.2g}"


def _percent(value: float) -> str:
    percent = 100 * value
    if percent == 0:
        return "0"
    if percent < 1e-10:  # under 1e-12 of the dose: below one cell of even a 1e10-cell dose
        return "<1e-10"
    if percent < 0.01:
        return f"{percent:.1e}"
    return f"{percent:.2f}"

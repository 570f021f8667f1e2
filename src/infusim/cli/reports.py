"""`infusim report`: redraw the self-contained report of an output folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from infusim.cli.common import _user_errors, app, console


@app.command()
@_user_errors
def report(
    out: Annotated[
        Path, typer.Argument(help="An output folder of simulate, trial, doses, sensitivity or validate.")
    ],
) -> None:
    """Write OUT/report.html again from what OUT holds (one self-contained page, nothing fetched).

    A simulation is run again from its scenario.yaml and must reproduce summary.json; trials,
    therapeutic windows, sensitivity analyses and validations are drawn from their files.
    """
    from infusim.report.folder import render_folder

    kind, page = render_folder(out)
    target = Path(out) / "report.html"
    partial = target.with_name(".report.html.tmp")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, target)
    console.print(f"Report ({kind}): [bold]{escape(str(target))}[/bold]")

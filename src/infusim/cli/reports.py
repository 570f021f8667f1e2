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
    """Write OUT's page again from what OUT holds (one self-contained page, nothing fetched): the
    page its command wrote (report.html; doses.html, sensitivity.html or validation.html).

    A simulation is run again from its scenario.yaml and must reproduce summary.json; trials,
    therapeutic windows, sensitivity analyses and validations are drawn from their files.
    """
    from infusim.report.folder import page_name, render_folder

    kind, page = render_folder(out)
    target = Path(out) / page_name(kind)
    partial = target.with_name(f".{target.name}.tmp")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, target)
    console.print(f"Report ({kind}): [bold]{escape(str(target))}[/bold]")


@app.command()
@_user_errors
def explore(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (local only).", min=1, max=65535)] = 8050,
) -> None:
    """Start the local explorer: choose a scenario and see cell fate, effect and risks update (Dash).

    Needs the optional extra: pip install 'infusim[app]'. Bound to 127.0.0.1 only; stop with Ctrl-C.
    """
    from infusim.explorer import build_app

    app_ = build_app()
    console.print(f"infusim explorer on [bold]http://127.0.0.1:{port}[/bold] (Ctrl-C stops it)")
    app_.run(host="127.0.0.1", port=port, debug=False)

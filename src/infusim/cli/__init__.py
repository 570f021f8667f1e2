"""Command line: a thin layer over the Python API (parse arguments, call, print with rich).

Every user error prints one line ``error: <field>: <what is wrong and what is allowed>`` and exits
with status 2; nothing half-written is left looking complete. One module per group of commands;
importing them registers the commands on ``app`` in the order ``--help`` lists them.
"""

from __future__ import annotations

import importlib
import sys

import typer

from infusim.cli.common import app, errors

COMMAND_MODULES = ("run", "trials", "analysis", "bridge", "safety", "checks", "reports", "tables")
for _name in COMMAND_MODULES:
    importlib.import_module(f"infusim.cli.{_name}")


def main() -> None:
    """Console-script entry point. Command-line mistakes (a missing option, a value out of range) are
    one line, ``error: <option>: <what is wrong>``, exit status 2, like every other user error."""
    # the parser's exception base (click's, vendored by newer typer): found from a class typer exports
    click_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    command = typer.main.get_command(app)
    try:
        code = command.main(standalone_mode=False)
    except click_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `infusim` or `infusim COMMAND`: help
            sys.exit(app())
        param = getattr(exc, "param", None)
        name = (param.opts[0] if param.opts else param.name) if param is not None else "command line"
        errors.print(f"error: {name}: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        errors.print("aborted", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

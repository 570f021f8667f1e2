"""Command line: a thin layer over the Python API (parse arguments, call, print with rich).

Every user error prints one line ``error: <field>: <what is wrong and what is allowed>`` and exits
with status 2; nothing half-written is left looking complete. One module per group of commands;
importing them registers the commands on ``app`` in the order ``--help`` lists them.
"""

from __future__ import annotations

import importlib
import sys

from infusim.cli.common import app

COMMAND_MODULES = ("run", "trials", "analysis", "checks", "tables")
for _name in COMMAND_MODULES:
    importlib.import_module(f"infusim.cli.{_name}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())

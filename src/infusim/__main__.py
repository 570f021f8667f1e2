"""``python -m infusim`` runs the command line."""

from infusim.cli import main

main()

"""``python -m closedloop``: the command line."""

from closedloop.cli import console

console()

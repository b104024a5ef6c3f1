"""``python -m closedloop``: the command line."""

import sys

from closedloop.cli import main

sys.exit(main())

"""`python -m corevad.cli ...`: the same as the `corevad` command."""

import sys

from . import main

sys.exit(main())

"""``python -m simulator``: the same as ``tickpipe simulate``."""

import sys

from simulator.cli import main

sys.exit(main())

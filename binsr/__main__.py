"""``python -m binsr`` = the ``binsr`` command."""

import sys

from binsr.cli import main

sys.exit(main())

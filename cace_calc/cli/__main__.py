"""``python -m cace_calc.cli``: the same as ``cace-calc``."""

import sys

from .app import main

sys.exit(main())

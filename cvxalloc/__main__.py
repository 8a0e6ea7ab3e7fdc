"""``python -m cvxalloc``: the same as the ``cvxalloc`` command."""

import sys

from .cli import main

sys.exit(main())

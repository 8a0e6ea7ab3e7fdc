"""``python -m cvxalloc``: the same as the ``cvxalloc`` command.

Layer: cli.
"""

import sys

from .cli import main

sys.exit(main())

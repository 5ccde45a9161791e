"""``python -m fedcredit.cli``: the ``fedcredit`` command (how the launcher starts party processes)."""

import sys

from . import main

sys.exit(main())

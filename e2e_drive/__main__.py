"""``python -m e2e_drive ...`` is the same as the ``e2e-drive`` command."""

import sys

from e2e_drive.cli import main

sys.exit(main())

"""``python -m difffit_screen.cli``: the ``difffit-screen`` command."""

import sys

from . import main

sys.exit(main())

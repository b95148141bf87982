"""``python -m dws_theory`` (also what ``torchrun -m dws_theory train ...`` runs)."""

import sys

from .cli import main

sys.exit(main())

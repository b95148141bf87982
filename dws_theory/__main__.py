"""`python -m dws_theory ...`: the same command line as `dws-theory ...` (also what
`torchrun -m dws_theory train ...` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

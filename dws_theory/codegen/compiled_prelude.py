"""The former path of `dws_theory.codegen.preludes.compiled`, an alias of that module (so
that setting its `COMPILE_BACKEND` here sets it there) for importers not yet moved."""

import sys

from .preludes import compiled

sys.modules[__name__] = compiled

"""Hypothesis profiles: `ci` is derandomised and bounded so CI never flakes; `dev` explores."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# Triton's interpreter runs the `triton` backend's kernels on CPU tensors
# (tests/codegen/test_triton.py). Triton reads this when its own kernels are defined, at
# `import triton`, so it is set here, before any test imports it; and only where torch sees
# no CUDA device, whose tests need the compiled kernels (tests/codegen/test_cuda.py).
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

"""The runtime pasted into emitted modules, kept as real files (ruff and tests see them).

Each prelude is a Python module whose code from its marker line on is pasted into the
emitted module as text; the names defined above the marker are stand-ins for what the
emitted module defines itself. The generator never imports them (they import torch):

- `base.py`: the helpers every emitted module carries (the eager backend);
- `compiled.py`: the torch.compile wrapper of both layers' forward (`compiled`);
- `fused.py` and `fused_kernels.c`: the C kernels behind custom ops (`fused`);
- `triton.py`: the Triton kernels behind custom ops (`triton`).

The library imports some of them as modules too (`compiled._compiled_forward` for whole
models, `base._compiling`), so one definition serves both.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FOLDER", "MARKER", "kernel_source", "prelude_source"]

FOLDER = Path(__file__).resolve().parent
MARKER = "# -- emitted from here on "


def prelude_source(name: str = "base") -> str:
    """The prelude `<name>.py` of this folder from its marker line on, as text (never
    imported here)."""
    text = (FOLDER / f"{name}.py").read_text(encoding="utf-8")
    start = text.index("\n", text.index(MARKER)) + 1
    return text[start:]


def kernel_source(name: str = "fused_kernels.c") -> str:
    """A kernel source file of this folder, as the emitted module's raw string holds it."""
    text = (FOLDER / name).read_text(encoding="utf-8")
    assert '"""' not in text and "\\" not in text, "a kernel source must be a plain raw string"
    return text

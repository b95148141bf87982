"""Derivation pages: one Markdown page plus PNG figures per weight space.

The steps, one module each:

- `blocks`:   classify the blocks A <- B (how the tensors share sets, where they sit).
- `text`:     small text builders (counts, labels, partitions, pattern tables).
- `figures`:  the neuron-set graph and the parameter-sharing matrix.
- `sections`: the numbered sections of a page, each a pure function to Markdown lines.
- `page`:     assemble a page from one basis, certificate, plan and figures; write it.
- `cli`:      `dws-theory docs`.
"""

from __future__ import annotations

from .blocks import block_group
from .cli import add_docs_parser
from .figures import (
    SHARING_MAX_P,
    Figures,
    draw_architecture,
    draw_sharing,
    sharing_matrix,
    sharing_space,
    write_figures,
)
from .page import (
    DEFAULT_DOCS_DIR,
    derivation_stem,
    render_derivation,
    render_page,
    write_derivation,
    write_page,
)

__all__ = [
    "DEFAULT_DOCS_DIR",
    "SHARING_MAX_P",
    "Figures",
    "add_docs_parser",
    "block_group",
    "derivation_stem",
    "draw_architecture",
    "draw_sharing",
    "render_derivation",
    "render_page",
    "sharing_matrix",
    "sharing_space",
    "write_derivation",
    "write_figures",
    "write_page",
]

"""Derivation documents (moved to `dws_theory.report`; this module keeps the old imports)."""

from __future__ import annotations

from .report import (
    DEFAULT_DOCS_DIR,
    SHARING_MAX_P,
    Figures,
    add_docs_parser,
    block_group,
    derivation_stem,
    draw_architecture,
    draw_sharing,
    render_derivation,
    render_page,
    sharing_matrix,
    sharing_space,
    write_derivation,
    write_figures,
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

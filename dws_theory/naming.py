"""Names, in one place: file stems of modules and derivations, and the importable names of the
modules `runtime` builds in memory.

An MLP's stem is `dws_<d_0>_..._<d_M>_<mode>` (`dws_2_32_32_1_hidden`). Any other weight
space gets a readable stem (the name it came with, e.g. the module's, and the mode) plus a
short hash of its spec, so two spaces never share a file and a long spec never makes a long
file name; an MLP with so many widths that its name would be long is shortened the same way.
A stem is also the last part of its in-memory module's name, `dws_theory._generated.<stem>`;
`mlp_of_stem` reads an MLP's widths and mode back from such a name (the pattern is built from
`spec.MODES`, so a new mode is named and read back alike).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from .spec import MODES, WeightSpace, mlp, mlp_shape, parse_dims, parse_mode

__all__ = [
    "GENERATED_PACKAGE",
    "MAX_STEM",
    "generated_name",
    "mlp_generated_name",
    "mlp_of_stem",
    "module_name",
    "space_stem",
]

MAX_STEM = 64  # longest file stem before the readable part is cut and a hash appended
GENERATED_PACKAGE = "dws_theory._generated"  # where in-memory modules are importable
_MLP_STEM = re.compile(
    rf"dws_(?P<dims>[0-9]+(?:_[0-9]+)+)_(?P<mode>{'|'.join(map(re.escape, MODES))})"
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _identifier(text: str) -> str:
    """Lower-case letters, digits and single underscores: safe in file and module names."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", text.lower())).strip("_") or "space"


def _shortened(readable: str, key: str) -> str:
    """`readable` itself when short enough, else its head plus a hash of `key`."""
    if len(readable) <= MAX_STEM:
        return readable
    return f"{readable[: MAX_STEM - 12].rstrip('_')}_{_digest(key)}"


def module_name(dims: Sequence[int], mode: str) -> str:
    """`dws_2_32_32_1_hidden`: the file stem of a generated MLP module."""
    dims = parse_dims(tuple(dims))
    mode = parse_mode(mode)
    readable = "dws_" + "_".join(str(d) for d in dims) + "_" + mode
    if len(readable) <= MAX_STEM:
        return readable
    head = f"dws_{dims[0]}_to_{dims[-1]}_depth{len(dims) - 1}_{mode}"
    return f"{head}_{_digest(str(mlp(dims, mode)))}"


def space_stem(space: WeightSpace, mode: str | None = None, label: str | None = None) -> str:
    """File stem for any weight space: the MLP name for an MLP's space, else
    `dws_<label>_<mode>_<hash of the spec>` (label `space` by default)."""
    shape = mlp_shape(space)
    if shape is not None and (mode is None or mlp(shape[0], mode) == space):
        return module_name(shape[0], mode or shape[1])
    mode = parse_mode(mode) if mode is not None else "spec"
    key = f"{space}|{mode}"
    readable = f"dws_{_identifier(label or 'space')}_{mode}"
    return _shortened(f"{readable[: MAX_STEM - 11]}_{_digest(key)}", key)


def generated_name(stem: str) -> str:
    """`dws_theory._generated.<stem>`: the importable name of an in-memory module."""
    return f"{GENERATED_PACKAGE}.{stem}"


def mlp_generated_name(dims: Sequence[int], mode: str) -> str:
    """`dws_theory._generated.dws_2_32_32_1_hidden`: an MLP's in-memory module, named by its
    widths and mode in full (any width and depth, no hash), so any process can rebuild it
    from the name alone."""
    return generated_name(f"dws_{'_'.join(str(d) for d in dims)}_{mode}")


def mlp_of_stem(name: str) -> tuple[tuple[int, ...], str] | None:
    """(dims, mode) of `dws_theory._generated.dws_<dims>_<mode>` (any width and depth, no
    hash), else None."""
    match = _MLP_STEM.fullmatch(name.removeprefix(f"{GENERATED_PACKAGE}."))
    if match is None or not name.startswith(f"{GENERATED_PACKAGE}."):
        return None
    return tuple(int(d) for d in match["dims"].split("_")), match["mode"]

"""Completeness of equivariant weight-space layers: the rank of the parameter Jacobian.

A layer whose output is affine in its parameters spans a space of maps; the dimension of
that space is the rank of d(output)/d(parameters), stacked over enough random inputs. For a
complete and non-redundant layer it equals the orbit count (equivariant linear + bias); the
raw parameter count minus the rank is the number of redundant parameters; a rank below the
orbit count means missing basis elements. Everything runs in float64 with one channel in
and out.

The reference is built straight from the engine's basis (`pattern_entries`): column e of
its Jacobian is basis element e applied to the inputs, so it needs no layer code at all.
Comparing column spaces says *which* basis elements a layer misses.

    python benchmarks/completeness.py                 # 2,32,32,1: NFN HNP/NP, ours
    python benchmarks/completeness.py --dims 2,8,8,8,3 --samples 4
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from harness import (
    flat_weight_space,
    load_factory,
    nfn_layers,
    output_tensors,
    random_weight_space,
)
from torch import nn
from torch.func import functional_call, jacfwd, jacrev

from dws_theory.basis import Basis, enumerate_basis, pattern_entries
from dws_theory.spec import WeightSpace, mlp, mlp_shape
from dws_theory.testing import jacobian_rank, matrix_rank


# -- Jacobians -------------------------------------------------------------------------------
def parameter_jacobian(module: nn.Module, args: tuple, flatten: Callable) -> np.ndarray:
    """d flatten(module(*args)) / d(parameters): [outputs, parameters].

    Forward mode (one pass per parameter: parameters are few, outputs many); reverse mode in
    chunks for modules whose custom autograd Functions have no forward-mode rule.
    Parameters are concatenated in `named_parameters` order, each flattened in C order.
    """
    params = {k: v.detach() for k, v in module.named_parameters()}

    def f(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return flatten(functional_call(module, p, args))

    try:
        jac = jacfwd(f)(params)
    except NotImplementedError:  # e.g. an autograd.Function without jvp
        jac = jacrev(f, chunk_size=256)(params)
    n_out = next(iter(jac.values())).shape[0]
    return torch.cat([jac[k].reshape(n_out, -1) for k in params], dim=1).numpy()


def numeric_rank(matrix: np.ndarray, rank: int | None = None) -> tuple[int, float, float]:
    """(rank, smallest kept singular value, largest dropped one), the rank by
    `dws_theory.testing.matrix_rank` (one tolerance for the project) unless given.

    The dropped value is 0.0 when the rank equals the number of columns (nothing dropped).
    """
    s = np.linalg.svd(matrix, compute_uv=False)
    rank = matrix_rank(matrix) if rank is None else rank
    kept = float(s[rank - 1]) if rank else 0.0
    dropped = float(s[rank]) if rank < s.size else 0.0
    return rank, kept, dropped


def reference_jacobian(basis: Basis, weights: list, biases: list) -> np.ndarray:
    """Columns: every linear basis element, then every bias element, applied to the inputs.

    Rows: sample-major, then the flattened weight space (W1, b1, W2, ..., C order), the same
    order as `flat_weight_space`. Mean pooling (normalised), as the layers use.
    """
    space = basis.space
    x = flat_weight_space([t for pair in zip(weights, biases, strict=True) for t in pair])
    x = x.double().numpy()
    size, n_lin = space.dimension, basis.equivariant_linear
    n_cols = n_lin + basis.equivariant_bias
    jac = np.zeros((x.shape[0], size * n_cols))
    start = 0
    for p in basis.linear:
        e = pattern_entries(space, p, normalised=True)
        index = e.rows * n_cols + start + e.element
        for b in range(x.shape[0]):
            jac[b] += np.bincount(index, weights=x[b, e.cols] * e.values, minlength=size * n_cols)
        start += p.multiplicity(space)
    for p in basis.bias:
        e = pattern_entries(space, p, normalised=False)
        jac[:, e.rows * n_cols + start + e.element] += 1.0
        start += p.multiplicity(space)
    return jac.reshape(x.shape[0] * size, n_cols)


def element_names(basis: Basis) -> list[str]:
    """One readable name per reference column, e.g. `W3[ij] <- b2[j]` or `b3[i] <- 1 #0`."""
    names = []
    for patterns, bias in ((basis.linear, False), (basis.bias, True)):
        for p in patterns:
            text = f"{p.out}[{p.out_labels}] <- " + ("1" if bias else f"{p.inp}[{p.in_labels}]")
            for k in range(p.multiplicity(basis.space)):
                names.append(text + (f" #{k}" if p.fixed else ""))
    return names


def missing_columns(span: np.ndarray, columns: np.ndarray, rank: int) -> list[int]:
    """Indices of `columns` outside the column space of `span` (whose rank is given)."""
    u, _, _ = np.linalg.svd(span, full_matrices=False)
    u = u[:, :rank]
    residual = columns - u @ (u.T @ columns)
    norms = np.linalg.norm(columns, axis=0)
    return [i for i in np.flatnonzero(np.linalg.norm(residual, axis=0) > 1e-8 * norms)]


# -- report ----------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    raw: int
    rank: int
    kept: float
    dropped: float
    joint: int
    missing: list[str]


def compare(
    name: str,
    jac: np.ndarray,
    rank: int,
    raw: int,
    ref: np.ndarray,
    ref_rank: int,
    names: list[str],
) -> Result:
    """`rank` is the layer's `jacobian_rank`; `jac` its Jacobian, to tell what it misses."""
    rank, kept, dropped = numeric_rank(jac, rank)
    joint = numeric_rank(np.concatenate([jac, ref], axis=1))[0]
    missing = [names[i] for i in missing_columns(jac, ref, rank)] if rank else names
    return Result(name, raw, rank, kept, dropped, joint, missing)


def _flatten(out: object) -> torch.Tensor:
    return flat_weight_space(output_tensors(out)).reshape(-1)


def nfn_jacobian(cls: type, space: WeightSpace, weights: list, biases: list):
    """(Jacobian, rank by `jacobian_rank`, raw parameters) of NFN's layer `cls`."""
    _, _, features, spec_of = nfn_layers()
    layer = cls(spec_of(features(weights, biases)), 1, 1).double()
    raw = sum(p.numel() for p in layer.parameters())
    jac = parameter_jacobian(layer, (features(weights, biases),), _flatten)
    return jac, jacobian_rank(layer, space, weights, biases), raw


def ours_jacobian(factory: Callable, space: WeightSpace, mode: str, weights: list, biases: list):
    """(Jacobian, rank by `jacobian_rank`, raw parameters) of our layer."""
    equivariant, _ = factory(mlp_shape(space)[0], mode)
    layer = equivariant(1, 1).double()
    raw = sum(p.numel() for p in layer.parameters())
    jac = parameter_jacobian(layer, (weights, biases), _flatten)
    return jac, jacobian_rank(layer, space, weights, biases), raw


def run(
    dims: tuple[int, ...], samples: int, factory_path: str, seed: int = 0, max_samples: int = 256
) -> list[str]:
    lines = []
    nfn = nfn_layers()
    try:
        factory = load_factory(factory_path)
    except (ImportError, AttributeError) as e:
        factory = None
        lines.append(f"our layer is not available ({factory_path}: {e})")
    if nfn is None:
        lines.append("nfn is not installed: only the reference and our layer are measured")
    for mode, nfn_cls in (("hidden", nfn and nfn[0]), ("all", nfn and nfn[1])):
        space = mlp(dims, mode)
        basis = enumerate_basis(space)
        orbits = basis.equivariant_linear + basis.equivariant_bias
        # Too few random inputs make distinct basis elements agree on all of them: double
        # the sample count until the reference reaches the orbit count.
        n = samples
        while True:
            weights, biases = random_weight_space(dims, n, 1, dtype=torch.float64, seed=seed)
            ref = reference_jacobian(basis, weights, biases)
            ref_rank, kept, dropped = numeric_rank(ref)
            if ref_rank == orbits or n >= max_samples:
                break
            n *= 2
        names = element_names(basis)
        lines.append(
            f"{','.join(map(str, dims))} {mode}: orbit count {basis.equivariant_linear} + "
            f"{basis.equivariant_bias} = {orbits}; reference Jacobian {ref.shape[0]}x"
            f"{ref.shape[1]} from {n} random inputs has rank {ref_rank} "
            f"(singular values: smallest kept {kept:.2e}, largest dropped {dropped:.2e})"
        )
        results = []
        if factory is not None:
            jac, rank, raw = ours_jacobian(factory, space, mode, weights, biases)
            results.append(compare(f"ours-{mode}", jac, rank, raw, ref, ref_rank, names))
        if nfn_cls is not None:
            jac, rank, raw = nfn_jacobian(nfn_cls, space, weights, biases)
            results.append(compare(nfn_cls.__name__, jac, rank, raw, ref, ref_rank, names))
        for r in results:
            lines.append(
                f"  {r.name}: raw parameters {r.raw}, Jacobian rank {r.rank} "
                f"(kept {r.kept:.2e}, dropped {r.dropped:.2e}), redundant {r.raw - r.rank}, "
                f"rank together with the reference {r.joint} "
                f"({r.joint - ref_rank} directions outside the equivariant space)"
            )
            shown = ", ".join(r.missing[:8]) + (" ..." if len(r.missing) > 8 else "")
            lines.append(f"    missing basis elements ({len(r.missing)}): {shown or 'none'}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", default="2,32,32,1")
    parser.add_argument("--samples", type=int, default=8, help="random inputs (batch size)")
    parser.add_argument("--layer-factory", default="dws_theory.runtime:layer_classes")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    dims = tuple(int(x) for x in args.dims.split(","))
    print("\n".join(run(dims, args.samples, args.layer_factory)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

# The Triton kernels of the `triton` backend, kept as real Python (ruff and tests see them).
#
# The emitted module carries this file as the string `_TRITON_SOURCE` and executes it at the
# first layer it builds (registered with `linecache`, where Triton reads a kernel's source),
# so nothing is written to disk and the module still imports nothing but torch until then.
# Three kernels, each over a tensor x [B, K, S] whose S = n m positions are one plane per
# channel (an interior weight W_k: n = d_k, m = d_{k-1}):
#
# - `mix_terms_kernel`: y [B, O, S] = w [O, K] @ x plus up to four broadcast terms, each read
#   through its own strides (0 along the axes it is constant on), so a tile of y is written
#   once, with the terms added while it is in registers (the layer's identity term, and the
#   gradient of x with its pools' gradients when w is the transposed weight);
# - `weight_grad_kernel`: the weight gradient sum_b g_b x_b^T, one float32 partial sum per
#   chunk of samples (summed by the caller: no atomics, so the result is deterministic);
# - `plane_sums_kernel`: both sums of each [n, m] plane (over m and over n) in one read: a
#   tensor's two pools, and the sums of the output gradient that the terms' gradients need.
#
# Tile sizes are autotuned per shape (`triton.autotune`, keyed on the sizes) from the configs
# below, pruned to those a shape can fill; under Triton's interpreter (`TRITON_INTERPRET=1`,
# which runs the kernels on CPU tensors with numpy, for tests) only the first config runs,
# since the interpreter would time every one. Products accumulate in float32 whatever the
# input dtype (float32, bfloat16, float16); float32 products run in full precision ("ieee")
# unless the caller asks for TF32, as torch's matmul does. `UPCAST` converts 16-bit operands
# to float32 before a product: the interpreter's dot reads bfloat16 as integers (Triton
# 3.7), so under it the 16-bit loads, sums and stores are tested, the products in float32.

import os

import triton
import triton.language as tl

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _tiles(configs: list) -> list:
    return configs[:1] if INTERPRETING else configs


def _config(o: int, k: int, s: int, warps: int, stages: int = 2):
    tiles = {"BLOCK_O": o, "BLOCK_K": k, "BLOCK_S": s}
    return triton.Config(tiles, num_warps=warps, num_stages=stages)


MIX_CONFIGS = _tiles(
    [
        _config(16, 16, 64, 4),
        _config(16, 16, 128, 4),
        _config(16, 16, 256, 4),
        _config(32, 16, 128, 4),
        _config(32, 32, 128, 4),
        _config(32, 32, 256, 8),
        _config(64, 32, 128, 8),
        _config(64, 64, 64, 4),
        _config(128, 32, 64, 8),
    ]
)
WEIGHT_GRAD_CONFIGS = _tiles(
    [
        _config(16, 16, 64, 4),
        _config(16, 16, 128, 4),
        _config(16, 16, 256, 8),
        _config(32, 32, 128, 4),
        _config(32, 32, 256, 8),
        _config(64, 64, 64, 4),
    ]
)


def _ceil_pow2(n: int, floor: int = 16) -> int:
    return max(floor, triton.next_power_of_2(max(int(n), 1)))


def _prune(configs, named_args, **kwargs) -> list:
    # The configs whose tiles a shape fills (none wider than the next power of two of its
    # size, 16 at least); the first config where none does.
    sizes = {**named_args, **kwargs}
    kept = [
        c
        for c in configs
        if c.kwargs["BLOCK_O"] <= _ceil_pow2(sizes["C_OUT"])
        and c.kwargs["BLOCK_K"] <= _ceil_pow2(sizes["C_IN"])
        and c.kwargs["BLOCK_S"] <= _ceil_pow2(sizes["S"])
    ]
    return kept or list(configs[:1])


@triton.jit
def _term(ptr, b, ro, i, j, sb, so, si, sj, mask):
    # A broadcast term at the tile's (output channel, position) pairs, as float32.
    offsets = b * sb + ro[:, None] * so + i[None, :] * si + j[None, :] * sj
    return tl.load(ptr + offsets, mask=mask, other=0.0).to(tl.float32)


@triton.autotune(
    configs=MIX_CONFIGS,
    key=["C_OUT", "C_IN", "S", "NUM_TERMS"],
    prune_configs_by={"early_config_prune": _prune},
)
@triton.jit
def mix_terms_kernel(
    w_ptr, x_ptr, y_ptr,
    t0_ptr, t1_ptr, t2_ptr, t3_ptr,
    t0_b, t0_o, t0_i, t0_j, t1_b, t1_o, t1_i, t1_j,
    t2_b, t2_o, t2_i, t2_j, t3_b, t3_o, t3_i, t3_j,
    C_OUT, C_IN, S, M, w_o, w_k,
    NUM_TERMS: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    # y[b, :, s] = w @ x[b, :, s] + the terms at (b, :, s // M, s % M); one program per
    # (sample, position tile) on axis 0 (no 65,535 limit on B) and output-channel tile on 1.
    tiles = tl.cdiv(S, BLOCK_S)
    pid = tl.program_id(0)
    b = (pid // tiles).to(tl.int64)
    ro = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    rs = (pid % tiles) * BLOCK_S + tl.arange(0, BLOCK_S)
    acc = tl.zeros((BLOCK_O, BLOCK_S), dtype=tl.float32)
    x_base = x_ptr + b * C_IN * S
    for k0 in range(0, C_IN, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        w_mask = (ro[:, None] < C_OUT) & (rk[None, :] < C_IN)
        w = tl.load(w_ptr + ro[:, None] * w_o + rk[None, :] * w_k, mask=w_mask, other=0.0)
        x_mask = (rk[:, None] < C_IN) & (rs[None, :] < S)
        x = tl.load(x_base + rk[:, None] * S + rs[None, :], mask=x_mask, other=0.0)
        if UPCAST:
            w, x = w.to(tl.float32), x.to(tl.float32)
        acc = tl.dot(w, x, acc, input_precision=DOT_PRECISION)
    mask = (ro[:, None] < C_OUT) & (rs[None, :] < S)
    i, j = rs // M, rs % M
    if NUM_TERMS > 0:
        acc += _term(t0_ptr, b, ro, i, j, t0_b, t0_o, t0_i, t0_j, mask)
    if NUM_TERMS > 1:
        acc += _term(t1_ptr, b, ro, i, j, t1_b, t1_o, t1_i, t1_j, mask)
    if NUM_TERMS > 2:
        acc += _term(t2_ptr, b, ro, i, j, t2_b, t2_o, t2_i, t2_j, mask)
    if NUM_TERMS > 3:
        acc += _term(t3_ptr, b, ro, i, j, t3_b, t3_o, t3_i, t3_j, mask)
    y = y_ptr + b * C_OUT * S + ro[:, None] * S + rs[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.autotune(
    configs=WEIGHT_GRAD_CONFIGS,
    key=["C_OUT", "C_IN", "S"],
    prune_configs_by={"early_config_prune": _prune},
)
@triton.jit
def weight_grad_kernel(
    g_ptr, x_ptr, part_ptr, B, C_OUT, C_IN, S, PER_CHUNK,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    # part[c] = sum over the samples of chunk c of g_b [C_OUT, S] @ x_b [C_IN, S]^T, in float32;
    # axis 0: output-channel tiles, 1: input-channel tiles, 2: chunks of PER_CHUNK samples.
    ro = tl.program_id(0) * BLOCK_O + tl.arange(0, BLOCK_O)
    rk = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    chunk = tl.program_id(2)
    acc = tl.zeros((BLOCK_O, BLOCK_K), dtype=tl.float32)
    start = chunk * PER_CHUNK
    stop = tl.minimum(start + PER_CHUNK, B)
    for b in range(start, stop):
        b64 = tl.cast(b, tl.int64)  # (the loop variable is a Python int when interpreted)
        g_base = g_ptr + b64 * C_OUT * S
        x_base = x_ptr + b64 * C_IN * S
        for s0 in range(0, S, BLOCK_S):
            rs = s0 + tl.arange(0, BLOCK_S)
            g_mask = (ro[:, None] < C_OUT) & (rs[None, :] < S)
            g = tl.load(g_base + ro[:, None] * S + rs[None, :], mask=g_mask, other=0.0)
            x_mask = (rs[:, None] < S) & (rk[None, :] < C_IN)
            x = tl.load(x_base + rs[:, None] + rk[None, :] * S, mask=x_mask, other=0.0)
            if UPCAST:
                g, x = g.to(tl.float32), x.to(tl.float32)
            acc = tl.dot(g, x, acc, input_precision=DOT_PRECISION)
    mask = (ro[:, None] < C_OUT) & (rk[None, :] < C_IN)
    part = part_ptr + chunk.to(tl.int64) * C_OUT * C_IN + ro[:, None] * C_IN + rk[None, :]
    tl.store(part, acc, mask=mask)


@triton.jit
def plane_sums_kernel(
    x_ptr, rows_ptr, cols_ptr, N, M, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr
):
    # rows[p] = x[p].sum(1) [N] and cols[p] = x[p].sum(0) [M] for the plane x[p] [N, M]
    # (BLOCK_M >= M: each tile holds whole rows), in float32, stored in the output's dtype.
    p = tl.program_id(0).to(tl.int64)
    rm = tl.arange(0, BLOCK_M)
    cols = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for i0 in range(0, N, BLOCK_N):
        ri = i0 + tl.arange(0, BLOCK_N)
        mask = (ri[:, None] < N) & (rm[None, :] < M)
        tile = tl.load(x_ptr + p * N * M + ri[:, None] * M + rm[None, :], mask=mask, other=0.0)
        tile = tile.to(tl.float32)
        rows = tl.sum(tile, 1)
        tl.store(rows_ptr + p * N + ri, rows.to(rows_ptr.dtype.element_ty), mask=ri < N)
        cols += tl.sum(tile, 0)
    tl.store(cols_ptr + p * M + rm, cols.to(cols_ptr.dtype.element_ty), mask=rm < M)

/* The CPU kernels of the `fused` backend: a tensor's identity term (one channel mix) with its
 * broadcast terms, in one pass over memory per direction.
 *
 * The `fused` backend pastes this file, as a string, into the module it emits; the module
 * compiles it with the system C compiler at first use and calls it through ctypes.
 *
 * Layout: x [B, K, n, m], y [B, O, n, m] and g [B, O, n, m] are contiguous `real`s (float, or
 * double when compiled with -DDWS_DOUBLE, as a second library); a weight
 * w [O, K] is row-major. A term is any tensor broadcast to y's shape, given by its data
 * pointer and its four strides over (b, o, i, j) (0 along broadcast axes).
 * Each sample b is one task: its slices stay in the core's cache while it is worked on, so
 * main memory sees each tensor once per call. Outputs are written with plain stores:
 * streaming stores (which bypass the cache) made the forward slower where its tensors were
 * cached and a layer's step no faster (docs/benchmarks.md, Backends). Vectors are GCC /
 * clang vector extensions as wide as the machine's registers (64 bytes with AVX-512, 32 with
 * AVX, else 16; -DDWS_VECTOR_BYTES=N overrides), and the register tiles are sized so that
 * their accumulators fit the register file: a vector wider than the registers is split into
 * several, and tiles made for 32 of them spill on a machine with 16.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef DWS_DOUBLE
typedef double real;
#else
typedef float real;
#endif
#ifndef DWS_VECTOR_BYTES
#if defined(__AVX512F__)
#define DWS_VECTOR_BYTES 64
#elif defined(__AVX__)
#define DWS_VECTOR_BYTES 32
#else
#define DWS_VECTOR_BYTES 16
#endif
#endif
/* Register tiles: the mix adds into TILE_ROWS x 2 vectors, the weight gradient into
 * GRAD_ROWS x GRAD_COLS vectors: 16 accumulators each with AVX-512 (of 32 vector registers);
 * without it (16 registers) 8 and 12, the fastest of 4 x 2, 2 x 4 and 3 x 4 for the weight
 * gradient on an AVX2 machine (benchmarks/kernel_speed.py) */
#if DWS_VECTOR_BYTES == 64
#define TILE_ROWS 8
#define GRAD_ROWS 4
#define GRAD_COLS 4
#else
#define TILE_ROWS 4
#define GRAD_ROWS 3
#define GRAD_COLS 4
#endif
typedef real vf __attribute__((vector_size(DWS_VECTOR_BYTES)));
#define VW ((int)(DWS_VECTOR_BYTES / sizeof(real))) /* lanes of a vector */

static inline vf ld(const real *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void st(real *p, vf v) { memcpy(p, &v, sizeof v); }
/* s in every lane. Written `s - 0`: GCC compiles `0 + s` to a scalar add (0 + -0 is not -0,
 * so it is kept) and a broadcast from a register, which made a 2,32,32,1 forward 15 % slower;
 * this is one broadcast from memory */
static inline vf splat(real s) { return s - (vf){0}; }
/* the sum of the lanes: halves added as vectors (down to 16 bytes), then the last lanes
 * (a loop over all lanes would be one long chain of dependent adds) */
typedef real quarter_vf __attribute__((vector_size(16)));
static inline real hsum(vf v) {
  quarter_vf c;
#if DWS_VECTOR_BYTES == 16
  c = v;
#else
  quarter_vf d;
#if DWS_VECTOR_BYTES == 64
  typedef real half_vf __attribute__((vector_size(32)));
  half_vf a, b;
  memcpy(&a, &v, sizeof a);
  memcpy(&b, (const char *)&v + sizeof a, sizeof b);
  a += b;
#else
  vf a = v;
#endif
  memcpy(&c, &a, sizeof c);
  memcpy(&d, (const char *)&a + sizeof c, sizeof d);
  c += d;
#endif
  real s = 0;
  for (int i = 0; i < (int)(sizeof c / sizeof(real)); ++i) s += c[i];
  return s;
}

/* sum of p[0:len], in vector lanes (a plain loop would add one real at a time) */
static inline real row_sum(const real *p, int64_t len) {
  vf acc = splat(0.f);
  int64_t j = 0;
  for (; j + VW <= len; j += VW) acc += ld(p + j);
  real s = hsum(acc);
  for (; j < len; ++j) s += p[j];
  return s;
}

/* rows [n] = the sums of p [n, m] over j, cols [m] = its sums over i (NULL: skipped); with
 * the column sums in registers where a row is at most 4 vectors long */
static void plane_sums(const real *p, int64_t n, int64_t m, real *rows, real *cols) {
  if (m % VW == 0 && m <= 4 * VW) {
    vf c[4] = {splat(0.f), splat(0.f), splat(0.f), splat(0.f)};
    int64_t nv = m / VW;
    for (int64_t i = 0; i < n; ++i) {
      vf r = splat(0.f);
      for (int64_t v = 0; v < nv; ++v) {
        vf t = ld(p + i * m + v * VW);
        c[v] += t;
        r += t;
      }
      if (rows) rows[i] = hsum(r);
    }
    for (int64_t v = 0; cols && v < nv; ++v) st(cols + v * VW, c[v]);
    return;
  }
  if (cols) memset(cols, 0, sizeof(real) * m);
  for (int64_t i = 0; i < n; ++i) {
    if (rows) rows[i] = row_sum(p + i * m, m);
    for (int64_t j = 0; cols && j < m; ++j) cols[j] += p[i * m + j];
  }
}

typedef struct {
  int64_t count;
  const real *const *ptr;
  const int64_t *stride; /* 4 per term: b, o, i, j */
} terms_t;

/* whether every term is constant along j or along i */
static int terms_split(const terms_t *t) {
  for (int64_t q = 0; q < t->count; ++q)
    if (t->stride[4 * q + 3] != 0 && t->stride[4 * q + 2] != 0) return 0;
  return 1;
}

/* rowv [O, n] = the terms constant along j, colv [O, m] = the others (constant along i) */
static void fill_split(real *rowv, real *colv, int64_t O, int64_t n, int64_t m,
                       const terms_t *t, int64_t b) {
  memset(rowv, 0, sizeof(real) * O * n);
  memset(colv, 0, sizeof(real) * O * m);
  for (int64_t q = 0; q < t->count; ++q) {
    const int64_t *s = t->stride + 4 * q;
    const real *p = t->ptr[q] + b * s[0];
    for (int64_t o = 0; o < O; ++o) {
      if (s[3] == 0)
        for (int64_t i = 0; i < n; ++i) rowv[o * n + i] += p[o * s[1] + i * s[2]];
      else
        for (int64_t j = 0; j < m; ++j) colv[o * m + j] += p[o * s[1] + j * s[3]];
    }
  }
}

/* out [O, n, m] = the sum of the terms at sample b */
static void fill_terms(real *out, int64_t O, int64_t n, int64_t m, const terms_t *t, int64_t b) {
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < n; ++i) {
      real *row = out + (o * n + i) * m;
      memset(row, 0, sizeof(real) * m);
      for (int64_t q = 0; q < t->count; ++q) {
        const int64_t *s = t->stride + 4 * q;
        const real *p = t->ptr[q] + b * s[0] + o * s[1] + i * s[2];
        if (s[3] == 0) {
          real v = p[0];
          for (int64_t j = 0; j < m; ++j) row[j] += v;
        } else if (s[3] == 1) {
          for (int64_t j = 0; j < m; ++j) row[j] += p[j];
        } else {
          for (int64_t j = 0; j < m; ++j) row[j] += p[j * s[3]];
        }
      }
    }
}

/* What a tile starts from before the GEMM adds into it: zero, or the sum of the terms, given
 * either in full ([O, S]) or, where every term is constant along j or along i, as per-row
 * values rowv [O, n] plus per-column vectors colv [O, m] (tiles then lie within one row). */
typedef struct {
  const real *full, *rowv, *colv;
  int64_t n, m;
} base_t;

/* the base of row o at flat positions s .. s+VW-1, whose row index i and column j the caller
 * found (one division per vector, not per row) */
static inline vf base_vec(const base_t *base, int64_t S, int64_t o, int64_t s, int64_t i,
                          int64_t j) {
  if (base->full) return ld(base->full + o * S + s);
  const real *rowv = base->rowv ? base->rowv + o * base->n : 0;
  const real *colv = base->colv ? base->colv + o * base->m : 0;
  if (j + VW <= base->m) {
    vf v = splat(rowv ? rowv[i] : 0.f);
    return colv ? v + ld(colv + j) : v;
  }
  vf v = splat(0.f); /* the vector crosses a row end */
  for (int e = 0; e < VW; ++e, ++j) {
    if (j == base->m) j = 0, ++i;
    v[e] = (rowv ? rowv[i] : 0.f) + (colv ? colv[j] : 0.f);
  }
  return v;
}

/* how a tile's base is read: none (zero), the full sum, or per-row values plus per-column
 * vectors where no vector crosses a row end (m a multiple of VW); else element by element */
enum { BASE_NONE, BASE_FULL, BASE_SPLIT, BASE_SPLIT_CROSSING };

/* y[o0:o0+R, s0:s0+2 VW] = base + w[o0:o0+R, :] @ x[:, s0:s0+2 VW] (R = TILE_ROWS); `kind`
 * is a constant at every call, so each kind compiles to its own loop */
static inline __attribute__((always_inline)) void tile_full(
    const real *w, int64_t K, const real *x, int64_t S, real *y, const base_t *base,
    int64_t o0, int64_t s0, int kind) {
  vf a0[TILE_ROWS], a1[TILE_ROWS];
  if (kind == BASE_NONE) {
    for (int r = 0; r < TILE_ROWS; ++r) a0[r] = a1[r] = splat(0.f);
  } else if (kind == BASE_FULL) {
    for (int r = 0; r < TILE_ROWS; ++r) {
      a0[r] = ld(base->full + (o0 + r) * S + s0);
      a1[r] = ld(base->full + (o0 + r) * S + s0 + VW);
    }
  } else if (kind == BASE_SPLIT) {
    int64_t m = base->m, i0 = s0 / m, j0 = s0 % m, i1 = (s0 + VW) / m, j1 = (s0 + VW) % m;
    const real *rowv = base->rowv + o0 * base->n, *colv = base->colv + o0 * m;
    for (int r = 0; r < TILE_ROWS; ++r) {
      a0[r] = splat(rowv[r * base->n + i0]) + ld(colv + r * m + j0);
      a1[r] = splat(rowv[r * base->n + i1]) + ld(colv + r * m + j1);
    }
  } else {
    int64_t m = base->m, i0 = s0 / m, j0 = s0 % m, i1 = (s0 + VW) / m, j1 = (s0 + VW) % m;
    for (int r = 0; r < TILE_ROWS; ++r) {
      a0[r] = base_vec(base, S, o0 + r, s0, i0, j0);
      a1[r] = base_vec(base, S, o0 + r, s0 + VW, i1, j1);
    }
  }
  const real *wr = w + o0 * K;
  for (int64_t k = 0; k < K; ++k) {
    vf x0 = ld(x + k * S + s0), x1 = ld(x + k * S + s0 + VW);
    for (int r = 0; r < TILE_ROWS; ++r) {
      vf c = splat(wr[r * K + k]);
      a0[r] += c * x0;
      a1[r] += c * x1;
    }
  }
  for (int r = 0; r < TILE_ROWS; ++r) {
    st(y + (o0 + r) * S + s0, a0[r]);
    st(y + (o0 + r) * S + s0 + VW, a1[r]);
  }
}

/* the full tiles of one sample, for one base kind */
static inline __attribute__((always_inline)) void full_tiles(
    const real *w, int64_t O, int64_t K, const real *x, int64_t S, real *y, const base_t *base,
    int kind) {
  for (int64_t s0 = 0; s0 + 2 * VW <= S; s0 += 2 * VW)
    for (int64_t o0 = 0; o0 + TILE_ROWS <= O; o0 += TILE_ROWS)
      tile_full(w, K, x, S, y, base, o0, s0, kind);
}

/* the edges: at most TILE_ROWS rows and VW columns */
static inline void tile_edge(const real *w, int64_t K, const real *x, int64_t S, real *y,
                             const base_t *base, int64_t o0, int rows, int64_t s0, int width) {
  vf a[TILE_ROWS];
  for (int r = 0; r < TILE_ROWS; ++r) {
    real buf[VW] = {0};
    if (base && base->full && r < rows)
      memcpy(buf, base->full + (o0 + r) * S + s0, sizeof(real) * width);
    a[r] = ld(buf);
    if (base && !base->full && r < rows) /* element by element: an edge may cross rows */
      for (int v = 0; v < width; ++v) {
        int64_t i = (s0 + v) / base->m, j = (s0 + v) % base->m;
        a[r][v] = (base->rowv ? base->rowv[(o0 + r) * base->n + i] : 0.f) +
                  (base->colv ? base->colv[(o0 + r) * base->m + j] : 0.f);
      }
  }
  for (int64_t k = 0; k < K; ++k) {
    real buf[VW] = {0};
    memcpy(buf, x + k * S + s0, sizeof(real) * width);
    vf xv = ld(buf);
    for (int r = 0; r < rows; ++r) a[r] += splat(w[(o0 + r) * K + k]) * xv;
  }
  for (int r = 0; r < rows; ++r) {
    real buf[VW];
    st(buf, a[r]);
    memcpy(y + (o0 + r) * S + s0, buf, sizeof(real) * width);
  }
}

/* one sample: y [O, S] = w [O, K] @ x [K, S] (+ base, when given) */
static void mix_sample(const real *w, int64_t O, int64_t K, const real *x, int64_t S, real *y,
                       const base_t *base) {
  if (!base)
    full_tiles(w, O, K, x, S, y, base, BASE_NONE);
  else if (base->full)
    full_tiles(w, O, K, x, S, y, base, BASE_FULL);
  else if (base->m % VW == 0)
    full_tiles(w, O, K, x, S, y, base, BASE_SPLIT);
  else
    full_tiles(w, O, K, x, S, y, base, BASE_SPLIT_CROSSING);
  int64_t full = O / TILE_ROWS * TILE_ROWS, s0 = 0;
  for (; s0 + 2 * VW <= S; s0 += 2 * VW)
    for (int64_t h = 0; h < 2 * VW && full < O; h += VW)
      tile_edge(w, K, x, S, y, base, full, (int)(O - full), s0 + h, VW);
  for (; s0 < S; s0 += VW) {
    int width = S - s0 < VW ? (int)(S - s0) : VW;
    for (int64_t o0 = 0; o0 < O; o0 += TILE_ROWS)
      tile_edge(w, K, x, S, y, base, o0, O - o0 < TILE_ROWS ? (int)(O - o0) : TILE_ROWS, s0,
                width);
  }
}

/* the weight gradient's share of one sample, g [O, S] @ x [K, S]^T, added lane by lane into
 * acc [O * K] vectors (summed over the lanes once, after the last sample), and the products
 * of the last S % VW positions into gw [O, K] */
static void weight_grad_sample(const real *g, const real *x, int64_t O, int64_t K, int64_t S,
                               vf *acc, real *gw) {
  int64_t whole = S / VW * VW;
  for (int64_t o0 = 0; o0 < O; o0 += GRAD_ROWS)
    for (int64_t k0 = 0; k0 < K; k0 += GRAD_COLS) {
      int ob = O - o0 < GRAD_ROWS ? (int)(O - o0) : GRAD_ROWS;
      int kb = K - k0 < GRAD_COLS ? (int)(K - k0) : GRAD_COLS;
      vf a[GRAD_ROWS][GRAD_COLS];
      for (int r = 0; r < ob; ++r)
        for (int q = 0; q < kb; ++q) a[r][q] = acc[(o0 + r) * K + k0 + q];
      if (ob == GRAD_ROWS && kb == GRAD_COLS) {
        for (int64_t s0 = 0; s0 < whole; s0 += VW) {
          vf gv[GRAD_ROWS], xv[GRAD_COLS];
          for (int r = 0; r < GRAD_ROWS; ++r) gv[r] = ld(g + (o0 + r) * S + s0);
          for (int q = 0; q < GRAD_COLS; ++q) xv[q] = ld(x + (k0 + q) * S + s0);
          for (int r = 0; r < GRAD_ROWS; ++r)
            for (int q = 0; q < GRAD_COLS; ++q) a[r][q] += gv[r] * xv[q];
        }
      } else {
        for (int64_t s0 = 0; s0 < whole; s0 += VW)
          for (int r = 0; r < ob; ++r)
            for (int q = 0; q < kb; ++q)
              a[r][q] += ld(g + (o0 + r) * S + s0) * ld(x + (k0 + q) * S + s0);
      }
      for (int r = 0; r < ob; ++r)
        for (int q = 0; q < kb; ++q) {
          acc[(o0 + r) * K + k0 + q] = a[r][q];
          const real *gr = g + (o0 + r) * S, *xr = x + (k0 + q) * S;
          for (int64_t p = whole; p < S; ++p) gw[(o0 + r) * K + k0 + q] += gr[p] * xr[p];
        }
    }
}

int dws_fused_abi(void) { return 2; }

/* the number of threads the kernels run with when asked for `requested` */
int dws_threads(int requested) {
#ifdef _OPENMP
  return requested > 0 ? requested : 1;
#else
  (void)requested;
  return 1;
#endif
}

/* rows [P, n] and cols [P, m]: the sums over j and over i of each plane of x [P, n, m] (P = B K;
 * NULL: skipped), in one pass */
void dws_plane_sums(const real *x, int64_t planes, int64_t n, int64_t m, real *rows, real *cols,
                    int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t p = 0; p < planes; ++p)
    plane_sums(x + p * n * m, n, m, rows ? rows + p * n : 0, cols ? cols + p * m : 0);
}

/* y[b] = w @ x[b] + the sum of the terms, for every sample b. Returns 0, or -1 where the
 * scratch memory for the terms cannot be had. */
int dws_mix_terms(const real *w, const real *x, real *y, int64_t B, int64_t O, int64_t K,
                  int64_t n, int64_t m, int64_t count, const real *const *ptr,
                  const int64_t *stride, int threads) {
  int64_t S = n * m;
  terms_t t = {count, ptr, stride};
  int split = terms_split(&t), failed = 0;
  int64_t need = !count ? 0 : split ? O * (n + m) : O * S;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    real *scratch = need ? malloc(sizeof(real) * need) : 0;
    base_t base = {0, 0, 0, n, m};
    if (split) {
      base.rowv = scratch;
      base.colv = scratch ? scratch + O * n : 0;
    } else {
      base.full = scratch;
    }
    failed = need && !scratch;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      if (failed) continue;
      if (scratch && split) fill_split(scratch, scratch + O * n, O, n, m, &t, b);
      if (scratch && !split) fill_terms(scratch, O, n, m, &t, b);
      mix_sample(w, O, K, x + b * K * S, S, y + b * O * S, scratch ? &base : 0);
    }
    free(scratch);
  }
  return failed ? -1 : 0;
}

/* The backward of y = w @ x + terms, from g = dL/dy [B, O, n, m], in one pass over g and x:
 * gx = w^T @ g (wt = w^T [K, O] row-major; gx NULL: skipped), the weight gradient
 * sum_b g[b] x[b]^T (one [O, K] partial sum per thread in gw_parts [threads, O, K]; NULL:
 * skipped), and the sums of g over j (rows [B, O, n]) and over i (cols [B, O, m]), from which
 * the caller sums each term's gradient (NULL: skipped). Returns 0, or -1 where the scratch
 * memory cannot be had. */
int dws_mix_backward(const real *g, const real *x, const real *wt, real *gx,
                      real *gw_parts, real *rows, real *cols, int64_t B, int64_t O, int64_t K,
                      int64_t n, int64_t m, int threads) {
  int64_t S = n * m;
  int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    real *gw = gw_parts ? gw_parts + (int64_t)tid * O * K : 0;
    vf *acc = gw ? aligned_alloc(sizeof(vf), sizeof(vf) * O * K) : 0; /* vf-aligned */
    failed = gw && !acc;
    if (gw) memset(gw, 0, sizeof(real) * O * K);
    for (int64_t e = 0; acc && e < O * K; ++e) acc[e] = splat(0.f);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      if (failed) continue;
      const real *gb = g + b * O * S;
      if (gx) mix_sample(wt, K, O, gb, S, gx + b * K * S, 0);
      for (int64_t o = 0; o < O && (rows || cols); ++o)
        plane_sums(gb + o * S, n, m, rows ? rows + (b * O + o) * n : 0,
                   cols ? cols + (b * O + o) * m : 0);
      if (acc) weight_grad_sample(gb, x + b * K * S, O, K, S, acc, gw);
    }
    for (int64_t e = 0; acc && e < O * K; ++e) gw[e] += hsum(acc[e]);
    free(acc);
  }
  return failed ? -1 : 0;
}

/*
 * lowbit WASM SIMD128 kernels (wasm32, no libc, no imports).
 *
 * Layouts (pointers are byte offsets into the module memory, prepared by the TypeScript side):
 * - Packed f32 weights: panels of NR = 8 output rows; panel p holds, for every input column k,
 *   the 8 values w[8p + r][k] (r < 8) contiguously: bp[(p * K + k) * 8 + r]. Missing rows are 0.
 * - Activations: row-major [M][K]; outputs row-major [M][N].
 * - Packed low-bit weights (fused_layout.ts): blocks of 4 output rows; per row and chunk of
 *   8 * floor(16 / bits) columns one 128-bit vector of eight 16-bit lanes, lane i holding the
 *   codes of columns i, 8 + i, 16 + i, ... at bits 0, bits, 2 * bits, ... Columns are in the
 *   layout's own (group-sorted, segment-padded) order; the caller permutes x to match.
 *   Per block and segment: 4 float scales and 4 float zero points.
 */
#include <wasm_simd128.h>

typedef unsigned int u32;

#define EXPORT(name) __attribute__((export_name(#name)))
#define INLINE static inline __attribute__((always_inline))

/* a * b + c: one fused (or not: the hardware decides) relaxed-SIMD op in the FMA build. */
#ifdef LOWBIT_RELAXED
#define MADD(a, b, c) wasm_f32x4_relaxed_madd(a, b, c)
#else
#define MADD(a, b, c) wasm_f32x4_add(c, wasm_f32x4_mul(a, b))
#endif

/* ---------------------------------------------------------------- f32 GEMM ------------- */

/*
 * Register tiles, sized for V8's x64 code (15 allocatable xmm registers; every memory access
 * also pays an explicit bounds check where the engine has no trap handler, e.g. Deno):
 * - plain SIMD128 (mul + add needs a temporary): MR = 4 rows x NR = 8 columns, 8 accumulators
 *   fed by ONE vector load of the 4 rows of A per k and its 3 lane rotations (no broadcasts);
 * - relaxed SIMD (fused, no temporary): MR = 6, 12 accumulators + 2 B vectors + 1 broadcast.
 * KC and MC bound the blocks of A packed into the workspace (GEMM_WS floats, the same for every
 * build; `GEMM_WS` in mod.ts): a B slice (KC x 8) and an A panel (KC x MR) stay in L1, the A block
 * (MC x KC) in L2.
 */
#ifdef LOWBIT_RELAXED
#define MR 6
#define MC 132
#else
#define MR 4
#define MC 128
#endif
#define NR 8
#define KC 768
#define GEMM_WS (132 * 768)
_Static_assert(MC % MR == 0 && MC * KC <= GEMM_WS, "GEMM workspace");

/* Pack A[0 .. mc)[0 .. kc) (row stride lda) into MR-row panels [k][MR], zero rows past mc. */
static void pack_a(const float *a, int lda, int mc, int kc, float *ap) {
  for (int i = 0; i < mc; i += MR, ap += MR * kc) {
    int rows = mc - i < MR ? mc - i : MR;
    const float *r0 = a + i * lda, *r1 = r0 + lda, *r2 = r1 + lda, *r3 = r2 + lda;
    int k = 0;
    if (rows == MR) {
      /* 4 rows x 4 columns per step: one 4x4 transpose (rows 4 and 5 interleaved in pairs). */
      for (; k + 4 <= kc; k += 4) {
        v128_t x0 = wasm_v128_load(r0 + k), x1 = wasm_v128_load(r1 + k);
        v128_t x2 = wasm_v128_load(r2 + k), x3 = wasm_v128_load(r3 + k);
        v128_t t0 = wasm_i32x4_shuffle(x0, x1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(x2, x3, 0, 4, 1, 5);
        v128_t t2 = wasm_i32x4_shuffle(x0, x1, 2, 6, 3, 7), t3 = wasm_i32x4_shuffle(x2, x3, 2, 6, 3, 7);
        float *d = ap + MR * k;
        wasm_v128_store(d, wasm_i64x2_shuffle(t0, t1, 0, 2));
        wasm_v128_store(d + MR, wasm_i64x2_shuffle(t0, t1, 1, 3));
        wasm_v128_store(d + 2 * MR, wasm_i64x2_shuffle(t2, t3, 0, 2));
        wasm_v128_store(d + 3 * MR, wasm_i64x2_shuffle(t2, t3, 1, 3));
#if MR == 6
        v128_t x4 = wasm_v128_load(r3 + lda + k), x5 = wasm_v128_load(r3 + 2 * lda + k);
        v128_t lo = wasm_i32x4_shuffle(x4, x5, 0, 4, 1, 5), hi = wasm_i32x4_shuffle(x4, x5, 2, 6, 3, 7);
        wasm_v128_store64_lane(d + 4, lo, 0);
        wasm_v128_store64_lane(d + MR + 4, lo, 1);
        wasm_v128_store64_lane(d + 2 * MR + 4, hi, 0);
        wasm_v128_store64_lane(d + 3 * MR + 4, hi, 1);
#endif
      }
    }
    for (; k < kc; k++) {
      for (int r = 0; r < MR; r++) ap[MR * k + r] = r < rows ? r0[r * lda + k] : 0.0f;
    }
  }
}

#if MR == 4
/*
 * One k step of the 4x8 tile: a = rows 0..3 of A at k, a_s its rotation by s lanes
 * (a_s[i] = a[(i + s) % 4]); d_sj[i] accumulates C[(i + s) % 4][4j + i]. Each output gets the
 * same products in the same order as with broadcasts; only its lane differs.
 */
#define TILE_STEP                                                                              \
  {                                                                                            \
    v128_t b0 = wasm_v128_load(bp), b1 = wasm_v128_load(bp + 4);                               \
    v128_t a = wasm_v128_load(ap);                                                             \
    d00 = MADD(a, b0, d00);                                                                    \
    d01 = MADD(a, b1, d01);                                                                    \
    v128_t a1 = wasm_i32x4_shuffle(a, a, 1, 2, 3, 0);                                          \
    d10 = MADD(a1, b0, d10);                                                                   \
    d11 = MADD(a1, b1, d11);                                                                   \
    v128_t a2 = wasm_i32x4_shuffle(a, a, 2, 3, 0, 1);                                          \
    d20 = MADD(a2, b0, d20);                                                                   \
    d21 = MADD(a2, b1, d21);                                                                   \
    v128_t a3 = wasm_i32x4_shuffle(a, a, 3, 0, 1, 2);                                          \
    d30 = MADD(a3, b0, d30);                                                                   \
    d31 = MADD(a3, b1, d31);                                                                   \
  }
/* Row r of a column quad: lane i from d_{(r - i) % 4}, given x_s = d_{(r + s) % 4}. */
#define UNROTATE(x0, x1, x2, x3)                                                               \
  wasm_i32x4_shuffle(wasm_i32x4_shuffle(x0, x2, 0, 0, 6, 6),                                   \
                     wasm_i32x4_shuffle(x3, x1, 1, 1, 7, 7), 0, 5, 2, 7)
#define ROWS(X) X(0) X(1) X(2) X(3)
#else
/* One k step of the 6x8 tile: B row (2 vectors) times each broadcast A value. */
#define TILE_ROW(r)                                                                            \
  {                                                                                            \
    v128_t a = wasm_v128_load32_splat(ap + (r));                                               \
    c##r##0 = MADD(a, b0, c##r##0);                                                            \
    c##r##1 = MADD(a, b1, c##r##1);                                                            \
  }
#define TILE_STEP                                                                              \
  {                                                                                            \
    v128_t b0 = wasm_v128_load(bp), b1 = wasm_v128_load(bp + 4);                               \
    ROWS(TILE_ROW)                                                                             \
  }
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define TILE_ZERO(r) v128_t c##r##0 = wasm_f32x4_splat(0), c##r##1 = c##r##0;
#endif
#define TILE_ADD(r)                                                                            \
  c##r##0 = wasm_f32x4_add(c##r##0, wasm_v128_load(c + (r) * ldc));                            \
  c##r##1 = wasm_f32x4_add(c##r##1, wasm_v128_load(c + (r) * ldc + 4));
#define TILE_STORE(r)                                                                          \
  wasm_v128_store(c + (r) * ldc, c##r##0);                                                     \
  wasm_v128_store(c + (r) * ldc + 4, c##r##1);
#define TILE_SPILL(r)                                                                          \
  wasm_v128_store(tile + (r) * NR, c##r##0);                                                   \
  wasm_v128_store(tile + (r) * NR + 4, c##r##1);

/*
 * C[MR][NR] (+)= Ap[kc][MR] x Bp[kc][NR]; writes only rows < mr and columns < nr. Neither inlined
 * nor unrolled by clang, which would interleave k steps and run out of registers (V8 inlines it
 * and unrolls the loop by itself, one k step after the other).
 */
static __attribute__((noinline)) void micro_kernel(int kc, const float *ap, const float *bp,
                                                   float *c, int ldc, int mr, int nr,
                                                   int accumulate) {
#if MR == 4
  v128_t d00 = wasm_f32x4_splat(0), d01 = d00, d10 = d00, d11 = d00;
  v128_t d20 = d00, d21 = d00, d30 = d00, d31 = d00;
#else
  ROWS(TILE_ZERO)
#endif
#pragma clang loop unroll(disable)
  for (const float *end = bp + NR * kc; bp != end; bp += NR, ap += MR) TILE_STEP
#if MR == 4
  v128_t c00 = UNROTATE(d00, d10, d20, d30), c01 = UNROTATE(d01, d11, d21, d31);
  v128_t c10 = UNROTATE(d10, d20, d30, d00), c11 = UNROTATE(d11, d21, d31, d01);
  v128_t c20 = UNROTATE(d20, d30, d00, d10), c21 = UNROTATE(d21, d31, d01, d11);
  v128_t c30 = UNROTATE(d30, d00, d10, d20), c31 = UNROTATE(d31, d01, d11, d21);
#endif
  if (mr == MR && nr == NR) {
    if (accumulate) {
      ROWS(TILE_ADD)
    }
    ROWS(TILE_STORE)
    return;
  }
  float tile[MR * NR] __attribute__((aligned(16)));
  ROWS(TILE_SPILL)
  for (int r = 0; r < mr; r++) {
    for (int j = 0; j < nr; j++) {
      float v = tile[r * NR + j];
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + v : v;
    }
  }
}

/* out[m][n] = sum_k a[m][k] * w[n][k] with w in packed panels; ws holds GEMM_WS floats. */
/* Only panels [p0, p1) (output columns 8 * p0 .. 8 * p1): a share of the work for one thread. */
EXPORT(gemm_f32)
void gemm_f32(int m, int n, int k, const float *a, const float *bp, float *c, float *ws, int p0,
              int p1) {
  /*
   * Blocks of equal size (at most KC columns, at most MC rows rounded up to MR): no short last
   * block streaming all of B again for a few rows, no short pass over C.
   */
  int kblocks = (k + KC - 1) / KC, mblocks = (m + MC - 1) / MC;
  int kb = (k + kblocks - 1) / kblocks;
  int mb = ((m + mblocks - 1) / mblocks + MR - 1) / MR * MR;
  for (int pc = 0; pc < k; pc += kb) {
    int kc = k - pc < kb ? k - pc : kb;
    for (int ic = 0; ic < m; ic += mb) {
      int mc = m - ic < mb ? m - ic : mb;
      pack_a(a + ic * k + pc, k, mc, kc, ws);
      for (int p = p0; p < p1; p++) {
        const float *b = bp + ((long)p * k + pc) * NR;
        int nr = n - p * NR < NR ? n - p * NR : NR;
        for (int ir = 0; ir < mc; ir += MR) {
          int mr = mc - ir < MR ? mc - ir : MR;
          micro_kernel(kc, ws + ir * kc, b, c + (ic + ir) * n + p * NR, n, mr, nr, pc > 0);
        }
      }
    }
  }
}

/* ---------------------------------------------------------------- f64 GEMM ------------- */

/*
 * C[i][j] -= sum_k A[i][k] * B'(k, j) in float64 for the linear algebra of methods (GPTQ's
 * Cholesky factor, its inverse and its column sweep). B'(k, j) = B[k][j], or B[j][k] when tb.
 * Blocks of KC64 k-steps and NC64 columns of B' are packed into the workspace (ws, the f32
 * GEMM's GEMM_WS floats) as 4-column panels; 4x4 register tiles (8 f64x2 accumulators) run over
 * rows [i0, i1) of A and C: a thread's share. Every C entry is computed the same way whatever
 * the share: per k-block, acc = 0 + a_0 b_0 + a_1 b_1 + ... (each product and sum rounded, no
 * fused multiply-add), then c -= acc. `kernels/ref/f64.ts` computes exactly this.
 */
#define KC64 128
#define NC64 384
_Static_assert(KC64 * NC64 * 2 <= GEMM_WS, "f64 GEMM workspace");

static void pack_b64(const double *b, int ldb, int tb, int kc, int nc, double *bp) {
  for (int j = 0; j < nc; j += 4, bp += 4 * kc) {
    int cols = nc - j < 4 ? nc - j : 4;
    if (!tb && cols == 4) {
      for (int kk = 0; kk < kc; kk++) {
        const double *r = b + kk * ldb + j;
        wasm_v128_store(bp + 4 * kk, wasm_v128_load(r));
        wasm_v128_store(bp + 4 * kk + 2, wasm_v128_load(r + 2));
      }
      continue;
    }
    for (int kk = 0; kk < kc; kk++) {
      for (int r = 0; r < 4; r++) {
        bp[4 * kk + r] = r >= cols ? 0.0 : tb ? b[(j + r) * ldb + kk] : b[kk * ldb + j + r];
      }
    }
  }
}

#define F64_ROW(r)                                                                             \
  {                                                                                            \
    v128_t x = wasm_v128_load64_splat(a##r + kk);                                              \
    c##r##0 = wasm_f64x2_add(c##r##0, wasm_f64x2_mul(x, b0));                                  \
    c##r##1 = wasm_f64x2_add(c##r##1, wasm_f64x2_mul(x, b1));                                  \
  }
#define F64_SUB(r)                                                                             \
  wasm_v128_store(c + (r) * ldc, wasm_f64x2_sub(wasm_v128_load(c + (r) * ldc), c##r##0));      \
  wasm_v128_store(c + (r) * ldc + 2, wasm_f64x2_sub(wasm_v128_load(c + (r) * ldc + 2), c##r##1));
#define F64_SPILL(r)                                                                           \
  wasm_v128_store(tile + (r) * 4, c##r##0);                                                    \
  wasm_v128_store(tile + (r) * 4 + 2, c##r##1);

/* C[mr][nr] -= A[mr][kc] x Bp[kc][4] (rows of A past mr read row 0 and are dropped). */
static __attribute__((noinline)) void micro_f64(int kc, const double *a, int lda,
                                                const double *bp, double *c, int ldc, int mr,
                                                int nr) {
  const double *a0 = a, *a1 = mr > 1 ? a + lda : a, *a2 = mr > 2 ? a + 2 * lda : a;
  const double *a3 = mr > 3 ? a + 3 * lda : a;
  v128_t c00 = wasm_f64x2_splat(0), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
#pragma clang loop unroll(disable)
  for (int kk = 0; kk < kc; kk++, bp += 4) {
    v128_t b0 = wasm_v128_load(bp), b1 = wasm_v128_load(bp + 2);
    F64_ROW(0) F64_ROW(1) F64_ROW(2) F64_ROW(3)
  }
  if (mr == 4 && nr == 4) {
    F64_SUB(0) F64_SUB(1) F64_SUB(2) F64_SUB(3)
    return;
  }
  double tile[16] __attribute__((aligned(16)));
  F64_SPILL(0) F64_SPILL(1) F64_SPILL(2) F64_SPILL(3)
  for (int r = 0; r < mr; r++) {
    for (int j = 0; j < nr; j++) c[r * ldc + j] -= tile[r * 4 + j];
  }
}

EXPORT(gemm_f64)
void gemm_f64(int n, int k, const double *a, int lda, const double *b, int ldb, int tb,
              double *c, int ldc, double *ws, int i0, int i1) {
  for (int pc = 0; pc < k; pc += KC64) {
    int kc = k - pc < KC64 ? k - pc : KC64;
    for (int jc = 0; jc < n; jc += NC64) {
      int nc = n - jc < NC64 ? n - jc : NC64;
      pack_b64(tb ? b + jc * ldb + pc : b + pc * ldb + jc, ldb, tb, kc, nc, ws);
      for (int i = i0; i < i1; i += 4) {
        int mr = i1 - i < 4 ? i1 - i : 4;
        const double *ai = a + i * lda + pc;
        for (int j = 0; j < nc; j += 4) {
          int nr = nc - j < 4 ? nc - j : 4;
          micro_f64(kc, ai, lda, ws + j * kc, c + i * ldc + jc + j, ldc, mr, nr);
        }
      }
    }
  }
}

/* out[n] = sum_k x[k] * w[n][k] (one token), streaming the packed panels [p0, p1) once. */
EXPORT(gemv_f32)
void gemv_f32(int n, int k, const float *x, const float *bp, float *out, int p0, int p1) {
  for (int p = p0; p < p1; p++) {
    const float *b = bp + (long)p * k * NR;
    v128_t s0 = wasm_f32x4_splat(0), s1 = s0, t0 = s0, t1 = s0;
    v128_t u0 = s0, u1 = s0, v0 = s0, v1 = s0;
    int i = 0;
    for (; i + 4 <= k; i += 4) {
      const float *bb = b + 8 * i;
      v128_t x0 = wasm_v128_load32_splat(x + i);
      v128_t x1 = wasm_v128_load32_splat(x + i + 1);
      v128_t x2 = wasm_v128_load32_splat(x + i + 2);
      v128_t x3 = wasm_v128_load32_splat(x + i + 3);
      s0 = MADD(x0, wasm_v128_load(bb), s0);
      s1 = MADD(x0, wasm_v128_load(bb + 4), s1);
      t0 = MADD(x1, wasm_v128_load(bb + 8), t0);
      t1 = MADD(x1, wasm_v128_load(bb + 12), t1);
      u0 = MADD(x2, wasm_v128_load(bb + 16), u0);
      u1 = MADD(x2, wasm_v128_load(bb + 20), u1);
      v0 = MADD(x3, wasm_v128_load(bb + 24), v0);
      v1 = MADD(x3, wasm_v128_load(bb + 28), v1);
    }
    for (; i < k; i++) {
      v128_t xi = wasm_v128_load32_splat(x + i);
      s0 = MADD(xi, wasm_v128_load(b + 8 * i), s0);
      s1 = MADD(xi, wasm_v128_load(b + 8 * i + 4), s1);
    }
    s0 = wasm_f32x4_add(wasm_f32x4_add(s0, t0), wasm_f32x4_add(u0, v0));
    s1 = wasm_f32x4_add(wasm_f32x4_add(s1, t1), wasm_f32x4_add(u1, v1));
    int nr = n - p * NR < NR ? n - p * NR : NR;
    float *o = out + p * NR;
    if (nr == NR) {
      wasm_v128_store(o, s0);
      wasm_v128_store(o + 4, s1);
    } else {
      float tile[NR] __attribute__((aligned(16)));
      wasm_v128_store(tile, s0);
      wasm_v128_store(tile + 4, s1);
      for (int j = 0; j < nr; j++) o[j] = tile[j];
    }
  }
}

/* ---------------------------------------------------------------- RMSNorm -------------- */

/* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, sums of squares in float64. */
EXPORT(rmsnorm_f32)
void rmsnorm_f32(int tokens, int d, const float *x, const float *w, float eps, float *out) {
  for (int t = 0; t < tokens; t++) {
    const float *xt = x + t * d;
    float *ot = out + t * d;
    v128_t a = wasm_f64x2_splat(0), b = a;
    int i = 0;
    for (; i + 4 <= d; i += 4) {
      v128_t v = wasm_v128_load(xt + i);
      v128_t lo = wasm_f64x2_promote_low_f32x4(v);
      v128_t hi = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
      a = wasm_f64x2_add(a, wasm_f64x2_mul(lo, lo));
      b = wasm_f64x2_add(b, wasm_f64x2_mul(hi, hi));
    }
    a = wasm_f64x2_add(a, b);
    double ss = wasm_f64x2_extract_lane(a, 0) + wasm_f64x2_extract_lane(a, 1);
    for (; i < d; i++) ss += (double)xt[i] * (double)xt[i];
    double inv = 1.0 / __builtin_sqrt(ss / d + (double)eps);
    for (int j = 0; j < d; j++) ot[j] = (float)((double)xt[j] * inv * (double)w[j]);
  }
}

/* ---------------------------------------------------------- fused dequant GEMV ---------- */

/*
 * Activations rounded to int16 per segment: xq[c] = nearest(x[c] · 32767 / max|x|_seg), and per
 * segment sx[s] = max / 32767 (the step) and xs[s] = sx · Σ xq (the rounded activations' sum).
 * Segments are whole chunks, so whole vectors of 8; kp floats of x, kp int16 of xq.
 */
static void quant_x(int segs, const u32 *sege, int chunk, const float *x, short *xq, float *sx,
                    float *xs) {
  int c = 0;
  for (int s = 0; s < segs; s++) {
    const int end = (int)sege[s] * chunk;
    v128_t mx = wasm_f32x4_splat(0);
    for (int i = c; i < end; i += 4) mx = wasm_f32x4_max(mx, wasm_f32x4_abs(wasm_v128_load(x + i)));
    mx = wasm_f32x4_max(mx, wasm_i32x4_shuffle(mx, mx, 2, 3, 0, 1));
    mx = wasm_f32x4_max(mx, wasm_i32x4_shuffle(mx, mx, 1, 0, 3, 2));
    const float m = wasm_f32x4_extract_lane(mx, 0);
    const float inv = m > 0 ? 32767.0f / m : 0.0f;
    const v128_t vi = wasm_f32x4_splat(inv);
    v128_t sum = wasm_i32x4_splat(0);
    for (int i = c; i < end; i += 8) {
      v128_t a = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + i), vi)));
      v128_t b = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + i + 4), vi)));
      sum = wasm_i32x4_add(sum, wasm_i32x4_add(a, b));
      wasm_v128_store(xq + i, wasm_i16x8_narrow_i32x4(a, b));
    }
    const int total = wasm_i32x4_extract_lane(sum, 0) + wasm_i32x4_extract_lane(sum, 1) +
                      wasm_i32x4_extract_lane(sum, 2) + wasm_i32x4_extract_lane(sum, 3);
    sx[s] = m / 32767.0f;
    xs[s] = sx[s] * (float)total;
    c = end;
  }
}

/* The four lanes' sums of four int32x4 accumulators: [Σa, Σb, Σc, Σd]. */
INLINE v128_t hsum4(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t ab = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 2, 6), wasm_i32x4_shuffle(a, b, 1, 5, 3, 7));
  v128_t cd = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 2, 6), wasm_i32x4_shuffle(c, d, 1, 5, 3, 7));
  return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}

/*
 * One token: out[o] = Σ_s s[o][s] · (sx[s] · Σ_{c in s} xq[c] · q[o][c] − z[o][s] · xs[s]).
 * Codes stay packed: per row and chunk one vector of eight 16-bit lanes; plane n (a shift and a
 * mask) holds the codes of 8 consecutive columns, multiplied with 8 int16 activations by one
 * i32x4.dot_i16x8_s. Blocks of 4 rows share the activation vectors.
 */
INLINE void dq_gemv_bits(const int bits, const int planes, int rows, int blocks, int chunks,
                         int segs, const v128_t *codes, const float *sc, const float *zp,
                         const u32 *sege, const short *xq, const float *sx, const float *xs,
                         float *out) {
  const int chunk = 8 * planes;
  const v128_t mask = wasm_i16x8_splat((short)((1 << bits) - 1));
  for (int b = 0; b < blocks; b++) {
    const v128_t *cb = codes + (long)b * chunks * 4;
    const float *sb = sc + (long)b * segs * 4;
    const float *zb = zp + (long)b * segs * 4;
    v128_t tot = wasm_f32x4_splat(0);
    int k = 0;
    for (int s = 0; s < segs; s++) {
      v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
      const int end = (int)sege[s];
      for (; k < end; k++) {
        const v128_t *v = cb + 4 * k;
        const short *xk = xq + k * chunk;
        v128_t v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
#pragma unroll
        for (int n = 0; n < planes; n++) {
          v128_t xn = wasm_v128_load(xk + 8 * n);
          v128_t p0, p1, p2, p3;
          if (n == 0) {
            p0 = wasm_v128_and(v0, mask);
            p1 = wasm_v128_and(v1, mask);
            p2 = wasm_v128_and(v2, mask);
            p3 = wasm_v128_and(v3, mask);
          } else if (n == planes - 1) {
            /* The bits above the last plane are zero: no mask needed. */
            p0 = wasm_u16x8_shr(v0, n * bits);
            p1 = wasm_u16x8_shr(v1, n * bits);
            p2 = wasm_u16x8_shr(v2, n * bits);
            p3 = wasm_u16x8_shr(v3, n * bits);
          } else {
            p0 = wasm_v128_and(wasm_u16x8_shr(v0, n * bits), mask);
            p1 = wasm_v128_and(wasm_u16x8_shr(v1, n * bits), mask);
            p2 = wasm_v128_and(wasm_u16x8_shr(v2, n * bits), mask);
            p3 = wasm_v128_and(wasm_u16x8_shr(v3, n * bits), mask);
          }
          a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(p0, xn));
          a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(p1, xn));
          a2 = wasm_i32x4_add(a2, wasm_i32x4_dot_i16x8(p2, xn));
          a3 = wasm_i32x4_add(a3, wasm_i32x4_dot_i16x8(p3, xn));
        }
      }
      v128_t dot = wasm_f32x4_convert_i32x4(hsum4(a0, a1, a2, a3));
      v128_t g = wasm_f32x4_sub(wasm_f32x4_mul(dot, wasm_f32x4_splat(sx[s])),
                                wasm_f32x4_mul(wasm_v128_load(zb + 4 * s), wasm_f32x4_splat(xs[s])));
      tot = MADD(wasm_v128_load(sb + 4 * s), g, tot);
    }
    const int nr = rows - b * 4 < 4 ? rows - b * 4 : 4;
    if (nr == 4) wasm_v128_store(out + b * 4, tot);
    else {
      float tile[4] __attribute__((aligned(16)));
      wasm_v128_store(tile, tot);
      for (int r = 0; r < nr; r++) out[b * 4 + r] = tile[r];
    }
  }
}

/* One kernel per (bits, planes): planes = floor(16 / bits), or the largest power of two below it
   (fewer padded columns when groups are multiples of 32, e.g. 3 bits with groups of 128). */
#define DQ(B, P)                                                                               \
  static void dq_gemv_##B##_##P(int rows, int blocks, int chunks, int segs,                    \
                                const v128_t *codes, const float *sc, const float *zp,         \
                                const u32 *sege, const short *xq, const float *sx,             \
                                const float *xs, float *out) {                                 \
    dq_gemv_bits(B, P, rows, blocks, chunks, segs, codes, sc, zp, sege, xq, sx, xs, out);      \
  }
DQ(2, 8)
DQ(3, 5)
DQ(3, 4)
DQ(4, 4)
DQ(5, 3)
DQ(5, 2)
DQ(6, 2)
DQ(7, 2)
DQ(8, 2)

/*
 * out[t][o] = Σ_c x[t][c] · s · (q[o][c] − z) over the fused layout (fused_layout.ts), with each
 * token's activations rounded to int16 per segment. xp: [tokens][chunks · chunk] floats (already
 * permuted and padded); xq: chunks · chunk int16 of scratch; sxs: 2 · segs floats of scratch.
 * Rows [r0, r1) of the output only (r0, r1 multiples of 4 or r1 = rows), for splitting the work.
 * Returns 0 on success, -1 for an unsupported (bits, planes).
 */
EXPORT(dq_gemv)
int dq_gemv(int bits, int planes, int tokens, int rows, int r0, int r1, int chunks, int segs,
            const v128_t *codes, const float *sc, const float *zp, const u32 *sege,
            const float *xp, short *xq, float *sxs, float *out) {
  typedef void (*kernel)(int, int, int, int, const v128_t *, const float *, const float *,
                         const u32 *, const short *, const float *, const float *, float *);
  kernel f = 0;
  switch (bits * 16 + planes) {
    case 2 * 16 + 8: f = dq_gemv_2_8; break;
    case 3 * 16 + 5: f = dq_gemv_3_5; break;
    case 3 * 16 + 4: f = dq_gemv_3_4; break;
    case 4 * 16 + 4: f = dq_gemv_4_4; break;
    case 5 * 16 + 3: f = dq_gemv_5_3; break;
    case 5 * 16 + 2: f = dq_gemv_5_2; break;
    case 6 * 16 + 2: f = dq_gemv_6_2; break;
    case 7 * 16 + 2: f = dq_gemv_7_2; break;
    case 8 * 16 + 2: f = dq_gemv_8_2; break;
    default: return -1;
  }
  const int chunk = 8 * planes;
  const long kp = (long)chunks * chunk;
  const int b0 = r0 / 4, blocks = (r1 - r0 + 3) / 4;
  const v128_t *cb = codes + (long)b0 * chunks * 4;
  const float *sb = sc + (long)b0 * segs * 4, *zb = zp + (long)b0 * segs * 4;
  float *sx = sxs, *xs = sxs + segs;
  for (int t = 0; t < tokens; t++) {
    quant_x(segs, sege, chunk, xp + t * kp, xq, sx, xs);
    f(r1 - r0, blocks, chunks, segs, cb, sb, zb, sege, xq, sx, xs, out + (long)t * rows + r0);
  }
  return 0;
}

/* ---------------------------------------------------------------- attention ----------- */

/* The constants of exp4k, as vectors (see exp_consts). */
typedef struct {
  v128_t lo, log2e, magic, ln2hi, ln2lo, c7, c6, c5, c4, c3, c2, one, bias;
} ExpK;

/*
 * e^x for x <= 0 (float32, relative error ~2e-7; below -87 it returns ~0), constants from k:
 * x = n·ln 2 + r with |r| <= ln 2 / 2 (ln 2 in two parts, as Cephes' expf), e^r by its degree-7
 * Taylor polynomial, 2^n built in the exponent bits. n = round(x · log2 e) comes from adding
 * 1.5·2^23 (ties to even, like f32x4.nearest): the sum's low mantissa bits then hold n as an
 * integer, so no float→int conversion is needed (V8 expands that into a saturating sequence).
 * The same numbers, bit for bit, as the nearest/trunc_sat form it replaced: calibration passes
 * go through it, and methods that train on their outputs (FlexRound, AffineQuant) amplify a last
 * bit into a different rounding decision.
 */
INLINE v128_t exp4k(v128_t x, const ExpK *k) {
  x = wasm_f32x4_pmax(x, k->lo); /* maxps: no NaN handling needed */
  v128_t t = wasm_f32x4_add(wasm_f32x4_mul(x, k->log2e), k->magic);
  v128_t n = wasm_f32x4_sub(t, k->magic);
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, k->ln2hi));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, k->ln2lo));
  v128_t p = k->c7;
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c6);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c5);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c4);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c3);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c2);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->one);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->one);
  /* bits(t) = 0x4B400000 + n, so (bits(t) − 0x4B400000 + 127) << 23 is 2^n (n >= −126). */
  v128_t e = wasm_i32x4_shl(wasm_i32x4_add(t, k->bias), 23);
  return wasm_f32x4_mul(p, e);
}

/* The constants of exp4k in memory, with external linkage so the compiler cannot fold them into
   v128.const: V8 rebuilds a v128.const at every use on x64 (three instructions), so hot loops load
   them once before the loop (exp_consts) and V8 keeps them in registers or stack slots. */
float lowbit_exp_k[12] = {-87.0f,           1.44269504088896341f, 12582912.0f,   0.693359375f,
                          -2.12194440e-4f,  1.0f / 5040,          1.0f / 720,    1.0f / 120,
                          1.0f / 24,        1.0f / 6,             0.5f,          1.0f};
int lowbit_exp_bias = 127 - 0x4B400000;

INLINE ExpK exp_consts(void) {
  const float *c = lowbit_exp_k;
  ExpK k = {wasm_f32x4_splat(c[0]), wasm_f32x4_splat(c[1]), wasm_f32x4_splat(c[2]),
            wasm_f32x4_splat(c[3]), wasm_f32x4_splat(c[4]), wasm_f32x4_splat(c[5]),
            wasm_f32x4_splat(c[6]), wasm_f32x4_splat(c[7]), wasm_f32x4_splat(c[8]),
            wasm_f32x4_splat(c[9]), wasm_f32x4_splat(c[10]), wasm_f32x4_splat(c[11]),
            wasm_i32x4_splat(lowbit_exp_bias)};
  return k;
}

/*
 * Causal grouped-query attention, as runners/forward.ts computes it: for token t (absolute
 * position start + t) and head h, softmax over s <= start + t of q·k_s / sqrt(headDim), times v.
 * q, out: [T][nHeads * headDim]; k, v: [start + T][nKvHeads * headDim]; scores: start + T + 4
 * floats of scratch.
 */
EXPORT(attention_f32)
void attention_f32(int T, int start, int nHeads, int nKvHeads, int headDim, const float *q,
                   const float *k, const float *v, float *out, float *scores) {
  const int qDim = nHeads * headDim, kvDim = nKvHeads * headDim, group = nHeads / nKvHeads;
  const float scale = 1.0f / __builtin_sqrtf((float)headDim);
  const int hd4 = headDim & ~3;
  const ExpK ek = exp_consts();
  for (int t = 0; t < T; t++) {
    const int n = start + t + 1;
    for (int h = 0; h < nHeads; h++) {
      const float *qh = q + t * qDim + h * headDim;
      const int ko = (h / group) * headDim;
      float max = -__builtin_inff();
      for (int s = 0; s < n; s++) {
        const float *kr = k + s * kvDim + ko;
        v128_t acc = wasm_f32x4_splat(0);
        int i = 0;
        for (; i < hd4; i += 4) acc = MADD(wasm_v128_load(qh + i), wasm_v128_load(kr + i), acc);
        float dot = wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) +
                    wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3);
        for (; i < headDim; i++) dot += qh[i] * kr[i];
        dot *= scale;
        scores[s] = dot;
        if (dot > max) max = dot;
      }
      const int n4 = (n + 3) & ~3;
      for (int s = n; s < n4; s++) scores[s] = -__builtin_inff();
      v128_t mx = wasm_f32x4_splat(max), sum4 = wasm_f32x4_splat(0);
      for (int s = 0; s < n4; s += 4) {
        v128_t e = exp4k(wasm_f32x4_sub(wasm_v128_load(scores + s), mx), &ek);
        wasm_v128_store(scores + s, e);
        sum4 = wasm_f32x4_add(sum4, e);
      }
      /* Padding lanes hold exp(-87) ~ 1.6e-38: negligible, but subtract them exactly. */
      float sum = wasm_f32x4_extract_lane(sum4, 0) + wasm_f32x4_extract_lane(sum4, 1) +
                  wasm_f32x4_extract_lane(sum4, 2) + wasm_f32x4_extract_lane(sum4, 3);
      for (int s = n; s < n4; s++) sum -= scores[s];
      const float inv = 1.0f / sum;
      float *oh = out + t * qDim + h * headDim;
      int i = 0;
      for (; i < hd4; i += 4) {
        v128_t acc = wasm_f32x4_splat(0);
        for (int s = 0; s < n; s++) {
          acc = MADD(wasm_v128_load32_splat(scores + s), wasm_v128_load(v + s * kvDim + ko + i),
                     acc);
        }
        wasm_v128_store(oh + i, wasm_f32x4_mul(acc, wasm_f32x4_splat(inv)));
      }
      for (; i < headDim; i++) {
        float acc = 0;
        for (int s = 0; s < n; s++) acc += scores[s] * v[s * kvDim + ko + i];
        oh[i] = acc * inv;
      }
    }
  }
}

/* Whole-window forward pass of a dense model over resident weights (window_forward.ts). */
#include "forward.c"

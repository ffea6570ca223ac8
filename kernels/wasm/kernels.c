/*
 * lowbit WASM SIMD128 kernels (wasm32, no libc, no imports).
 *
 * Layouts (pointers are byte offsets into the module memory, prepared by the TypeScript side):
 * - Packed f32 weights: panels of NR = 8 output rows; panel p holds, for every input column k,
 *   the 8 values w[8p + r][k] (r < 8) contiguously: bp[(p * K + k) * 8 + r]. Missing rows are 0.
 * - Activations: row-major [M][K]; outputs row-major [M][N].
 * - Packed low-bit weights: blocks of 8 output rows; for every (padded) word index w, 8 uint32
 *   words (one per row) holding floor(32 / bits) codes, code j at bit j * bits, each stored as
 *   q ^ 2^(bits-1) (read back sign-extended as q - 2^(bits-1)). Columns are in
 *   the layout's own (group-sorted, group-padded) order; the caller permutes x to match.
 *   Per block and group: 8 float scales and 8 float zero points minus 2^(bits-1).
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

#define MR 4
#define NR 8
#define KC 256
#define MC 64

/* ---------------------------------------------------------------- f32 GEMM ------------- */

/* Pack A[m0 .. m0 + mc)[k0 .. k0 + kc) into MR-row panels [k][MR], zero rows past M. */
static void pack_a(const float *a, int lda, int mc, int kc, float *ap) {
  for (int i = 0; i < mc; i += MR) {
    int rows = mc - i < MR ? mc - i : MR;
    float *dst = ap + i * kc;
    if (rows == MR) {
      const float *r0 = a + (i + 0) * lda, *r1 = a + (i + 1) * lda;
      const float *r2 = a + (i + 2) * lda, *r3 = a + (i + 3) * lda;
      for (int k = 0; k < kc; k++) {
        dst[4 * k + 0] = r0[k];
        dst[4 * k + 1] = r1[k];
        dst[4 * k + 2] = r2[k];
        dst[4 * k + 3] = r3[k];
      }
    } else {
      for (int k = 0; k < kc; k++) {
        for (int r = 0; r < MR; r++) dst[MR * k + r] = r < rows ? a[(i + r) * lda + k] : 0.0f;
      }
    }
  }
}

/* C[MR][NR] (+)= Ap[kc][MR] x Bp[kc][NR]; writes only rows < mr and columns < nr. */
static void micro_4x8(int kc, const float *ap, const float *bp, float *c, int ldc, int mr, int nr,
                      int accumulate) {
  v128_t c00 = wasm_f32x4_splat(0), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int k = 0; k < kc; k++) {
    v128_t b0 = wasm_v128_load(bp + 8 * k);
    v128_t b1 = wasm_v128_load(bp + 8 * k + 4);
    v128_t a0 = wasm_v128_load32_splat(ap + 4 * k + 0);
    c00 = MADD(a0, b0, c00);
    c01 = MADD(a0, b1, c01);
    v128_t a1 = wasm_v128_load32_splat(ap + 4 * k + 1);
    c10 = MADD(a1, b0, c10);
    c11 = MADD(a1, b1, c11);
    v128_t a2 = wasm_v128_load32_splat(ap + 4 * k + 2);
    c20 = MADD(a2, b0, c20);
    c21 = MADD(a2, b1, c21);
    v128_t a3 = wasm_v128_load32_splat(ap + 4 * k + 3);
    c30 = MADD(a3, b0, c30);
    c31 = MADD(a3, b1, c31);
  }
  if (mr == MR && nr == NR) {
    float *r0 = c, *r1 = c + ldc, *r2 = c + 2 * ldc, *r3 = c + 3 * ldc;
    if (accumulate) {
      c00 = wasm_f32x4_add(c00, wasm_v128_load(r0));
      c01 = wasm_f32x4_add(c01, wasm_v128_load(r0 + 4));
      c10 = wasm_f32x4_add(c10, wasm_v128_load(r1));
      c11 = wasm_f32x4_add(c11, wasm_v128_load(r1 + 4));
      c20 = wasm_f32x4_add(c20, wasm_v128_load(r2));
      c21 = wasm_f32x4_add(c21, wasm_v128_load(r2 + 4));
      c30 = wasm_f32x4_add(c30, wasm_v128_load(r3));
      c31 = wasm_f32x4_add(c31, wasm_v128_load(r3 + 4));
    }
    wasm_v128_store(r0, c00);
    wasm_v128_store(r0 + 4, c01);
    wasm_v128_store(r1, c10);
    wasm_v128_store(r1 + 4, c11);
    wasm_v128_store(r2, c20);
    wasm_v128_store(r2 + 4, c21);
    wasm_v128_store(r3, c30);
    wasm_v128_store(r3 + 4, c31);
    return;
  }
  float tile[MR * NR] __attribute__((aligned(16)));
  wasm_v128_store(tile + 0, c00);
  wasm_v128_store(tile + 4, c01);
  wasm_v128_store(tile + 8, c10);
  wasm_v128_store(tile + 12, c11);
  wasm_v128_store(tile + 16, c20);
  wasm_v128_store(tile + 20, c21);
  wasm_v128_store(tile + 24, c30);
  wasm_v128_store(tile + 28, c31);
  for (int r = 0; r < mr; r++) {
    for (int j = 0; j < nr; j++) {
      float v = tile[r * NR + j];
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + v : v;
    }
  }
}

/* out[m][n] = sum_k a[m][k] * w[n][k] with w in packed panels; ws holds MC * KC floats. */
EXPORT(gemm_f32)
void gemm_f32(int m, int n, int k, const float *a, const float *bp, float *c, float *ws) {
  int panels = (n + NR - 1) / NR;
  for (int pc = 0; pc < k; pc += KC) {
    int kc = k - pc < KC ? k - pc : KC;
    for (int ic = 0; ic < m; ic += MC) {
      int mc = m - ic < MC ? m - ic : MC;
      pack_a(a + ic * k + pc, k, mc, kc, ws);
      for (int p = 0; p < panels; p++) {
        const float *b = bp + ((long)p * k + pc) * NR;
        int nr = n - p * NR < NR ? n - p * NR : NR;
        for (int ir = 0; ir < mc; ir += MR) {
          int mr = mc - ir < MR ? mc - ir : MR;
          micro_4x8(kc, ws + ir * kc, b, c + (ic + ir) * n + p * NR, n, mr, nr, pc > 0);
        }
      }
    }
  }
}

/* out[n] = sum_k x[k] * w[n][k] (one token), streaming the packed panels once. */
EXPORT(gemv_f32)
void gemv_f32(int n, int k, const float *x, const float *bp, float *out) {
  int panels = (n + NR - 1) / NR;
  for (int p = 0; p < panels; p++) {
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

/* Group sums xs[g] of one token's permuted activations (scalar; O(K) per token). */
static void group_sums(int per, int groups, const u32 *gend, const float *x, float *xs) {
  u32 w0 = 0;
  for (int g = 0; g < groups; g++) {
    float acc = 0;
    for (u32 c = w0 * per; c < gend[g] * per; c++) acc += x[c];
    xs[g] = acc;
    w0 = gend[g];
  }
}

/*
 * For each token t: out[t][o] = sum_g s[o][g] * (sum_{c in g} x[c] q[o][c] - z[o][g] xs[g]),
 * xs[g] = sum_{c in g} x[c]. Codes are read and converted in registers; no dequantized copy.
 * blocks: row blocks of 8; words: padded words per row; gend[g]: end word of group g.
 */
INLINE void dq_gemv_bits(const int bits, int tokens, int rows, int blocks, int words, int groups,
                         const u32 *codes, const float *sc, const float *zp, const u32 *gend,
                         const float *xp, float *xs, float *out) {
  const int per = 32 / bits;
  const int kp = words * per;
  for (int t = 0; t < tokens; t++) {
    const float *x = xp + (long)t * kp;
    group_sums(per, groups, gend, x, xs);
    for (int b = 0; b < blocks; b++) {
      const u32 *cb = codes + (long)b * words * 8;
      const float *sb = sc + (long)b * groups * 8;
      const float *zb = zp + (long)b * groups * 8;
      v128_t tot0 = wasm_f32x4_splat(0), tot1 = tot0;
      u32 w = 0;
      for (int g = 0; g < groups; g++) {
        v128_t a0 = wasm_f32x4_splat(0), a1 = a0, b0 = a0, b1 = a0;
        v128_t c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        for (; w < gend[g]; w++) {
          v128_t v0 = wasm_v128_load(cb + 8 * w);
          v128_t v1 = wasm_v128_load(cb + 8 * w + 4);
          const float *xw = x + w * per;
#pragma unroll
          for (int j = 0; j < per; j++) {
            v128_t xj = wasm_v128_load32_splat(xw + j);
            /* Sign-extending extraction: codes are stored with the top bit flipped (q ^ half), so
               this yields q - half exactly and the signed convert (one x64 instruction) applies. */
            const int up = 32 - (j + 1) * bits, down = 32 - bits;
            v128_t q0 = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(v0, up), down));
            v128_t q1 = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(v1, up), down));
            switch (j & 3) {
              case 0:
                a0 = MADD(q0, xj, a0);
                a1 = MADD(q1, xj, a1);
                break;
              case 1:
                b0 = MADD(q0, xj, b0);
                b1 = MADD(q1, xj, b1);
                break;
              case 2:
                c0 = MADD(q0, xj, c0);
                c1 = MADD(q1, xj, c1);
                break;
              default:
                d0 = MADD(q0, xj, d0);
                d1 = MADD(q1, xj, d1);
            }
          }
        }
        v128_t g0 = wasm_f32x4_add(wasm_f32x4_add(a0, b0), wasm_f32x4_add(c0, d0));
        v128_t g1 = wasm_f32x4_add(wasm_f32x4_add(a1, b1), wasm_f32x4_add(c1, d1));
        v128_t xsg = wasm_f32x4_splat(xs[g]);
        g0 = wasm_f32x4_sub(g0, wasm_f32x4_mul(wasm_v128_load(zb + 8 * g), xsg));
        g1 = wasm_f32x4_sub(g1, wasm_f32x4_mul(wasm_v128_load(zb + 8 * g + 4), xsg));
        tot0 = MADD(wasm_v128_load(sb + 8 * g), g0, tot0);
        tot1 = MADD(wasm_v128_load(sb + 8 * g + 4), g1, tot1);
      }
      float tile[8] __attribute__((aligned(16)));
      wasm_v128_store(tile, tot0);
      wasm_v128_store(tile + 4, tot1);
      int nr = rows - b * 8 < 8 ? rows - b * 8 : 8;
      float *o = out + (long)t * rows + b * 8;
      for (int r = 0; r < nr; r++) o[r] = tile[r];
    }
  }
}

/*
 * Four tokens at once: each code vector is extracted and converted once and used for four
 * tokens (8 accumulators), so the decode cost per multiply-add drops about fourfold.
 * xs holds 4 * groups floats of scratch.
 */
INLINE void dq_tile4_bits(const int bits, int rows, int blocks, int words, int groups,
                          const u32 *codes, const float *sc, const float *zp, const u32 *gend,
                          const float *xp, float *xs, float *out) {
  const int per = 32 / bits;
  const int kp = words * per;
  const float *x0 = xp, *x1 = xp + kp, *x2 = xp + 2 * kp, *x3 = xp + 3 * kp;
  for (int i = 0; i < 4; i++) group_sums(per, groups, gend, xp + (long)i * kp, xs + i * groups);
  for (int b = 0; b < blocks; b++) {
    const u32 *cb = codes + (long)b * words * 8;
    const float *sb = sc + (long)b * groups * 8;
    const float *zb = zp + (long)b * groups * 8;
    v128_t tot[4][2];
    for (int i = 0; i < 4; i++) tot[i][0] = tot[i][1] = wasm_f32x4_splat(0);
    u32 w = 0;
    for (int g = 0; g < groups; g++) {
      v128_t a00 = wasm_f32x4_splat(0), a01 = a00, a10 = a00, a11 = a00;
      v128_t a20 = a00, a21 = a00, a30 = a00, a31 = a00;
      for (; w < gend[g]; w++) {
        v128_t v0 = wasm_v128_load(cb + 8 * w);
        v128_t v1 = wasm_v128_load(cb + 8 * w + 4);
        const int c = w * per;
#pragma unroll
        for (int j = 0; j < per; j++) {
          const int up = 32 - (j + 1) * bits, down = 32 - bits;
          v128_t q0 = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(v0, up), down));
          v128_t q1 = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(v1, up), down));
          v128_t y = wasm_v128_load32_splat(x0 + c + j);
          a00 = MADD(q0, y, a00);
          a01 = MADD(q1, y, a01);
          y = wasm_v128_load32_splat(x1 + c + j);
          a10 = MADD(q0, y, a10);
          a11 = MADD(q1, y, a11);
          y = wasm_v128_load32_splat(x2 + c + j);
          a20 = MADD(q0, y, a20);
          a21 = MADD(q1, y, a21);
          y = wasm_v128_load32_splat(x3 + c + j);
          a30 = MADD(q0, y, a30);
          a31 = MADD(q1, y, a31);
        }
      }
      v128_t s0 = wasm_v128_load(sb + 8 * g), s1 = wasm_v128_load(sb + 8 * g + 4);
      v128_t z0 = wasm_v128_load(zb + 8 * g), z1 = wasm_v128_load(zb + 8 * g + 4);
      v128_t acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
      for (int i = 0; i < 4; i++) {
        v128_t xsg = wasm_f32x4_splat(xs[i * groups + g]);
        v128_t g0 = wasm_f32x4_sub(acc[i][0], wasm_f32x4_mul(z0, xsg));
        v128_t g1 = wasm_f32x4_sub(acc[i][1], wasm_f32x4_mul(z1, xsg));
        tot[i][0] = MADD(s0, g0, tot[i][0]);
        tot[i][1] = MADD(s1, g1, tot[i][1]);
      }
    }
    int nr = rows - b * 8 < 8 ? rows - b * 8 : 8;
    for (int i = 0; i < 4; i++) {
      float tile[8] __attribute__((aligned(16)));
      wasm_v128_store(tile, tot[i][0]);
      wasm_v128_store(tile + 4, tot[i][1]);
      float *o = out + (long)i * rows + b * 8;
      for (int r = 0; r < nr; r++) o[r] = tile[r];
    }
  }
}

#define DQ(B)                                                                                \
  static void dq_gemv_##B(int tokens, int rows, int blocks, int words, int groups,           \
                          const u32 *codes, const float *sc, const float *zp, const u32 *gend, \
                          const float *xp, float *xs, float *out) {                          \
    const long kp = (long)words * (32 / B);                                                  \
    int t = 0;                                                                               \
    for (; t + 4 <= tokens; t += 4) {                                                        \
      dq_tile4_bits(B, rows, blocks, words, groups, codes, sc, zp, gend, xp + t * kp, xs,    \
                    out + (long)t * rows);                                                   \
    }                                                                                        \
    dq_gemv_bits(B, tokens - t, rows, blocks, words, groups, codes, sc, zp, gend,            \
                 xp + t * kp, xs, out + (long)t * rows);                                     \
  }
DQ(2)
DQ(3)
DQ(4)
DQ(5)
DQ(6)
DQ(7)
DQ(8)

/* Returns 0 on success, -1 for an unsupported bit-width. xs holds 4 * groups floats of scratch. */
EXPORT(dq_gemv)
int dq_gemv(int bits, int tokens, int rows, int blocks, int words, int groups, const u32 *codes,
            const float *sc, const float *zp, const u32 *gend, const float *xp, float *xs,
            float *out) {
  switch (bits) {
    case 2: dq_gemv_2(tokens, rows, blocks, words, groups, codes, sc, zp, gend, xp, xs, out); return 0;
    case 3: dq_gemv_3(tokens, rows, blocks, words, groups, codes, sc, zp, gend, xp, xs, out); return 0;
    case 4: dq_gemv_4(tokens, rows, blocks, words, groups, codes, sc, zp, gend, xp, xs, out); return 0;
    case 5: dq_gemv_5(tokens, rows, blocks, words, groups, codes, sc, zp, gend, xp, xs, out); return 0;
    case 6: dq_gemv_6(tokens, rows, blocks, words, groups, codes, sc, zp, gend, xp, xs, out); return 0;
    case 7: dq_gemv_7(tokens, rows, blocks, words, groups, codes, sc, zp, gend, xp, xs, out); return 0;
    case 8: dq_gemv_8(tokens, rows, blocks, words, groups, codes, sc, zp, gend, xp, xs, out); return 0;
    default: return -1;
  }
}

/* ---------------------------------------------------------------- attention ----------- */

/* e^x for x <= 0 (float32, relative error ~2e-7; below -87 it returns ~0). */
INLINE v128_t exp4(v128_t x) {
  x = wasm_f32x4_max(x, wasm_f32x4_splat(-87.0f));
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.0f / 5040);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 720));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 120));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 24));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 6));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0.5f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, e);
}

/*
 * Causal grouped-query attention, as models/forward.ts computes it: for token t (absolute
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
        v128_t e = exp4(wasm_f32x4_sub(wasm_v128_load(scores + s), mx));
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

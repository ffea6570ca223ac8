/*
 * The whole-window forward pass of a dense Llama-family model in one call (included by kernels.c,
 * which defines gemm_f32, rmsnorm_f32, exp4 and MADD). Weights stay resident in WASM memory as
 * packed GEMM panels; activations never leave it. window_forward.ts writes the descriptor, the
 * embeddings, the norm weights and the RoPE rows; the numbers follow models/forward.ts and
 * tasks/window_score.ts (logSoftmaxRows) up to float32 rounding.
 *
 * Descriptor (int32 words; pointers are byte offsets):
 *   0 dim, 1 nLayers, 2 nHeads, 3 nKvHeads, 4 headDim (a multiple of 4), 5 hiddenDim, 6 vocab,
 *   7 rope style (0 interleaved pairs, 1 halves), 8 normEps (float bits), 9 GEMM workspace,
 *   10 scratch (fwd_scratch_floats(T, d) floats), 11 cos [T][headDim / 2], 12 sin (same),
 *   13 final norm [dim], 14 classifier panels,
 *   15 + 9·l: layer l's attnNorm, q, k, v, o panels, mlpNorm, gate, up, down panels.
 */

#define D_WORDS_HEAD 15
#define D_WORDS_LAYER 9

INLINE int ceil4(int n) { return (n + 3) & ~3; }

/* Floats of scratch a window of T tokens needs (window_forward.ts allocates it). */
EXPORT(fwd_scratch_floats)
int fwd_scratch_floats(int T, const int *d) {
  const int dim = d[0], qDim = d[2] * d[4], kvDim = d[3] * d[4], hidden = d[5];
  const int T4 = ceil4(T);
  /* xn, q, k, v, kT, att, g, u, tmp, scores */
  return T * dim + T * qDim + 2 * T * kvDim + kvDim * T4 + T * qDim + 2 * T * hidden +
         T * dim + T4 + 8;
}

/* RoPE at positions 0..T-1 over `heads` heads of v [T][heads * hd], as models/rope.ts applies it. */
static void rope(float *v, int T, int heads, int hd, const float *cs, const float *sn, int style) {
  const int half = hd / 2, stride = heads * hd;
  for (int t = 0; t < T; t++) {
    const float *c = cs + t * half, *s = sn + t * half;
    for (int h = 0; h < heads; h++) {
      float *b = v + t * stride + h * hd;
      for (int i = 0; i < half; i++) {
        const int ia = style ? i : 2 * i, ib = style ? i + half : 2 * i + 1;
        const float x0 = b[ia], x1 = b[ib];
        b[ia] = x0 * c[i] - x1 * s[i];
        b[ib] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

/*
 * One query row of attention over keys 0..n−1: scores from kT [hd][T4] (q·k, scaled), softmax,
 * then Σ_s p_s · v_s into oh. Inlined with a constant hd for the common head sizes, so the
 * query's splats stay in registers. Four independent accumulators per dot product and four keys
 * per step of the value sum keep the adds' latency off the critical path.
 */
INLINE void attend_row(const int hd, int n, int T4, int kvDim, const float *qh, const float *kt,
                       const float *vh, float *oh, float *scores, float scale) {
  v128_t qs[hd];
  for (int i = 0; i < hd; i++) qs[i] = wasm_f32x4_splat(qh[i] * scale);
  const int n4 = ceil4(n), full = n4 - 4; /* blocks before the last are entirely causal */
  v128_t mx = wasm_f32x4_splat(-__builtin_inff());
  for (int s = 0; s <= full; s += 4) {
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < hd; i += 4) {
      a0 = MADD(qs[i], wasm_v128_load(kt + i * T4 + s), a0);
      a1 = MADD(qs[i + 1], wasm_v128_load(kt + (i + 1) * T4 + s), a1);
      a2 = MADD(qs[i + 2], wasm_v128_load(kt + (i + 2) * T4 + s), a2);
      a3 = MADD(qs[i + 3], wasm_v128_load(kt + (i + 3) * T4 + s), a3);
    }
    v128_t sc = wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3));
    if (s == full) { /* keys s + lane >= n come after the query */
      v128_t idx = wasm_i32x4_add(wasm_i32x4_make(0, 1, 2, 3), wasm_i32x4_splat(s));
      sc = wasm_v128_bitselect(sc, wasm_f32x4_splat(-__builtin_inff()),
                               wasm_i32x4_lt(idx, wasm_i32x4_splat(n)));
    }
    wasm_v128_store(scores + s, sc);
    mx = wasm_f32x4_max(mx, sc);
  }
  mx = wasm_f32x4_max(mx, wasm_i32x4_shuffle(mx, mx, 2, 3, 0, 1));
  mx = wasm_f32x4_max(mx, wasm_i32x4_shuffle(mx, mx, 1, 0, 3, 2));
  v128_t sum4 = wasm_f32x4_splat(0);
  for (int s = 0; s < full; s += 4) {
    v128_t e = exp4(wasm_f32x4_sub(wasm_v128_load(scores + s), mx));
    wasm_v128_store(scores + s, e);
    sum4 = wasm_f32x4_add(sum4, e);
  }
  {
    v128_t idx = wasm_i32x4_add(wasm_i32x4_make(0, 1, 2, 3), wasm_i32x4_splat(full));
    v128_t e = wasm_v128_and(exp4(wasm_f32x4_sub(wasm_v128_load(scores + full), mx)),
                             wasm_i32x4_lt(idx, wasm_i32x4_splat(n)));
    wasm_v128_store(scores + full, e);
    sum4 = wasm_f32x4_add(sum4, e);
  }
  const float sum = wasm_f32x4_extract_lane(sum4, 0) + wasm_f32x4_extract_lane(sum4, 1) +
                    wasm_f32x4_extract_lane(sum4, 2) + wasm_f32x4_extract_lane(sum4, 3);
  const v128_t inv = wasm_f32x4_splat(1.0f / sum);
  /* The masked lanes of the last block are 0, so the value sum may run to n4 (v has T4 rows
     only if n4 <= T: stop at n otherwise). */
  for (int i = 0; i < hd; i += 8) {
    const int w2 = i + 8 <= hd; /* two vectors, else one (hd % 8 == 4) */
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0,
           d1 = a0;
    int s = 0;
    for (; s + 4 <= n; s += 4) {
      const float *v0 = vh + s * kvDim + i;
      v128_t p0 = wasm_v128_load32_splat(scores + s), p1 = wasm_v128_load32_splat(scores + s + 1);
      v128_t p2 = wasm_v128_load32_splat(scores + s + 2), p3 = wasm_v128_load32_splat(scores + s + 3);
      a0 = MADD(p0, wasm_v128_load(v0), a0);
      b0 = MADD(p1, wasm_v128_load(v0 + kvDim), b0);
      c0 = MADD(p2, wasm_v128_load(v0 + 2 * kvDim), c0);
      d0 = MADD(p3, wasm_v128_load(v0 + 3 * kvDim), d0);
      if (w2) {
        a1 = MADD(p0, wasm_v128_load(v0 + 4), a1);
        b1 = MADD(p1, wasm_v128_load(v0 + kvDim + 4), b1);
        c1 = MADD(p2, wasm_v128_load(v0 + 2 * kvDim + 4), c1);
        d1 = MADD(p3, wasm_v128_load(v0 + 3 * kvDim + 4), d1);
      }
    }
    for (; s < n; s++) {
      const float *v0 = vh + s * kvDim + i;
      v128_t p0 = wasm_v128_load32_splat(scores + s);
      a0 = MADD(p0, wasm_v128_load(v0), a0);
      if (w2) a1 = MADD(p0, wasm_v128_load(v0 + 4), a1);
    }
    v128_t r0 = wasm_f32x4_add(wasm_f32x4_add(a0, b0), wasm_f32x4_add(c0, d0));
    wasm_v128_store(oh + i, wasm_f32x4_mul(r0, inv));
    if (w2) {
      v128_t r1 = wasm_f32x4_add(wasm_f32x4_add(a1, b1), wasm_f32x4_add(c1, d1));
      wasm_v128_store(oh + i + 4, wasm_f32x4_mul(r1, inv));
    }
  }
}

/*
 * Causal grouped-query attention of T queries over the T keys and values of the window. Keys are
 * first transposed per KV head into kT [kvHead][hd][T4] (zero past T), so the scores of four keys
 * are one vector: Σ_d q[d] · kT[d][s..s+3]. hd is a multiple of 4.
 */
static void attention_window(int T, int nHeads, int nKvHeads, int hd, const float *q,
                             const float *k, const float *v, float *kT, float *out,
                             float *scores) {
  const int qDim = nHeads * hd, kvDim = nKvHeads * hd, group = nHeads / nKvHeads;
  const int T4 = ceil4(T);
  const float scale = 1.0f / __builtin_sqrtf((float)hd);
  for (int kh = 0; kh < nKvHeads; kh++) {
    float *kt = kT + kh * hd * T4;
    for (int i = 0; i < hd; i++) {
      float *row = kt + i * T4;
      for (int s = 0; s < T; s++) row[s] = k[s * kvDim + kh * hd + i];
      for (int s = T; s < T4; s++) row[s] = 0.0f;
    }
  }
  for (int t = 0; t < T; t++) {
    for (int h = 0; h < nHeads; h++) {
      const int kh = h / group;
      const float *qh = q + t * qDim + h * hd, *kt = kT + kh * hd * T4, *vh = v + kh * hd;
      float *oh = out + t * qDim + h * hd;
      switch (hd) {
      case 8: attend_row(8, t + 1, T4, kvDim, qh, kt, vh, oh, scores, scale); break;
      case 16: attend_row(16, t + 1, T4, kvDim, qh, kt, vh, oh, scores, scale); break;
      default: attend_row(hd, t + 1, T4, kvDim, qh, kt, vh, oh, scores, scale); break;
      }
    }
  }
}

/* g = silu(g) · u, silu(a) = a / (1 + e^−a), from e^−|a| so the exponential never overflows. */
static void swiglu(float *g, const float *u, int n) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t a = wasm_v128_load(g + i);
    v128_t e = exp4(wasm_f32x4_neg(wasm_f32x4_abs(a)));
    v128_t r = wasm_f32x4_div(one, wasm_f32x4_add(one, e));
    v128_t sig = wasm_v128_bitselect(r, wasm_f32x4_mul(e, r), wasm_f32x4_ge(a, wasm_f32x4_splat(0)));
    wasm_v128_store(g + i, wasm_f32x4_mul(wasm_f32x4_mul(a, sig), wasm_v128_load(u + i)));
  }
  for (; i < n; i++) {
    /* n is a multiple of 4 for every model the scorer accepts; kept for safety. */
    float a = g[i];
    float e = wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(a < 0 ? a : -a)), 0);
    float sig = a >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    g[i] = a * sig * u[i];
  }
}

static void add_into(float *x, const float *y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    wasm_v128_store(x + i, wasm_f32x4_add(wasm_v128_load(x + i), wasm_v128_load(y + i)));
  }
  for (; i < n; i++) x[i] += y[i];
}

/* ln x for finite x >= 1 in float64: x = 2^e · m with m in [√½, √2), ln m = 2 atanh((m−1)/(m+1)). */
static double ln_d(double x) {
  union { double d; unsigned long long u; } b = {x};
  int e = (int)((b.u >> 52) & 0x7ff) - 1023;
  b.u = (b.u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
  double m = b.d;
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e++;
  }
  const double s = (m - 1) / (m + 1), z = s * s;
  double p = 1.0 / 19;
  for (int k = 17; k >= 3; k -= 2) p = p * z + 1.0 / k;
  return e * 0.6931471805599453 + 2 * s * (1 + z * p);
}

/* Each row of `rows` × `n` logits becomes its log-softmax, in place. */
static void log_softmax_rows(float *x, int rows, int n) {
  for (int r = 0; r < rows; r++) {
    float *row = x + (long)r * n;
    v128_t mx = wasm_f32x4_splat(-__builtin_inff());
    int i = 0;
    for (; i + 4 <= n; i += 4) mx = wasm_f32x4_max(mx, wasm_v128_load(row + i));
    mx = wasm_f32x4_max(mx, wasm_i32x4_shuffle(mx, mx, 2, 3, 0, 1));
    mx = wasm_f32x4_max(mx, wasm_i32x4_shuffle(mx, mx, 1, 0, 3, 2));
    float m = wasm_f32x4_extract_lane(mx, 0);
    for (; i < n; i++) m = row[i] > m ? row[i] : m;
    mx = wasm_f32x4_splat(m);
    v128_t s4 = wasm_f32x4_splat(0);
    for (i = 0; i + 4 <= n; i += 4) s4 = wasm_f32x4_add(s4, exp4(wasm_f32x4_sub(wasm_v128_load(row + i), mx)));
    double sum = (double)wasm_f32x4_extract_lane(s4, 0) + wasm_f32x4_extract_lane(s4, 1) +
                 wasm_f32x4_extract_lane(s4, 2) + wasm_f32x4_extract_lane(s4, 3);
    for (; i < n; i++) sum += wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(row[i] - m)), 0);
    const double lse = (double)m + ln_d(sum);
    for (i = 0; i < n; i++) row[i] = (float)((double)row[i] - lse);
  }
}

/*
 * Log-probabilities [T][vocab] into `out` of the window whose embeddings are in x [T][dim]
 * (overwritten: it holds the residual stream).
 */
EXPORT(forward_window)
void forward_window(const int *d, int T, float *x, float *out) {
  const int dim = d[0], nLayers = d[1], nHeads = d[2], nKvHeads = d[3], hd = d[4];
  const int hidden = d[5], vocab = d[6], style = d[7];
  const float eps = __builtin_bit_cast(float, d[8]);
  float *ws = (float *)d[9];
  const float *cs = (const float *)d[11], *sn = (const float *)d[12];
  const int qDim = nHeads * hd, kvDim = nKvHeads * hd, T4 = ceil4(T);
  float *xn = (float *)d[10];
  float *q = xn + T * dim, *k = q + T * qDim, *v = k + T * kvDim, *kT = v + T * kvDim;
  float *att = kT + kvDim * T4, *g = att + T * qDim, *u = g + T * hidden, *tmp = u + T * hidden;
  float *scores = tmp + T * dim;
  const int qp = (qDim + NR - 1) / NR, kvp = (kvDim + NR - 1) / NR;
  const int dp = (dim + NR - 1) / NR, hp = (hidden + NR - 1) / NR;
  for (int l = 0; l < nLayers; l++) {
    const int *L = d + D_WORDS_HEAD + D_WORDS_LAYER * l;
    rmsnorm_f32(T, dim, x, (const float *)L[0], eps, xn);
    gemm_f32(T, qDim, dim, xn, (const float *)L[1], q, ws, 0, qp);
    gemm_f32(T, kvDim, dim, xn, (const float *)L[2], k, ws, 0, kvp);
    gemm_f32(T, kvDim, dim, xn, (const float *)L[3], v, ws, 0, kvp);
    rope(q, T, nHeads, hd, cs, sn, style);
    rope(k, T, nKvHeads, hd, cs, sn, style);
    attention_window(T, nHeads, nKvHeads, hd, q, k, v, kT, att, scores);
    gemm_f32(T, dim, qDim, att, (const float *)L[4], tmp, ws, 0, dp);
    add_into(x, tmp, T * dim);
    rmsnorm_f32(T, dim, x, (const float *)L[5], eps, xn);
    gemm_f32(T, hidden, dim, xn, (const float *)L[6], g, ws, 0, hp);
    gemm_f32(T, hidden, dim, xn, (const float *)L[7], u, ws, 0, hp);
    swiglu(g, u, T * hidden);
    gemm_f32(T, dim, hidden, g, (const float *)L[8], tmp, ws, 0, dp);
    add_into(x, tmp, T * dim);
  }
  rmsnorm_f32(T, dim, x, (const float *)d[13], eps, xn);
  gemm_f32(T, vocab, dim, xn, (const float *)d[14], out, ws, 0, (vocab + NR - 1) / NR);
  log_softmax_rows(out, T, vocab);
}

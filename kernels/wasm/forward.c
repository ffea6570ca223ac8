/*
 * The whole-window forward pass of a dense Llama-family model in one call (included by kernels.c,
 * which defines gemm_f32, rmsnorm_f32, exp4k, exp_consts and MADD). Weights stay resident in WASM memory as
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
  /* xn, q, k, v, kT, vT, att, g, u, tmp, scores, RoPE lanes */
  return T * dim + T * qDim + 2 * T * kvDim + 2 * kvDim * T4 + T * qDim + 2 * T * hidden +
         T * dim + T4 + 8 + 2 * d[4];
}

/*
 * RoPE at positions 0..T-1 over `heads` heads of v [T][heads * hd], as models/rope.ts applies it
 * (x0·c − x1·s, x0·s + x1·c per pair), four lanes at a time. Interleaved pairs: each position's
 * (c, c) and (−s, s) lane pairs are laid out once in cw, sw (hd floats each), then a vector of two
 * pairs is x·cw + swap(x)·sw. Halves: the two halves of the head are the two operands.
 */
static void rope(float *v, int T, int heads, int hd, const float *cs, const float *sn, int style,
                 float *cw, float *sw) {
  const int half = hd / 2, stride = heads * hd;
  for (int t = 0; t < T; t++) {
    const float *c = cs + t * half, *s = sn + t * half;
    if (style == 0) {
      for (int i = 0; i < half; i++) {
        cw[2 * i] = cw[2 * i + 1] = c[i];
        sw[2 * i] = -s[i];
        sw[2 * i + 1] = s[i];
      }
      for (int h = 0; h < heads; h++) {
        float *b = v + t * stride + h * hd;
        for (int j = 0; j < hd; j += 4) { /* hd is a multiple of 4 */
          v128_t x = wasm_v128_load(b + j);
          v128_t xs = wasm_i32x4_shuffle(x, x, 1, 0, 3, 2);
          wasm_v128_store(b + j, wasm_f32x4_add(wasm_f32x4_mul(x, wasm_v128_load(cw + j)),
                                                wasm_f32x4_mul(xs, wasm_v128_load(sw + j))));
        }
      }
      continue;
    }
    for (int h = 0; h < heads; h++) {
      float *b = v + t * stride + h * hd;
      int i = 0;
      for (; i + 4 <= half; i += 4) {
        v128_t x0 = wasm_v128_load(b + i), x1 = wasm_v128_load(b + i + half);
        v128_t cc = wasm_v128_load(c + i), ss = wasm_v128_load(s + i);
        wasm_v128_store(b + i, wasm_f32x4_sub(wasm_f32x4_mul(x0, cc), wasm_f32x4_mul(x1, ss)));
        wasm_v128_store(b + i + half, wasm_f32x4_add(wasm_f32x4_mul(x0, ss), wasm_f32x4_mul(x1, cc)));
      }
      for (; i < half; i++) {
        const float x0 = b[i], x1 = b[i + half];
        b[i] = x0 * c[i] - x1 * s[i];
        b[i + half] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

/* [Σa, Σb, Σc, Σd]: the lane sums of four float vectors. */
INLINE v128_t hsum4f(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t ab = wasm_f32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 2, 6), wasm_i32x4_shuffle(a, b, 1, 5, 3, 7));
  v128_t cd = wasm_f32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 2, 6), wasm_i32x4_shuffle(c, d, 1, 5, 3, 7));
  return wasm_f32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}

/* Lanes of keys s..s+3 that come before the query's n keys end (all-ones), else zero. */
INLINE v128_t causal_lanes(int s, int n) {
  return wasm_i32x4_lt(wasm_i32x4_add(wasm_i32x4_make(0, 1, 2, 3), wasm_i32x4_splat(s)),
                       wasm_i32x4_splat(n));
}

/* Σ_d qs[d] · kt[d][s..s+3]: the scaled scores of four keys (four independent sums). */
INLINE v128_t scores4(const int hd, const v128_t *qs, const float *kt, int T4, int s) {
  v128_t a0 = wasm_f32x4_mul(qs[0], wasm_v128_load(kt + s));
  v128_t a1 = wasm_f32x4_mul(qs[1], wasm_v128_load(kt + T4 + s));
  v128_t a2 = wasm_f32x4_mul(qs[2], wasm_v128_load(kt + 2 * T4 + s));
  v128_t a3 = wasm_f32x4_mul(qs[3], wasm_v128_load(kt + 3 * T4 + s));
  for (int i = 4; i < hd; i += 4) {
    a0 = MADD(qs[i], wasm_v128_load(kt + i * T4 + s), a0);
    a1 = MADD(qs[i + 1], wasm_v128_load(kt + (i + 1) * T4 + s), a1);
    a2 = MADD(qs[i + 2], wasm_v128_load(kt + (i + 2) * T4 + s), a2);
    a3 = MADD(qs[i + 3], wasm_v128_load(kt + (i + 3) * T4 + s), a3);
  }
  return wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3));
}

/*
 * One query row of attention over keys 0..n−1, keys and values transposed per head (kt, vt:
 * [hd][T4]): pass 1 stores the scaled scores q·k of four keys per vector and their max, pass 2
 * their exponentials; then the probabilities of four keys multiply the four keys' values of each
 * dimension, summed per lane and reduced once at the end (no per-key splats: V8 bounds-checks
 * every WASM memory access, so loads are what to save). The last block of four keys, the only one
 * reaching past the query, is peeled off every loop so the others carry no mask. Inlined with a
 * constant hd for the common head sizes, so the query's splats stay in registers.
 */
INLINE void attend_row(const int hd, int n, int T4, const float *qh, const float *kt,
                       const float *vt, float *oh, float *scores, float scale) {
  v128_t qs[hd];
  for (int i = 0; i < hd; i++) qs[i] = wasm_f32x4_splat(qh[i] * scale);
  const int n4 = ceil4(n), full = n4 - 4; /* blocks before `full` are entirely causal */
  v128_t mx = wasm_f32x4_splat(-__builtin_inff());
  for (int s = 0; s < full; s += 4) {
    v128_t sc = scores4(hd, qs, kt, T4, s);
    wasm_v128_store(scores + s, sc);
    mx = wasm_f32x4_pmax(mx, sc); /* pmax is one maxps; max adds NaN handling */
  }
  {
    v128_t sc = wasm_v128_bitselect(scores4(hd, qs, kt, T4, full),
                                    wasm_f32x4_splat(-__builtin_inff()), causal_lanes(full, n));
    wasm_v128_store(scores + full, sc);
    mx = wasm_f32x4_pmax(mx, sc);
  }
  mx = wasm_f32x4_pmax(mx, wasm_i32x4_shuffle(mx, mx, 2, 3, 0, 1));
  mx = wasm_f32x4_pmax(mx, wasm_i32x4_shuffle(mx, mx, 1, 0, 3, 2));
  const ExpK ek = exp_consts();
  v128_t sum4 = wasm_f32x4_splat(0);
  for (int s = 0; s < full; s += 4) {
    v128_t e = exp4k(wasm_f32x4_sub(wasm_v128_load(scores + s), mx), &ek);
    wasm_v128_store(scores + s, e);
    sum4 = wasm_f32x4_add(sum4, e);
  }
  {
    v128_t e = exp4k(wasm_f32x4_sub(wasm_v128_load(scores + full), mx), &ek);
    e = wasm_v128_and(e, causal_lanes(full, n)); /* e^−inf is not exactly 0 after the clamp */
    wasm_v128_store(scores + full, e);
    sum4 = wasm_f32x4_add(sum4, e);
  }
  const v128_t inv = wasm_f32x4_div(wasm_f32x4_splat(1.0f), hsum4f(sum4, sum4, sum4, sum4));
  for (int i = 0; i < hd; i += 8) {
    const int w2 = i + 8 <= hd; /* eight dimensions, else four (hd % 8 == 4) */
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const float *v0 = vt + i * T4;
    for (int s = 0; s <= full; s += 4) {
      v128_t p = wasm_v128_load(scores + s);
      a0 = MADD(p, wasm_v128_load(v0 + s), a0);
      a1 = MADD(p, wasm_v128_load(v0 + T4 + s), a1);
      a2 = MADD(p, wasm_v128_load(v0 + 2 * T4 + s), a2);
      a3 = MADD(p, wasm_v128_load(v0 + 3 * T4 + s), a3);
      if (w2) {
        a4 = MADD(p, wasm_v128_load(v0 + 4 * T4 + s), a4);
        a5 = MADD(p, wasm_v128_load(v0 + 5 * T4 + s), a5);
        a6 = MADD(p, wasm_v128_load(v0 + 6 * T4 + s), a6);
        a7 = MADD(p, wasm_v128_load(v0 + 7 * T4 + s), a7);
      }
    }
    wasm_v128_store(oh + i, wasm_f32x4_mul(hsum4f(a0, a1, a2, a3), inv));
    if (w2) wasm_v128_store(oh + i + 4, wasm_f32x4_mul(hsum4f(a4, a5, a6, a7), inv));
  }
}

/* Copies the heads of x [T][heads · hd] to xT [head][hd][T4], zero past T. */
static void transpose_heads(const float *x, int T, int heads, int hd, float *xT) {
  const int T4 = ceil4(T), stride = heads * hd;
  for (int h = 0; h < heads; h++) {
    for (int i = 0; i < hd; i++) {
      float *row = xT + (h * hd + i) * T4;
      for (int s = 0; s < T; s++) row[s] = x[s * stride + h * hd + i];
      for (int s = T; s < T4; s++) row[s] = 0.0f;
    }
  }
}

/*
 * Causal grouped-query attention of T queries over the T keys and values of the window. Keys and
 * values are first transposed per KV head into kT, vT [kvHead][hd][T4], so four keys' scores, and
 * their share of each value dimension, are one vector each. hd is a multiple of 4.
 */
static void attention_window(int T, int nHeads, int nKvHeads, int hd, const float *q,
                             const float *k, const float *v, float *kT, float *vT, float *out,
                             float *scores) {
  const int qDim = nHeads * hd, group = nHeads / nKvHeads, T4 = ceil4(T);
  const float scale = 1.0f / __builtin_sqrtf((float)hd);
  transpose_heads(k, T, nKvHeads, hd, kT);
  transpose_heads(v, T, nKvHeads, hd, vT);
  for (int t = 0; t < T; t++) {
    for (int h = 0; h < nHeads; h++) {
      const int off = (h / group) * hd * T4;
      const float *qh = q + t * qDim + h * hd;
      float *oh = out + t * qDim + h * hd;
      switch (hd) {
      case 8: attend_row(8, t + 1, T4, qh, kT + off, vT + off, oh, scores, scale); break;
      case 16: attend_row(16, t + 1, T4, qh, kT + off, vT + off, oh, scores, scale); break;
      default: attend_row(hd, t + 1, T4, qh, kT + off, vT + off, oh, scores, scale); break;
      }
    }
  }
}

/* g = silu(g) · u, silu(a) = a / (1 + e^−a), from e^−|a| so the exponential never overflows. */
static void swiglu(float *g, const float *u, int n) {
  const ExpK ek = exp_consts();
  const v128_t one = ek.one, zero = wasm_f32x4_splat(0);
  const v128_t sign = wasm_i32x4_splat((int)0x80000000);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t a = wasm_v128_load(g + i);
    v128_t e = exp4k(wasm_v128_or(a, sign), &ek); /* e^−|a| */
    v128_t r = wasm_f32x4_div(one, wasm_f32x4_add(one, e));
    v128_t sig = wasm_v128_bitselect(r, wasm_f32x4_mul(e, r), wasm_f32x4_ge(a, zero));
    wasm_v128_store(g + i, wasm_f32x4_mul(wasm_f32x4_mul(a, sig), wasm_v128_load(u + i)));
  }
  for (; i < n; i++) {
    /* n is a multiple of 4 for every model the scorer accepts; kept for safety. */
    float a = g[i];
    float e = wasm_f32x4_extract_lane(exp4k(wasm_f32x4_splat(a < 0 ? a : -a), &ek), 0);
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
  const ExpK ek = exp_consts();
  for (int r = 0; r < rows; r++) {
    float *row = x + (long)r * n;
    v128_t mx = wasm_f32x4_splat(-__builtin_inff());
    int i = 0;
    for (; i + 4 <= n; i += 4) mx = wasm_f32x4_pmax(mx, wasm_v128_load(row + i));
    mx = wasm_f32x4_pmax(mx, wasm_i32x4_shuffle(mx, mx, 2, 3, 0, 1));
    mx = wasm_f32x4_pmax(mx, wasm_i32x4_shuffle(mx, mx, 1, 0, 3, 2));
    float m = wasm_f32x4_extract_lane(mx, 0);
    for (; i < n; i++) m = row[i] > m ? row[i] : m;
    mx = wasm_f32x4_splat(m);
    v128_t s4 = wasm_f32x4_splat(0);
    for (i = 0; i + 4 <= n; i += 4) s4 = wasm_f32x4_add(s4, exp4k(wasm_f32x4_sub(wasm_v128_load(row + i), mx), &ek));
    double sum = (double)wasm_f32x4_extract_lane(s4, 0) + wasm_f32x4_extract_lane(s4, 1) +
                 wasm_f32x4_extract_lane(s4, 2) + wasm_f32x4_extract_lane(s4, 3);
    for (; i < n; i++) sum += wasm_f32x4_extract_lane(exp4k(wasm_f32x4_splat(row[i] - m), &ek), 0);
    const double lse = (double)m + ln_d(sum);
    /* row − lse in float64, rounded once (as logSoftmaxRows), two lanes per f64x2 */
    const v128_t l2 = wasm_f64x2_splat(lse);
    for (i = 0; i + 4 <= n; i += 4) {
      v128_t x = wasm_v128_load(row + i);
      v128_t lo = wasm_f64x2_sub(wasm_f64x2_promote_low_f32x4(x), l2);
      v128_t hi = wasm_f64x2_sub(wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(x, x, 2, 3, 0, 1)), l2);
      v128_t a = wasm_f32x4_demote_f64x2_zero(lo), b = wasm_f32x4_demote_f64x2_zero(hi);
      wasm_v128_store(row + i, wasm_i32x4_shuffle(a, b, 0, 1, 4, 5));
    }
    for (; i < n; i++) row[i] = (float)((double)row[i] - lse);
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
  float *vT = kT + kvDim * T4, *att = vT + kvDim * T4, *g = att + T * qDim, *u = g + T * hidden;
  float *tmp = u + T * hidden;
  float *scores = tmp + T * dim, *cw = scores + T4 + 8, *sw = cw + hd;
  const int qp = (qDim + NR - 1) / NR, kvp = (kvDim + NR - 1) / NR;
  const int dp = (dim + NR - 1) / NR, hp = (hidden + NR - 1) / NR;
  for (int l = 0; l < nLayers; l++) {
    const int *L = d + D_WORDS_HEAD + D_WORDS_LAYER * l;
    rmsnorm_f32(T, dim, x, (const float *)L[0], eps, xn);
    gemm_f32(T, qDim, dim, xn, (const float *)L[1], q, ws, 0, qp);
    gemm_f32(T, kvDim, dim, xn, (const float *)L[2], k, ws, 0, kvp);
    gemm_f32(T, kvDim, dim, xn, (const float *)L[3], v, ws, 0, kvp);
    rope(q, T, nHeads, hd, cs, sn, style, cw, sw);
    rope(k, T, nKvHeads, hd, cs, sn, style, cw, sw);
    attention_window(T, nHeads, nKvHeads, hd, q, k, v, kT, vT, att, scores);
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

/*
 * The whole-window forward pass of a Llama-family model (dense or Mixtral-layout MoE) in one call
 * (included by kernels.c, which defines gemm_f32, rmsnorm_f32, exp4k, exp_consts and MADD). Weights stay resident in WASM memory as
 * packed GEMM panels; activations never leave it. window_forward.ts writes the descriptor, the
 * embeddings, the norm weights and the RoPE rows; the numbers follow runners/forward.ts and
 * runners/window_score.ts (logSoftmaxRows) up to float32 rounding. Attention's softmax alone uses
 * its own base-2 exponential (exp2_4, as accurate as exp4k, other last bits): these
 * log-probabilities are scored, never calibrated on, so nothing trains on those bits.
 *
 * Descriptor (int32 words; pointers are byte offsets):
 *   0 dim, 1 nLayers, 2 nHeads, 3 nKvHeads, 4 headDim (a multiple of 4), 5 hiddenDim, 6 vocab,
 *   7 rope style (0 interleaved pairs, 1 halves), 8 normEps (float bits), 9 GEMM workspace,
 *   10 scratch (fwd_scratch_floats(T, d) floats), 11 cos [T][headDim / 2], 12 sin (same),
 *   13 final norm [dim], 14 classifier panels, 15 activation quantization (bit 0: the inputs of
 *   the linear layers, bit 1: also the q, k, v outputs, bit 2: here, by act_quant, else by the
 *   host, see lowbit_act), 16 its bits, 17 bit 0 symmetric, bit 1 one range per window (else per
 *   token), 18–19 its clipping ratio (float64),
 *   20 experts per MoE block (0: a dense model), 21 experts per token, 22 an expert's hidden size,
 *   23 the router's input (0 the experts' input, 1 the float normalised states, 2 those quantized
 *   by the host at site ACT_ROUTER: EAQuant's router bits), 24 clip q, k and v (OLMoE clip_qkv),
 *   25 at ± this float (bits), 26 run the GEMMs on the kernel threads (lowbit_gemm), 27 the q and
 *   k norms are per head (Qwen3; else over the whole projections, OLMoE),
 *   28 + 15·l: layer l's attnNorm, q, k, v, o panels, mlpNorm, gate, up, down panels (dense
 *   blocks), then 0 or, for a MoE block, a table [router panels, (gate, up, down panels) × E],
 *   then the q, k, v biases and the q, k norm weights (each 0 when absent).
 */

#define D_WORDS_HEAD 28
#define D_THREADS 26
#define D_QK_HEAD 27
#define D_WORDS_LAYER 15

/*
 * Fake-quantizes the activations x [T][n] of `site` in block `layer`, in place: the host's
 * activation quantizer (window_forward.ts calls core/act_quantizer.ts on this memory), so
 * weight-activation models take this path with exactly the quantizer of the op-by-op one. Sites:
 * the inputs of q/k/v (0), o (1), gate/up (2) and down (3); the outputs q (4), k (5), v (6) before
 * RoPE, when the quantizer's `bmm` is set; a MoE router's own input (7), at its `routerBits`.
 */
__attribute__((import_module("env"), import_name("lowbit_act"))) void
lowbit_act(int site, int layer, float *x, int T, int n);
enum { ACT_QKV, ACT_O, ACT_GATEUP, ACT_DOWN, ACT_Q, ACT_K, ACT_V, ACT_ROUTER };

/*
 * out[m][n] = a[m][k] · panels bp, computed by the host on the kernel threads: it splits the
 * panels (8 output columns each) among them, each thread running gemm_f32 on its share with its
 * own workspace, so the result is bit for bit that of one gemm_f32 call here.
 */
__attribute__((import_module("env"), import_name("lowbit_gemm"))) void
lowbit_gemm(int m, int n, int k, const float *a, const float *bp, float *c);

/*
 * Routes T tokens of MoE block `layer` from their router logits [T][E]: the host writes the
 * chosen experts [T][K] and their weights [T][K] (float64), from runners/forward.ts routeTokens,
 * so the routing is the op-by-op path's, softmax and ties included.
 */
__attribute__((import_module("env"), import_name("lowbit_route"))) void
lowbit_route(int layer, const float *logits, int T, int *chosen, double *gates);

/* Round half to even of two float64s with core/quantizer.ts roundHalfEven's zeros (from floor):
   −0 for −0, +0 for every other input that rounds to zero. */
INLINE v128_t rhe2(v128_t x) {
  const v128_t zero = wasm_f64x2_splat(0.0);
  return wasm_v128_bitselect(x, wasm_f64x2_add(wasm_f64x2_nearest(x), zero), wasm_f64x2_eq(x, zero));
}

/*
 * Fake-quantizes x[0 .. len) in place with one step, bit for bit core/act_quantizer.ts
 * quantizeSpan (float64 arithmetic, results rounded to float32 once), given the span's range
 * [lo, hi] (zero included) and the clipping ratio: symmetric absmax, Δ = max(m, 1e-5) / (2^(b−1)
 * − 1), or asymmetric min-max with an integer zero point. len is a multiple of 4.
 */
static void quant_span(float *x, int len, int bits, int sym, double lo, double hi, double clip) {
  lo *= clip;
  hi *= clip;
  double step, zero = 0, qlo, qhi;
  if (sym) {
    const double qmax = (double)((1 << (bits - 1)) - 1), m = -lo > hi ? -lo : hi;
    step = (float)((m < 1e-5 ? 1e-5 : m) / qmax);
    qlo = -qmax;
    qhi = qmax;
  } else {
    const double maxq = (double)((1 << bits) - 1), r = hi - lo;
    step = (float)((r < 1e-5 ? 1e-5 : r) / maxq);
    zero = __builtin_rint(-lo / step) + 0.0;
    zero = zero < 0 ? 0 : zero;
    zero = zero > maxq ? maxq : zero;
    qlo = 0;
    qhi = maxq;
  }
  /* symmetric: q and q · Δ as they are (adding −0 and subtracting +0 keep a −0), else q + zero and
     (q − zero) · Δ */
  const v128_t st = wasm_f64x2_splat(step), z = wasm_f64x2_splat(zero);
  const v128_t za = sym ? wasm_f64x2_splat(-0.0) : z;
  const v128_t lo2 = wasm_f64x2_splat(qlo), hi2 = wasm_f64x2_splat(qhi);
  for (int i = 0; i < len; i += 4) {
    const v128_t v = wasm_v128_load(x + i);
    v128_t a = wasm_f64x2_promote_low_f32x4(v);
    v128_t b = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    /* q < qlo ? qlo : q > qhi ? qhi : q (pmax/pmin keep a NaN, as those comparisons do) */
    a = wasm_f64x2_pmin(wasm_f64x2_pmax(wasm_f64x2_add(rhe2(wasm_f64x2_div(a, st)), za), lo2), hi2);
    b = wasm_f64x2_pmin(wasm_f64x2_pmax(wasm_f64x2_add(rhe2(wasm_f64x2_div(b, st)), za), lo2), hi2);
    a = wasm_f32x4_demote_f64x2_zero(wasm_f64x2_mul(wasm_f64x2_sub(a, z), st));
    b = wasm_f32x4_demote_f64x2_zero(wasm_f64x2_mul(wasm_f64x2_sub(b, z), st));
    wasm_v128_store(x + i, wasm_i32x4_shuffle(a, b, 0, 1, 4, 5));
  }
}

/* [min(0, x…), max(0, x…)] of x[0 .. len), len a multiple of 4; NaNs are skipped, as in range(). */
static void span_range(const float *x, int len, double *lo, double *hi) {
  v128_t mn = wasm_f32x4_splat(0), mx = mn;
  for (int i = 0; i < len; i += 4) {
    const v128_t v = wasm_v128_load(x + i);
    mn = wasm_f32x4_pmin(mn, v); /* v < mn ? v : mn */
    mx = wasm_f32x4_pmax(mx, v); /* mx < v ? v : mx */
  }
  const float m0 = wasm_f32x4_extract_lane(mn, 0), m1 = wasm_f32x4_extract_lane(mn, 1);
  const float m2 = wasm_f32x4_extract_lane(mn, 2), m3 = wasm_f32x4_extract_lane(mn, 3);
  const float x0 = wasm_f32x4_extract_lane(mx, 0), x1 = wasm_f32x4_extract_lane(mx, 1);
  const float x2 = wasm_f32x4_extract_lane(mx, 2), x3 = wasm_f32x4_extract_lane(mx, 3);
  float a = m0 < 0 ? m0 : 0, b = x0 > 0 ? x0 : 0;
  a = m1 < a ? m1 : a;
  a = m2 < a ? m2 : a;
  a = m3 < a ? m3 : a;
  b = x1 > b ? x1 : b;
  b = x2 > b ? x2 : b;
  b = x3 > b ? x3 : b;
  *lo = a;
  *hi = b;
}

/*
 * The activation quantizer of `site` in block `layer` on x [T][n]: the uniform kernel, dynamic,
 * per token or one range for the window (the q, k, v outputs always per token), here when the
 * descriptor says so (d[15] bit 2), else the host's (lowbit_act). n is a multiple of 4 here.
 */
static void act_quant(const int *d, int site, int layer, float *x, int T, int n) {
  if (!(d[15] & 4) || site == ACT_ROUTER) {
    lowbit_act(site, layer, x, T, n);
    return;
  }
  const int bits = d[16], sym = d[17] & 1, tensor = (d[17] & 2) && site < ACT_Q;
  double clip, lo, hi;
  __builtin_memcpy(&clip, d + 18, sizeof clip);
  if (tensor) {
    span_range(x, T * n, &lo, &hi);
    quant_span(x, T * n, bits, sym, lo, hi, clip);
    return;
  }
  for (int t = 0; t < T; t++) {
    span_range(x + t * n, n, &lo, &hi);
    quant_span(x + t * n, n, bits, sym, lo, hi, clip);
  }
}

INLINE int ceil4(int n) { return (n + 3) & ~3; }

/* act_quant on its own (tests compare it with core/act_quantizer.ts): site 0 of block 0 of x [T][n]
   under the activation words 15–19 of d. */
EXPORT(act_quant_rows)
void act_quant_rows(const int *d, float *x, int T, int n) { act_quant(d, ACT_QKV, 0, x, T, n); }

/* The larger of the dense and the expert hidden sizes: the rows of g and u. */
INLINE int hidden_max(const int *d) { return d[20] && d[22] > d[5] ? d[22] : d[5]; }

/* Floats of the MoE blocks' scratch: xr, logits, chosen, gates (float64), xe, ye, rows, weights
   (float64), with room to align the float64 arrays. */
INLINE int moe_floats(int T, const int *d) {
  const int dim = d[0], E = d[20], K = d[21];
  return E ? 3 * T * dim + T * E + T * K + 2 * T * K + T + 2 * T + 8 : 0;
}

/* Floats of scratch a window of T tokens needs (window_forward.ts allocates it). */
EXPORT(fwd_scratch_floats)
int fwd_scratch_floats(int T, const int *d) {
  const int dim = d[0], qDim = d[2] * d[4], kvDim = d[3] * d[4], hidden = hidden_max(d);
  const int T4 = ceil4(T);
  /* xn, q, k, v (T4 rows), kT, qT, att, g, u, tmp, scores, RoPE lanes, MoE */
  return T * dim + T * qDim + T * kvDim + T4 * kvDim + 2 * d[4] * T4 + T * qDim + 2 * T * hidden +
         T * dim + 4 * T4 + 8 + 2 * d[4] + moe_floats(T, d);
}

static void swiglu(float *g, const float *u, int n);

/* n floats from src to dst (no libc memcpy in this freestanding module). */
static void copy_f32(float *dst, const float *src, int n) {
  for (int i = 0; i < n; i++) dst[i] = src[i];
}

/* p rounded up to 8 bytes, for float64 arrays. */
INLINE double *align8(float *p) { return (double *)(((unsigned long)p + 7) & ~7ul); }

/* The whole-window passes' GEMMs: on the kernel threads when the descriptor says so (word 26). */
static void fgemm(const int *d, int m, int n, int k, const float *a, const float *bp, float *c,
                  float *ws) {
  if (d[D_THREADS]) lowbit_gemm(m, n, k, a, bp, c);
  else gemm_f32(m, n, k, a, bp, c, ws, 0, (n + NR - 1) / NR);
}

/*
 * out [n][dim] = down(silu(gate x) · up x) for n rows of x [n][dim] (runners/forward.ts denseMlp),
 * w = [gate, up, down] panels of hidden units `hidden`; the down projection's input is
 * fake-quantized as site ACT_DOWN of block l when the model quantizes activations (d[15]).
 */
static void dense_ffn(const int *d, int l, const int *w, int hidden, const float *x, int n,
                      float *out, float *g, float *u, float *ws) {
  const int dim = d[0];
  fgemm(d, n, hidden, dim, x, (const float *)w[0], g, ws);
  fgemm(d, n, hidden, dim, x, (const float *)w[1], u, ws);
  swiglu(g, u, n * hidden);
  if (d[15]) act_quant(d, ACT_DOWN, l, g, n, hidden);
  fgemm(d, n, dim, hidden, g, (const float *)w[2], out, ws);
}

/*
 * The MoE feed-forward of block l, as runners/forward.ts moeMlp: router logits of xr [T][dim], the
 * host's routing, then each expert (in order) on the rows of the tokens routed to it (gathered
 * from x, the experts' input), out[t] += weight · expert(x[t]) in float64 rounded to float32 once
 * per expert, as moeMlp's `out + w · ye`. g and u hold the experts' hidden activations.
 */
static void moe_block(const int *d, int l, const int *table, const float *x, const float *xr,
                      int T, float *out, float *g, float *u, float *m, float *ws) {
  const int dim = d[0], E = d[20], K = d[21], eh = d[22];
  float *logits = m, *xe = logits + T * E, *ye = xe + T * dim;
  int *chosen = (int *)(ye + T * dim), *rows = chosen + T * K;
  double *gates = align8((float *)(rows + T)), *wts = align8((float *)(gates + T * K));
  fgemm(d, T, E, dim, xr, (const float *)table[0], logits, ws);
  lowbit_route(l, logits, T, chosen, gates);
  for (int i = 0; i < T * dim; i++) out[i] = 0.0f;
  for (int e = 0; e < E; e++) {
    int n = 0;
    for (int t = 0; t < T; t++) {
      for (int k = 0; k < K; k++) {
        if (chosen[t * K + k] == e) {
          rows[n] = t;
          wts[n++] = gates[t * K + k];
        }
      }
    }
    if (n == 0) continue;
    for (int i = 0; i < n; i++) copy_f32(xe + i * dim, x + rows[i] * dim, dim);
    dense_ffn(d, l, table + 1 + 3 * e, eh, xe, n, ye, g, u, ws);
    for (int i = 0; i < n; i++) {
      float *o = out + rows[i] * dim;
      const float *y = ye + i * dim;
      const double w = wts[i];
      for (int j = 0; j < dim; j++) o[j] = (float)((double)o[j] + w * (double)y[j]);
    }
  }
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

/* The constants of exp2_4 in memory (see lowbit_exp_k for why not v128.const): the clamp, 1.5·2^23,
   the exponent bias, and the polynomial's coefficients of r^1..r^5 (that of r^0 is 1). */
float lowbit_exp2_k[9] = {-126.0f, 12582912.0f, 0.0f /* bias: lowbit_exp2_bias */, 0.693147004f, 0.240222424f,
                          0.0555073358f, 0.00967151299f, 0.00132647238f, 1.0f};

int lowbit_exp2_bias = 127 - 0x4B400000; /* bits(t) − bits(1.5·2^23) + 127 */

typedef struct {
  v128_t lo, magic, bias, c1, c2, c3, c4, c5, one;
} Exp2K;

INLINE Exp2K exp2_consts(void) {
  const float *c = lowbit_exp2_k;
  Exp2K k = {wasm_f32x4_splat(c[0]), wasm_f32x4_splat(c[1]),
             wasm_i32x4_splat(lowbit_exp2_bias), wasm_f32x4_splat(c[3]),
             wasm_f32x4_splat(c[4]), wasm_f32x4_splat(c[5]), wasm_f32x4_splat(c[6]),
             wasm_f32x4_splat(c[7]), wasm_f32x4_splat(c[8])};
  return k;
}

/*
 * 2^x for x <= 0 (float32, relative error below 2e-7; below −126 it returns 2^−126 · ~1): the
 * attention's exponential, its scores being in base 2 (log2 e is folded into the query scale).
 * x = n + r with n = round(x) (from adding 1.5·2^23, as exp4k) and |r| <= ½ exact, 2^r by a
 * degree-5 polynomial fitted for relative error on [−½, ½], 2^n built in the exponent bits.
 * Sixteen vector operations against exp4k's 25: no ln 2 range reduction, a shorter polynomial.
 */
INLINE v128_t exp2_4(v128_t x, const Exp2K *k) {
  x = wasm_f32x4_pmax(x, k->lo);
  v128_t t = wasm_f32x4_add(x, k->magic);
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_sub(t, k->magic));
  v128_t p = wasm_f32x4_add(wasm_f32x4_mul(k->c5, r), k->c4);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c3);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c2);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->c1);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), k->one);
  return wasm_f32x4_mul(p, wasm_i32x4_shl(wasm_i32x4_add(t, k->bias), 23));
}

/* x rotated left by r lanes: lane i holds x[(i + r) % 4]. */
#define ROT1(x) wasm_i32x4_shuffle(x, x, 1, 2, 3, 0)
#define ROT2(x) wasm_i32x4_shuffle(x, x, 2, 3, 0, 1)
#define ROT3(x) wasm_i32x4_shuffle(x, x, 3, 0, 1, 2)

/*
 * Causal attention of four queries t0..t0+3 (t0 a multiple of 4) of one head over keys
 * 0..t0+3, as a 4×4 register tile per block of four keys, like the GEMM's rotation kernel: with
 * qt [hd][T4] (scaled queries, transposed) and kt [hd][T4], the products of query lane i with key
 * lane (i + r) % 4 are one vector Q_d · rot_r(K_d), so each key vector is loaded once for four
 * queries. The scores of block b are stored as those four rotated vectors (lane i: query i), so
 * maxima, exponentials and sums stay per lane; the probabilities then multiply the rows of v
 * ([T][vStride], this head's hd values at vOff), broadcast from their lanes. Only the last
 * block, the diagonal one, is masked: in rotation r, lane i is key (i + r) % 4, later than the
 * query unless i + r >= 4. Queries past the window's end (padding) compute garbage that is never
 * stored.
 */
INLINE void attend_tile(const int hd, int t0, int T, int T4, const float *qt, const float *kt,
                        const float *v, int vStride, float *o, int oStride, float *sc) {
  v128_t qd[hd];
  for (int d = 0; d < hd; d++) qd[d] = wasm_v128_load(qt + d * T4 + t0);
  const v128_t ninf = wasm_f32x4_splat(-__builtin_inff());
  v128_t mx = ninf;
/* a_r = Σ_d qd[d] · rot_r(k_d) for the keys s..s+3, stored at sc + 4s. */
#define SCORES_BLOCK(s)                                                                            \
  {                                                                                                \
    v128_t k = wasm_v128_load(kt + (s));                                                           \
    a0 = wasm_f32x4_mul(qd[0], k);                                                                 \
    a1 = wasm_f32x4_mul(qd[0], ROT1(k));                                                           \
    a2 = wasm_f32x4_mul(qd[0], ROT2(k));                                                           \
    a3 = wasm_f32x4_mul(qd[0], ROT3(k));                                                           \
    for (int d = 1; d < hd; d++) {                                                                 \
      k = wasm_v128_load(kt + d * T4 + (s));                                                       \
      a0 = MADD(qd[d], k, a0);                                                                     \
      a1 = MADD(qd[d], ROT1(k), a1);                                                               \
      a2 = MADD(qd[d], ROT2(k), a2);                                                               \
      a3 = MADD(qd[d], ROT3(k), a3);                                                               \
    }                                                                                              \
    float *b = sc + 4 * (s);                                                                       \
    wasm_v128_store(b, a0);                                                                        \
    wasm_v128_store(b + 4, a1);                                                                    \
    wasm_v128_store(b + 8, a2);                                                                    \
    wasm_v128_store(b + 12, a3);                                                                   \
  }
  for (int s = 0; s < t0; s += 4) {
    v128_t a0, a1, a2, a3;
    SCORES_BLOCK(s)
    mx = wasm_f32x4_pmax(mx, wasm_f32x4_pmax(wasm_f32x4_pmax(a0, a1), wasm_f32x4_pmax(a2, a3)));
  }
  { /* the diagonal block: rotation r keeps lanes i >= 4 − r */
    v128_t a0, a1, a2, a3;
    SCORES_BLOCK(t0)
    a1 = wasm_v128_bitselect(a1, ninf, wasm_i32x4_make(0, 0, 0, -1));
    a2 = wasm_v128_bitselect(a2, ninf, wasm_i32x4_make(0, 0, -1, -1));
    a3 = wasm_v128_bitselect(a3, ninf, wasm_i32x4_make(0, -1, -1, -1));
    float *b = sc + 4 * t0;
    wasm_v128_store(b + 4, a1);
    wasm_v128_store(b + 8, a2);
    wasm_v128_store(b + 12, a3);
    mx = wasm_f32x4_pmax(mx, wasm_f32x4_pmax(wasm_f32x4_pmax(a0, a1), wasm_f32x4_pmax(a2, a3)));
  }
#undef SCORES_BLOCK
  const Exp2K ek = exp2_consts();
  v128_t sum = wasm_f32x4_splat(0);
  const int n = 4 * (t0 + 4);
  for (int j = 0; j < n - 16; j += 4) {
    v128_t e = exp2_4(wasm_f32x4_sub(wasm_v128_load(sc + j), mx), &ek);
    wasm_v128_store(sc + j, e);
    sum = wasm_f32x4_add(sum, e);
  }
  for (int j = n - 16; j < n; j += 4) { /* e^−inf is not exactly 0 after the clamp */
    v128_t x = wasm_v128_load(sc + j);
    v128_t e = wasm_v128_and(exp2_4(wasm_f32x4_sub(x, mx), &ek), wasm_f32x4_ne(x, ninf));
    wasm_v128_store(sc + j, e);
    sum = wasm_f32x4_add(sum, e);
  }
  const v128_t inv = wasm_f32x4_div(wasm_f32x4_splat(1.0f), sum);
  for (int d = 0; d < hd; d += 8) {
    const int w2 = d + 8 <= hd; /* eight dimensions, else four (hd % 8 == 4) */
    v128_t o00 = wasm_f32x4_splat(0), o01 = o00, o10 = o00, o11 = o00;
    v128_t o20 = o00, o21 = o00, o30 = o00, o31 = o00;
    for (int s = 0; s <= t0; s += 4) {
      const float *b = sc + 4 * s, *vr = v + s * vStride + d;
      /* p_r lane i: query i, key (i + r) % 4; key k of query i is in p_{(k − i) % 4} */
      v128_t p0 = wasm_v128_load(b), p1 = wasm_v128_load(b + 4);
      v128_t p2 = wasm_v128_load(b + 8), p3 = wasm_v128_load(b + 12);
#define AV_KEY(kk, x0, x1, x2, x3, l0, l1, l2, l3)                                                  \
  {                                                                                                \
    const v128_t va = wasm_v128_load(vr + kk * vStride);                                           \
    const v128_t w0 = wasm_i32x4_shuffle(x0, x0, l0, l0, l0, l0);                                  \
    const v128_t w1 = wasm_i32x4_shuffle(x1, x1, l1, l1, l1, l1);                                  \
    const v128_t w2_ = wasm_i32x4_shuffle(x2, x2, l2, l2, l2, l2);                                 \
    const v128_t w3 = wasm_i32x4_shuffle(x3, x3, l3, l3, l3, l3);                                  \
    o00 = MADD(w0, va, o00);                                                                       \
    o10 = MADD(w1, va, o10);                                                                       \
    o20 = MADD(w2_, va, o20);                                                                      \
    o30 = MADD(w3, va, o30);                                                                       \
    if (w2) {                                                                                      \
      const v128_t vb = wasm_v128_load(vr + kk * vStride + 4);                                     \
      o01 = MADD(w0, vb, o01);                                                                     \
      o11 = MADD(w1, vb, o11);                                                                     \
      o21 = MADD(w2_, vb, o21);                                                                    \
      o31 = MADD(w3, vb, o31);                                                                     \
    }                                                                                              \
  }
      /* key k: query i reads p_{(k − i) mod 4} at lane i */
      AV_KEY(0, p0, p3, p2, p1, 0, 1, 2, 3)
      AV_KEY(1, p1, p0, p3, p2, 0, 1, 2, 3)
      AV_KEY(2, p2, p1, p0, p3, 0, 1, 2, 3)
      AV_KEY(3, p3, p2, p1, p0, 0, 1, 2, 3)
#undef AV_KEY
    }
    const v128_t r0 = wasm_i32x4_shuffle(inv, inv, 0, 0, 0, 0);
    const v128_t r1 = wasm_i32x4_shuffle(inv, inv, 1, 1, 1, 1);
    const v128_t r2 = wasm_i32x4_shuffle(inv, inv, 2, 2, 2, 2);
    const v128_t r3 = wasm_i32x4_shuffle(inv, inv, 3, 3, 3, 3);
    float *od = o + t0 * oStride + d;
    wasm_v128_store(od, wasm_f32x4_mul(o00, r0));
    if (w2) wasm_v128_store(od + 4, wasm_f32x4_mul(o01, r0));
    if (t0 + 1 < T) {
      wasm_v128_store(od + oStride, wasm_f32x4_mul(o10, r1));
      if (w2) wasm_v128_store(od + oStride + 4, wasm_f32x4_mul(o11, r1));
    }
    if (t0 + 2 < T) {
      wasm_v128_store(od + 2 * oStride, wasm_f32x4_mul(o20, r2));
      if (w2) wasm_v128_store(od + 2 * oStride + 4, wasm_f32x4_mul(o21, r2));
    }
    if (t0 + 3 < T) {
      wasm_v128_store(od + 3 * oStride, wasm_f32x4_mul(o30, r3));
      if (w2) wasm_v128_store(od + 3 * oStride + 4, wasm_f32x4_mul(o31, r3));
    }
  }
}

/* Copies head h of x [T][stride] (hd values at h · hd) to xT [hd][T4], times scale, zero past T. */
static void transpose_head(const float *x, int T, int stride, int h, int hd, float scale,
                           float *xT) {
  const int T4 = ceil4(T);
  for (int i = 0; i < hd; i++) {
    float *row = xT + i * T4;
    for (int s = 0; s < T; s++) row[s] = x[s * stride + h * hd + i] * scale;
    for (int s = T; s < T4; s++) row[s] = 0.0f;
  }
}

/*
 * Causal grouped-query attention of T queries over the T keys and values of the window, four
 * queries of one head at a time (attend_tile), for query heads [h0, h1). Each KV head's keys are
 * transposed once (per range) into
 * kT [hd][T4] and each head's queries, scaled by log2 e/√hd (attend_tile's scores are in base 2),
 * into qT [hd][T4]; values stay in v (T4 rows, zero past T).
 * hd is a multiple of 4. sc holds 4 · T4 floats of scores.
 */
EXPORT(attention_heads)
void attention_heads(int T, int nHeads, int nKvHeads, int hd, const float *q, const float *k,
                     const float *v, float *kT, float *qT, float *out, float *sc, int h0, int h1) {
  const int qDim = nHeads * hd, kvDim = nKvHeads * hd, group = nHeads / nKvHeads, T4 = ceil4(T);
  const float scale = 1.44269504088896341f / __builtin_sqrtf((float)hd); /* base 2 */
  int last = -1;
  for (int h = h0; h < h1; h++) {
    const int kh = h / group;
    if (kh != last) transpose_head(k, T, kvDim, kh, hd, 1.0f, kT);
    last = kh;
    transpose_head(q, T, qDim, h, hd, scale, qT);
    const float *vh = v + kh * hd;
    float *oh = out + h * hd;
    for (int t0 = 0; t0 < T; t0 += 4) {
      switch (hd) {
      case 8: attend_tile(8, t0, T, T4, qT, kT, vh, kvDim, oh, qDim, sc); break;
      case 16: attend_tile(16, t0, T, T4, qT, kT, vh, kvDim, oh, qDim, sc); break;
      default: attend_tile(hd, t0, T, T4, qT, kT, vh, kvDim, oh, qDim, sc); break;
      }
    }
  }
}

/*
 * Attention of query heads [0, nHeads) here, or split among the kernel threads by the host
 * (lowbit_attention: each thread runs attention_heads on a range of heads with its own kT, qT and
 * scores); every head's numbers are the same either way.
 */
__attribute__((import_module("env"), import_name("lowbit_attention"))) void
lowbit_attention(int T, int nHeads, int nKvHeads, int hd, const float *q, const float *k,
                 const float *v, float *out);

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

/* rows[t][j] += bias[j] for T rows of n values (runners/forward.ts addBias). */
static void add_bias(float *rows, int T, int n, const float *bias) {
  for (int t = 0; t < T; t++) {
    for (int j = 0; j < n; j++) rows[t * n + j] += bias[j];
  }
}

/* x clamped to [−c, c], NaN kept (as Math.min(c, Math.max(−c, x)); f32x4.min/max propagate NaN). */
static void clamp_all(float *x, int n, float c) {
  const v128_t hi = wasm_f32x4_splat(c), lo = wasm_f32x4_splat(-c);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    wasm_v128_store(x + i, wasm_f32x4_min(hi, wasm_f32x4_max(lo, wasm_v128_load(x + i))));
  }
  for (; i < n; i++) {
    const float v = x[i];
    x[i] = v != v ? v : v < -c ? -c : v > c ? c : v;
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
 * Log-probabilities [rows][vocab] into `out` of final hidden states x [rows][dim] (the residual
 * stream after the last block): the final norm (into xn, rows × dim floats), the classifier and
 * the log-softmax. Rows are independent, so scoring a window in chunks of rows gives the numbers
 * of one call over all of them. Only the header words 0, 6, 8, 9, 13, 14 and 26 are read.
 */
EXPORT(window_head)
void window_head(const int *d, int rows, const float *x, float *xn, float *out) {
  const int dim = d[0], vocab = d[6];
  const float eps = __builtin_bit_cast(float, d[8]);
  rmsnorm_f32(rows, dim, x, (const float *)d[13], eps, xn);
  fgemm(d, rows, vocab, dim, xn, (const float *)d[14], out, (float *)d[9]);
  log_softmax_rows(out, rows, vocab);
}

/*
 * Log-probabilities [T][vocab] into `out` of the window whose embeddings are in x [T][dim]
 * (overwritten: it holds the residual stream). With `out` null the pass stops before the final
 * norm and x holds the final hidden states, for window_head to score in chunks of rows.
 */
EXPORT(forward_window)
void forward_window(const int *d, int T, float *x, float *out) {
  const int dim = d[0], nLayers = d[1], nHeads = d[2], nKvHeads = d[3], hd = d[4];
  const int hidden = d[5], style = d[7], act = d[15];
  const float eps = __builtin_bit_cast(float, d[8]);
  float *ws = (float *)d[9];
  const float *cs = (const float *)d[11], *sn = (const float *)d[12];
  const int qDim = nHeads * hd, kvDim = nKvHeads * hd, T4 = ceil4(T);
  float *xn = (float *)d[10];
  const int hmax = hidden_max(d);
  float *q = xn + T * dim, *k = q + T * qDim, *v = k + T * kvDim, *kT = v + T4 * kvDim;
  float *qT = kT + hd * T4, *att = qT + hd * T4, *g = att + T * qDim, *u = g + T * hmax;
  float *tmp = u + T * hmax;
  float *scores = tmp + T * dim, *cw = scores + 4 * T4 + 8, *sw = cw + hd;
  float *xr = sw + hd, *moe = xr + T * dim;
  for (int l = 0; l < nLayers; l++) {
    const int *L = d + D_WORDS_HEAD + D_WORDS_LAYER * l;
    rmsnorm_f32(T, dim, x, (const float *)L[0], eps, xn);
    if (act) act_quant(d, ACT_QKV, l, xn, T, dim);
    fgemm(d, T, qDim, dim, xn, (const float *)L[1], q, ws);
    fgemm(d, T, kvDim, dim, xn, (const float *)L[2], k, ws);
    fgemm(d, T, kvDim, dim, xn, (const float *)L[3], v, ws);
    /* Qwen2 biases, q/k norms (per head, Qwen3, or over the projections, OLMoE) and clip_qkv,
       in forward.ts's order */
    if (L[10]) add_bias(q, T, qDim, (const float *)L[10]);
    if (L[11]) add_bias(k, T, kvDim, (const float *)L[11]);
    if (L[12]) add_bias(v, T, kvDim, (const float *)L[12]);
    if (L[13]) {
      const int n = d[D_QK_HEAD] ? hd : qDim;
      rmsnorm_f32(T * (qDim / n), n, q, (const float *)L[13], eps, q);
    }
    if (L[14]) {
      const int n = d[D_QK_HEAD] ? hd : kvDim;
      rmsnorm_f32(T * (kvDim / n), n, k, (const float *)L[14], eps, k);
    }
    if (d[24]) {
      const float c = __builtin_bit_cast(float, d[25]);
      clamp_all(q, T * qDim, c);
      clamp_all(k, T * kvDim, c);
      clamp_all(v, T * kvDim, c);
    }
    if (act & 2) {
      act_quant(d, ACT_Q, l, q, T, qDim);
      act_quant(d, ACT_K, l, k, T, kvDim);
      act_quant(d, ACT_V, l, v, T, kvDim);
    }
    rope(q, T, nHeads, hd, cs, sn, style, cw, sw);
    rope(k, T, nKvHeads, hd, cs, sn, style, cw, sw);
    for (int i = T * kvDim; i < T4 * kvDim; i++) v[i] = 0.0f; /* the diagonal block's keys past T */
    if (d[D_THREADS]) lowbit_attention(T, nHeads, nKvHeads, hd, q, k, v, att);
    else attention_heads(T, nHeads, nKvHeads, hd, q, k, v, kT, qT, att, scores, 0, nHeads);
    if (act) act_quant(d, ACT_O, l, att, T, qDim);
    fgemm(d, T, dim, qDim, att, (const float *)L[4], tmp, ws);
    add_into(x, tmp, T * dim);
    rmsnorm_f32(T, dim, x, (const float *)L[5], eps, xn);
    if (L[9]) { /* MoE: the router reads xn as d[23] says, the experts its quantized copy */
      if (d[23]) copy_f32(xr, xn, T * dim);
      if (d[23] == 2) act_quant(d, ACT_ROUTER, l, xr, T, dim);
      if (act) act_quant(d, ACT_GATEUP, l, xn, T, dim);
      moe_block(d, l, (const int *)L[9], xn, d[23] ? xr : xn, T, tmp, g, u, moe, ws);
      add_into(x, tmp, T * dim);
      continue;
    }
    if (act) act_quant(d, ACT_GATEUP, l, xn, T, dim);
    dense_ffn(d, l, L + 6, hidden, xn, T, tmp, g, u, ws);
    add_into(x, tmp, T * dim);
  }
  if (out) window_head(d, T, x, xn, out);
}

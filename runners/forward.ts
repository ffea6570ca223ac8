/**
 * The decoder forward pass (dense and Mixture-of-Experts), in plain TypeScript: the reference
 * every other execution path is checked against, and the one that runs every feature of the
 * architecture description (`types.ts`, `arch.ts`).
 *
 * One function serves both uses: batched prefill of an evaluation window and token-by-token
 * decoding, through a {@linkcode KvCache} that remembers keys and values of earlier positions.
 * Linear layers, RMSNorms and plain attention go through a {@linkcode Kernels} backend (the
 * reference one by default); LayerNorm, RoPE, activations, soft-capping and windowed attention
 * are computed here (or by the reference attention).
 *
 * Per block (the stages are exported so calibration runs the same block in pieces):
 * `a = attnInput(x) = norm₁(x)`; `att = attention(rope(q(a)), rope(k(a)), v(a))`;
 * `h = attnResidual = x + post₁(o(att))`; `m = mlpInput(h) = norm₂(h)`;
 * `x' = h + post₂(mlp(m))`, with `mlp(u) = down(act(gate u) · up u)` (or `down(act(up u))`),
 * `post₁`/`post₂` the identity except for Gemma 2's sandwich norms; then
 * `logits = softcap(lmHead(norm(x)))`. Variants from the config: biases, q/k norms (over the
 * projection or per head), `clip_qkv`, partial and scaled RoPE, learned positions, embedding
 * scale, attention scale, soft-capping and sliding windows, routed and shared experts.
 *
 * When the weights carry an activation quantizer (`weights.activations`, weight-activation
 * cells), the inputs of the linears are fake-quantized first: once for q/k/v (they share an
 * input), for o, once for gate/up (in MoE blocks before routing, so the router sees it too) and
 * for down; with `bmm`, also the q, k and v outputs before RoPE (SmoothQuant's
 * `quantize_bmm_input`). Embeddings, norms and the classifier stay in float.
 *
 * @module
 */

import type { Kernels } from "../kernels/types.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { attentionExtras, attentionRef, type AttentionShape } from "../kernels/ref/attention.ts";
import type {
  DenseMlp,
  ForwardModel,
  LinearKind,
  LlamaConfig,
  MlpActivation,
  MoeMlp,
  OnlineRotation,
} from "../models/types.ts";
import {
  type ActSite,
  bmmQuantization,
  fakeQuantActivations,
  routerQuantization,
  type ZeroCounter,
} from "../core/act_quantizer.ts";
import { applyRope, configRopeTable, rotaryDims } from "../models/rope.ts";
import { applyOnlineRotation } from "../models/online_rotation.ts";
import { embedTokens } from "../models/embed.ts";
import { expertTokens, routeTokens } from "../models/routing.ts";

/** What the forward pass needs of a model. */
export type { ForwardModel } from "../models/types.ts";
export { embedTokens, LEARNED_POSITION_OFFSET } from "../models/embed.ts";
export { routeTokens, type Routing } from "../models/routing.ts";

/** Keys and values of the positions processed so far, per layer. */
export interface KvCache {
  /** Number of positions already in the cache (the absolute position of the next token). */
  pos: number;
  /** Positions the cache can hold. */
  readonly capacity: number;
  /** Per layer, `[capacity][nKvHeads * headDim]`. */
  readonly k: Float32Array[];
  /** Per layer, `[capacity][nKvHeads * headDim]`. */
  readonly v: Float32Array[];
}

/** Creates an empty cache for up to `capacity` positions (default: the model's context). */
export function createKvCache(config: LlamaConfig, capacity = config.maxSeqLen): KvCache {
  const kvDim = config.nKvHeads * config.headDim;
  const k: Float32Array[] = [];
  const v: Float32Array[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    k.push(new Float32Array(capacity * kvDim));
    v.push(new Float32Array(capacity * kvDim));
  }
  return { pos: 0, capacity, k, v };
}

/** Options of {@linkcode forward}. */
export interface ForwardOptions {
  /** Compute backend (default: the plain-TypeScript reference). */
  kernels?: Kernels;
  /** Cache to read earlier positions from and append these to (default: a fresh one). */
  cache?: KvCache;
  /** Logits of every position (`all`, default) or only of the last one (`last`). */
  logits?: "all" | "last";
  /** Counts activation elements that quantize to zero (weight-activation models). */
  zeroCounter?: ZeroCounter;
  /** Sees every MoE router decision. */
  routing?: RoutingObserver;
}

/**
 * Run `tokens` through the model starting at `cache.pos`; returns logits
 * `[tokens.length][vocab]` (or `[vocab]` with `logits: "last"`).
 *
 * @example Greedy next token
 * ```ts ignore
 * const logits = forward(model, [1], { logits: "last" });
 * ```
 */
export function forward(
  model: ForwardModel,
  tokens: ArrayLike<number>,
  options: ForwardOptions = {},
): Float32Array {
  const { config: c } = model;
  const kernels = options.kernels ?? refKernels;
  const T = tokens.length;
  const x = forwardHidden(model, tokens, options);
  if (options.logits === "last") {
    return finalLogits(model, x.subarray((T - 1) * c.dim, T * c.dim), 1, kernels);
  }
  return finalLogits(model, x, T, kernels);
}

/**
 * The final hidden states `[tokens.length][dim]` (the residual stream after the last block,
 * before the final norm) of `tokens` from `cache.pos` on; {@linkcode finalLogits} turns rows of
 * them into logits. `options.logits` is ignored.
 */
export function forwardHidden(
  model: ForwardModel,
  tokens: ArrayLike<number>,
  options: ForwardOptions = {},
): Float32Array {
  const { config: c } = model;
  const kernels = options.kernels ?? refKernels;
  const cache = options.cache ?? createKvCache(c, Math.max(tokens.length, 1));
  const T = tokens.length;
  const x = embedTokens(model, tokens, cache.pos);
  for (let l = 0; l < c.nLayers; l++) {
    layerForward(model, l, x, T, cache, kernels, undefined, {
      ...(options.zeroCounter ? { zeros: options.zeroCounter } : {}),
      ...(options.routing ? { routing: options.routing } : {}),
    });
  }
  cache.pos += T;
  return x;
}

/**
 * Logits `[T][vocab]` of the final hidden states `x` (`[T][dim]`): the final norm, the
 * classifier and, when the config says so, the logit soft-cap.
 */
export function finalLogits(
  model: ForwardModel,
  x: Float32Array,
  T: number,
  kernels: Kernels = refKernels,
): Float32Array {
  const { config: c, weights: w } = model;
  const xn = new Float32Array(T * c.dim);
  normRows(c, kernels, x, T, w.norm, w.normBias, xn);
  const out = new Float32Array(T * c.vocabSize);
  kernels.matmul(xn, T, w.lmHead, out);
  if (c.finalSoftcap !== undefined) softcap(out, c.finalSoftcap);
  return out;
}

/**
 * Sees the input of each linear layer just before it is applied: `x` is `[tokens][in]`, valid
 * only during the call (buffers are reused). q, k and v share one input, as do gate and up.
 * Returning `true` stops the block there (calibration passes that need only early inputs); the
 * hidden states are then left partly updated and must not be used.
 */
export type LinearObserver = (
  kind: LinearKind | "router",
  x: Float32Array,
  tokens: number,
  /** In MoE blocks: the expert whose routed tokens `x` holds (absent for `router`). */
  expert?: number,
) => boolean | void;

/**
 * Sees the router's decisions in MoE block `layer`: `probs` `[T][nExperts]` (softmax over all
 * experts) and `chosen` `[T][topK]` (expert indices, best first). Valid only during the call.
 */
export type RoutingObserver = (
  layer: number,
  probs: Float64Array,
  chosen: Int32Array,
  tokens: number,
) => void;

/** Optional instruments of {@linkcode layerForward}. */
export interface LayerHooks {
  /** Counts zero-quantized activations. */
  readonly zeros?: ZeroCounter;
  /** Sees every MoE router decision. */
  readonly routing?: RoutingObserver;
}

/**
 * Applies decoder block `l` to the hidden states `x` (`[T][dim]`, updated in place) at positions
 * `cache.pos … cache.pos + T − 1`, writing keys and values into the cache (`cache.pos` is not
 * advanced: the caller does that after the last block). `observe` sees float inputs, before
 * any activation quantization (in MoE blocks: the router's input as `router`, then each expert's
 * routed tokens with the expert's index).
 */
export function layerForward(
  model: ForwardModel,
  l: number,
  x: Float32Array,
  T: number,
  cache: KvCache,
  kernels: Kernels = refKernels,
  observe?: LinearObserver,
  hooks: LayerHooks = {},
): void {
  const { zeros } = hooks;
  const c = model.config;
  const layer = model.weights.layers[l]!;
  const qDim = c.nHeads * c.headDim;

  const xn = attnInput(model, l, x, T, kernels);
  if (observe) {
    const stop = [observe("q", xn, T), observe("k", xn, T), observe("v", xn, T)];
    if (stop.includes(true)) return;
  }
  const act = activationQuantizer(model, l, zeros);
  const att = new Float32Array(T * qDim);
  selfAttention(model, l, act ? act("qkv", xn, T, c.dim) : xn, T, cache, kernels, att, zeros);
  if (observe?.("o", att, T) === true) return;
  const h = attnResidual(model, l, act ? act("o", att, T, qDim) : att, x, T, kernels);

  const hn = mlpInput(model, l, h, T, kernels);
  const y = new Float32Array(T * c.dim);
  if (layer.mlp.kind === "dense") {
    const rot = model.weights.online?.down;
    if (!denseMlp(layer.mlp, hn, T, kernels, y, observe, act, true, c, rot)) return;
  } else {
    if (model.weights.online?.down) {
      throw new TypeError(`layer ${l}: online rotations of MoE experts' inputs are not supported`);
    }
    if (observe?.("router", hn, T) === true) return;
    const xq = act ? act("gateup", hn, T, c.dim) : hn;
    // A router with its own activation bits (EAQuant: A8) gets its own copy of the input
    // (float with 16 bits); otherwise it reads the experts' input.
    const aq = model.weights.activations;
    const rb = aq?.routerBits;
    const xr = rb === undefined
      ? xq
      : rb >= 16
      ? hn
      : fakeQuantActivations(routerQuantization(aq!, rb), hn, T, c.dim, undefined, zeros, "router");
    if (!moeMlp(layer.mlp, c, l, xq, T, kernels, y, act, observe, hooks.routing, xr)) return;
  }
  mlpResidual(model, l, y, h, T, kernels, x);
}

/** The normalized input of block `l`'s q/k/v projections (`[T][dim]`, a new array). */
export function attnInput(
  model: ForwardModel,
  l: number,
  x: Float32Array,
  T: number,
  kernels: Kernels = refKernels,
): Float32Array {
  const layer = model.weights.layers[l]!;
  const xn = new Float32Array(T * model.config.dim);
  normRows(model.config, kernels, x, T, layer.attnNorm, layer.attnNormBias, xn);
  return xn;
}

/**
 * The residual stream after block `l`'s attention: `x + post(o(att) + oBias)` from the input
 * of o (`att`, `[T][nHeads·headDim]`, already fake-quantized when the model quantizes
 * activations) and the block input `x` (a new array).
 */
export function attnResidual(
  model: ForwardModel,
  l: number,
  att: Float32Array,
  x: Float32Array,
  T: number,
  kernels: Kernels = refKernels,
): Float32Array {
  const c = model.config;
  const layer = model.weights.layers[l]!;
  const proj = new Float32Array(T * c.dim);
  kernels.matmul(att, T, layer.o, proj);
  if (layer.oBias) addBias(proj, layer.oBias);
  if (layer.postAttnNorm) kernels.rmsnorm(proj, T, layer.postAttnNorm, c.normEps, proj);
  for (let i = 0; i < proj.length; i++) proj[i] = proj[i]! + x[i]!;
  return proj;
}

/** The normalized input of block `l`'s MLP (or router) from the residual `h` (a new array). */
export function mlpInput(
  model: ForwardModel,
  l: number,
  h: Float32Array,
  T: number,
  kernels: Kernels = refKernels,
): Float32Array {
  const layer = model.weights.layers[l]!;
  const hn = new Float32Array(T * model.config.dim);
  normRows(model.config, kernels, h, T, layer.mlpNorm, layer.mlpNormBias, hn);
  return hn;
}

/** Block `l`'s output `h + post(y)` from the MLP output `y` into `out` (may be `y` or `h`). */
export function mlpResidual(
  model: ForwardModel,
  l: number,
  y: Float32Array,
  h: Float32Array,
  T: number,
  kernels: Kernels,
  out: Float32Array,
): void {
  const layer = model.weights.layers[l]!;
  if (layer.postMlpNorm) kernels.rmsnorm(y, T, layer.postMlpNorm, model.config.normEps, y);
  for (let i = 0; i < T * model.config.dim; i++) out[i] = h[i]! + y[i]!;
}

/**
 * The feed-forward half of block `l` on the normalized states `xn` (`[T][dim]`) into `out`, with
 * float activations: the dense MLP or the routed experts (`extra.routing` sees the routers'
 * decisions; `extra.segments`: the rows are several windows', starting at these offsets, see
 * {@linkcode expertRowPieces}). False when the observer stopped it.
 */
export function mlpForward(
  model: ForwardModel,
  l: number,
  xn: Float32Array,
  T: number,
  kernels: Kernels,
  out: Float32Array,
  observe?: LinearObserver,
  extra: { readonly routing?: RoutingObserver; readonly segments?: readonly number[] } = {},
): boolean {
  const mlp = model.weights.layers[l]!.mlp;
  if (mlp.kind === "dense") {
    const rot = model.weights.online?.down;
    return denseMlp(mlp, xn, T, kernels, out, observe, undefined, true, model.config, rot);
  }
  if (observe?.("router", xn, T) === true) return false;
  const { routing, segments } = extra;
  segments?.forEach((a, i) => {
    if ((segments[i + 1] ?? T) - a < 2) {
      // Its router row would be a one-row product in its own pass, a many-row one here.
      throw new RangeError(`mlpForward: window ${i} of the merged rows has fewer than 2 tokens`);
    }
  });
  return moeMlp(
    mlp,
    model.config,
    l,
    xn,
    T,
    kernels,
    out,
    undefined,
    observe,
    routing,
    xn,
    segments,
  );
}

/** Fake-quantizes the input `x` (`[T][n]`) of a site; returns a new array. */
export type SiteQuantizer = (site: ActSite, x: Float32Array, T: number, n: number) => Float32Array;

/** The activation quantizer of block `l`, or undefined when the model has float activations. */
function activationQuantizer(
  model: ForwardModel,
  l: number,
  zeros?: ZeroCounter,
): SiteQuantizer | undefined {
  const aq = model.weights.activations;
  if (!aq) return undefined;
  const sites = aq.layers?.[l];
  return (site, x, T, n) => fakeQuantActivations(aq, x, T, n, sites?.[site], zeros, site);
}

/**
 * The config's normalization of `T` rows of `x` into `out` (may alias `x`): RMSNorm through the
 * kernels, or LayerNorm (`norm: "layer"`) with its bias.
 */
export function normRows(
  c: LlamaConfig,
  kernels: Kernels,
  x: Float32Array,
  T: number,
  weight: Float32Array,
  bias: Float32Array | undefined,
  out: Float32Array,
): void {
  if (c.norm === "layer") {
    layerNorm(x, T, weight, bias, c.normEps, out);
    return;
  }
  kernels.rmsnorm(x, T, weight, c.normEps, out);
  if (bias) addBias(out.subarray(0, T * weight.length), bias);
}

/**
 * LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) · w + b` with the biased
 * variance (`torch.nn.LayerNorm`), sums in float64.
 */
export function layerNorm(
  x: Float32Array,
  T: number,
  weight: Float32Array,
  bias: Float32Array | undefined,
  eps: number,
  out: Float32Array,
): void {
  const d = weight.length;
  for (let t = 0; t < T; t++) {
    const o = t * d;
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[o + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[o + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) {
      out[o + i] = (x[o + i]! - mean) * inv * weight[i]! + (bias ? bias[i]! : 0);
    }
  }
}

/** The attention shape of block `l`: heads, score scale, soft-cap and sliding window. */
export function attentionShape(c: LlamaConfig, l: number): AttentionShape {
  const window = c.slidingWindows?.[l] ?? 0;
  return {
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: c.headDim,
    ...(c.attnScale !== undefined ? { scale: c.attnScale } : {}),
    ...(c.attnSoftcap !== undefined ? { softcap: c.attnSoftcap } : {}),
    ...(window > 0 ? { window } : {}),
  };
}

/**
 * The attention half of block `l` before the output projection: q, k, v projections of the
 * normalized states `xn` (`[T][dim]`) with their biases, q/k norms and `clip_qkv`, RoPE, keys
 * and values into the cache at `cache.pos…`, and causal grouped-query attention into `att`
 * (`[T][nHeads·headDim]`, the input of `o`, after the model's online rotation of it if any). With an activation quantizer whose `bmm` is set,
 * q, k and v are fake-quantized per token before RoPE.
 */
export function selfAttention(
  model: ForwardModel,
  l: number,
  xn: Float32Array,
  T: number,
  cache: KvCache,
  kernels: Kernels,
  att: Float32Array,
  zeros?: ZeroCounter,
): void {
  const c = model.config;
  const layer = model.weights.layers[l]!;
  const start = cache.pos;
  if (start + T > cache.capacity) {
    throw new RangeError(
      `forward: ${start + T} positions exceed the cache capacity ${cache.capacity}`,
    );
  }
  const { headDim, nHeads, nKvHeads } = c;
  const kvDim = nKvHeads * headDim;
  const q = new Float32Array(T * nHeads * headDim);
  kernels.matmul(xn, T, layer.q, q);
  const kCache = cache.k[l]!;
  const vCache = cache.v[l]!;
  const kNew = kCache.subarray(start * kvDim, (start + T) * kvDim);
  const vNew = vCache.subarray(start * kvDim, (start + T) * kvDim);
  kernels.matmul(xn, T, layer.k, kNew);
  kernels.matmul(xn, T, layer.v, vNew);
  if (layer.qBias) addBias(q, layer.qBias);
  if (c.queryScale !== undefined) {
    const s = Math.fround(c.queryScale);
    for (let i = 0; i < q.length; i++) q[i] = q[i]! * s;
  }
  if (layer.kBias) addBias(kNew, layer.kBias);
  if (layer.vBias) addBias(vNew, layer.vBias);
  if (layer.qNorm) kernels.rmsnorm(q, q.length / layer.qNorm.length, layer.qNorm, c.normEps, q);
  if (layer.kNorm) {
    kernels.rmsnorm(kNew, kNew.length / layer.kNorm.length, layer.kNorm, c.normEps, kNew);
  }
  if (c.clipQkv !== undefined) { for (const a of [q, kNew, vNew]) clamp(a, c.clipQkv); }
  const aq = model.weights.activations;
  if (aq?.options.bmm) {
    const bmm = bmmQuantization(aq);
    q.set(fakeQuantActivations(bmm, q, T, nHeads * headDim, undefined, zeros, "bmm"));
    for (const rows of [kNew, vNew]) {
      rows.set(fakeQuantActivations(bmm, rows, T, kvDim, undefined, zeros, "bmm"));
    }
  }
  if (c.positions !== "learned") {
    const rope = configRopeTable(c, start + T);
    const rd = rotaryDims(c);
    applyRope(q, T, nHeads, headDim, start, rope, c.ropeStyle, false, rd);
    applyRope(kNew, T, nKvHeads, headDim, start, rope, c.ropeStyle, false, rd);
  }
  const shape = attentionShape(c, l);
  const attend = kernels.attention && !attentionExtras(shape) ? kernels.attention : attentionRef;
  attend(q, kCache, vCache, T, start, shape, att);
  const rot = model.weights.online?.o;
  if (rot) applyOnlineRotation(rot, att, T);
}

/** `rows[t][j] += bias[j]` for every row. */
function addBias(rows: Float32Array, bias: Float32Array): void {
  const n = bias.length;
  for (let i = 0; i < rows.length; i++) rows[i] = rows[i]! + bias[i % n]!;
}

function clamp(a: Float32Array, limit: number): void {
  for (let i = 0; i < a.length; i++) a[i] = Math.min(limit, Math.max(-limit, a[i]!));
}

/** `x ← cap · tanh(x / cap)` elementwise (Gemma 2 soft-capping). */
function softcap(x: Float32Array, cap: number): void {
  for (let i = 0; i < x.length; i++) x[i] = cap * Math.tanh(x[i]! / cap);
}

// --- Feed-forward -----------------------------------------------------------------------------

const GELU_C = Math.sqrt(2 / Math.PI);

/** The MLP activation `act(a)` of a config (SiLU by default). */
export function mlpActivation(act: MlpActivation | undefined): (a: number) => number {
  switch (act ?? "silu") {
    case "silu":
      return (a) => a / (1 + Math.exp(-a));
    case "gelu_tanh":
      return (a) => 0.5 * a * (1 + Math.tanh(GELU_C * (a + 0.044715 * a * a * a)));
    case "relu":
      return (a) => (a > 0 ? a : 0);
    default:
      throw new TypeError(`unknown MLP activation ${act}`);
  }
}

/**
 * `out = down(act(gate x) · up x)` (or `down(act(up x))` without a gate) for `T` tokens, with
 * the MLP biases and the config's activation (SiLU when no config is given) and, when given,
 * the online rotation of down's input; false when the observer stopped it. With `act`, the inputs of gate/up (unless `quantizeInput` is false: the
 * caller did it) and of down are fake-quantized, after the observer has seen them in float.
 */
export function denseMlp(
  mlp: DenseMlp,
  x: Float32Array,
  T: number,
  kernels: Kernels,
  out: Float32Array,
  observe?: LinearObserver,
  act?: SiteQuantizer,
  quantizeInput = true,
  config?: Pick<LlamaConfig, "mlpAct">,
  downRotation?: OnlineRotation,
): boolean {
  const hidden = mlp.up.rows;
  const u = new Float32Array(T * hidden);
  if (observe) {
    const stop = [mlp.gate ? observe("gate", x, T) : false, observe("up", x, T)];
    if (stop.includes(true)) return false;
  }
  const xq = act && quantizeInput ? act("gateup", x, T, x.length / T) : x;
  kernels.matmul(xq, T, mlp.up, u);
  if (mlp.upBias) addBias(u, mlp.upBias);
  const f = mlpActivation(config?.mlpAct);
  if (mlp.gate) {
    const g = new Float32Array(T * hidden);
    kernels.matmul(xq, T, mlp.gate, g);
    if (mlp.gateBias) addBias(g, mlp.gateBias);
    for (let i = 0; i < g.length; i++) u[i] = f(g[i]!) * u[i]!;
  } else {
    for (let i = 0; i < u.length; i++) u[i] = f(u[i]!);
  }
  if (downRotation) applyOnlineRotation(downRotation, u, T);
  if (observe?.("down", u, T) === true) return false;
  kernels.matmul(act ? act("down", u, T, hidden) : u, T, mlp.down, out);
  if (mlp.downBias) addBias(out.subarray(0, T * mlp.down.rows), mlp.downBias);
  return true;
}

/**
 * Mixtral-style sparse MoE: softmax over router logits, the `topK` largest experts, their weights
 * renormalised to sum to 1 when `normTopK`, output = Σ weight · expert(x), plus
 * `sigmoid(sharedGate · x) · shared(x)` when the block has a shared expert (Qwen2-MoE). Each
 * expert runs once on the rows of the tokens routed to it (with window `segments`, in the pieces
 * {@linkcode expertRowPieces} makes, the observer then seeing each piece). False when the
 * observer stopped it.
 */
function moeMlp(
  mlp: MoeMlp,
  c: LlamaConfig,
  l: number,
  x: Float32Array,
  T: number,
  kernels: Kernels,
  out: Float32Array,
  act?: SiteQuantizer,
  observe?: LinearObserver,
  routing?: RoutingObserver,
  xRouter: Float32Array = x,
  segments?: readonly number[],
): boolean {
  const moe = c.moe;
  if (!moe) throw new TypeError("MoE layer in a model whose config has no `moe` section");
  const E = mlp.experts.length;
  const K = moe.topK;
  const dim = c.dim;
  const logits = new Float32Array(T * E);
  kernels.matmul(xRouter, T, mlp.router, logits);
  const route = routeTokens(logits, T, E, moe, l);
  routing?.(l, route.probs, route.chosen, T);
  out.fill(0, 0, T * dim);
  for (let e = 0; e < E; e++) {
    const { rows, weights } = expertTokens(route, T, K, e);
    if (rows.length === 0) continue;
    const n = rows.length;
    const ye = new Float32Array(n * dim);
    const seen = observe
      ? (k: LinearKind | "router", v: Float32Array, tt: number) => observe(k, v, tt, e)
      : undefined;
    for (const piece of expertRowPieces(rows, segments)) {
      const m = piece.length;
      const xe = new Float32Array(m * dim);
      piece.forEach((i, j) => xe.set(x.subarray(rows[i]! * dim, (rows[i]! + 1) * dim), j * dim));
      const yp = m === n ? ye : new Float32Array(m * dim);
      if (!denseMlp(mlp.experts[e]!, xe, m, kernels, yp, seen, act, false, c)) return false;
      if (yp !== ye) piece.forEach((i, j) => ye.set(yp.subarray(j * dim, (j + 1) * dim), i * dim));
    }
    rows.forEach((t, i) => {
      const w = weights[i]!;
      for (let j = 0; j < dim; j++) out[t * dim + j] = out[t * dim + j]! + w * ye[i * dim + j]!;
    });
  }
  if (mlp.shared) {
    // Qwen2-MoE: every token also goes through the shared expert (number E), weighted by
    // sigmoid(sharedGate · x); the gate reads the router's input.
    if (!mlp.sharedGate) throw new TypeError(`MoE layer ${l}: a shared expert without its gate`);
    const ys = new Float32Array(T * dim);
    const seen = observe
      ? (k: LinearKind | "router", v: Float32Array, tt: number) => observe(k, v, tt, E)
      : undefined;
    const all = Array.from({ length: T }, (_, t) => t);
    for (const piece of expertRowPieces(all, segments)) {
      const m = piece.length;
      const xs = m === T ? x : new Float32Array(m * dim);
      if (xs !== x) piece.forEach((t, j) => xs.set(x.subarray(t * dim, (t + 1) * dim), j * dim));
      const yp = m === T ? ys : new Float32Array(m * dim);
      if (!denseMlp(mlp.shared, xs, m, kernels, yp, seen, act, false, c)) return false;
      if (yp !== ys) piece.forEach((t, j) => ys.set(yp.subarray(j * dim, (j + 1) * dim), t * dim));
    }
    const g = new Float32Array(T);
    kernels.matmul(xRouter, T, mlp.sharedGate, g);
    for (let t = 0; t < T; t++) {
      const w = 1 / (1 + Math.exp(-g[t]!));
      for (let j = 0; j < dim; j++) out[t * dim + j] = out[t * dim + j]! + w * ys[t * dim + j]!;
    }
  }
  return true;
}

/**
 * How an expert's `rows` (ascending token indices) are multiplied when they come from several
 * windows starting at `segments`: a row that is its window's only one for this expert runs alone,
 * as in that window's own pass (some kernels sum a one-row product in another order), and the
 * others together, so a merged pass reproduces the per-window ones bit for bit. Returns groups of
 * indices into `rows`; without segments, one group of all.
 */
export function expertRowPieces(
  rows: readonly number[],
  segments?: readonly number[],
): number[][] {
  const all = rows.map((_, i) => i);
  if (!segments || segments.length < 2) return [all];
  const seg = new Int32Array(rows.length);
  const count = new Int32Array(segments.length);
  let s = 0;
  rows.forEach((t, i) => {
    while (s + 1 < segments.length && t >= segments[s + 1]!) s++;
    seg[i] = s;
    count[s]!++;
  });
  const singles = all.filter((i) => count[seg[i]!] === 1);
  if (singles.length === 0) return [all];
  const rest = all.filter((i) => count[seg[i]!] !== 1);
  return [...(rest.length > 0 ? [rest] : []), ...singles.map((i) => [i])];
}

/** Greedy decoding: feeds `prompt`, then appends the argmax token `steps` times. */
export function generateGreedy(
  model: ForwardModel,
  prompt: readonly number[],
  steps: number,
  options: { kernels?: Kernels; stopAt?: number } = {},
): number[] {
  const cache = createKvCache(
    model.config,
    Math.min(model.config.maxSeqLen, prompt.length + steps),
  );
  const out = [...prompt];
  let logits = forward(model, prompt, { cache, logits: "last", kernels: options.kernels });
  for (let s = 0; s < steps && cache.pos < cache.capacity; s++) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    out.push(best);
    if (best === options.stopAt) break;
    if (cache.pos >= cache.capacity) break;
    logits = forward(model, [best], { cache, logits: "last", kernels: options.kernels });
  }
  return out;
}

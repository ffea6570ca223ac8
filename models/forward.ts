/**
 * The Llama-family forward pass (dense and Mixture-of-Experts), in plain TypeScript.
 *
 * One function serves both uses: batched prefill of an evaluation window and token-by-token
 * decoding, through a {@linkcode KvCache} that remembers keys and values of earlier positions.
 * Linear layers, norms and attention go through a {@linkcode Kernels} backend (the reference one
 * by default; a backend without `attention` uses the reference's); RoPE and SwiGLU are computed
 * here.
 *
 * Per block: `h = x + o(attn(rope(q(n1 x)), rope(k(n1 x)), v(n1 x)))`,
 * `x' = h + mlp(n2 h)`, `mlp(u) = down(silu(gate u) · up u)`; then `logits = lmHead(norm x)`.
 * Variants from the config: q/k/v biases (Qwen2-MoE), RMSNorm over the whole q and k
 * projections and `clip_qkv` clamping before RoPE (OLMoE), routed and shared experts.
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
import { attentionRef } from "../kernels/ref/attention.ts";
import type {
  DenseMlp,
  LinearKind,
  LlamaConfig,
  LlamaWeights,
  MoeConfig,
  MoeMlp,
} from "./types.ts";
import {
  type ActSite,
  bmmQuantization,
  fakeQuantActivations,
  routerQuantization,
  type ZeroCounter,
} from "../core/act_quantizer.ts";
import { applyRope, cachedRopeTable } from "./rope.ts";

/** What the forward pass needs of a model. */
export interface ForwardModel {
  readonly config: LlamaConfig;
  readonly weights: LlamaWeights;
}

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
  const { config: c, weights: w } = model;
  const kernels = options.kernels ?? refKernels;
  const cache = options.cache ?? createKvCache(c, Math.max(tokens.length, 1));
  const T = tokens.length;
  const x = embedTokens(model, tokens);
  for (let l = 0; l < c.nLayers; l++) {
    layerForward(model, l, x, T, cache, kernels, undefined, {
      ...(options.zeroCounter ? { zeros: options.zeroCounter } : {}),
      ...(options.routing ? { routing: options.routing } : {}),
    });
  }
  cache.pos += T;

  const { dim } = c;
  const vocab = c.vocabSize;
  if (options.logits === "last") {
    const last = x.subarray((T - 1) * dim, T * dim);
    const normed = new Float32Array(dim);
    kernels.rmsnorm(last, 1, w.norm, c.normEps, normed);
    const out = new Float32Array(vocab);
    kernels.matmul(normed, 1, w.lmHead, out);
    return out;
  }
  const xn = new Float32Array(T * dim);
  kernels.rmsnorm(x, T, w.norm, c.normEps, xn);
  const out = new Float32Array(T * vocab);
  kernels.matmul(xn, T, w.lmHead, out);
  return out;
}

/** Token embeddings `[tokens.length][dim]`; rejects ids outside the vocabulary. */
export function embedTokens(model: ForwardModel, tokens: ArrayLike<number>): Float32Array {
  const { config: c, weights: w } = model;
  const T = tokens.length;
  if (T === 0) throw new RangeError("forward: no tokens given");
  const x = new Float32Array(T * c.dim);
  for (let t = 0; t < T; t++) {
    const id = tokens[t]!;
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
      throw new RangeError(`forward: token id ${id} at ${t} is outside [0, ${c.vocabSize})`);
    }
    x.set(w.embed.data.subarray(id * c.dim, (id + 1) * c.dim), t * c.dim);
  }
  return x;
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
  const xn = new Float32Array(T * c.dim);
  const att = new Float32Array(T * qDim);
  const proj = new Float32Array(T * c.dim);

  kernels.rmsnorm(x, T, layer.attnNorm, c.normEps, xn);
  if (observe) {
    const stop = [observe("q", xn, T), observe("k", xn, T), observe("v", xn, T)];
    if (stop.includes(true)) return;
  }
  const act = activationQuantizer(model, l, zeros);
  selfAttention(model, l, act ? act("qkv", xn, T, c.dim) : xn, T, cache, kernels, att, zeros);
  if (observe?.("o", att, T) === true) return;
  kernels.matmul(act ? act("o", att, T, qDim) : att, T, layer.o, proj);
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + proj[i]!;

  kernels.rmsnorm(x, T, layer.mlpNorm, c.normEps, xn);
  if (layer.mlp.kind === "dense") {
    if (!denseMlp(layer.mlp, xn, T, kernels, proj, observe, act)) return;
  } else {
    if (observe?.("router", xn, T) === true) return;
    const xq = act ? act("gateup", xn, T, c.dim) : xn;
    // A router with its own activation bits (EAQuant: A8) gets its own copy of the input
    // (float with 16 bits); otherwise it reads the experts' input.
    const aq = model.weights.activations;
    const rb = aq?.routerBits;
    const xr = rb === undefined
      ? xq
      : rb >= 16
      ? xn
      : fakeQuantActivations(routerQuantization(aq!, rb), xn, T, c.dim, undefined, zeros, "router");
    if (!moeMlp(layer.mlp, c, l, xq, T, kernels, proj, act, observe, hooks.routing, xr)) return;
  }
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + proj[i]!;
}

/**
 * The feed-forward half of block `l` on the normalized states `xn` (`[T][dim]`) into `out`, with
 * float activations: dense SwiGLU or the routed experts. False when the observer stopped it.
 */
export function mlpForward(
  model: ForwardModel,
  l: number,
  xn: Float32Array,
  T: number,
  kernels: Kernels,
  out: Float32Array,
  observe?: LinearObserver,
): boolean {
  const mlp = model.weights.layers[l]!.mlp;
  if (mlp.kind === "dense") return denseMlp(mlp, xn, T, kernels, out, observe);
  if (observe?.("router", xn, T) === true) return false;
  return moeMlp(mlp, model.config, l, xn, T, kernels, out, undefined, observe);
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
 * The attention half of block `l` before the output projection: q, k, v projections of the
 * normalized states `xn` (`[T][dim]`), RoPE, keys and values into the cache at `cache.pos…`, and
 * causal grouped-query attention into `att` (`[T][nHeads·headDim]`, the input of `o`). With an
 * activation quantizer whose `bmm` is set, q, k and v are fake-quantized per token before RoPE.
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
  // Built for the whole context at once, so decoding does not grow it token by token.
  const rope = cachedRopeTable(c.headDim, c.ropeTheta, Math.max(start + T, c.maxSeqLen));
  kernels.matmul(xn, T, layer.q, q);
  const kCache = cache.k[l]!;
  const vCache = cache.v[l]!;
  kernels.matmul(xn, T, layer.k, kCache.subarray(start * kvDim, (start + T) * kvDim));
  kernels.matmul(xn, T, layer.v, vCache.subarray(start * kvDim, (start + T) * kvDim));
  const kNew = kCache.subarray(start * kvDim, (start + T) * kvDim);
  const vNew = vCache.subarray(start * kvDim, (start + T) * kvDim);
  if (layer.qBias) addBias(q, layer.qBias);
  if (layer.kBias) addBias(kNew, layer.kBias);
  if (layer.vBias) addBias(vNew, layer.vBias);
  if (layer.qNorm) kernels.rmsnorm(q, T, layer.qNorm, c.normEps, q);
  if (layer.kNorm) kernels.rmsnorm(kNew, T, layer.kNorm, c.normEps, kNew);
  if (c.clipQkv !== undefined) { for (const a of [q, kNew, vNew]) clamp(a, c.clipQkv); }
  const aq = model.weights.activations;
  if (aq?.options.bmm) {
    const bmm = bmmQuantization(aq);
    q.set(fakeQuantActivations(bmm, q, T, nHeads * headDim, undefined, zeros, "bmm"));
    for (const c of [kCache, vCache]) {
      const rows = c.subarray(start * kvDim, (start + T) * kvDim);
      rows.set(fakeQuantActivations(bmm, rows, T, kvDim, undefined, zeros, "bmm"));
    }
  }
  applyRope(q, T, nHeads, headDim, start, rope, c.ropeStyle);
  applyRope(kCache.subarray(start * kvDim), T, nKvHeads, headDim, start, rope, c.ropeStyle);
  (kernels.attention ?? attentionRef)(q, kCache, vCache, T, start, c, att);
}

/** `rows[t][j] += bias[j]` for every row. */
function addBias(rows: Float32Array, bias: Float32Array): void {
  const n = bias.length;
  for (let i = 0; i < rows.length; i++) rows[i] = rows[i]! + bias[i % n]!;
}

function clamp(a: Float32Array, limit: number): void {
  for (let i = 0; i < a.length; i++) a[i] = Math.min(limit, Math.max(-limit, a[i]!));
}

// --- Feed-forward -----------------------------------------------------------------------------

/**
 * `out = down(silu(gate x) · up x)` for `T` tokens; false when the observer stopped it. With
 * `act`, the inputs of gate/up (unless `quantizeInput` is false: the caller did it) and of down
 * are fake-quantized, after the observer has seen them in float.
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
): boolean {
  const hidden = mlp.gate.rows;
  const g = new Float32Array(T * hidden);
  const u = new Float32Array(T * hidden);
  if (observe) {
    const stop = [observe("gate", x, T), observe("up", x, T)];
    if (stop.includes(true)) return false;
  }
  const xq = act && quantizeInput ? act("gateup", x, T, x.length / T) : x;
  kernels.matmul(xq, T, mlp.gate, g);
  kernels.matmul(xq, T, mlp.up, u);
  for (let i = 0; i < g.length; i++) {
    const a = g[i]!;
    g[i] = (a / (1 + Math.exp(-a))) * u[i]!;
  }
  if (observe?.("down", g, T) === true) return false;
  kernels.matmul(act ? act("down", g, T, hidden) : g, T, mlp.down, out);
  return true;
}

/** The routing of `T` tokens: router probabilities, chosen experts and their weights. */
export interface Routing {
  /** `[T][E]` softmax of the router logits, in float64. */
  readonly probs: Float64Array;
  /** `[T][K]` the chosen experts, most probable first. */
  readonly chosen: Int32Array;
  /** `[T][K]` their weights (renormalised to sum to 1 when `normTopK`). */
  readonly gate: Float64Array;
}

/**
 * Routes `T` tokens from their router logits (`[T][E]`): softmax in float64, the `topK` most
 * probable experts (ties to the lower index, as `torch.topk` on CPU), their probabilities as
 * weights, renormalised when `normTopK`. Throws a `RangeError` naming block `l` and the token
 * when a token's logits have no finite maximum.
 */
export function routeTokens(
  logits: Float32Array,
  T: number,
  E: number,
  moe: Pick<MoeConfig, "topK" | "normTopK">,
  l: number,
): Routing {
  const K = moe.topK;
  const probs = new Float64Array(T * E);
  const chosen = new Int32Array(T * K);
  const gate = new Float64Array(T * K);
  const order = Array.from({ length: E }, (_, i) => i);
  for (let t = 0; t < T; t++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[t * E + e]!);
    if (!Number.isFinite(max)) {
      throw new RangeError(`MoE router of layer ${l} produced ${max} for token ${t}`);
    }
    let sum = 0;
    for (let e = 0; e < E; e++) sum += probs[t * E + e] = Math.exp(logits[t * E + e]! - max);
    for (let e = 0; e < E; e++) probs[t * E + e] = probs[t * E + e]! / sum;
    // Stable sort: ties go to the lower expert index, as torch.topk does on CPU.
    order.sort((a, b) => probs[t * E + b]! - probs[t * E + a]! || a - b);
    let norm = 0;
    for (let k = 0; k < K; k++) norm += probs[t * E + order[k]!]!;
    for (let k = 0; k < K; k++) {
      const e = order[k]!;
      chosen[t * K + k] = e;
      gate[t * K + k] = moe.normTopK ? probs[t * E + e]! / norm : probs[t * E + e]!;
    }
  }
  return { probs, chosen, gate };
}

/**
 * Mixtral-style sparse MoE: softmax over router logits, the `topK` largest experts, their weights
 * renormalised to sum to 1 when `normTopK`, output = Σ weight · expert(x), plus
 * `sigmoid(sharedGate · x) · shared(x)` when the block has a shared expert (Qwen2-MoE). Each
 * expert runs once on the rows of the tokens routed to it. False when the observer stopped it.
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
): boolean {
  const moe = c.moe;
  if (!moe) throw new TypeError("MoE layer in a model whose config has no `moe` section");
  const E = mlp.experts.length;
  const K = moe.topK;
  const dim = c.dim;
  const logits = new Float32Array(T * E);
  kernels.matmul(xRouter, T, mlp.router, logits);
  const { probs, chosen, gate } = routeTokens(logits, T, E, moe, l);
  routing?.(l, probs, chosen, T);
  out.fill(0, 0, T * dim);
  for (let e = 0; e < E; e++) {
    const rows: number[] = [];
    const weights: number[] = [];
    for (let t = 0; t < T; t++) {
      for (let k = 0; k < K; k++) {
        if (chosen[t * K + k] === e) {
          rows.push(t);
          weights.push(gate[t * K + k]!);
        }
      }
    }
    if (rows.length === 0) continue;
    const n = rows.length;
    const xe = new Float32Array(n * dim);
    rows.forEach((t, i) => xe.set(x.subarray(t * dim, (t + 1) * dim), i * dim));
    const ye = new Float32Array(n * dim);
    const seen = observe
      ? (k: LinearKind | "router", v: Float32Array, tt: number) => observe(k, v, tt, e)
      : undefined;
    if (!denseMlp(mlp.experts[e]!, xe, n, kernels, ye, seen, act, false)) return false;
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
    if (!denseMlp(mlp.shared, x, T, kernels, ys, seen, act, false)) return false;
    const g = new Float32Array(T);
    kernels.matmul(xRouter, T, mlp.sharedGate, g);
    for (let t = 0; t < T; t++) {
      const w = 1 / (1 + Math.exp(-g[t]!));
      for (let j = 0; j < dim; j++) out[t * dim + j] = out[t * dim + j]! + w * ys[t * dim + j]!;
    }
  }
  return true;
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

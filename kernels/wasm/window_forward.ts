/**
 * Whole windows in one WASM call (`forward_window` in `forward.c`): the fast path of perplexity
 * windows on the CPU. Per-op kernel calls copy every activation in and out of WASM memory and
 * leave RoPE, SwiGLU, residuals and the log-softmax to JavaScript; here the weights stay resident
 * as packed GEMM panels (the same cache as `matmul`) and only the embeddings, norm weights and
 * RoPE rows go in, the final hidden states out ({@linkcode windowHidden}); `window_head` turns
 * chunks of their rows into log-probabilities ({@linkcode windowHead}).
 *
 * Llama-family models with a head size that is a multiple of 4, q/k/v biases (Qwen2), norms over
 * the q and k projections (OLMoE) or per head (Qwen3) and `clip_qkv` included, and no shared
 * experts: anything else is {@linkcode windowUnsupported} and takes the per-op path, which
 * gives the same numbers up to float32 rounding. Weight-activation models take this path too:
 * `forward.c` quantizes the usual settings itself, bit for bit `core/act_quantizer.ts`
 * ({@linkcode quantizesInWasm}), and calls back into it for the others (`lowbit_act`). So do
 * Mixtral-layout MoE blocks, whose routing is `routeTokens` of `runners/forward.ts`, called back
 * (`lowbit_route`).
 *
 * @module
 */

import {
  ACT_SITES,
  type ActivationQuantization,
  bmmQuantization,
  fakeQuantActivations,
  FLOAT_ACT_BITS,
  routerQuantization,
} from "../../core/act_quantizer.ts";
import { embedTokens } from "../../models/embed.ts";
import { routeTokens } from "../../models/routing.ts";
import type { ForwardModel } from "../../models/types.ts";
import { configRopeTable } from "../../models/rope.ts";
import { type ArchFeature, unsupportedFeatures } from "../../models/arch.ts";
import { isLazy } from "../../models/lazy_matrix.ts";
import { applyOnlineRotation } from "../../models/online_rotation.ts";
import type { DenseMlp, LlamaLayer, Matrix } from "../../models/types.ts";
import type { WasmHeap } from "./heap.ts";
import type { WasmExports, WasmHost } from "./load.ts";

/** What the whole-window pass needs of a WASM kernel instance. */
export interface WindowForwardEnv {
  readonly wasm: WasmExports;
  /** The instance's callbacks: `act` is set for the call when the model quantizes activations. */
  readonly host: WasmHost;
  readonly heap: WasmHeap;
  /** Byte offset of the GEMM workspace. */
  readonly ws: number;
  /** Byte offset of `w`'s packed panels (copied on first use). */
  panels(w: Matrix): number;
  /** Byte offset of a scratch block of at least `bytes`, reused between calls. */
  scratch(bytes: number): number;
  /** Lets the panels used so far be evicted again (a block-by-block pass calls it per block). */
  release?(): void;
  /** Whether the host runs the GEMMs on kernel threads (`host.gemm`, `lowbit_gemm`). */
  readonly threaded?: boolean;
}

/** First of the descriptor's five activation-quantization words (see `forward.c`). */
export const ACT_WORD = 15;

/**
 * The descriptor's activation words (`forward.c`, words 15–19): which sites are quantized, by
 * `forward.c` itself (`native`, see {@linkcode quantizesInWasm}) or by the host, with which bits,
 * symmetry, granularity and clipping ratio (float64).
 */
export function activationWords(
  aq: ActivationQuantization | undefined,
  native: boolean,
  hostSites = false,
): Int32Array {
  const words = new Int32Array(6); // five, padded so the float64 at word 3 is aligned
  if (!aq) {
    // Float activations, but the host still transforms the linears' inputs (online rotations).
    if (hostSites) words[0] = 1;
    return words.subarray(0, 5);
  }
  words[0] = (aq.options.bmm ? 3 : 1) | (native ? 4 : 0);
  words[1] = aq.bits;
  words[2] = (aq.options.symmetric ? 1 : 0) | (aq.options.granularity === "tensor" ? 2 : 0);
  new DataView(words.buffer).setFloat64(12, aq.options.clip, true);
  return words.subarray(0, 5);
}

/** Words of the descriptor: the header, then 15 per layer, then MoE tables (see `forward.c`). */
const HEAD_WORDS = 28;
/** The descriptor's word asking for the GEMMs on the kernel threads (`lowbit_gemm`). */
const THREAD_WORD = 26;
/** The descriptor's `clip_qkv` words: whether to clip, and the bound (float bits). */
const CLIP_WORD = 24;
/** Descriptor word: the q and k norms are per head (else over the whole projections). */
const QK_HEAD_WORD = 27;
/** First of the descriptor's MoE words: experts, top-k, an expert's hidden size, router input. */
const MOE_WORD = 20;
/** `forward.c`'s site of a MoE router's own input. */
const ACT_ROUTER = 7;
const LAYER_WORDS = 15;

/** The bits of `x` rounded to float32, as an int32 descriptor word. */
function f32Bits(x: number): number {
  return new Int32Array(new Float32Array([x]).buffer)[0]!;
}

/**
 * The architecture features (`models/arch.ts`) `forward.c` implements: q/k/v biases, RMSNorm
 * of q and k over the projections (OLMoE) or per head (Qwen3), `clip_qkv`, both RoPE pairings, scaled RoPE frequencies (the
 * cos/sin table comes from `models/rope.ts`) and Mixtral-layout MoE blocks.
 */
export const WINDOW_FEATURES: readonly ArchFeature[] = [
  "qkvBias",
  "qkNormProjection",
  "qkNormHead",
  "clipQkv",
  "interleavedRope",
  "ropeScaling",
  "moe",
];

/** Why `model` cannot take the whole-window path (then it runs op by op), or undefined. */
export function windowUnsupported(model: ForwardModel): string | undefined {
  const { config: c, weights: w } = model;
  const missing = unsupportedFeatures("the whole-window WASM forward", c, WINDOW_FEATURES);
  if (missing) return missing;
  if (w.layers.some((l) => l.mlp.kind === "moe" && l.mlp.shared)) {
    return "shared experts (Qwen2-MoE) run op by op";
  }
  if (c.headDim % 4 !== 0) return `head size ${c.headDim} is not a multiple of 4`;
  if (w.online && w.layers.some((l) => l.mlp.kind === "moe")) {
    return "online rotations of MoE blocks are not supported";
  }
  return undefined;
}

/**
 * Whether `forward.c` quantizes the model's activations itself (bit for bit
 * `fakeQuantActivations`): the uniform kernel with dynamic ranges, per token or per window, no
 * factors folded out of a site, every quantized width a multiple of 4. Otherwise (CrossQuant,
 * static ranges, folded factors) it calls back into `core/act_quantizer.ts` at each site.
 */
export function quantizesInWasm(model: ForwardModel): boolean {
  const { config: c, weights: w } = model;
  const aq = w.activations;
  if (!aq || aq.kernel !== "uniform" || aq.options.static) return false;
  if (aq.layers?.some((l) => Object.values(l).some((site) => site?.folded))) return false;
  return [
    c.dim,
    c.hiddenDim,
    c.nHeads * c.headDim,
    c.nKvHeads * c.headDim,
    c.moe?.expertHiddenDim ?? 0,
  ]
    .every((n) => n % 4 === 0);
}

/**
 * Throws a `RangeError` naming the tensor when a weight's shape disagrees with the config: the
 * WASM code trusts the descriptor, so a wrong shape must stop here, not read past a buffer.
 */
function checkShapes(model: ForwardModel): void {
  const { config: c, weights: w } = model;
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  if (c.nKvHeads < 1 || c.nHeads % c.nKvHeads !== 0) {
    throw new RangeError(`forward: ${c.nHeads} heads are not a multiple of ${c.nKvHeads} KV heads`);
  }
  const mat = (m: Matrix, rows: number, cols: number, what: string) => {
    // A streamed weight's values are checked by its loader (reading them here would make them
    // resident).
    const n = isLazy(m) ? m.rows * m.cols : m.data.length;
    if (m.rows !== rows || m.cols !== cols || n !== rows * cols) {
      throw new RangeError(
        `forward: ${what} is ${m.rows}×${m.cols} (${n} values), expected ` +
          `${rows}×${cols} from the config`,
      );
    }
  };
  const vec = (v: Float32Array, what: string) => {
    if (v.length !== c.dim) {
      throw new RangeError(`forward: ${what} holds ${v.length} values, expected ${c.dim}`);
    }
  };
  mat(w.embed, c.vocabSize, c.dim, "the token embedding");
  mat(w.lmHead, c.vocabSize, c.dim, "the classifier");
  vec(w.norm, "the final norm");
  if (w.layers.length !== c.nLayers) {
    throw new RangeError(`forward: ${w.layers.length} layers, expected ${c.nLayers}`);
  }
  const ffn = (m: DenseMlp, hidden: number, what: string) => {
    if (!m.gate) throw new RangeError(`forward: ${what} has no gate (an ungated MLP)`);
    mat(m.gate, hidden, c.dim, `${what} gate`);
    mat(m.up, hidden, c.dim, `${what} up`);
    mat(m.down, c.dim, hidden, `${what} down`);
  };
  for (const [i, l] of w.layers.entries()) {
    mat(l.q, qDim, c.dim, `layer ${i} q`);
    mat(l.k, kvDim, c.dim, `layer ${i} k`);
    mat(l.v, kvDim, c.dim, `layer ${i} v`);
    mat(l.o, c.dim, qDim, `layer ${i} o`);
    vec(l.attnNorm, `layer ${i} attention norm`);
    vec(l.mlpNorm, `layer ${i} MLP norm`);
    const sized = (v: Float32Array | undefined, n: number, what: string) => {
      if (v && v.length !== n) {
        throw new RangeError(`forward: layer ${i} ${what} holds ${v.length} values, expected ${n}`);
      }
    };
    sized(l.qBias, qDim, "q bias");
    sized(l.kBias, kvDim, "k bias");
    sized(l.vBias, kvDim, "v bias");
    const perHead = c.qkNorm === "head";
    sized(l.qNorm, perHead ? c.headDim : qDim, "q norm");
    sized(l.kNorm, perHead ? c.headDim : kvDim, "k norm");
    if (l.mlp.kind === "dense") {
      ffn(l.mlp, c.hiddenDim, `layer ${i}`);
      continue;
    }
    const moe = c.moe;
    if (!moe) throw new RangeError(`forward: layer ${i} is a MoE block but the config has no moe`);
    if (l.mlp.experts.length !== moe.nExperts || !(moe.topK >= 1 && moe.topK <= moe.nExperts)) {
      throw new RangeError(
        `forward: layer ${i} has ${l.mlp.experts.length} experts and the config ` +
          `${moe.nExperts}, top-${moe.topK}`,
      );
    }
    mat(l.mlp.router, moe.nExperts, c.dim, `layer ${i} router`);
    for (const [e, x] of l.mlp.experts.entries()) {
      ffn(x, moe.expertHiddenDim, `layer ${i} expert ${e}`);
    }
  }
}

/**
 * Final hidden states `[window.length][dim]` of `model` over `window` (BOS first): the residual
 * stream after the last block, which {@linkcode windowHead} scores in chunks of rows; undefined
 * when {@linkcode windowUnsupported}. `blockLayers` layers run per `forward_window` call (default
 * all): a streamed model runs one block at a time, with only that block's panels in memory, the
 * residual stream staying in WASM memory between calls (the same numbers: each block reads only
 * the stream). Throws a `RangeError` on a token id outside the vocabulary or a weight whose shape
 * disagrees with the config.
 */
export function windowHidden(
  env: WindowForwardEnv,
  model: ForwardModel,
  window: ArrayLike<number>,
  blockLayers?: number,
): Float32Array | undefined {
  if (windowUnsupported(model) !== undefined) return undefined;
  checkShapes(model);
  const c = model.config;
  const T = window.length;
  const x = embedTokens(model, window);
  const half = c.headDim / 2;
  const rope = configRopeTable(c, T);
  const perCall = Math.max(1, Math.min(blockLayers ?? c.nLayers, c.nLayers));
  const d = descriptorHeader(model, perCall);
  const s = windowScratch(env, model, T, d);
  const heap = env.heap;
  heap.f32(s.x, T * c.dim).set(x);
  heap.f32(s.cos, T * half).set(rope.cos.subarray(0, T * half));
  heap.f32(s.sin, T * half).set(rope.sin.subarray(0, T * half));
  d[9] = env.ws;
  d[THREAD_WORD] = env.threaded ? 1 : 0;
  d[10] = s.fwd;
  d[11] = s.cos;
  d[12] = s.sin;
  // forward.c numbers the blocks of one call from 0: the callbacks add the call's first block.
  const calls = { first: 0 };
  installCallbacks(env, model, d, calls);
  try {
    for (calls.first = 0; calls.first < c.nLayers; calls.first += perCall) {
      const count = Math.min(perCall, c.nLayers - calls.first);
      const words = describeBlocks(env, model, d, s, calls.first, count);
      heap.u32(s.desc, words).set(new Uint32Array(d.buffer, 0, words));
      env.wasm.forward_window(s.desc, T, s.x, 0);
      env.release?.();
    }
  } finally {
    env.host.act = undefined;
    env.host.route = undefined;
  }
  return heap.f32(s.x, T * c.dim).slice();
}

/** Words of a MoE block's panel table (router, then gate, up, down per expert); 0 for dense. */
function tableWords(l: LlamaLayer): number {
  return l.mlp.kind === "moe" ? 1 + 3 * l.mlp.experts.length : 0;
}

/** q, k, v biases and q, k norm weights of layer `l`, where present. */
function layerExtras(l: LlamaLayer): (Float32Array | undefined)[] {
  return [l.qBias, l.kBias, l.vBias, l.qNorm, l.kNorm];
}

/**
 * The descriptor of `forward_window` for `perCall` blocks per call, with its model-wide words
 * set: shapes, MoE, RoPE style, norm eps, clipping and activation quantization.
 */
function descriptorHeader(model: ForwardModel, perCall: number): Int32Array {
  const { config: c, weights: w } = model;
  // MoE tables: [router, (gate, up, down) × E] panels each, appended to the descriptor.
  const d = new Int32Array(
    HEAD_WORDS + LAYER_WORDS * perCall + Math.max(0, ...w.layers.map(tableWords)) * perCall,
  );
  d.set([c.dim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.hiddenDim, c.vocabSize]);
  const aq = w.activations;
  if (c.moe && w.layers.some((l) => l.mlp.kind === "moe")) {
    const rb = aq?.routerBits;
    d.set([c.moe.nExperts, c.moe.topK, c.moe.expertHiddenDim], MOE_WORD);
    d[MOE_WORD + 3] = rb === undefined ? 0 : rb >= FLOAT_ACT_BITS ? 1 : 2;
  }
  if (c.clipQkv !== undefined) {
    d[CLIP_WORD] = 1;
    d[CLIP_WORD + 1] = f32Bits(c.clipQkv);
  }
  d[7] = c.ropeStyle === "interleaved" ? 0 : 1;
  d[QK_HEAD_WORD] = c.qkNorm === "head" ? 1 : 0;
  d[8] = f32Bits(c.normEps);
  // Online rotations (QuaRot) run in the host at the o and down sites, before the quantizer: every
  // site then calls back into the host.
  d.set(activationWords(aq, nativeActivations(model), w.online !== undefined), ACT_WORD);
  return d;
}

/** Whether forward.c quantizes the activations itself (else the host does, at each site). */
function nativeActivations(model: ForwardModel): boolean {
  const w = model.weights;
  return w.activations !== undefined && !w.online && quantizesInWasm(model);
}

/** Byte offsets of one window's scratch in WASM memory, and where the next vector goes. */
interface WindowScratch {
  readonly desc: number;
  readonly x: number;
  readonly norms: number;
  /** Next free byte of the biases and q/k norms region. */
  extraAt: number;
  readonly cos: number;
  readonly sin: number;
  readonly fwd: number;
}

/**
 * Allocates a window's scratch — descriptor | x | norms | biases and q/k norms | cos | sin |
 * forward — sized by `forward.c` from the descriptor's shape words.
 */
function windowScratch(
  env: WindowForwardEnv,
  model: ForwardModel,
  T: number,
  d: Int32Array,
): WindowScratch {
  const { config: c, weights: w } = model;
  const half = c.headDim / 2;
  const extraFloats = w.layers.map(layerExtras).flat()
    .reduce((n, v) => n + (v?.length ?? 0), 0);
  const normFloats = 2 * c.nLayers * c.dim;
  const fixed = d.length + T * c.dim + normFloats + extraFloats + 2 * T * half;
  const probe = env.scratch(HEAD_WORDS * 4);
  env.heap.u32(probe, HEAD_WORDS).set(new Uint32Array(d.buffer, 0, HEAD_WORDS));
  const fwdFloats = env.wasm.fwd_scratch_floats(T, probe);
  let at = env.scratch((fixed + fwdFloats) * 4);
  const take = (floats: number) => {
    const p = at;
    at += floats * 4;
    return p;
  };
  return {
    desc: take(d.length),
    x: take(T * c.dim),
    norms: take(normFloats),
    extraAt: take(extraFloats),
    cos: take(T * half),
    sin: take(T * half),
    fwd: take(fwdFloats),
  };
}

/**
 * The host callbacks of one window: MoE routing, and activation quantization (with QuaRot's
 * online rotations) wherever forward.c does not quantize a site itself. `calls.first` is the
 * first block of the current `forward_window` call.
 */
function installCallbacks(
  env: WindowForwardEnv,
  model: ForwardModel,
  d: Int32Array,
  calls: { readonly first: number },
): void {
  const { config: c, weights: w } = model;
  const heap = env.heap;
  if (c.moe) {
    const moe = c.moe, E = moe.nExperts, K = moe.topK;
    env.host.route = (layer, logits, rows, chosen, gates) => {
      const r = routeTokens(heap.f32(logits, rows * E), rows, E, moe, calls.first + layer);
      heap.i32(chosen, rows * K).set(r.chosen);
      heap.f64(gates, rows * K).set(r.gate);
    };
  }
  const aq = w.activations;
  const online = w.online;
  // The host quantizes every site when forward.c does not, and a router's own bits in any case.
  if (online && !aq) {
    env.host.act = (site, _layer, ptr, rows, n) => {
      const r = site === 1 ? online.o : site === 3 ? online.down : undefined;
      if (r) applyOnlineRotation(r, heap.f32(ptr, rows * n), rows);
    };
  } else if (aq && (!nativeActivations(model) || d[MOE_WORD + 3] === 2)) {
    // Sites 0–3 are ACT_SITES (the inputs of q/k/v, o, gate/up, down), 4–6 the q, k, v outputs,
    // 7 a MoE router's own input (its `routerBits`).
    const bmm = bmmQuantization(aq);
    env.host.act = (site, block, ptr, rows, n) => {
      const layer = calls.first + block;
      const x = heap.f32(ptr, rows * n);
      const name = ACT_SITES[site];
      // The online rotation of o's or down's input comes first (as in runners/forward.ts).
      const r = site === 1 ? online?.o : site === 3 ? online?.down : undefined;
      if (r) applyOnlineRotation(r, x, rows);
      x.set(
        name !== undefined
          ? fakeQuantActivations(aq, x, rows, n, aq.layers?.[layer]?.[name], undefined, name)
          : site === ACT_ROUTER
          ? fakeQuantActivations(
            routerQuantization(aq, aq.routerBits!),
            x,
            rows,
            n,
            undefined,
            undefined,
            "router",
          )
          : fakeQuantActivations(bmm, x, rows, n, undefined, undefined, "bmm"),
      );
    };
  }
}

/**
 * Fills the descriptor for blocks `first … first + count − 1` (their panels, norms, biases and
 * MoE tables, copied into WASM memory now); returns the descriptor's length in words.
 */
function describeBlocks(
  env: WindowForwardEnv,
  model: ForwardModel,
  d: Int32Array,
  s: WindowScratch,
  first: number,
  count: number,
): number {
  const { config: c, weights: w } = model;
  const heap = env.heap;
  const group = w.layers.slice(first, first + count);
  // Panels first: copying a weight may grow the memory, which detaches earlier views.
  const panels = group.map((l) =>
    [l.q, l.k, l.v, l.o].map((m) => env.panels(m)).concat(
      l.mlp.kind === "dense"
        ? [l.mlp.gate!, l.mlp.up, l.mlp.down].map((m) => env.panels(m))
        : [0, 0, 0],
    )
  );
  const tables = group.map((l) =>
    l.mlp.kind === "moe"
      ? [l.mlp.router, ...l.mlp.experts.flatMap((x) => [x.gate!, x.up, x.down])].map((m) =>
        env.panels(m)
      )
      : []
  );
  const normFloats = 2 * c.nLayers * c.dim;
  const normAt = (i: number, v: Float32Array) => {
    heap.f32(s.norms, normFloats).set(v, i * c.dim);
    return s.norms + i * c.dim * 4;
  };
  const vectorAt = (v: Float32Array | undefined) => {
    if (!v) return 0;
    heap.f32(s.extraAt, v.length).set(v);
    s.extraAt += v.length * 4;
    return s.extraAt - v.length * 4;
  };
  d[1] = count;
  let tableAt = HEAD_WORDS + LAYER_WORDS * count;
  for (const [j, l] of group.entries()) {
    const i = first + j;
    const [q, k, v, o, gate, up, down] = panels[j]!;
    const table = tables[j]!;
    const words = HEAD_WORDS + LAYER_WORDS * j;
    d.set(
      [normAt(2 * i, l.attnNorm), q!, k!, v!, o!, normAt(2 * i + 1, l.mlpNorm), gate!, up!, down!],
      words,
    );
    d[words + 9] = 0;
    if (table.length) {
      d[words + 9] = s.desc + tableAt * 4;
      d.set(table, tableAt);
      tableAt += table.length;
    }
    d.set(layerExtras(l).map(vectorAt), words + 10);
  }
  return tableAt;
}

/**
 * Log-probabilities `[rows][vocab]` of `rows` final hidden states `x` (from
 * {@linkcode windowHidden}): the final norm, the classifier and the log-softmax of `forward.c`'s
 * `window_head`. Each row's numbers do not depend on the others, so a window scored in chunks of
 * rows equals one call over all of them, with a scratch of `rows × vocab` floats instead of
 * `T × vocab`. The caller checks {@linkcode windowUnsupported} first.
 */
export function windowHead(
  env: WindowForwardEnv,
  model: ForwardModel,
  x: Float32Array,
  rows: number,
): Float32Array {
  const { config: c, weights: w } = model;
  if (!Number.isInteger(rows) || rows < 1 || x.length < rows * c.dim) {
    throw new RangeError(`windowHead: ${x.length} values do not hold ${rows} rows of ${c.dim}`);
  }
  if (w.lmHead.rows !== c.vocabSize || w.lmHead.cols !== c.dim) {
    throw new RangeError(
      `forward: the classifier is ${w.lmHead.rows}×${w.lmHead.cols}, expected ` +
        `${c.vocabSize}×${c.dim} from the config`,
    );
  }
  if (w.norm.length !== c.dim) {
    throw new RangeError(
      `forward: the final norm holds ${w.norm.length} values, expected ${c.dim}`,
    );
  }
  // Panels first: copying a weight may grow the memory, which detaches earlier views.
  const head = env.panels(w.lmHead);
  const base = env.scratch((HEAD_WORDS + c.dim + 2 * rows * c.dim + rows * c.vocabSize) * 4);
  const desc = base, norm = desc + HEAD_WORDS * 4, xp = norm + c.dim * 4;
  const xn = xp + rows * c.dim * 4, out = xn + rows * c.dim * 4;
  const d = new Int32Array(HEAD_WORDS);
  d[0] = c.dim;
  d[6] = c.vocabSize;
  d[8] = f32Bits(c.normEps);
  d[9] = env.ws;
  d[13] = norm;
  d[14] = head;
  d[THREAD_WORD] = env.threaded ? 1 : 0;
  const heap = env.heap;
  heap.u32(desc, HEAD_WORDS).set(new Uint32Array(d.buffer));
  heap.f32(norm, c.dim).set(w.norm);
  heap.f32(xp, rows * c.dim).set(x.subarray(0, rows * c.dim));
  env.wasm.window_head(desc, rows, xp, xn, out);
  return heap.f32(out, rows * c.vocabSize).slice();
}

/**
 * Whole-window log-probabilities in one WASM call (`forward_window` in `forward.c`): the fast path
 * of perplexity windows on the CPU. Per-op kernel calls copy every activation in and out of WASM
 * memory and leave RoPE, SwiGLU, residuals and the log-softmax to JavaScript; here the weights stay
 * resident as packed GEMM panels (the same cache as `matmul`) and only the embeddings, norm
 * weights and RoPE rows go in, the log-probabilities out.
 *
 * Dense models with no q/k/v biases, q/k norms or `clip_qkv`, with a head size that is a multiple
 * of 4: anything else is {@linkcode windowUnsupported} and takes the per-op path, which gives the
 * same numbers up to float32 rounding. Weight-activation models take this path too: at each
 * quantization site the WASM code calls back into `core/act_quantizer.ts` (`lowbit_act`), the
 * quantizer the op-by-op path applies.
 *
 * @module
 */

import {
  ACT_SITES,
  type ActivationQuantization,
  bmmQuantization,
  fakeQuantActivations,
} from "../../core/act_quantizer.ts";
import { embedTokens, type ForwardModel } from "../../models/forward.ts";
import { cachedRopeTable } from "../../models/rope.ts";
import type { Matrix } from "../../models/types.ts";
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
): Int32Array {
  const words = new Int32Array(6); // five, padded so the float64 at word 3 is aligned
  if (!aq) return words.subarray(0, 5);
  words[0] = (aq.options.bmm ? 3 : 1) | (native ? 4 : 0);
  words[1] = aq.bits;
  words[2] = (aq.options.symmetric ? 1 : 0) | (aq.options.granularity === "tensor" ? 2 : 0);
  new DataView(words.buffer).setFloat64(12, aq.options.clip, true);
  return words.subarray(0, 5);
}

/** Words of the descriptor: the header, then nine per layer (see `forward.c`). */
const HEAD_WORDS = 20;
const LAYER_WORDS = 9;

/** Why `model` cannot take the whole-window path (then it runs op by op), or undefined. */
export function windowUnsupported(model: ForwardModel): string | undefined {
  const { config: c, weights: w } = model;
  if (c.moe || w.layers.some((l) => l.mlp.kind !== "dense")) {
    return "Mixture-of-Experts blocks run op by op";
  }
  if (
    c.qkvBias || c.qkNorm || c.clipQkv !== undefined ||
    w.layers.some((l) => l.qBias || l.kBias || l.vBias || l.qNorm || l.kNorm)
  ) {
    return "q/k/v biases, q/k norms and clip_qkv run op by op";
  }
  if (c.headDim % 4 !== 0) return `head size ${c.headDim} is not a multiple of 4`;
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
  return [c.dim, c.hiddenDim, c.nHeads * c.headDim, c.nKvHeads * c.headDim].every((n) =>
    n % 4 === 0
  );
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
    if (m.rows !== rows || m.cols !== cols || m.data.length !== rows * cols) {
      throw new RangeError(
        `forward: ${what} is ${m.rows}×${m.cols} (${m.data.length} values), expected ` +
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
  for (const [i, l] of w.layers.entries()) {
    if (l.mlp.kind !== "dense") continue;
    mat(l.q, qDim, c.dim, `layer ${i} q`);
    mat(l.k, kvDim, c.dim, `layer ${i} k`);
    mat(l.v, kvDim, c.dim, `layer ${i} v`);
    mat(l.o, c.dim, qDim, `layer ${i} o`);
    mat(l.mlp.gate, c.hiddenDim, c.dim, `layer ${i} gate`);
    mat(l.mlp.up, c.hiddenDim, c.dim, `layer ${i} up`);
    mat(l.mlp.down, c.dim, c.hiddenDim, `layer ${i} down`);
    vec(l.attnNorm, `layer ${i} attention norm`);
    vec(l.mlpNorm, `layer ${i} MLP norm`);
  }
}

/**
 * Log-probabilities `[window.length][vocab]` of `model` over `window` (BOS first), or undefined
 * when {@linkcode windowUnsupported}. Throws a `RangeError` on a token id outside the vocabulary
 * or a weight whose shape disagrees with the config.
 */
export function windowForward(
  env: WindowForwardEnv,
  model: ForwardModel,
  window: ArrayLike<number>,
): Float32Array | undefined {
  if (windowUnsupported(model) !== undefined) return undefined;
  checkShapes(model);
  const { config: c, weights: w } = model;
  const T = window.length;
  const x = embedTokens(model, window);
  const half = c.headDim / 2;
  const rope = cachedRopeTable(c.headDim, c.ropeTheta, Math.max(T, c.maxSeqLen));
  // Panels first: copying a weight may grow the memory, which detaches earlier views.
  const layers = w.layers.map((l) => {
    if (l.mlp.kind !== "dense") throw new TypeError("unreachable: checked above");
    return [l.q, l.k, l.v, l.o, l.mlp.gate, l.mlp.up, l.mlp.down].map((m) => env.panels(m));
  });
  const head = env.panels(w.lmHead);
  const descWords = HEAD_WORDS + LAYER_WORDS * c.nLayers;
  // Scratch: descriptor | x | norms | cos | sin | log-probs | forward scratch.
  const normFloats = (2 * c.nLayers + 1) * c.dim;
  const fixed = descWords + T * c.dim + normFloats + 2 * T * half + T * c.vocabSize;
  // The forward scratch size depends only on the shape words of the descriptor.
  const shape = new Int32Array([c.dim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.hiddenDim]);
  const probe = env.scratch(shape.byteLength);
  env.heap.u32(probe, shape.length).set(new Uint32Array(shape.buffer));
  const fwdFloats = env.wasm.fwd_scratch_floats(T, probe);
  const base = env.scratch((fixed + fwdFloats) * 4);
  const heap = env.heap;
  let at = base;
  const take = (floats: number) => {
    const p = at;
    at += floats * 4;
    return p;
  };
  const desc = take(descWords);
  const xp = take(T * c.dim);
  const norms = take(normFloats);
  const cos = take(T * half);
  const sin = take(T * half);
  const out = take(T * c.vocabSize);
  const fwd = take(fwdFloats);
  heap.f32(xp, T * c.dim).set(x);
  heap.f32(cos, T * half).set(rope.cos.subarray(0, T * half));
  heap.f32(sin, T * half).set(rope.sin.subarray(0, T * half));
  const normView = heap.f32(norms, normFloats);
  const normAt = (i: number, v: Float32Array) => {
    normView.set(v, i * c.dim);
    return norms + i * c.dim * 4;
  };
  const d = new Int32Array(descWords);
  d.set([c.dim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.hiddenDim, c.vocabSize]);
  d[7] = c.ropeStyle === "interleaved" ? 0 : 1;
  d[8] = new Int32Array(new Float32Array([c.normEps]).buffer)[0]!;
  d[9] = env.ws;
  d[10] = fwd;
  d[11] = cos;
  d[12] = sin;
  d[13] = normAt(2 * c.nLayers, w.norm);
  d[14] = head;
  for (const [i, l] of w.layers.entries()) {
    const [q, k, v, o, gate, up, down] = layers[i]!;
    d.set(
      [normAt(2 * i, l.attnNorm), q!, k!, v!, o!, normAt(2 * i + 1, l.mlpNorm), gate!, up!, down!],
      HEAD_WORDS + LAYER_WORDS * i,
    );
  }
  const aq = w.activations;
  const native = aq !== undefined && quantizesInWasm(model);
  d.set(activationWords(aq, native), ACT_WORD);
  heap.u32(desc, descWords).set(new Uint32Array(d.buffer));
  if (aq && !native) {
    // Sites 0–3 are ACT_SITES (the inputs of q/k/v, o, gate/up, down), 4–6 the q, k, v outputs.
    const bmm = bmmQuantization(aq);
    env.host.act = (site, layer, ptr, rows, n) => {
      const x = heap.f32(ptr, rows * n);
      const name = ACT_SITES[site];
      x.set(
        name === undefined
          ? fakeQuantActivations(bmm, x, rows, n, undefined, undefined, "bmm")
          : fakeQuantActivations(aq, x, rows, n, aq.layers?.[layer]?.[name], undefined, name),
      );
    };
  }
  try {
    env.wasm.forward_window(desc, T, xp, out);
  } finally {
    env.host.act = undefined;
  }
  return heap.f32(out, T * c.vocabSize).slice();
}

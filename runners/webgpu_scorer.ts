/**
 * Perplexity windows scored on the GPU: the asynchronous seam next to the synchronous forward pass.
 *
 * Weights are uploaded once per model. Per window, embeddings → decoder blocks (RMSNorm, q/k/v
 * GEMMs, RoPE, causal GQA attention, o with the residual, RMSNorm, SwiGLU, down with the residual)
 * → final norm → classifier → log-softmax run as one submission, followed by the NLL / KL /
 * argmax reductions against the reference's log-probabilities (also computed on the device, and
 * kept there within a byte budget); only four floats per scored position are read back. The
 * numbers follow `runners/forward.ts` and `runners/window_score.ts` up to float32 rounding.
 *
 * Dense models with float activations only: weight-activation models and Mixture-of-Experts
 * blocks are reported {@linkcode GpuWindowScorer.unsupported} and stay on the CPU path.
 *
 * @module
 */

import type { ForwardModel } from "./forward.ts";
import { configRopeTable } from "../models/rope.ts";
import { type ArchFeature, unsupportedFeatures } from "../models/arch.ts";
import { isLazy } from "../models/lazy_matrix.ts";
import { listLinears } from "../models/linears.ts";

/**
 * The architecture features (`models/arch.ts`) the WebGPU scorer implements: the plain Llama
 * block with either RoPE pairing and scaled RoPE frequencies (the cos/sin table comes from
 * `models/rope.ts`).
 */
export const GPU_FEATURES: readonly ArchFeature[] = ["interleavedRope", "ropeScaling"];
import type { LlamaConfig, LlamaWeights, Matrix } from "../models/types.ts";
import type { WindowScore } from "./window_score.ts";
import type { WindowScorer } from "./types.ts";
import { type GpuAdapterInfo, GpuDevice, type GpuDeviceOptions } from "../kernels/webgpu/device.ts";
import { type GemmKind, GpuOps, MAX_HEAD_DIM } from "../kernels/webgpu/ops.ts";

/** A model's weights on the device. */
interface GpuModel {
  readonly config: LlamaConfig;
  readonly buffers: GPUBuffer[];
  readonly embed: GPUBuffer;
  readonly lmHead: GPUBuffer;
  readonly norm: GPUBuffer;
  readonly cos: GPUBuffer;
  readonly sin: GPUBuffer;
  readonly layers: readonly {
    readonly attnNorm: GPUBuffer;
    readonly q: GPUBuffer;
    readonly k: GPUBuffer;
    readonly v: GPUBuffer;
    readonly o: GPUBuffer;
    readonly mlpNorm: GPUBuffer;
    readonly gate: GPUBuffer;
    readonly up: GPUBuffer;
    readonly down: GPUBuffer;
  }[];
}

/** Activation buffers of one window length. */
interface Scratch {
  readonly x: GPUBuffer;
  readonly xn: GPUBuffer;
  readonly q: GPUBuffer;
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly att: GPUBuffer;
  readonly g: GPUBuffer;
  readonly u: GPUBuffer;
  readonly logits: GPUBuffer;
  readonly tokens: GPUBuffer;
  readonly scores: GPUBuffer;
}

/** Options of {@linkcode GpuWindowScorer.create}. */
export interface GpuWindowScorerOptions extends GpuDeviceOptions {
  /** Run on this device instead of acquiring one. */
  readonly device?: GpuDevice;
  /** Bytes of reference log-probabilities kept on the device between cells (default 256 MiB). */
  readonly referenceCacheBytes?: number;
  /** GEMM variant (default: by adapter, see `GpuOps.create`). */
  readonly gemm?: GemmKind;
}

/** Why the WebGPU window scorer cannot run `model` (it then stays on the CPU path), or undefined. */
export function gpuUnsupported(model: ForwardModel): string | undefined {
  const c = model.config;
  if (model.weights.activations) return "activation quantization runs on the CPU path";
  if (model.weights.online) return "online rotations (QuaRot) run on the CPU path";
  if (c.moe || model.weights.layers.some((l) => l.mlp.kind !== "dense")) {
    return "Mixture-of-Experts blocks run on the CPU path";
  }
  const missing = unsupportedFeatures("the WebGPU window scorer", c, GPU_FEATURES);
  if (missing) return `${missing}; such models run on the CPU path`;
  if (
    model.weights.layers.some((l) => l.qBias || l.kBias || l.vBias || l.qNorm || l.kNorm)
  ) {
    return "q/k/v biases and q/k norms run on the CPU path";
  }
  if (isLazy(model.weights.embed) || listLinears(model.weights).some((x) => isLazy(x.matrix))) {
    return "weights kept in their stored dtype (streamed per block) run on the CPU path";
  }
  if (c.headDim > MAX_HEAD_DIM) return `head size ${c.headDim} exceeds ${MAX_HEAD_DIM}`;
  return undefined;
}

/** Scores perplexity windows with the WGSL kernels, weights and activations on the device. */
export class GpuWindowScorer implements WindowScorer {
  readonly id = "webgpu";
  readonly #ops: GpuOps;
  readonly #models = new Map<LlamaWeights, GpuModel>();
  readonly #scratch = new Map<string, Scratch>();
  /** Reference log-probabilities on the device, per reference model, by cache key. */
  readonly #refCache = new Map<LlamaWeights, Map<string, GPUBuffer>>();
  readonly #refBudget: number;
  #refBytes = 0;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(ops: GpuOps, refBudget: number) {
    this.#ops = ops;
    this.#refBudget = refBudget;
  }

  /** Acquires a device (unless given one) and loads the shaders. */
  static async create(options: GpuWindowScorerOptions = {}): Promise<GpuWindowScorer> {
    const dev = options.device ?? await GpuDevice.create(options);
    const ops = await GpuOps.create(dev, options.gemm);
    return new GpuWindowScorer(ops, options.referenceCacheBytes ?? 2 ** 28);
  }

  /** The adapter the windows run on (recorded in result rows). */
  get adapter(): GpuAdapterInfo {
    return this.#ops.dev.info;
  }

  /** The device. */
  get device(): GpuDevice {
    return this.#ops.dev;
  }

  /** Why this scorer cannot run `model` (it then stays on the CPU path), or undefined. */
  unsupported(model: ForwardModel): string | undefined {
    return gpuUnsupported(model);
  }

  /**
   * Scores `window` (BOS first) with `model`, and against `reference` when given (its
   * log-probabilities are kept on the device under `cacheKey` within the budget). Rejects with a
   * `GpuDeviceLostError` when the device is lost, with a `RangeError` naming the limit when a
   * buffer does not fit the device.
   */
  score(
    model: ForwardModel,
    window: readonly number[],
    reference?: { readonly model: ForwardModel; readonly cacheKey: string },
  ): Promise<WindowScore> {
    // Windows share the scratch buffers: one at a time.
    const run = this.#queue.then(() => this.#score(model, window, reference)).catch(
      async (e) => {
        throw await this.#ops.dev.explain(e);
      },
    );
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Frees the device buffers and the device. */
  close(): void {
    this.#ops.dev.destroy();
    this.#models.clear();
    this.#scratch.clear();
    this.#refCache.clear();
  }

  async #score(
    model: ForwardModel,
    window: readonly number[],
    reference?: { readonly model: ForwardModel; readonly cacheKey: string },
  ): Promise<WindowScore> {
    const why = this.unsupported(model) ?? (reference && this.unsupported(reference.model));
    if (why) throw new TypeError(`Cannot score on WebGPU: ${why}`);
    const c = model.config;
    const T = window.length;
    if (T < 2) throw new RangeError(`Cannot score a window of ${T} tokens`);
    if (T > c.maxSeqLen) {
      throw new RangeError(`Cannot score ${T} tokens: the model's context is ${c.maxSeqLen}`);
    }
    for (let t = 0; t < T; t++) {
      const id = window[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
        throw new RangeError(`forward: token id ${id} at ${t} is outside [0, ${c.vocabSize})`);
      }
    }
    const dev = this.#ops.dev;
    const gm = this.#upload(model, reference?.model);
    const gr = reference ? this.#upload(reference.model, model) : undefined;
    const s = this.#scratchFor(c, T);
    dev.write(s.tokens, Uint32Array.from(window));
    const V = c.vocabSize;
    let cache: Map<string, GPUBuffer> | undefined;
    if (reference) {
      cache = this.#refCache.get(reference.model.weights);
      if (!cache) this.#refCache.set(reference.model.weights, cache = new Map());
    }
    let refLp = reference ? cache!.get(reference.cacheKey) : undefined;
    let keepRef = false;
    if (reference && !refLp) {
      const out = refLp = dev.acquire(T * V * 4, "reference log-probabilities");
      keepRef = this.#refBytes + out.size <= this.#refBudget;
      try {
        await dev.run((pass) => this.#forward(pass, gr!, s, T, out));
      } catch (e) {
        dev.release(out);
        throw e;
      }
      if (keepRef) {
        cache!.set(reference.cacheKey, out);
        this.#refBytes += out.size;
      }
    }
    try {
      await dev.run((pass) => {
        this.#forward(pass, gm, s, T, s.logits);
        this.#ops.score(pass, s.logits, refLp, s.tokens, s.scores, { scored: T - 1, V });
      });
    } finally {
      if (refLp && reference && !keepRef && !cache!.has(reference.cacheKey)) {
        dev.release(refLp);
      }
    }
    const rows = await dev.readFloats(s.scores, (T - 1) * 4);
    let sumNll = 0, sumSqNll = 0, sumKl = 0, agree = 0;
    for (let t = 0; t < T - 1; t++) {
      const x = rows[t * 4]!;
      sumNll += x;
      sumSqNll += x * x;
      sumKl += rows[t * 4 + 1]!;
      agree += rows[t * 4 + 2]!;
    }
    return { scored: T - 1, sumNll, sumSqNll, sumKl, agree };
  }

  /** Records the forward pass of `T` tokens into log-probabilities `out` (`[T][vocab]`). */
  #forward(
    pass: GPUComputePassEncoder,
    m: GpuModel,
    s: Scratch,
    T: number,
    out: GPUBuffer,
  ): void {
    const ops = this.#ops;
    const c = m.config;
    const { dim, nHeads, nKvHeads, headDim, hiddenDim, normEps: eps } = c;
    const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
    ops.embed(pass, s.tokens, m.embed, s.x, { T, dim });
    for (const l of m.layers) {
      ops.rmsnorm(pass, s.x, l.attnNorm, s.xn, { T, D: dim, eps });
      ops.matmul(pass, s.xn, l.q, s.q, { M: T, N: qDim, K: dim });
      ops.matmul(pass, s.xn, l.k, s.k, { M: T, N: kvDim, K: dim });
      ops.matmul(pass, s.xn, l.v, s.v, { M: T, N: kvDim, K: dim });
      const style = c.ropeStyle;
      ops.rope(pass, s.q, m.cos, m.sin, { T, heads: nHeads, headDim, start: 0, style });
      ops.rope(pass, s.k, m.cos, m.sin, { T, heads: nKvHeads, headDim, start: 0, style });
      ops.attention(pass, s.q, s.k, s.v, s.att, { T, start: 0, nHeads, nKvHeads, headDim });
      ops.matmul(pass, s.att, l.o, s.x, { M: T, N: dim, K: qDim, acc: true });
      ops.rmsnorm(pass, s.x, l.mlpNorm, s.xn, { T, D: dim, eps });
      ops.matmul(pass, s.xn, l.gate, s.g, { M: T, N: hiddenDim, K: dim });
      ops.matmul(pass, s.xn, l.up, s.u, { M: T, N: hiddenDim, K: dim });
      ops.swiglu(pass, s.g, s.u, T * hiddenDim);
      ops.matmul(pass, s.g, l.down, s.x, { M: T, N: dim, K: hiddenDim, acc: true });
    }
    ops.rmsnorm(pass, s.x, m.norm, s.xn, { T, D: dim, eps });
    ops.matmul(pass, s.xn, m.lmHead, out, { M: T, N: c.vocabSize, K: dim });
    ops.logSoftmax(pass, out, T, c.vocabSize);
  }

  /** The device copy of `model`'s weights; keeps at most two models (`keep` is never evicted). */
  #upload(model: ForwardModel, keep?: ForwardModel): GpuModel {
    const w = model.weights;
    const hit = this.#models.get(w);
    if (hit) {
      this.#models.delete(w);
      this.#models.set(w, hit); // most recently used last
      return hit;
    }
    for (const [key, old] of this.#models) {
      if (this.#models.size < 2) break;
      if (key === keep?.weights) continue;
      for (const b of old.buffers) b.destroy();
      this.#models.delete(key);
      for (const b of this.#refCache.get(key)?.values() ?? []) {
        this.#refBytes -= b.size;
        this.#ops.dev.release(b);
      }
      this.#refCache.delete(key);
    }
    const dev = this.#ops.dev;
    const c = model.config;
    const buffers: GPUBuffer[] = [];
    const seen = new Map<Float32Array, GPUBuffer>();
    const put = (data: Float32Array, what: string): GPUBuffer => {
      let b = seen.get(data);
      if (!b) {
        dev.checkBindingSize(data.byteLength, what);
        b = dev.device.createBuffer({
          size: Math.max(4, data.byteLength),
          usage: 0x80 | 0x8, // STORAGE | COPY_DST
          label: what,
        });
        dev.write(b, data);
        seen.set(data, b);
        buffers.push(b);
      }
      return b;
    };
    const mat = (m: Matrix, what: string) => put(m.data, what);
    const rope = configRopeTable(c, c.maxSeqLen);
    const gm: GpuModel = {
      config: c,
      buffers,
      embed: mat(w.embed, "embedding"),
      lmHead: mat(w.lmHead, "classifier"),
      norm: put(w.norm, "final norm"),
      cos: put(rope.cos, "RoPE cos"),
      sin: put(rope.sin, "RoPE sin"),
      layers: w.layers.map((l, i) => {
        if (l.mlp.kind !== "dense") throw new TypeError(`layer ${i} is not dense`);
        return {
          attnNorm: put(l.attnNorm, `layer ${i} attention norm`),
          q: mat(l.q, `layer ${i} q`),
          k: mat(l.k, `layer ${i} k`),
          v: mat(l.v, `layer ${i} v`),
          o: mat(l.o, `layer ${i} o`),
          mlpNorm: put(l.mlpNorm, `layer ${i} MLP norm`),
          gate: mat(l.mlp.gate!, `layer ${i} gate`),
          up: mat(l.mlp.up, `layer ${i} up`),
          down: mat(l.mlp.down, `layer ${i} down`),
        };
      }),
    };
    this.#models.set(w, gm);
    return gm;
  }

  #scratchFor(c: LlamaConfig, T: number): Scratch {
    const key = [T, c.dim, c.nHeads, c.nKvHeads, c.headDim, c.hiddenDim, c.vocabSize].join(",");
    let s = this.#scratch.get(key);
    if (!s) {
      const dev = this.#ops.dev;
      const f = (n: number, what: string) => dev.acquire(n * 4, what);
      const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
      s = {
        x: f(T * c.dim, "hidden states"),
        xn: f(T * c.dim, "normalized states"),
        q: f(T * qDim, "queries"),
        k: f(T * kvDim, "keys"),
        v: f(T * kvDim, "values"),
        att: f(T * qDim, "attention output"),
        g: f(T * c.hiddenDim, "gate"),
        u: f(T * c.hiddenDim, "up"),
        logits: f(T * c.vocabSize, "logits"),
        tokens: f(T, "tokens"),
        scores: f(T * 4, "scores"),
      };
      this.#scratch.set(key, s);
    }
    return s;
  }
}

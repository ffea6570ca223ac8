/**
 * WebGPU kernels behind an asynchronous version of the {@linkcode Kernels} interface: each call
 * uploads its inputs, runs one WGSL kernel and reads the result back. This is the form the tests
 * compare against the TypeScript reference and the kernel benchmarks time; evaluation uses the
 * GPU-resident forward pass (`runners/webgpu_scorer.ts`), which keeps activations on the device.
 *
 * @module
 */

import type { PackedWeight } from "../../core/quantizer.ts";
import type { Matrix, RopeStyle } from "../../models/types.ts";
import type { RopeTable } from "../../models/rope.ts";
import { type AttentionArgs, validateAttention } from "../ref/attention.ts";
import { validatePacked } from "../ref/packed.ts";
import { GpuDevice, type GpuDeviceOptions } from "./device.ts";
import { type GemmKind, GpuOps, type GpuPacked } from "./ops.ts";

/** Each op of {@linkcode Kernels}, asynchronous, plus the ops only the GPU path needs. */
export interface AsyncKernels {
  /** Backend id, `webgpu`. */
  readonly id: string;
  /** `out[t][o] = Σ_i x[t][i] · w[o][i]`. */
  matmul(x: Float32Array, tokens: number, w: Matrix, out: Float32Array): Promise<void>;
  /** RMSNorm over `weight.length` features per token. */
  rmsnorm(
    x: Float32Array,
    tokens: number,
    weight: Float32Array,
    eps: number,
    out: Float32Array,
  ): Promise<void>;
  /** Fused dequant-matmul over packed codes. */
  matmulPacked(x: Float32Array, tokens: number, p: PackedWeight, out: Float32Array): Promise<void>;
  /** Causal grouped-query attention. */
  attention(...args: AttentionArgs): Promise<void>;
  /** Releases the device. */
  close(): void;
}

/** Uploads a packed weight (zero points widened to u32). */
export function uploadPacked(dev: GpuDevice, p: PackedWeight, what = "packed weight"): GpuPacked {
  return {
    bits: p.bits,
    rows: p.rows,
    cols: p.cols,
    groupSize: p.groupSize,
    groupsPerRow: p.groupsPerRow,
    wordsPerRow: p.wordsPerRow,
    words: dev.upload(p.words, `${what} codes`),
    scales: dev.upload(p.scales, `${what} scales`),
    zeros: dev.upload(Uint32Array.from(p.zeros), `${what} zeros`),
    groupIndex: dev.upload(p.groupIndex ?? new Uint32Array(1), `${what} group index`),
    useGroupIndex: p.groupIndex !== undefined,
  };
}

/** The WebGPU kernel set of one device. */
export class GpuKernels implements AsyncKernels {
  readonly id = "webgpu";
  /** The WGSL kernels this set records. */
  readonly ops: GpuOps;

  private constructor(ops: GpuOps) {
    this.ops = ops;
  }

  /** The device the kernels run on. */
  get device(): GpuDevice {
    return this.ops.dev;
  }

  /**
   * Acquires a device (see {@linkcode GpuDevice.create}) and loads the shaders; `gemm` forces a
   * GEMM variant (default: by adapter, see {@linkcode GpuOps.create}).
   */
  static async create(options: GpuDeviceOptions & { gemm?: GemmKind } = {}): Promise<GpuKernels> {
    return new GpuKernels(await GpuOps.create(await GpuDevice.create(options), options.gemm));
  }

  /** Kernels on an existing device. */
  static async on(dev: GpuDevice, gemm?: GemmKind): Promise<GpuKernels> {
    return new GpuKernels(await GpuOps.create(dev, gemm));
  }

  async matmul(x: Float32Array, tokens: number, w: Matrix, out: Float32Array): Promise<void> {
    const { rows, cols } = w;
    if (x.length < tokens * cols || out.length < tokens * rows || w.data.length !== rows * cols) {
      throw new RangeError(
        `matmul: x needs ${tokens}×${cols} and out ${tokens}×${rows} values, got ${x.length} and ${out.length}`,
      );
    }
    if (tokens === 0) return;
    const dev = this.ops.dev;
    const bx = dev.upload(x.subarray(0, tokens * cols), "matmul input");
    const bw = dev.upload(w.data, "matmul weight");
    const bo = dev.acquire(tokens * rows * 4, "matmul output");
    try {
      await dev.run((pass) => this.ops.matmul(pass, bx, bw, bo, { M: tokens, N: rows, K: cols }));
      out.set(await dev.readFloats(bo, tokens * rows));
    } finally {
      for (const b of [bx, bw, bo]) dev.release(b);
    }
  }

  async rmsnorm(
    x: Float32Array,
    tokens: number,
    weight: Float32Array,
    eps: number,
    out: Float32Array,
  ): Promise<void> {
    const D = weight.length;
    if (x.length < tokens * D || out.length < tokens * D) {
      throw new RangeError(`rmsnorm: x and out need ${tokens}×${D} values`);
    }
    if (tokens === 0) return;
    const dev = this.ops.dev;
    const bx = dev.upload(x.subarray(0, tokens * D), "rmsnorm input");
    const bw = dev.upload(weight, "rmsnorm weight");
    const bo = dev.acquire(tokens * D * 4, "rmsnorm output");
    try {
      await dev.run((pass) => this.ops.rmsnorm(pass, bx, bw, bo, { T: tokens, D, eps }));
      out.set(await dev.readFloats(bo, tokens * D));
    } finally {
      for (const b of [bx, bw, bo]) dev.release(b);
    }
  }

  async matmulPacked(
    x: Float32Array,
    tokens: number,
    p: PackedWeight,
    out: Float32Array,
  ): Promise<void> {
    validatePacked("matmulPacked", x, tokens, p, out);
    if (tokens === 0 || p.rows === 0) return;
    const dev = this.ops.dev;
    const bx = dev.upload(x.subarray(0, tokens * p.cols), "matmulPacked input");
    const gp = uploadPacked(dev, p);
    const bo = dev.acquire(tokens * p.rows * 4, "matmulPacked output");
    try {
      await dev.run((pass) => this.ops.matmulPacked(pass, bx, gp, bo, { M: tokens }));
      out.set(await dev.readFloats(bo, tokens * p.rows));
    } finally {
      for (const b of [bx, gp.words, gp.scales, gp.zeros, gp.groupIndex, bo]) dev.release(b);
    }
  }

  async attention(...args: AttentionArgs): Promise<void> {
    validateAttention("attention", ...args);
    const [q, k, v, T, start, shape, out] = args;
    if (T === 0) return;
    const { nHeads, nKvHeads, headDim } = shape;
    const qn = T * nHeads * headDim, kvn = (start + T) * nKvHeads * headDim;
    const dev = this.ops.dev;
    const bq = dev.upload(q.subarray(0, qn), "attention q");
    const bk = dev.upload(k.subarray(0, kvn), "attention k");
    const bv = dev.upload(v.subarray(0, kvn), "attention v");
    const bo = dev.acquire(qn * 4, "attention output");
    try {
      await dev.run((pass) =>
        this.ops.attention(pass, bq, bk, bv, bo, { T, start, nHeads, nKvHeads, headDim })
      );
      out.set(await dev.readFloats(bo, qn));
    } finally {
      for (const b of [bq, bk, bv, bo]) dev.release(b);
    }
  }

  /** RoPE in place on `v` (`[T][heads·headDim]`, positions `start…`), like `applyRope`. */
  async rope(
    v: Float32Array,
    T: number,
    heads: number,
    headDim: number,
    start: number,
    table: RopeTable,
    style: RopeStyle,
  ): Promise<void> {
    if (table.positions < start + T) {
      throw new RangeError(`RoPE table holds ${table.positions} positions, ${start + T} needed`);
    }
    if (T === 0) return;
    const n = T * heads * headDim;
    const dev = this.ops.dev;
    const bv = dev.upload(v.subarray(0, n), "rope values");
    const bc = dev.upload(table.cos, "rope cos");
    const bs = dev.upload(table.sin, "rope sin");
    try {
      await dev.run((pass) => this.ops.rope(pass, bv, bc, bs, { T, heads, headDim, start, style }));
      v.set(await dev.readFloats(bv, n));
    } finally {
      for (const b of [bv, bc, bs]) dev.release(b);
    }
  }

  /** Log-softmax of each `vocab`-sized row, in place (like `logSoftmaxRows`). */
  async logSoftmax(logits: Float32Array, vocab: number): Promise<void> {
    const rows = logits.length / vocab;
    if (!Number.isInteger(rows)) {
      throw new RangeError(`logSoftmax: ${logits.length} values are not rows of ${vocab}`);
    }
    if (rows === 0) return;
    const dev = this.ops.dev;
    const b = dev.upload(logits, "log-softmax rows");
    try {
      await dev.run((pass) => this.ops.logSoftmax(pass, b, rows, vocab));
      logits.set(await dev.readFloats(b, logits.length));
    } finally {
      dev.release(b);
    }
  }

  /**
   * Per-position `[nll, kl, agree, argmax]` rows (`[window.length − 1][4]`) from log-probabilities
   * `lp` and optionally the reference's (see `scoreWindow`).
   */
  async score(
    lp: Float32Array,
    refLp: Float32Array | undefined,
    window: readonly number[],
    vocab: number,
  ): Promise<Float32Array> {
    const scored = window.length - 1;
    if (lp.length < scored * vocab || (refLp && refLp.length < scored * vocab)) {
      throw new RangeError(`score: log-probabilities hold fewer than ${scored}×${vocab} values`);
    }
    if (scored < 1) return new Float32Array(0);
    const dev = this.ops.dev;
    const bl = dev.upload(lp.subarray(0, scored * vocab), "log-probabilities");
    const br = refLp
      ? dev.upload(refLp.subarray(0, scored * vocab), "reference log-probabilities")
      : undefined;
    const bt = dev.upload(Uint32Array.from(window), "tokens");
    const bo = dev.acquire(scored * 16, "scores");
    try {
      await dev.run((pass) => this.ops.score(pass, bl, br, bt, bo, { scored, V: vocab }));
      return await dev.readFloats(bo, scored * 4);
    } finally {
      for (const b of [bl, br, bt, bo]) if (b) dev.release(b);
    }
  }

  close(): void {
    this.ops.dev.destroy();
  }
}

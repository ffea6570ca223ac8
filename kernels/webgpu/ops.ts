/**
 * Recording WGSL kernel dispatches on GPU-resident buffers: the building blocks of both the
 * one-call-at-a-time {@linkcode GpuKernels} and the GPU-resident window forward pass. Nothing here
 * reads back; shapes are checked on the CPU before anything is recorded.
 *
 * @module
 */

import type { GpuDevice } from "./device.ts";
import { loadShaders, type Shaders } from "./shaders.ts";

/** Below this many tokens a linear layer runs as GEMV (one workgroup per output value). */
export const GEMV_MAX_TOKENS = 4;

/** Head sizes up to this run one thread per (token, head) (`attention_small`). */
export const SMALL_HEAD_DIM = 32;

/** Largest head size of the attention kernel (4 values per thread, 64 threads). */
export const MAX_HEAD_DIM = 256;

/** Packed weight buffers on the device (the {@linkcode PackedWeight} fields the kernel reads). */
export interface GpuPacked {
  readonly bits: number;
  readonly rows: number;
  readonly cols: number;
  readonly groupSize: number;
  readonly groupsPerRow: number;
  readonly wordsPerRow: number;
  readonly words: GPUBuffer;
  readonly scales: GPUBuffer;
  /** Zero points widened to u32. */
  readonly zeros: GPUBuffer;
  /** Column → group (act-order), or a placeholder when groups are contiguous. */
  readonly groupIndex: GPUBuffer;
  readonly useGroupIndex: boolean;
}

/**
 * How GEMMs of more than {@linkcode GEMV_MAX_TOKENS} tokens run: `tiled` (64×64 tiles through
 * workgroup memory, for GPUs) or `blocked` (4×4 register blocks from global memory, for fallback
 * CPU adapters, where workgroup barriers are expensive).
 */
export type GemmKind = "tiled" | "blocked";

/** The WGSL kernels of one device, recorded into a compute pass. */
export class GpuOps {
  /** The device the kernels run on. */
  readonly dev: GpuDevice;
  /** The GEMM variant in use. */
  readonly gemm: GemmKind;
  readonly #sh: Shaders;

  private constructor(dev: GpuDevice, shaders: Shaders, gemm: GemmKind) {
    this.dev = dev;
    this.#sh = shaders;
    this.gemm = gemm;
  }

  /** Loads the shaders for `dev`; `gemm` defaults to `blocked` on a fallback adapter. */
  static async create(dev: GpuDevice, gemm?: GemmKind): Promise<GpuOps> {
    return new GpuOps(dev, await loadShaders(), gemm ?? (dev.info.fallback ? "blocked" : "tiled"));
  }

  /** `out[M][N] (+)= x[M][K] · w[N][K]ᵀ` (accumulating into `out` when `acc`). */
  matmul(
    pass: GPUComputePassEncoder,
    x: GPUBuffer,
    w: GPUBuffer,
    out: GPUBuffer,
    dims: { M: number; N: number; K: number; acc?: boolean },
  ): void {
    const { M, N, K } = dims;
    const u = this.dev.uniform([M, N, K, dims.acc ? 1 : 0]);
    this.#linear(pass, this.#sh.matmul, [x, w, out, u], M, N, "matmul");
  }

  /** Fused dequant-matmul: `out[M][N] (+)= x[M][K] · dequant(p)ᵀ`. */
  matmulPacked(
    pass: GPUComputePassEncoder,
    x: GPUBuffer,
    p: GpuPacked,
    out: GPUBuffer,
    dims: { M: number; acc?: boolean },
  ): void {
    const { M } = dims;
    const u = this.dev.uniform([
      M,
      p.rows,
      p.cols,
      dims.acc ? 1 : 0,
      p.bits,
      p.groupSize,
      p.wordsPerRow,
      p.groupsPerRow,
      p.useGroupIndex ? 1 : 0,
      0,
      0,
      0,
    ]);
    const buffers = [x, p.words, p.scales, p.zeros, p.groupIndex, out, u];
    this.#linear(pass, this.#sh.matmul_packed, buffers, M, p.rows, "matmulPacked");
  }

  /**
   * Dispatches the linear-layer kernel of `source` (matmul_tiles.wgsl over that file's weights)
   * for `M` tokens and `N` outputs: `gemv` for few tokens, else `matmul_blocked` or the tiled
   * `matmul` as chosen at creation.
   */
  #linear(
    pass: GPUComputePassEncoder,
    source: string,
    buffers: GPUBuffer[],
    M: number,
    N: number,
    op: string,
  ): void {
    if (M <= GEMV_MAX_TOKENS) {
      this.dev.dispatch(pass, source, "gemv", buffers, M * N);
    } else if (this.gemm === "blocked") {
      const blocks = Math.ceil(M / 4) * Math.ceil(N / 4);
      this.dev.dispatch(pass, source, "matmul_blocked", buffers, Math.ceil(blocks / 64));
    } else {
      this.#checkTiles(M, N, op);
      this.dev.dispatch(pass, source, "matmul", buffers, [Math.ceil(N / 64), Math.ceil(M / 64), 1]);
    }
  }

  /** RMSNorm of `T` rows of `D` values. */
  rmsnorm(
    pass: GPUComputePassEncoder,
    x: GPUBuffer,
    weight: GPUBuffer,
    out: GPUBuffer,
    dims: { T: number; D: number; eps: number },
  ): void {
    const u = this.dev.uniform([dims.T, dims.D, dims.eps, 0], [2]);
    this.dev.dispatch(pass, this.#sh.rmsnorm, "rmsnorm", [x, weight, out, u], dims.T);
  }

  /** RoPE in place on `v` (`[T][heads·headDim]`) from a cos/sin table covering `start + T`. */
  rope(
    pass: GPUComputePassEncoder,
    v: GPUBuffer,
    cos: GPUBuffer,
    sin: GPUBuffer,
    dims: {
      T: number;
      heads: number;
      headDim: number;
      start: number;
      style: "interleaved" | "half";
    },
  ): void {
    const { T, heads, headDim, start } = dims;
    const u = this.dev.uniform([T, heads, headDim, start, dims.style === "half" ? 1 : 0, 0, 0, 0]);
    const n = T * heads * (headDim / 2);
    this.dev.dispatch(pass, this.#sh.rope, "rope", [v, cos, sin, u], Math.ceil(n / 64));
  }

  /** Causal grouped-query attention (see `attentionRef`). */
  attention(
    pass: GPUComputePassEncoder,
    q: GPUBuffer,
    k: GPUBuffer,
    v: GPUBuffer,
    out: GPUBuffer,
    dims: { T: number; start: number; nHeads: number; nKvHeads: number; headDim: number },
  ): void {
    const { T, start, nHeads, nKvHeads, headDim } = dims;
    if (headDim > MAX_HEAD_DIM) {
      throw new RangeError(
        `attention: head size ${headDim} exceeds the WebGPU kernel's MAX_HEAD_DIM ${MAX_HEAD_DIM}`,
      );
    }
    const u = this.dev.uniform(
      [T, start, nHeads, nKvHeads, headDim, 1 / Math.sqrt(headDim), 0, 0],
      [5],
    );
    const buffers = [q, k, v, out, u];
    if (headDim <= SMALL_HEAD_DIM) {
      const groups = Math.ceil(T * nHeads / 64);
      this.dev.dispatch(pass, this.#sh.attention, "attention_small", buffers, groups);
    } else {
      this.dev.dispatch(pass, this.#sh.attention, "attention", buffers, T * nHeads);
    }
  }

  /** `g = silu(g) · u` over `n` values. */
  swiglu(pass: GPUComputePassEncoder, g: GPUBuffer, u: GPUBuffer, n: number): void {
    const pu = this.dev.uniform([n, 0, 0, 0]);
    this.dev.dispatch(pass, this.#sh.swiglu, "swiglu", [g, u, pu], Math.ceil(n / 64));
  }

  /** `out[t] = table[tokens[t]]`, `dim` values per token. */
  embed(
    pass: GPUComputePassEncoder,
    tokens: GPUBuffer,
    table: GPUBuffer,
    out: GPUBuffer,
    dims: { T: number; dim: number },
  ): void {
    const u = this.dev.uniform([dims.T, dims.dim, 0, 0]);
    const n = dims.T * dims.dim;
    this.dev.dispatch(pass, this.#sh.embed, "embed", [tokens, table, out, u], Math.ceil(n / 64));
  }

  /** Log-softmax of `rows` rows of `V` values, in place. */
  logSoftmax(pass: GPUComputePassEncoder, x: GPUBuffer, rows: number, V: number): void {
    const u = this.dev.uniform([rows, V, 0, 0]);
    this.dev.dispatch(pass, this.#sh.log_softmax, "log_softmax", [x, u], rows);
  }

  /**
   * Per-position `(nll, kl, agree, argmax)` of the first `scored` rows into `out`
   * (`[scored][4]`); `ref` undefined means no reference (KL 0, agreement 1).
   */
  score(
    pass: GPUComputePassEncoder,
    lp: GPUBuffer,
    ref: GPUBuffer | undefined,
    tokens: GPUBuffer,
    out: GPUBuffer,
    dims: { scored: number; V: number },
  ): void {
    const u = this.dev.uniform([dims.scored, dims.V, ref ? 1 : 0, 0]);
    this.dev.dispatch(pass, this.#sh.score, "score", [lp, ref ?? lp, tokens, out, u], dims.scored);
  }

  #checkTiles(M: number, N: number, what: string): void {
    const max = this.dev.device.limits.maxComputeWorkgroupsPerDimension;
    if (Math.ceil(M / 64) > max || Math.ceil(N / 64) > max) {
      throw new RangeError(
        `${what}: ${M}×${N} outputs need more than maxComputeWorkgroupsPerDimension = ${max} tiles`,
      );
    }
  }
}

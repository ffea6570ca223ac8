/**
 * WASM SIMD128 kernels (`wasm-simd`): f32 GEMM/GEMV, RMSNorm and fused dequant-matmul over
 * packed low-bit codes, compiled from `kernels.c` (see README.md).
 *
 * Weights are copied into WASM memory once per weight object (cached by identity, freed when the
 * object is collected) in the kernels' own layouts; activations are copied per call.
 *
 * With `packed` (`--packed`, id suffix `+packed`), `matmul` of a float32-storage `PackedMatrix`
 * (RTN/GPTQ weights kept as codes) runs `matmulPacked` on its codes: evaluation through the
 * fused kernel instead of float32 panels ({@linkcode fusedDispatch}, {@linkcode withPackedLinears}).
 *
 * @example
 * ```ts ignore
 * import { wasmKernels } from "./mod.ts";
 * const kernels = await wasmKernels();
 * forward(model, tokens, { kernels });
 * ```
 *
 * @module
 */

import { dequantizePacked, type PackedWeight } from "../../core/quantizer.ts";
import type { LlamaLayer, LlamaWeights, Matrix } from "../../models/types.ts";
import { WEIGHT_BUDGET } from "../../models/residency.ts";
import { type AttentionArgs, validateAttention } from "../ref/attention.ts";
import { validatePacked } from "../ref/packed.ts";
import type { F64Kernels, Kernels } from "../types.ts";
import { wasmF64 } from "./f64.ts";
import { type FusedLayout, fusedLayout } from "./fused_layout.ts";
import { WasmHeap } from "./heap.ts";
import {
  compileWasm,
  instantiateWasm,
  loadWasm,
  relaxedSimdSupported,
  WASM_FMA_URL,
  WASM_MT_URL,
  WASM_URL,
  type WasmExports,
  type WasmHost,
} from "./load.ts";
import { KernelThreads, shareOf } from "./threads.ts";
import {
  type WindowForwardEnv,
  windowHead,
  windowHidden,
  windowUnsupported,
} from "./window_forward.ts";
import type { ForwardModel } from "../../models/types.ts";
import { isLazy, PackedMatrix, valuesOf } from "../../models/lazy_matrix.ts";
import { listLinears, mapLinears } from "../../models/linears.ts";

/** Output rows per packed f32 panel (NR in `kernels.c`). */
const NR = 8;
/** Floats of GEMM workspace per thread: `GEMM_WS` in `kernels.c` (≥ MC × KC of every build). */
const GEMM_WS = 132 * 768;
/** Values sampled to notice a weight matrix changed in place since it was copied. */
const SAMPLES = 16;
const EMPTY = new Float32Array(0);
/** Multiply-adds below which a call stays on one thread (waking workers costs ~10–50 µs). */
const MIN_SPLIT = 1 << 20;
/** Bytes of stack per worker thread (as `-z stack-size` in `build.ts`). */
const THREAD_STACK = 65536;

/** The `wasm-simd` kernel set; `matmulPacked` and `attention` are always present. */
export interface WasmKernels extends Kernels {
  /**
   * Fused dequant-matmul on integer dot products: each token's activations are rounded to int16
   * per segment of ≤ 256 columns within a group (step `max|x_seg| / 32767`), then the products
   * with the codes are exact; see README.md for the error budget.
   */
  matmulPacked(x: Float32Array, tokens: number, p: PackedWeight, out: Float32Array): void;
  attention(...args: AttentionArgs): void;
  /** Drops the cached WASM copy of a weight (call after changing its values in place). */
  forget(w: Matrix | PackedWeight): void;
  /** Float64 products (`gemm_f64`), on the kernel threads when there are any. */
  readonly f64: F64Kernels;
  /** Stops the kernel threads, if any (later calls then fail); a no-op for one thread. */
  close(): void;
}

/** Options of {@linkcode wasmKernels}. */
export interface WasmKernelsOptions {
  /**
   * Use the relaxed-SIMD build (`f32x4.relaxed_madd`, id `wasm-simd-fma`) when the engine runs
   * it, else the plain SIMD128 one. Off by default: relaxed results may differ in the last bits
   * between machines (fused or unfused multiply-add), plain SIMD128 results do not.
   */
  readonly fma?: boolean;
  /**
   * Kernel threads, the calling one included (default 1). Above 1, `kernels_mt.wasm` runs on
   * `threads − 1` workers plus the caller over one shared memory, each taking a share of the
   * output rows of `matmul` and `matmulPacked` (results are bit-identical to one thread); the
   * id becomes `wasm-simd-mt<threads>`. Not combinable with `fma` yet. Call `close()` when done.
   */
  readonly threads?: number;
  /**
   * Multiply-adds from which a call is split over the threads (default 2^20; smaller calls run
   * on the caller alone, as waking the workers costs ~10–50 µs). Tests lower it to split tiny
   * shapes.
   */
  readonly minSplit?: number;
  /**
   * Bytes of WASM memory weight panels may occupy (default a quarter of `LOWBIT_RESIDENT_BYTES`,
   * `WEIGHT_BUDGET` of `models/residency.ts`, at most {@linkcode PANEL_BUDGET}); the least
   * recently used are freed beyond it, and a model whose panels exceed it is not run as whole
   * windows (`windowLogProbs` returns undefined).
   */
  readonly panelBudget?: number;
  /**
   * Packed evaluation (id suffix `+packed`, e.g. `wasm-simd+packed`): `matmul` with a weight
   * that is a {@linkcode PackedMatrix} of float32 storage runs the fused `matmulPacked` on its
   * codes instead of materializing float32 panels (see {@linkcode fusedDispatch}); every other
   * weight goes the float32 way. Its numbers then differ from the float32 path by the fused
   * kernel's int16 rounding of the activations (README.md). Whole windows are declined for a
   * model with such a weight, so windows run op by op through the dispatch.
   */
  readonly packed?: boolean;
  /**
   * Called after each `matmul` of a {@linkcode PackedMatrix} under `packed`: `fused` is true when
   * `matmulPacked` ran on its codes, false when it fell back to float32 panels (16-bit storage).
   * For tests and benchmarks proving the dispatch.
   */
  readonly onPackedMatmul?: (w: PackedMatrix, fused: boolean) => void;
  /**
   * Where the binary is (default: `kernels.wasm`, `kernels_fma.wasm` or `kernels_mt.wasm`,
   * beside this module).
   */
  readonly url?: URL;
}

/** Id suffix of a kernel set with packed evaluation ({@linkcode WasmKernelsOptions.packed}). */
export const PACKED_SUFFIX = "+packed";

/**
 * Whether packed evaluation runs `w` through the fused kernel: a {@linkcode PackedMatrix} whose
 * storage rounding is a no-op (float32). A bf16 or f16 one is rounded to its storage format when
 * materialized (`roundToStorage`, as the reference's `W.to(dtype)`), which the fused kernel does
 * not do, so it stays on the float32 path, which computes exactly those rounded values.
 */
export function fusedDispatch(w: Matrix): w is PackedMatrix {
  return w instanceof PackedMatrix && w.dtype === "F32";
}

interface F32Entry {
  readonly ptr: number;
  /**
   * Identity of the values copied ({@linkcode arrayId}; not the array itself, so a streamed
   * weight's values can be dropped and reloaded — a WeakRef would keep them alive until the
   * end of the synchronous job, i.e. the whole forward pass).
   */
  readonly dataId: number;
  readonly sample: Float32Array;
  readonly bytes: number;
}

const arrayIds = new WeakMap<Float32Array, number>();
let nextArrayId = 1;

/** A number identifying an array object for as long as it lives (never reused). */
function arrayId(a: Float32Array): number {
  let id = arrayIds.get(a);
  if (id === undefined) arrayIds.set(a, id = nextArrayId++);
  return id;
}

/**
 * Bytes of WASM memory (at most 4 GiB in all) weight panels may occupy; beyond it the least
 * recently used are freed (and copied again when used again). A model whose weights do not fit
 * runs op by op instead of whole windows, which need every panel of the model at once.
 */
export const PANEL_BUDGET = 2.5 * 2 ** 30;

/** The default panel budget: a quarter of `WEIGHT_BUDGET` (`models/residency.ts`), at most 2.5 GiB. */
function defaultPanelBudget(): number {
  return Math.min(PANEL_BUDGET, Math.floor(WEIGHT_BUDGET / 4));
}

interface FusedEntry {
  readonly layout: FusedLayout;
  readonly codes: number;
  readonly scales: number;
  readonly zeros: number;
  readonly segmentEnds: number;
}

/** Writes `tokens` rows of `x` into `xp` in the layout's column order (zeros in the padding). */
export function permuteActivations(
  x: Float32Array,
  tokens: number,
  L: FusedLayout,
  xp: Float32Array,
): void {
  if (L.colmap === null) {
    xp.set(x.subarray(0, tokens * L.cols));
    return;
  }
  const map = L.colmap;
  for (let t = 0; t < tokens; t++) {
    const xo = t * L.cols, po = t * L.kp;
    for (let k = 0; k < L.kp; k++) {
      const c = map[k]!;
      xp[po + k] = c < 0 ? 0 : x[xo + c]!;
    }
  }
}

function sampleOf(data: Float32Array): Float32Array {
  const s = new Float32Array(SAMPLES);
  const n = data.length;
  for (let i = 0; i < SAMPLES && n > 0; i++) {
    s[i] = data[Math.floor((i * (n - 1)) / (SAMPLES - 1))]!;
  }
  return s;
}

/** Whether `data` still holds `sample` (its {@linkcode sampleOf}), without allocating. */
function sameSample(sample: Float32Array, data: Float32Array): boolean {
  const n = data.length;
  if (n === 0) return true;
  for (let i = 0; i < SAMPLES; i++) {
    if (!Object.is(sample[i], data[Math.floor((i * (n - 1)) / (SAMPLES - 1))])) return false;
  }
  return true;
}

/**
 * Loads the module and returns the `wasm-simd` kernel set (or `wasm-simd-fma`, see
 * {@linkcode WasmKernelsOptions.fma}); one WASM instance per call.
 */
export async function wasmKernels(options: WasmKernelsOptions = {}): Promise<WasmKernels> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError(`wasmKernels: threads must be a positive integer, got ${threads}`);
  }
  if (threads > 1) {
    if (options.fma === true) {
      throw new TypeError("wasmKernels: fma and threads > 1 cannot be combined (no such build)");
    }
    return await threadedKernels(threads, options.url ?? WASM_MT_URL, options);
  }
  const fma = options.fma === true && relaxedSimdSupported();
  const host: WasmHost = {};
  const wasm = await loadWasm(options.url ?? (fma ? WASM_FMA_URL : WASM_URL), host);
  const k = new WasmSimdKernels(
    wasm,
    (fma ? "wasm-simd-fma" : "wasm-simd") + suffix(options),
    host,
  );
  k.panelBudget = options.panelBudget ?? defaultPanelBudget();
  packedOptions(k, options);
  return detached(k);
}

async function threadedKernels(
  threads: number,
  url: URL,
  options: WasmKernelsOptions,
): Promise<WasmKernels> {
  const module = await compileWasm(url);
  const mem = WebAssembly.Module.imports(module).find((i) => i.kind === "memory");
  if (!mem) throw new Error(`wasm kernels: ${url.pathname} imports no shared memory`);
  // The module's minimum (16 pages) and maximum (4 GiB) as linked in build.ts.
  const memory = new WebAssembly.Memory({ initial: 16, maximum: 65536, shared: true });
  const host: WasmHost = {};
  const wasm = await instantiateWasm(module, url, memory, host);
  const heap = new WasmHeap(wasm.memory, Number(wasm.__heap_base.value));
  const stackTops: number[] = [];
  for (let i = 1; i < threads; i++) stackTops.push(heap.alloc(THREAD_STACK) + THREAD_STACK);
  const pool = await KernelThreads.start(module, memory, stackTops);
  const k = new WasmSimdKernels(wasm, `wasm-simd-mt${threads}${suffix(options)}`, host, heap, pool);
  k.minSplit = options.minSplit ?? MIN_SPLIT;
  k.panelBudget = options.panelBudget ?? defaultPanelBudget();
  packedOptions(k, options);
  return detached(k);
}

function suffix(options: WasmKernelsOptions): string {
  return options.packed === true ? PACKED_SUFFIX : "";
}

function packedOptions(k: WasmSimdKernels, options: WasmKernelsOptions): void {
  k.packed = options.packed === true;
  if (options.onPackedMatmul) k.onPackedMatmul = options.onPackedMatmul;
}

function detached(k: WasmSimdKernels): WasmKernels {
  // Plain closures, so the methods work detached (`const { matmul } = kernels`) like the
  // reference's functions.
  return {
    id: k.id,
    matmul: (x, tokens, w, out) => k.matmul(x, tokens, w, out),
    rmsnorm: (x, tokens, weight, eps, out) => k.rmsnorm(x, tokens, weight, eps, out),
    matmulPacked: (x, tokens, p, out) => k.matmulPacked(x, tokens, p, out),
    attention: (q, kk, v, T, start, shape, out) => k.attention(q, kk, v, T, start, shape, out),
    windowLogProbs: (model, window) => k.windowLogProbs(model, window),
    windowHidden: (model, window) => k.windowHidden(model, window),
    windowPath: (model) => k.windowPath(model),
    headLogProbs: (model, x, rows) => k.headLogProbs(model, x, rows),
    forget: (w) => k.forget(w),
    f64: k.f64,
    close: () => k.close(),
  };
}

class WasmSimdKernels implements WasmKernels {
  readonly id: string;
  readonly #wasm: WasmExports;
  /** What the instance calls back into (`forward_window`'s activation quantizer). */
  readonly #host: WasmHost;
  /** Per-thread attention scratch of `#attentionAt` (byte offset, bytes). */
  #attn = 0;
  #attnBytes = 0;
  readonly #heap: WasmHeap;
  readonly #f32 = new WeakMap<Matrix, F32Entry>();
  /** Every weight with panels in WASM memory, least recently used first, and their bytes. */
  readonly #lru = new Map<Matrix, number>();
  #lruBytes = 0;
  /** Weights a whole-window call is using: never evicted while it builds its descriptor. */
  #pinned: Set<Matrix> | undefined;
  readonly #fused = new WeakMap<PackedWeight, FusedEntry>();
  readonly #reclaim: FinalizationRegistry<number[]>;
  #scratch = 0;
  #scratchBytes = 0;
  /** GEMM workspace of every thread (index 0: the caller). */
  readonly #ws: number[] = [];
  readonly #pool: KernelThreads | undefined;
  /** Float64 products over this set's memory and threads. */
  readonly f64: F64Kernels;
  /** See {@linkcode WasmKernelsOptions.minSplit}. */
  minSplit = MIN_SPLIT;
  /** See {@linkcode WasmKernelsOptions.panelBudget}. */
  panelBudget = PANEL_BUDGET;
  /** See {@linkcode WasmKernelsOptions.packed}. */
  packed = false;
  /** See {@linkcode WasmKernelsOptions.onPackedMatmul}. */
  onPackedMatmul: ((w: PackedMatrix, fused: boolean) => void) | undefined;

  constructor(
    wasm: WasmExports,
    id: string,
    host: WasmHost,
    heap?: WasmHeap,
    pool?: KernelThreads,
  ) {
    this.id = id;
    this.#wasm = wasm;
    this.#host = host;
    this.#heap = heap ?? new WasmHeap(wasm.memory, Number(wasm.__heap_base.value));
    this.#pool = pool;
    this.#reclaim = new FinalizationRegistry((ptrs) => this.#freeAll(ptrs));
    for (let i = 0; i < (pool?.threads ?? 1); i++) this.#ws.push(this.#heap.alloc(GEMM_WS * 4));
    this.f64 = wasmF64({
      id,
      wasm,
      heap: this.#heap,
      alloc: (bytes) => this.#allocEvicting(bytes),
      ws: this.#ws,
      pool,
      minSplit: () => this.minSplit,
    });
    // The whole-window passes' GEMMs, split over the kernel threads (forward.c's lowbit_gemm).
    // Always GEMM (never the one-token GEMV, whose sums run in another order): the bits of
    // forward.c's own gemm_f32 calls.
    if (pool) host.gemm = (m, n, k, a, bp, c) => this.#gemmAt(m, n, k, a, bp, c, false);
    if (pool) host.attention = (...a) => this.#attentionAt(...a);
  }

  close(): void {
    this.#pool?.close();
  }

  windowLogProbs(model: ForwardModel, window: ArrayLike<number>): Float32Array | undefined {
    const x = this.windowHidden(model, window);
    return x && this.headLogProbs(model, x, window.length);
  }

  windowPath(model: ForwardModel): string {
    if (this.packed && hasFusedLinear(model)) return "op by op (packed weights)";
    const why = windowUnsupported(model);
    if (why !== undefined) return `op by op (${why})`;
    const perCall = this.#blockLayers(model);
    if (perCall === undefined) return "op by op (a block's panels exceed the panel budget)";
    return perCall === model.config.nLayers ? "whole window" : "whole window, block by block";
  }

  windowHidden(model: ForwardModel, window: ArrayLike<number>): Float32Array | undefined {
    const perCall = this.#blockLayers(model);
    if (perCall === undefined) return undefined;
    return this.#pinning(() => windowHidden(this.#windowEnv(), model, window, perCall));
  }

  headLogProbs(model: ForwardModel, x: Float32Array, rows: number): Float32Array | undefined {
    if (this.packed && hasFusedLinear(model)) return undefined;
    if (windowUnsupported(model) !== undefined) return undefined;
    return this.#pinning(() => windowHead(this.#windowEnv(), model, x, rows));
  }

  /**
   * Blocks per whole-window call: all of them when every panel fits the budget, else one (a
   * streamed model: one block's panels at a time), else undefined (op by op).
   */
  #blockLayers(model: ForwardModel): number | undefined {
    // Packed weights need the op-by-op dispatch (the window pass reads f32 panels of every
    // weight).
    if (this.packed && hasFusedLinear(model)) return undefined;
    const { weights: w, config: c } = model;
    if (panelBytes(model) <= this.panelBudget) return c.nLayers;
    const block = Math.max(...w.layers.map((l) => layerPanelBytes(l)));
    return block <= this.panelBudget ? 1 : undefined;
  }

  /** Runs `f` with every panel it touches kept from eviction until it returns. */
  #pinning<T>(f: () => T): T {
    this.#pinned = new Set();
    try {
      return f();
    } finally {
      this.#pinned = undefined;
    }
  }

  #windowEnv(): WindowForwardEnv {
    return {
      wasm: this.#wasm,
      host: this.#host,
      heap: this.#heap,
      ws: this.#ws[0]!,
      panels: (w) => this.#panels(w),
      scratch: (bytes) => this.#scratchFor(bytes),
      release: () => {
        if (this.#pinned) this.#pinned = new Set();
      },
      threaded: this.#pool !== undefined,
    };
  }

  /** Threads to split `units` of `macs` multiply-adds over (1: run on the caller alone). */
  #split(units: number, macs: number): number {
    const pool = this.#pool;
    if (!pool || macs < this.minSplit) return 1;
    return Math.min(pool.threads, units);
  }

  matmul(x: Float32Array, tokens: number, w: Matrix, out: Float32Array): void {
    if (this.packed && w instanceof PackedMatrix) {
      const fused = fusedDispatch(w);
      if (fused) this.matmulPacked(x, tokens, w.packed, out);
      else this.#matmulF32(x, tokens, w, out);
      this.onPackedMatmul?.(w, fused);
      return;
    }
    this.#matmulF32(x, tokens, w, out);
  }

  #matmulF32(x: Float32Array, tokens: number, w: Matrix, out: Float32Array): void {
    const { rows, cols } = w;
    if (
      !Number.isInteger(tokens) || tokens < 0 || (!isLazy(w) && w.data.length !== rows * cols) ||
      x.length < tokens * cols || out.length < tokens * rows
    ) {
      throw new RangeError(
        `matmul: x holds ${x.length} values for ${tokens}×${cols}, out ${out.length} for ` +
          `${tokens}×${rows}, weight ${rows}×${cols} holds ${valuesOf(w).length}`,
      );
    }
    if (tokens === 0 || rows === 0) return;
    const bp = this.#panels(w);
    const xBytes = tokens * cols * 4;
    const base = this.#scratchFor(xBytes + tokens * rows * 4);
    const heap = this.#heap;
    heap.f32(base, tokens * cols).set(x.subarray(0, tokens * cols));
    const o = base + xBytes;
    this.#gemmAt(tokens, rows, cols, base, bp, o);
    out.set(heap.f32(o, tokens * rows));
  }

  /**
   * The whole-window pass's attention (`forward.c`'s lowbit_attention), query heads split among
   * the kernel threads, each with its own transposed keys, queries and scores; every head is
   * computed as on one thread.
   */
  #attentionAt(
    T: number,
    nHeads: number,
    nKvHeads: number,
    hd: number,
    q: number,
    k: number,
    v: number,
    out: number,
  ): void {
    const pool = this.#pool!;
    const threads = Math.min(pool.threads, nHeads);
    const T4 = Math.ceil(T / 4) * 4;
    const floats = 2 * hd * T4 + 4 * T4 + 8;
    const need = threads * floats * 4;
    if (need > this.#attnBytes) {
      if (this.#attnBytes > 0) this.#heap.free(this.#attn);
      this.#attnBytes = 0;
      this.#attn = this.#allocEvicting(need);
      this.#attnBytes = need;
    }
    const args = (i: number) => {
      const at = this.#attn + i * floats * 4;
      const [h0, h1] = shareOf(nHeads, threads, i);
      const kT = at, qT = at + hd * T4 * 4, sc = at + 2 * hd * T4 * 4;
      return [T, nHeads, nKvHeads, hd, q, k, v, kT, qT, out, sc, h0, h1] as const;
    };
    const wasm = this.#wasm;
    pool.run(
      "attention_heads",
      Array.from({ length: threads - 1 }, (_, i) => args(i + 1)),
      () => wasm.attention_heads(...args(0)),
    );
  }

  /**
   * `c[tokens][rows] = a[tokens][cols] · panels bp`, all in WASM memory: on the caller alone, or
   * split by panels over the kernel threads (each thread's outputs disjoint and computed exactly
   * as on one thread); one token takes the GEMV unless `gemv` is false.
   */
  #gemmAt(
    tokens: number,
    rows: number,
    cols: number,
    base: number,
    bp: number,
    o: number,
    gemv = true,
  ): void {
    const one = gemv && tokens === 1;
    const panels = Math.ceil(rows / NR);
    const wasm = this.#wasm;
    const T = this.#split(panels, tokens * rows * cols);
    if (T === 1) {
      if (one) wasm.gemv_f32(rows, cols, base, bp, o, 0, panels);
      else wasm.gemm_f32(tokens, rows, cols, base, bp, o, this.#ws[0]!, 0, panels);
    } else {
      // Thread i owns panels (8 output columns each) shareOf(panels, T, i): disjoint outputs,
      // each computed exactly as on one thread.
      const args = (i: number) => {
        const [p0, p1] = shareOf(panels, T, i);
        return one
          ? [rows, cols, base, bp, o, p0, p1]
          : [tokens, rows, cols, base, bp, o, this.#ws[i]!, p0, p1];
      };
      const [p0, p1] = shareOf(panels, T, 0);
      this.#pool!.run(
        one ? "gemv_f32" : "gemm_f32",
        Array.from({ length: T - 1 }, (_, i) => args(i + 1)),
        () =>
          one
            ? wasm.gemv_f32(rows, cols, base, bp, o, p0, p1)
            : wasm.gemm_f32(tokens, rows, cols, base, bp, o, this.#ws[0]!, p0, p1),
      );
    }
  }

  rmsnorm(
    x: Float32Array,
    tokens: number,
    weight: Float32Array,
    eps: number,
    out: Float32Array,
  ): void {
    const d = weight.length;
    if (
      !Number.isInteger(tokens) || tokens < 0 || x.length < tokens * d || out.length < tokens * d
    ) {
      throw new RangeError(
        `rmsnorm: x holds ${x.length} and out ${out.length} values, need ${tokens}×${d}`,
      );
    }
    if (tokens === 0 || d === 0) return;
    const n = tokens * d;
    const base = this.#scratchFor((2 * n + d) * 4);
    const heap = this.#heap;
    heap.f32(base, n).set(x.subarray(0, n));
    heap.f32(base + n * 4, d).set(weight);
    const o = base + (n + d) * 4;
    this.#wasm.rmsnorm_f32(tokens, d, base, base + n * 4, eps, o);
    out.set(heap.f32(o, n));
  }

  matmulPacked(x: Float32Array, tokens: number, p: PackedWeight, out: Float32Array): void {
    validatePacked("matmulPacked", x, tokens, p, out);
    if (tokens === 0 || p.rows === 0) return;
    const e = this.#fusedEntry(p);
    const L = e.layout;
    const xpBytes = tokens * L.kp * 4;
    const T = this.#split(L.blocks, tokens * L.rows * L.cols);
    // Per thread, xq: one token's int16 activations; sxs: its per-segment steps and sums.
    const xqBytes = Math.ceil(L.kp / 8) * 16;
    const sxsBytes = Math.ceil(L.segments / 2) * 16;
    const base = this.#scratchFor(xpBytes + T * (xqBytes + sxsBytes) + tokens * L.rows * 4);
    const xp = this.#heap.f32(base, tokens * L.kp);
    permuteActivations(x, tokens, L, xp);
    const o = base + xpBytes + T * (xqBytes + sxsBytes);
    // Thread i owns the 4-row blocks shareOf(blocks, T, i).
    const args = (i: number) => {
      const [b0, b1] = shareOf(L.blocks, T, i);
      const xq = base + xpBytes + i * (xqBytes + sxsBytes);
      return [
        L.bits,
        L.planes,
        tokens,
        L.rows,
        b0 * 4,
        Math.min(L.rows, b1 * 4),
        L.chunks,
        L.segments,
        e.codes,
        e.scales,
        e.zeros,
        e.segmentEnds,
        base,
        xq,
        xq + xqBytes,
        o,
      ];
    };
    const wasm = this.#wasm;
    const dq = wasm.dq_gemv as (...a: number[]) => number;
    const own = () => dq(...args(0));
    let rc = 0;
    if (T === 1) rc = own();
    else {
      this.#pool!.run(
        "dq_gemv",
        Array.from({ length: T - 1 }, (_, i) => args(i + 1)),
        () => void (rc = own()),
      );
    }
    if (rc !== 0) throw new RangeError(`matmulPacked: ${L.bits}-bit codes are not supported`);
    out.set(this.#heap.f32(o, tokens * L.rows));
  }

  attention(...args: AttentionArgs): void {
    validateAttention("attention", ...args);
    const [q, k, v, T, start, shape, out] = args;
    if (T === 0) return;
    const { nHeads, nKvHeads, headDim } = shape;
    const qn = T * nHeads * headDim, kvn = (start + T) * nKvHeads * headDim;
    const base = this.#scratchFor((2 * qn + 2 * kvn + start + T + 4) * 4);
    const heap = this.#heap;
    const kp = base + qn * 4, vp = kp + kvn * 4, op = vp + kvn * 4, sp = op + qn * 4;
    heap.f32(base, qn).set(q.subarray(0, qn));
    heap.f32(kp, kvn).set(k.subarray(0, kvn));
    heap.f32(vp, kvn).set(v.subarray(0, kvn));
    this.#wasm.attention_f32(T, start, nHeads, nKvHeads, headDim, base, kp, vp, op, sp);
    out.set(heap.f32(op, qn));
  }

  forget(w: Matrix | PackedWeight): void {
    if ("data" in w) {
      const e = this.#f32.get(w);
      const bytes = this.#lru.get(w);
      if (bytes !== undefined) {
        this.#lru.delete(w);
        this.#lruBytes -= bytes;
      }
      if (e) {
        this.#f32.delete(w);
        this.#reclaim.unregister(e);
        this.#heap.free(e.ptr);
      }
    } else {
      const e = this.#fused.get(w);
      if (e) {
        this.#fused.delete(w);
        this.#reclaim.unregister(e);
        this.#freeAll([e.codes, e.scales, e.zeros, e.segmentEnds]);
      }
    }
  }

  /** Allocates `bytes`, freeing least recently used unpinned panels while memory runs out. */
  #allocEvicting(bytes: number): number {
    for (;;) {
      try {
        return this.#heap.alloc(bytes);
      } catch (e) {
        const victim = [...this.#lru.keys()].find((m) => !this.#pinned?.has(m));
        if (!(e instanceof RangeError) || victim === undefined) throw e;
        this.forget(victim);
      }
    }
  }

  #freeAll(ptrs: number[]): void {
    for (const p of ptrs) this.#heap.free(p);
  }

  /** A scratch block of at least `bytes`, reused across calls. */
  #scratchFor(bytes: number): number {
    if (bytes > this.#scratchBytes) {
      const grown = Math.max(bytes, 2 * this.#scratchBytes);
      if (this.#scratchBytes > 0) this.#heap.free(this.#scratch);
      this.#scratchBytes = 0;
      try {
        this.#scratch = this.#heap.alloc(grown);
        this.#scratchBytes = grown;
      } catch {
        this.#scratch = this.#allocEvicting(bytes);
        this.#scratchBytes = bytes;
      }
    }
    return this.#scratch;
  }

  /** The weight's packed panels in WASM memory, copied on first use. */
  #panels(w: Matrix): number {
    const cached = this.#f32.get(w);
    this.#pinned?.add(w);
    // A lazy matrix's values never change (they are re-read from its source): its panels are
    // valid as long as it lives. A plain one's array may be replaced or written in place.
    const lazy = isLazy(w);
    if (
      cached && (lazy || (cached.dataId === arrayId(w.data) && sameSample(cached.sample, w.data)))
    ) {
      this.#lru.delete(w);
      this.#lru.set(w, cached.bytes);
      return cached.ptr;
    }
    if (cached) this.forget(w);
    const { rows, cols } = w;
    const data = valuesOf(w);
    const panels = Math.ceil(rows / NR);
    const bytes = panels * cols * NR * 4;
    for (const old of this.#lru.keys()) {
      if (this.#lruBytes + bytes <= this.panelBudget) break;
      if (!this.#pinned?.has(old)) this.forget(old);
    }
    const ptr = this.#allocEvicting(bytes);
    this.#lru.set(w, bytes);
    this.#lruBytes += bytes;
    const bp = this.#heap.f32(ptr, panels * cols * NR);
    bp.fill(0);
    for (let r = 0; r < rows; r++) {
      const dst = Math.floor(r / NR) * cols * NR + (r % NR);
      const src = r * cols;
      for (let k = 0; k < cols; k++) bp[dst + k * NR] = data[src + k]!;
    }
    const entry: F32Entry = lazy
      ? { ptr, dataId: 0, sample: EMPTY, bytes }
      : { ptr, dataId: arrayId(data), sample: sampleOf(data), bytes };
    this.#f32.set(w, entry);
    this.#reclaim.register(w, [ptr], entry);
    return ptr;
  }

  #fusedEntry(p: PackedWeight): FusedEntry {
    const cached = this.#fused.get(p);
    if (cached) return cached;
    const layout = fusedLayout(p);
    const heap = this.#heap;
    const codes = heap.alloc(layout.codes.length * 2);
    const scales = heap.alloc(layout.scales.length * 4);
    const zeros = heap.alloc(layout.zeros.length * 4);
    const segmentEnds = heap.alloc(layout.segmentEnds.length * 4);
    heap.u16(codes, layout.codes.length).set(layout.codes);
    heap.f32(scales, layout.scales.length).set(layout.scales);
    heap.f32(zeros, layout.zeros.length).set(layout.zeros);
    heap.u32(segmentEnds, layout.segmentEnds.length).set(layout.segmentEnds);
    const entry: FusedEntry = { layout, codes, scales, zeros, segmentEnds };
    this.#fused.set(p, entry);
    this.#reclaim.register(p, [codes, scales, zeros, segmentEnds], entry);
    return entry;
  }
}

/** Whether a weight of `model` is run by the fused kernel under packed evaluation. */
function hasFusedLinear(model: ForwardModel): boolean {
  const w = model.weights;
  if (fusedDispatch(w.lmHead)) return true;
  for (const l of w.layers) {
    if (
      l.mlp.kind === "moe" && [l.mlp.router, l.mlp.sharedGate].some((m) => m && fusedDispatch(m))
    ) {
      return true;
    }
  }
  return listLinears(w).some(({ matrix }) => fusedDispatch(matrix));
}

/**
 * `weights` with every float32 linear whose packed codes (`packed`, by linear name as methods
 * return them) dequantize to its values bit for bit replaced by a {@linkcode PackedMatrix} of
 * those codes, so packed evaluation runs it fused; other linears (16-bit storage, values the
 * codes do not reproduce, no codes) are kept. Returns the weights and how many linears are
 * packed of how many.
 */
export function withPackedLinears(
  weights: LlamaWeights,
  packed: ReadonlyMap<string, PackedWeight>,
): { weights: LlamaWeights; packed: number; linears: number } {
  let n = 0, total = 0;
  const out = mapLinears(weights, (site, m) => {
    total++;
    if (m instanceof PackedMatrix) {
      if (fusedDispatch(m)) n++;
      return m;
    }
    const p = packed.get(site.name);
    if (!p || isLazy(m) || (m.dtype !== undefined && m.dtype !== "F32")) return m;
    if (p.rows !== m.rows || p.cols !== m.cols) return m;
    const a = dequantizePacked(p), b = m.data;
    for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return m;
    n++;
    return new PackedMatrix(p);
  });
  return { weights: out, packed: n, linears: total };
}

/** Bytes of WASM panels of one matrix (rows rounded up to panels of NR). */
function matrixPanelBytes(m: Matrix): number {
  return Math.ceil(m.rows / NR) * NR * m.cols * 4;
}

/** Bytes of WASM panels of one decoder block's weights. */
function layerPanelBytes(l: LlamaLayer): number {
  const size = matrixPanelBytes;
  let n = size(l.q) + size(l.k) + size(l.v) + size(l.o);
  const experts = l.mlp.kind === "dense" ? [l.mlp] : l.mlp.experts;
  if (l.mlp.kind === "moe") n += size(l.mlp.router);
  for (const e of experts) {
    for (const m of [e.gate, e.up, e.down]) if (m) n += size(m);
  }
  return n;
}

/** Bytes of WASM panels every weight of `model` needs. */
function panelBytes(model: ForwardModel): number {
  const w = model.weights;
  return w.layers.reduce((n, l) => n + layerPanelBytes(l), matrixPanelBytes(w.lmHead));
}

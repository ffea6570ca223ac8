/**
 * Choosing a kernel backend by name: `ts` (the plain-TypeScript reference, id `js-ref`), `wasm`
 * (WASM SIMD128, id `wasm-simd`), `wasm-fma` (relaxed-SIMD FMA where the engine runs it, id
 * `wasm-simd-fma`), `wasm-mt` (WASM SIMD128 on N kernel threads, id `wasm-simd-mt<N>`; the
 * numbers of `wasm-simd`, bit for bit), `webgpu` (perplexity windows on the GPU through a
 * {@linkcode WindowScorer}, everything else on WASM; id `webgpu+wasm-simd`), or `auto`
 * (WebGPU when a hardware adapter exists, else WASM, falling back to the reference with a reason
 * when the binary cannot be loaded). With `packed` (`--packed`; `wasm`, `wasm-fma` and `wasm-mt`
 * only) the WASM set runs float32-storage packed weights through the fused dequant kernel, id
 * suffix `+packed` (`wasm-simd+packed`, `wasm-simd-mt2+packed`). A software (fallback) adapter such as llvmpipe is used only
 * when `webgpu` is asked for by name, and rows record it as such. The id of the backend that
 * actually ran goes in every result row, and worker threads rebuild the same backend from that
 * id.
 *
 * @module
 */

import { refKernels } from "../kernels/ref/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { PACKED_SUFFIX, wasmKernels } from "../kernels/wasm/mod.ts";
import type { WindowScorer } from "./types.ts";
import { adapterInfo, requestAdapter } from "../kernels/webgpu/device.ts";
import { GpuWindowScorer } from "./webgpu_scorer.ts";

/** Backends that take `packed` (`--packed`). */
const PACKED_BACKENDS: readonly string[] = ["wasm", "wasm-fma", "wasm-mt"];

/** Backend names accepted by `--backend`. */
export const BACKENDS = ["ts", "wasm", "wasm-fma", "wasm-mt", "webgpu", "auto"] as const;

/** A backend name. */
export type Backend = typeof BACKENDS[number];

/** The kernels of a backend, and why `auto` fell back to the reference, if it did. */
export interface SelectedKernels {
  readonly kernels: Kernels;
  readonly fallback?: string;
  /** Perplexity windows on the GPU (`webgpu`, or `auto` with a hardware adapter). */
  readonly windowScorer?: WindowScorer;
  /** Why `auto` did not take WebGPU (no adapter, or only a software one). */
  readonly note?: string;
}

/** Options of {@linkcode selectKernels}. */
export interface SelectOptions {
  /** Kernel threads of `wasm-mt`, the caller included (default: the number of cores). */
  readonly kernelThreads?: number;
  /**
   * Packed evaluation (`wasm`, `wasm-fma`, `wasm-mt`): float32-storage packed weights run
   * through the fused dequant kernel (`WasmKernelsOptions.packed`); a `TypeError` for other
   * backends.
   */
  readonly packed?: boolean;
  /** Where `webgpu`/`auto` get their adapter (default `navigator.gpu.requestAdapter`); tests. */
  readonly requestAdapter?: () => Promise<GPUAdapter | undefined>;
}

/** Loads the kernels of `backend`; throws a `TypeError` listing the valid names. */
export async function selectKernels(
  backend: string,
  options: SelectOptions = {},
): Promise<SelectedKernels> {
  const packed = options.packed === true;
  if (packed && !PACKED_BACKENDS.includes(backend)) {
    throw new TypeError(
      `--packed needs --backend ${PACKED_BACKENDS.join(", ")} (the fused dequant kernel is ` +
        `WASM's), not "${backend}"`,
    );
  }
  switch (backend) {
    case "ts":
      return { kernels: refKernels };
    case "wasm":
      return { kernels: await wasmKernels({ packed }) };
    case "wasm-fma":
      return { kernels: await wasmKernels({ fma: true, packed }) };
    case "wasm-mt": {
      // One thread is plain `wasm-simd` (the same numbers, no workers).
      const threads = options.kernelThreads ?? navigator.hardwareConcurrency;
      return { kernels: await wasmKernels({ threads, packed }) };
    }
    case "webgpu": {
      const adapter = await (options.requestAdapter ?? requestAdapter)();
      if (!adapter) throw new Error("Cannot use --backend webgpu: no WebGPU adapter found");
      return await webgpu(adapter);
    }
    case "auto": {
      const adapter = await (options.requestAdapter ?? requestAdapter)();
      const info = adapter ? adapterInfo(adapter) : undefined;
      let note: string;
      if (adapter && info && !info.fallback) {
        try {
          return await webgpu(adapter);
        } catch (e) {
          note = `WebGPU adapter ${info.description} failed (${message(e)})`;
        }
      } else {
        note = info
          ? `WebGPU not used: only a fallback adapter (${info.description})`
          : "WebGPU not used: no adapter";
      }
      try {
        return { kernels: await wasmKernels(), note };
      } catch (e) {
        return {
          kernels: refKernels,
          note,
          fallback: `WASM kernels unavailable (${message(e)}); using the TypeScript reference`,
        };
      }
    }
    default:
      throw new TypeError(`Unknown backend "${backend}"; valid: ${BACKENDS.join(", ")}`);
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** WebGPU windows on `adapter`; the synchronous kernels are WASM's (the reference without it). */
async function webgpu(adapter: GPUAdapter): Promise<SelectedKernels> {
  const windowScorer = await GpuWindowScorer.create({ adapter });
  let sync: Kernels;
  let fallback: string | undefined;
  try {
    sync = await wasmKernels();
  } catch (e) {
    sync = refKernels;
    fallback = `WASM kernels unavailable (${
      message(e)
    }); the TypeScript reference runs beside WebGPU`;
  }
  return {
    kernels: { ...sync, id: `webgpu+${sync.id}` },
    windowScorer,
    ...(fallback ? { fallback } : {}),
  };
}

/**
 * The kernels with this id (`js-ref`, `wasm-simd`, `wasm-simd-fma`, `wasm-simd-mt<N>`, each WASM
 * one optionally with the suffix `+packed`), for worker threads that must compute exactly what
 * the main thread's backend computes. Throws when this
 * engine cannot provide that id (e.g. no relaxed SIMD for `wasm-simd-fma`).
 *
 * `wasm-simd-mt<N>` is served by single-threaded `wasm-simd` kernels keeping the id: the numbers
 * are the same bit for bit, and evaluation workers already run in parallel, so kernel threads
 * inside them would only oversubscribe the cores.
 */
export async function kernelsById(id: string): Promise<Kernels> {
  // `webgpu+X`: work off the GPU (calibration, other tasks, worker threads) runs on X.
  if (id.startsWith("webgpu+")) return { ...(await kernelsById(id.slice(7))), id };
  const packed = id.endsWith(PACKED_SUFFIX);
  const base = packed ? id.slice(0, -PACKED_SUFFIX.length) : id;
  let k: Kernels;
  if (id === refKernels.id) k = refKernels;
  else if (base === "wasm-simd") k = await wasmKernels({ packed });
  else if (base === "wasm-simd-fma") k = await wasmKernels({ fma: true, packed });
  else if (/^wasm-simd-mt[1-9][0-9]*$/.test(base)) {
    return { ...(await wasmKernels({ packed })), id };
  } else {
    throw new TypeError(
      `Unknown kernel id "${id}"; known: js-ref, wasm-simd, wasm-simd-fma, wasm-simd-mt<N> ` +
        `(each also with ${PACKED_SUFFIX}), webgpu+<id>`,
    );
  }
  if (k.id !== id) throw new Error(`Kernel backend "${id}" is not available here (got "${k.id}")`);
  return k;
}

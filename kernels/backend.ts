/**
 * Choosing a kernel backend by name: `ts` (the plain-TypeScript reference, id `js-ref`), `wasm`
 * (WASM SIMD128, id `wasm-simd`), `wasm-fma` (relaxed-SIMD FMA where the engine runs it, id
 * `wasm-simd-fma`), `wasm-mt` (WASM SIMD128 on N kernel threads, id `wasm-simd-mt<N>`; the
 * numbers of `wasm-simd`, bit for bit), `webgpu` (perplexity windows on the GPU through a
 * {@linkcode WindowScorer}, everything else on WASM; id `webgpu+wasm-simd`), or `auto`
 * (WebGPU when a hardware adapter exists, else WASM, falling back to the reference with a reason
 * when the binary cannot be loaded). A software (fallback) adapter such as llvmpipe is used only
 * when `webgpu` is asked for by name, and rows record it as such. The id of the backend that
 * actually ran goes in every result row, and worker threads rebuild the same backend from that
 * id.
 *
 * @module
 */

import { refKernels } from "./ref/mod.ts";
import type { Kernels } from "./types.ts";
import { wasmKernels } from "./wasm/mod.ts";
import type { WindowScorer } from "../tasks/types.ts";
import { adapterInfo, requestAdapter } from "./webgpu/device.ts";
import { GpuWindowScorer } from "./webgpu/window_scorer.ts";

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
  /** Where `webgpu`/`auto` get their adapter (default `navigator.gpu.requestAdapter`); tests. */
  readonly requestAdapter?: () => Promise<GPUAdapter | undefined>;
}

/** Loads the kernels of `backend`; throws a `TypeError` listing the valid names. */
export async function selectKernels(
  backend: string,
  options: SelectOptions = {},
): Promise<SelectedKernels> {
  switch (backend) {
    case "ts":
      return { kernels: refKernels };
    case "wasm":
      return { kernels: await wasmKernels() };
    case "wasm-fma":
      return { kernels: await wasmKernels({ fma: true }) };
    case "wasm-mt": {
      // One thread is plain `wasm-simd` (the same numbers, no workers).
      const threads = options.kernelThreads ?? navigator.hardwareConcurrency;
      return { kernels: await wasmKernels({ threads }) };
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
 * The kernels with this id (`js-ref`, `wasm-simd`, `wasm-simd-fma`, `wasm-simd-mt<N>`), for worker
 * threads that must compute exactly what the main thread's backend computes. Throws when this
 * engine cannot provide that id (e.g. no relaxed SIMD for `wasm-simd-fma`).
 *
 * `wasm-simd-mt<N>` is served by single-threaded `wasm-simd` kernels keeping the id: the numbers
 * are the same bit for bit, and evaluation workers already run in parallel, so kernel threads
 * inside them would only oversubscribe the cores.
 */
export async function kernelsById(id: string): Promise<Kernels> {
  // `webgpu+X`: work off the GPU (calibration, other tasks, worker threads) runs on X.
  if (id.startsWith("webgpu+")) return { ...(await kernelsById(id.slice(7))), id };
  let k: Kernels;
  if (id === refKernels.id) k = refKernels;
  else if (id === "wasm-simd") k = await wasmKernels();
  else if (id === "wasm-simd-fma") k = await wasmKernels({ fma: true });
  else if (/^wasm-simd-mt[1-9][0-9]*$/.test(id)) return { ...(await wasmKernels()), id };
  else {
    throw new TypeError(
      `Unknown kernel id "${id}"; known: js-ref, wasm-simd, wasm-simd-fma, wasm-simd-mt<N>, webgpu+<id>`,
    );
  }
  if (k.id !== id) throw new Error(`Kernel backend "${id}" is not available here (got "${k.id}")`);
  return k;
}

/**
 * Choosing a kernel backend by name: `ts` (the plain-TypeScript reference, id `js-ref`), `wasm`
 * (WASM SIMD128, id `wasm-simd`), `wasm-fma` (relaxed-SIMD FMA where the engine runs it, id
 * `wasm-simd-fma`), `wasm-mt` (WASM SIMD128 on N kernel threads, id `wasm-simd-mt<N>`; the
 * numbers of `wasm-simd`, bit for bit), or `auto` (WASM, falling back to the reference with a
 * reason when the binary cannot be loaded). The id of the backend that actually ran goes in every
 * result row, and worker threads rebuild the same backend from that id.
 *
 * @module
 */

import { refKernels } from "./ref/mod.ts";
import type { Kernels } from "./types.ts";
import { wasmKernels } from "./wasm/mod.ts";

/** Backend names accepted by `--backend`. */
export const BACKENDS = ["ts", "wasm", "wasm-fma", "wasm-mt", "auto"] as const;

/** A backend name. */
export type Backend = typeof BACKENDS[number];

/** The kernels of a backend, and why `auto` fell back to the reference, if it did. */
export interface SelectedKernels {
  readonly kernels: Kernels;
  readonly fallback?: string;
}

/** Options of {@linkcode selectKernels}. */
export interface SelectOptions {
  /** Kernel threads of `wasm-mt`, the caller included (default: the number of cores). */
  readonly kernelThreads?: number;
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
    case "auto":
      try {
        return { kernels: await wasmKernels() };
      } catch (e) {
        return {
          kernels: refKernels,
          fallback: `WASM kernels unavailable (${
            e instanceof Error ? e.message : String(e)
          }); using the TypeScript reference`,
        };
      }
    default:
      throw new TypeError(`Unknown backend "${backend}"; valid: ${BACKENDS.join(", ")}`);
  }
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
  let k: Kernels;
  if (id === refKernels.id) k = refKernels;
  else if (id === "wasm-simd") k = await wasmKernels();
  else if (id === "wasm-simd-fma") k = await wasmKernels({ fma: true });
  else if (/^wasm-simd-mt[1-9][0-9]*$/.test(id)) return { ...(await wasmKernels()), id };
  else {
    throw new TypeError(
      `Unknown kernel id "${id}"; known: js-ref, wasm-simd, wasm-simd-fma, wasm-simd-mt<N>`,
    );
  }
  if (k.id !== id) throw new Error(`Kernel backend "${id}" is not available here (got "${k.id}")`);
  return k;
}

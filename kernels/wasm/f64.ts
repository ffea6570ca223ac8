/**
 * Float64 products ({@linkcode F64Kernels}) on the WASM kernels: `gemm_f64` in `kernels.c`, its
 * rows split over the kernel threads. Arrays are allocated in the kernels' WASM memory; arrays
 * from elsewhere are computed by the reference loops, which give the same bits.
 *
 * @module
 */

import { gemmSubRef, validateGemmSub } from "../ref/f64.ts";
import type { F64Kernels } from "../types.ts";
import type { WasmHeap } from "./heap.ts";
import type { WasmExports } from "./load.ts";
import { type KernelThreads, shareOf } from "./threads.ts";

/** What {@linkcode wasmF64} computes with. */
export interface WasmF64Env {
  readonly id: string;
  readonly wasm: WasmExports;
  readonly heap: WasmHeap;
  /** Allocates `bytes` in the heap, evicting cached weight panels when it is full. */
  readonly alloc: (bytes: number) => number;
  /** GEMM workspace of every thread (index 0: the caller). */
  readonly ws: readonly number[];
  readonly pool: KernelThreads | undefined;
  /** Multiply-adds from which a call is split over the threads. */
  readonly minSplit: () => number;
}

/** The {@linkcode F64Kernels} of one WASM kernel set. */
export function wasmF64(env: WasmF64Env): F64Kernels {
  const ptrs = new WeakMap<Float64Array, number>();
  const inMemory = (x: Float64Array) =>
    ptrs.has(x) && x.buffer === env.wasm.memory.buffer && x.length > 0;
  return {
    id: env.id,
    alloc(lengths) {
      for (const n of lengths) {
        if (!Number.isInteger(n) || n < 0) {
          throw new RangeError(`f64 alloc: lengths must be integers ≥ 0, got ${lengths}`);
        }
      }
      // Every block first, then the views: a growth detaches the views made before it. A block
      // that does not fit frees those before it and throws (the caller may compute elsewhere).
      const at: number[] = [];
      try {
        for (const n of lengths) at.push(env.alloc(Math.max(n, 1) * 8));
      } catch (e) {
        for (const p of at) env.heap.free(p);
        throw e;
      }
      return at.map((p, i) => {
        const v = env.heap.f64(p, lengths[i]!);
        v.fill(0);
        ptrs.set(v, p);
        return v;
      });
    },
    release(arrays) {
      for (const v of arrays) {
        const p = ptrs.get(v);
        if (p === undefined) continue;
        ptrs.delete(v);
        env.heap.free(p);
      }
    },
    gemmSub(m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc) {
      if (!inMemory(a) || !inMemory(b) || !inMemory(c)) {
        gemmSubRef(m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc);
        return;
      }
      validateGemmSub(m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc);
      if (m === 0 || n === 0 || k === 0) return;
      const ap = a.byteOffset + aOff * 8;
      const bp = b.byteOffset + bOff * 8;
      const cp = c.byteOffset + cOff * 8;
      const tb = transB ? 1 : 0;
      const wasm = env.wasm;
      const pool = env.pool;
      const T = pool && m * n * k >= env.minSplit() ? Math.min(pool.threads, m) : 1;
      if (T === 1) {
        wasm.gemm_f64(n, k, ap, lda, bp, ldb, tb, cp, ldc, env.ws[0]!, 0, m);
        return;
      }
      // Thread i owns rows shareOf(m, T, i): disjoint outputs, each computed as on one thread.
      const args = (i: number) => {
        const [r0, r1] = shareOf(m, T, i);
        return [n, k, ap, lda, bp, ldb, tb, cp, ldc, env.ws[i]!, r0, r1];
      };
      const [r0, r1] = shareOf(m, T, 0);
      pool!.run(
        "gemm_f64",
        Array.from({ length: T - 1 }, (_, i) => args(i + 1)),
        () => wasm.gemm_f64(n, k, ap, lda, bp, ldb, tb, cp, ldc, env.ws[0]!, r0, r1),
      );
    },
  };
}

/**
 * Worker threads for zero-shot scoring: each doc's encoded requests go to one worker
 * (doc `i` → worker `i mod threads`), which scores them in order exactly as the in-thread path
 * does; the caller puts results back in doc order. Numbers do not depend on the thread count:
 * every sequence is scored on its own and the prefix cache only skips identical work.
 *
 * Workers compute with the reference kernels, so the pool is used only when the task runs with
 * them (`canUseLoglikPool`).
 *
 * @module
 */

import type { ForwardModel } from "./forward.ts";
import type { Kernels } from "../kernels/types.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import type { EncodedPair, LoglikScore } from "./loglikelihood.ts";
import { WebWorker } from "../core/web_worker.ts";

/** Messages to a worker. */
export type LoglikRequestMsg =
  | { readonly op: "model"; readonly model: ForwardModel; readonly kernelsId: string }
  | {
    readonly op: "score";
    readonly id: number;
    readonly bos: number;
    readonly pairs: readonly EncodedPair[];
  };

/** Messages from a worker. */
export type LoglikResponseMsg =
  | { readonly id: number; readonly scores: LoglikScore[]; readonly error?: undefined }
  | { readonly id: number; readonly error: string; readonly scores?: undefined };

/** Whether workers can rebuild `kernels` from its id (the reference and the WASM backends). */
export function canUseLoglikPool(kernels: Kernels): boolean {
  return [refKernels.id, "wasm-simd", "wasm-simd-fma"].includes(kernels.id);
}

/** Workers that score encoded requests of one model; `close()` when done. */
export class LoglikPool {
  readonly threads: number;
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<
    number,
    { resolve: (s: LoglikScore[]) => void; reject: (e: Error) => void }
  >();
  #nextId = 0;

  /** Starts `threads` workers holding `model`, computing with the kernels of id `kernelsId`. */
  constructor(threads: number, model: ForwardModel, kernelsId: string = refKernels.id) {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${threads}`);
    }
    this.threads = threads;
    const plain: ForwardModel = { config: model.config, weights: model.weights };
    for (let i = 0; i < threads; i++) {
      const w = new WebWorker(new URL("./loglik_worker.ts", import.meta.url).href, {
        type: "module",
      });
      w.onmessage = (e: MessageEvent<LoglikResponseMsg>) => {
        const p = this.#pending.get(e.data.id);
        if (!p) return;
        this.#pending.delete(e.data.id);
        if (e.data.error !== undefined) p.reject(new Error(e.data.error));
        else p.resolve(e.data.scores);
      };
      w.onerror = (e) => {
        e.preventDefault();
        const err = new Error(`scoring worker failed: ${e.message}`);
        for (const p of this.#pending.values()) p.reject(err);
        this.#pending.clear();
      };
      w.postMessage({ op: "model", model: plain, kernelsId } satisfies LoglikRequestMsg);
      this.#workers.push(w);
    }
  }

  /** Scores the requests of doc number `index` (in order). */
  score(index: number, bos: number, pairs: readonly EncodedPair[]): Promise<LoglikScore[]> {
    const id = this.#nextId++;
    const worker = this.#workers[index % this.threads]!;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ op: "score", id, bos, pairs } satisfies LoglikRequestMsg);
    });
  }

  /** Stops the workers. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers.length = 0;
    const err = new Error("scoring pool closed");
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}

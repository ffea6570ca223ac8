/**
 * The pool of Web Workers that evaluate in parallel: perplexity windows (one window per worker at
 * a time; window `i` always goes to worker `i mod threads`, so each worker's cache of reference
 * hidden states is reused by every later cell of the run) and the log-likelihood requests of
 * multiple-choice docs (doc `i` to worker `i mod threads`).
 *
 * Numbers are identical to the in-thread path: each window is computed by the same code, and
 * results are aggregated in window order by the caller.
 *
 * @module
 */

import type { ForwardModel } from "./forward.ts";
import type { WindowScore } from "./window_score.ts";
import type { EncodedPair, LoglikScore } from "./loglikelihood.ts";
import { WebWorker } from "../core/web_worker.ts";

/** Messages to a worker. */
export type PoolRequest =
  | { readonly op: "backend"; readonly id: string }
  | { readonly op: "model"; readonly model: ForwardModel }
  | { readonly op: "reference"; readonly model: ForwardModel; readonly cacheBytes: number }
  | {
    readonly op: "ppl";
    readonly id: number;
    readonly window: readonly number[];
    /** Present when KL/agreement against the reference are wanted; the reference cache key. */
    readonly cacheKey?: string;
  }
  | {
    readonly op: "loglik";
    readonly id: number;
    readonly bos: number;
    readonly pairs: readonly EncodedPair[];
  };

/** Messages from a worker. */
export type PoolResponse =
  | { readonly id: number; readonly score: WindowScore; readonly error?: undefined }
  | { readonly id: number; readonly scores: LoglikScore[]; readonly error?: undefined }
  | { readonly id: number; readonly error: string };

/** Workers that evaluate windows; create once per run, `close()` at the end. */
export class EvalPool {
  readonly threads: number;
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<
    number,
    { resolve: (r: PoolResponse) => void; reject: (e: Error) => void }
  >();
  readonly #cacheBytes: number;
  #nextId = 0;
  /** Set when a worker died: every later request fails at once instead of waiting forever. */
  #broken: Error | undefined;
  #model: ForwardModel | undefined;
  #reference: ForwardModel | undefined;

  /** Kernel id the workers compute with (`js-ref`, `wasm-simd`, …). */
  readonly kernelsId: string;

  /**
   * Starts `threads` workers computing with the kernels of id `kernelsId` (default the
   * reference); `referenceCacheBytes` is split evenly between them.
   */
  constructor(threads: number, referenceCacheBytes = 2 ** 30, kernelsId = "js-ref") {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${threads}`);
    }
    this.threads = threads;
    this.kernelsId = kernelsId;
    this.#cacheBytes = Math.floor(referenceCacheBytes / threads);
    for (let i = 0; i < threads; i++) {
      const w = new WebWorker(new URL("./eval_worker.ts", import.meta.url).href, {
        type: "module",
      });
      w.onmessage = (e: MessageEvent<PoolResponse>) => {
        const p = this.#pending.get(e.data.id);
        if (!p) return;
        this.#pending.delete(e.data.id);
        if ("error" in e.data && e.data.error !== undefined) p.reject(new Error(e.data.error));
        else p.resolve(e.data);
      };
      w.onerror = (e) => {
        e.preventDefault();
        const err = new Error(`evaluation worker failed: ${e.message}`);
        this.#broken = err;
        for (const p of this.#pending.values()) p.reject(err);
        this.#pending.clear();
      };
      w.postMessage({ op: "backend", id: kernelsId } satisfies PoolRequest);
      this.#workers.push(w);
    }
  }

  /** Makes `model` (and `reference`) current on every worker; no-op when they already are. */
  use(model: ForwardModel, reference?: ForwardModel): void {
    if (reference && reference !== this.#reference) {
      this.#reference = reference;
      for (const w of this.#workers) {
        w.postMessage({ op: "reference", model: plain(reference), cacheBytes: this.#cacheBytes });
      }
    }
    if (model !== this.#model) {
      this.#model = model;
      for (const w of this.#workers) w.postMessage({ op: "model", model: plain(model) });
    }
  }

  /** Scores window number `index` with the current model (and reference when `cacheKey` is set). */
  async scoreWindow(
    index: number,
    window: readonly number[],
    cacheKey?: string,
  ): Promise<WindowScore> {
    const r = await this.#send(
      index,
      (id) =>
        cacheKey === undefined ? { op: "ppl", id, window } : { op: "ppl", id, window, cacheKey },
    );
    return (r as { score: WindowScore }).score;
  }

  /** The log-likelihoods of doc number `index`'s requests (in order) under the current model. */
  async loglikelihood(
    index: number,
    bos: number,
    pairs: readonly EncodedPair[],
  ): Promise<LoglikScore[]> {
    const r = await this.#send(index, (id) => ({ op: "loglik", id, bos, pairs }));
    return (r as { scores: LoglikScore[] }).scores;
  }

  #send(index: number, request: (id: number) => PoolRequest): Promise<PoolResponse> {
    if (this.#broken) return Promise.reject(this.#broken);
    const id = this.#nextId++;
    const worker = this.#workers[index % this.threads]!;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage(request(id));
    });
  }

  /** Stops the workers. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers.length = 0;
    const err = new Error("evaluation pool closed");
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}

/** Config and weights only: a model object may carry things workers cannot receive (a tokenizer). */
function plain(m: ForwardModel): ForwardModel {
  return { config: m.config, weights: m.weights };
}

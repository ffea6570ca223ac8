/**
 * The one interface tasks run a model through, in lm-evaluation-harness's shape: perplexity
 * windows scored (`scoreWindows`, lm-eval's `loglikelihood_rolling` over non-overlapping windows),
 * log-likelihoods of context/continuation pairs (`loglikelihood`) and, through `kernels`, greedy
 * generation. Where the work runs — the GPU window scorer, the worker pool, or the kernels of this
 * thread — is decided here from what the runner was built with; tasks never branch on it.
 *
 * @module
 */

import type { Kernels } from "../kernels/types.ts";
import type { ForwardModel } from "../models/types.ts";
import type { EvalPool } from "./eval_pool.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { type EncodedPair, ForwardLogProbs, type LoglikScore, scorePair } from "./loglikelihood.ts";
import type { WindowScorer } from "./types.ts";
import { scoreWindowChunked, windowHidden, type WindowScore } from "./window_score.ts";

/** A full-precision model plus a cache of its per-window final hidden states. */
export interface WindowReference {
  readonly model: ForwardModel;
  /** Cache keyed by the caller's window keys. */
  readonly cache: Map<string, Float32Array>;
  /** Bytes the cache may hold; beyond it, reference outputs are recomputed. */
  readonly cacheBudgetBytes: number;
}

/** What {@linkcode ModelRunner.scoreWindows} returns. */
export interface ScoredWindows {
  readonly scores: WindowScore[];
  /** Whether the windows were compared against a reference (KL, top-1 agreement). */
  readonly compared: boolean;
  /**
   * Where and how the windows ran, recorded in the row: the GPU scorer's id, or the kernels' id
   * with their path for the model (`wasm-simd: whole window`, `js-ref: op by op`), on worker
   * threads when the pool scored them.
   */
  readonly windowsOn: string;
}

/** Runs models for tasks; see the module doc. */
export class ModelRunner {
  /** The kernels of this thread (generation, one-off forward passes). */
  readonly kernels: Kernels;
  readonly #pool: EvalPool | undefined;
  readonly #scorer: WindowScorer | undefined;

  /**
   * `pool`: worker threads for windows and log-likelihoods (its models must be plain in-memory
   * copies); `windowScorer`: the GPU scorer, preferred for windows of the models it runs.
   */
  constructor(kernels: Kernels, options: { pool?: EvalPool; windowScorer?: WindowScorer } = {}) {
    this.kernels = kernels;
    this.#pool = options.pool;
    this.#scorer = options.windowScorer;
  }

  /**
   * Scores every window: on the GPU window scorer when it runs both models, else on the worker
   * pool, else on these kernels. A reference whose weights are the model's own (the
   * full-precision cell) is not compared against (KL 0, agreement 1, as without one); on this
   * thread its hidden states then fill its cache for the later cells (the GPU scorer and the
   * pool's workers keep caches of their own). `keyOf(w)` keys window `w` in a reference cache.
   */
  async scoreWindows(
    model: ForwardModel,
    windows: readonly number[][],
    options: {
      readonly reference?: WindowReference;
      readonly keyOf: (w: number) => string;
      readonly onWindow?: () => void;
    },
  ): Promise<ScoredWindows> {
    const { keyOf } = options;
    const own = options.reference !== undefined && options.reference.model.weights === model.weights
      ? options.reference
      : undefined;
    const ref = own ? undefined : options.reference;
    const progress = () => options.onWindow?.();
    const gpu = this.#scorer;
    if (
      gpu !== undefined && gpu.unsupported(model) === undefined &&
      (!ref || gpu.unsupported(ref.model) === undefined)
    ) {
      const scores: WindowScore[] = [];
      for (const [w, window] of windows.entries()) {
        scores.push(
          await gpu.score(
            model,
            window,
            ref ? { model: ref.model, cacheKey: keyOf(w) } : undefined,
          ),
        );
        progress();
      }
      return { scores, compared: ref !== undefined, windowsOn: gpu.id };
    }
    if (this.#pool) {
      const pool = this.#pool;
      pool.use(model, ref?.model);
      const scores = await Promise.all(windows.map(async (window, w) => {
        const s = await pool.scoreWindow(w, window, ref ? keyOf(w) : undefined);
        progress();
        return s;
      }));
      return {
        scores,
        compared: ref !== undefined,
        windowsOn: `${this.#path(model)} on ${pool.threads} worker threads`,
      };
    }
    const scores = windows.map((window, w) => {
      const hidden = own
        ? this.#referenceHidden(own, keyOf(w), window)
        : windowHidden(model, window, this.kernels);
      const reference = ref
        ? { model: ref.model, hidden: this.#referenceHidden(ref, keyOf(w), window) }
        : undefined;
      const s = scoreWindowChunked(model, hidden, window, this.kernels, reference);
      progress();
      return s;
    });
    return { scores, compared: ref !== undefined, windowsOn: this.#path(model) };
  }

  /** The kernels' id and their path for `model`'s windows. */
  #path(model: ForwardModel): string {
    return `${this.kernels.id}: ${this.kernels.windowPath?.(model) ?? "op by op"}`;
  }

  /**
   * Log-likelihood of every doc's pairs (`undefined` docs are skipped), on the worker pool's
   * threads when there are several and the kernels can be rebuilt there (the pool's workers then
   * hold `model`), else on this thread.
   * The numbers are the same either way.
   */
  async loglikelihood(
    model: ForwardModel,
    bos: number,
    encoded: readonly (readonly EncodedPair[] | undefined)[],
    onDoc?: () => void,
  ): Promise<(LoglikScore[] | undefined)[]> {
    const progress = () => onDoc?.();
    const pool = this.#pool;
    // The workers must compute with these kernels: the numbers are then those of this thread.
    if (
      pool && pool.threads > 1 && pool.kernelsId === this.kernels.id && canUsePoolFor(this.kernels)
    ) {
      pool.use(model);
      return await Promise.all(encoded.map(async (pairs, d) => {
        const s = pairs ? await pool.loglikelihood(d, bos, pairs) : undefined;
        progress();
        return s;
      }));
    }
    const lm = new ForwardLogProbs(model, this.kernels);
    return encoded.map((pairs) => {
      const s = pairs?.map((p) => scorePair(lm, bos, p));
      progress();
      return s;
    });
  }

  /** The reference's hidden states of `window`, from its cache or computed (and cached if room). */
  #referenceHidden(ref: WindowReference, key: string, window: number[]): Float32Array {
    const hit = ref.cache.get(key);
    if (hit) return hit;
    const h = windowHidden(ref.model, window, this.kernels);
    let used = 0;
    for (const v of ref.cache.values()) used += v.byteLength;
    if (used + h.byteLength <= ref.cacheBudgetBytes) ref.cache.set(key, h);
    return h;
  }
}

/** Whether pool workers rebuild `kernels` exactly from its id (the reference and the WASM backends). */
function canUsePoolFor(kernels: Kernels): boolean {
  return [refKernels.id, "wasm-simd", "wasm-simd-fma"].includes(kernels.id);
}

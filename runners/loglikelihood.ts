/**
 * Log-likelihoods of context/continuation pairs, lm-evaluation-harness's `LM.loglikelihood`:
 * `[bos] + context + continuation` left-truncated to the model's context, Σ log p over the
 * continuation's tokens and whether greedy decoding would have produced each of them. Scored on
 * the forward pass with a key/value cache shared by a doc's choices.
 *
 * @module
 */

import { createKvCache, forward, type ForwardModel, type KvCache } from "./forward.ts";
import type { Kernels } from "../kernels/types.ts";
import { logSoftmaxRows } from "./window_score.ts";

/** A request's tokens, split the lm-eval way (no BOS). */
export interface EncodedPair {
  readonly context: readonly number[];
  readonly continuation: readonly number[];
}

/** The score of one request. */
export interface LoglikScore {
  /** Σ log p(continuation token), nats. */
  readonly ll: number;
  /** Whether greedy decoding would have produced exactly the continuation tokens. */
  readonly isGreedy: boolean;
  /** Continuation tokens scored. */
  readonly tokens: number;
  /** Whether the sequence was cut on the left to fit the model's context. */
  readonly truncated: boolean;
}

/** What scoring needs of a language model: next-token log-probabilities. */
export interface LogProbModel {
  readonly vocabSize: number;
  /** Tokens the model reads at most (its context window). */
  readonly maxLength: number;
  /**
   * Log-probabilities of the next token after positions `from … tokens.length − 1` of `tokens`,
   * `[tokens.length − from][vocabSize]`.
   */
  nextLogProbs(tokens: readonly number[], from: number): Float32Array;
}

/**
 * A {@linkcode LogProbModel} over the forward pass. It keeps the key/value cache of the last
 * sequence and recomputes only from the first position where the next sequence differs (or
 * from `from`, whichever is earlier): the choices of a doc share their context's positions.
 */
export class ForwardLogProbs implements LogProbModel {
  readonly vocabSize: number;
  readonly maxLength: number;
  readonly #model: ForwardModel;
  readonly #kernels: Kernels | undefined;
  #cache: KvCache | undefined;
  #cached: readonly number[] = [];

  /** Wraps a model; `kernels` default to the reference backend. */
  constructor(model: ForwardModel, kernels?: Kernels) {
    this.#model = model;
    this.#kernels = kernels;
    this.vocabSize = model.config.vocabSize;
    this.maxLength = model.config.maxSeqLen;
  }

  nextLogProbs(tokens: readonly number[], from: number): Float32Array {
    if (tokens.length > this.maxLength) {
      throw new RangeError(`${tokens.length} tokens exceed the context of ${this.maxLength}`);
    }
    if (!(from >= 0 && from < tokens.length)) {
      throw new RangeError(`from ${from} outside [0, ${tokens.length})`);
    }
    if (!this.#cache || this.#cache.capacity < tokens.length) {
      const capacity = Math.min(
        this.maxLength,
        Math.max(tokens.length, 2 * (this.#cache?.capacity ?? 64)),
      );
      this.#cache = createKvCache(this.#model.config, capacity);
      this.#cached = [];
    }
    let reuse = 0;
    const limit = Math.min(from, this.#cached.length);
    while (reuse < limit && this.#cached[reuse] === tokens[reuse]) reuse++;
    const cache = this.#cache;
    cache.pos = reuse;
    const logits = forward(this.#model, tokens.slice(reuse), {
      cache,
      ...(this.#kernels ? { kernels: this.#kernels } : {}),
    });
    this.#cached = tokens.slice();
    const v = this.vocabSize;
    return logSoftmaxRows(logits.slice((from - reuse) * v), v);
  }
}

/**
 * Scores one encoded request: `[bos] + ctx + cont`, left-truncated to `maxLength + 1` tokens,
 * the last one dropped; Σ log p over the continuation and whether each token is the argmax.
 */
export function scorePair(lm: LogProbModel, bos: number, pair: EncodedPair): LoglikScore {
  const n = pair.continuation.length;
  if (n === 0) throw new RangeError("The continuation encodes to no tokens: nothing to score");
  if (n > lm.maxLength) {
    throw new RangeError(
      `The continuation has ${n} tokens, more than the model's context of ${lm.maxLength}`,
    );
  }
  const full = [bos, ...pair.context, ...pair.continuation];
  const input = full.slice(-(lm.maxLength + 1)).slice(0, -1);
  const from = input.length - n;
  const lp = lm.nextLogProbs(input, from);
  const v = lm.vocabSize;
  let ll = 0;
  let greedy = true;
  for (let t = 0; t < n; t++) {
    const o = t * v;
    const target = pair.continuation[t]!;
    ll += lp[o + target]!;
    let best = 0;
    for (let i = 1; i < v; i++) if (lp[o + i]! > lp[o + best]!) best = i;
    if (best !== target) greedy = false;
  }
  return { ll, isGreedy: greedy, tokens: n, truncated: full.length > lm.maxLength + 1 };
}

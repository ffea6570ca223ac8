/**
 * Greedy generation until a stop sequence, the end-of-sequence token or a token budget, with the
 * KV cache (the prompt is prefilled once, then one token per step) — what lm-eval's
 * `generate_until` does with `do_sample: false`.
 *
 * `runners/forward.ts`'s `generateGreedy` stops only at a token id; text stop sequences (which can
 * span several tokens or end inside one) need the decoded continuation, so this module checks
 * the decoded text after each token and cuts it before the earliest stop sequence, as lm-eval
 * does (`s.split(term)[0]` for every term of `until`).
 *
 * @module
 */

import type { Kernels } from "../kernels/types.ts";
import { createKvCache, forward, type ForwardModel } from "../runners/forward.ts";

/** Produces next-token logits: `start` with the prompt, then `next` with each chosen token. */
export interface StepModel {
  start(prompt: readonly number[]): Float32Array;
  next(token: number): Float32Array;
}

/** Options of {@linkcode greedyUntil} and {@linkcode generateUntil}. */
export interface GenerateOptions {
  /** Most new tokens to generate. */
  readonly maxNewTokens: number;
  /** Text stop sequences; the returned text ends before the earliest one. */
  readonly stop: readonly string[];
  /** Decodes generated ids to text (the continuation alone, as lm-eval decodes it). */
  readonly decode: (ids: readonly number[]) => string;
  /** Token that ends generation (not included in the text), e.g. EOS. */
  readonly stopToken?: number;
}

/** Why generation ended. */
export type StopReason = "stop-sequence" | "stop-token" | "budget";

/** A generated continuation. */
export interface Generation {
  /** Generated token ids (including the token that completed a stop sequence or the stop token). */
  readonly tokens: number[];
  /** Decoded continuation, cut before the earliest stop sequence. */
  readonly text: string;
  readonly reason: StopReason;
  /** The stop sequence that ended generation, when `reason` is `stop-sequence`. */
  readonly stopSequence?: string;
}

/** Index of the first maximum (ties go to the lower id, as `torch.argmax`). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** Cuts `text` before the earliest occurrence of any stop sequence. */
export function cutAtStop(
  text: string,
  stop: readonly string[],
): { text: string; stopSequence?: string } {
  let at = -1;
  let which: string | undefined;
  for (const s of stop) {
    if (s.length === 0) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) {
      at = i;
      which = s;
    }
  }
  return at < 0 ? { text } : { text: text.slice(0, at), stopSequence: which };
}

/** Greedy decoding over any {@linkcode StepModel} until a stop sequence, stop token or budget. */
export function greedyUntil(
  model: StepModel,
  prompt: readonly number[],
  options: GenerateOptions,
): Generation {
  const tokens: number[] = [];
  if (options.maxNewTokens < 1) return { tokens, text: "", reason: "budget" };
  let logits = model.start(prompt);
  for (;;) {
    const t = argmax(logits);
    tokens.push(t);
    if (t === options.stopToken) {
      return { tokens, text: options.decode(tokens.slice(0, -1)), reason: "stop-token" };
    }
    const cut = cutAtStop(options.decode(tokens), options.stop);
    if (cut.stopSequence !== undefined) {
      return { tokens, text: cut.text, reason: "stop-sequence", stopSequence: cut.stopSequence };
    }
    if (tokens.length >= options.maxNewTokens) return { tokens, text: cut.text, reason: "budget" };
    logits = model.next(t);
  }
}

/**
 * A {@linkcode StepModel} over the forward pass with a KV cache sized for `capacity` positions:
 * the prompt is run once (`logits: "last"`), then each new token alone.
 */
export function cachedStepModel(
  model: ForwardModel,
  capacity: number,
  kernels?: Kernels,
): StepModel {
  const cache = createKvCache(model.config, capacity);
  return {
    start: (prompt) => forward(model, prompt, { cache, kernels, logits: "last" }),
    next: (token) => forward(model, [token], { cache, kernels, logits: "last" }),
  };
}

/**
 * Greedy generation from `prompt` with the KV cache. The prompt plus the budget must fit the
 * model's context (the caller truncates the prompt); throws a `RangeError` otherwise.
 */
export function generateUntil(
  model: ForwardModel,
  prompt: readonly number[],
  options: GenerateOptions & { kernels?: Kernels },
): Generation {
  const capacity = prompt.length + options.maxNewTokens;
  if (capacity > model.config.maxSeqLen) {
    throw new RangeError(
      `generate: ${prompt.length} prompt tokens + ${options.maxNewTokens} new tokens exceed ` +
        `the model's context ${model.config.maxSeqLen}`,
    );
  }
  return greedyUntil(cachedStepModel(model, capacity, options.kernels), prompt, options);
}

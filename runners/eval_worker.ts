/**
 * Worker side of {@linkcode EvalPool}: holds a model and a reference model, scores perplexity
 * windows in chunks of rows (caching the reference's final hidden states of the windows it is
 * given) and the log-likelihood requests of multiple-choice docs (with a key/value cache kept
 * across a doc's choices, dropped when the model changes).
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { kernelsById } from "./backend.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import type { ForwardModel } from "./forward.ts";
import { scoreWindowChunked, windowHidden } from "./window_score.ts";
import type { PoolRequest, PoolResponse } from "./eval_pool.ts";
import { ForwardLogProbs, scorePair } from "./loglikelihood.ts";

let model: ForwardModel | undefined;
/** Log-probabilities of `model` with its key/value cache, made at its first request. */
let lm: ForwardLogProbs | undefined;
let reference: ForwardModel | undefined;
let budget = 0;
let used = 0;
const refCache = new Map<string, Float32Array>();

// Messages are handled in order; scoring waits for the backend the pool asked for.
let kernels: Promise<Kernels> = Promise.resolve(refKernels);

self.onmessage = async (e: MessageEvent<PoolRequest>) => {
  const msg = e.data;
  if (msg.op === "backend") {
    kernels = kernelsById(msg.id);
    kernels.catch(() => {}); // reported with the first window
    return;
  }
  if (msg.op === "model") {
    model = msg.model;
    lm = undefined;
    return;
  }
  if (msg.op === "reference") {
    reference = msg.model;
    budget = msg.cacheBytes;
    refCache.clear();
    used = 0;
    return;
  }
  let reply: PoolResponse;
  try {
    const k = await kernels;
    if (!model) throw new Error("no model set");
    if (msg.op === "loglik") {
      const scorer = lm ??= new ForwardLogProbs(model, k);
      reply = { id: msg.id, scores: msg.pairs.map((p) => scorePair(scorer, msg.bos, p)) };
      self.postMessage(reply);
      return;
    }
    const hidden = windowHidden(model, msg.window, k);
    let refHidden: Float32Array | undefined;
    if (msg.cacheKey !== undefined) {
      if (!reference) throw new Error("no reference model set");
      refHidden = refCache.get(msg.cacheKey);
      if (!refHidden) {
        refHidden = windowHidden(reference, msg.window, k);
        if (used + refHidden.byteLength <= budget) {
          refCache.set(msg.cacheKey, refHidden);
          used += refHidden.byteLength;
        }
      }
    }
    const ref = refHidden && reference ? { model: reference, hidden: refHidden } : undefined;
    reply = { id: msg.id, score: scoreWindowChunked(model, hidden, msg.window, k, ref) };
  } catch (err) {
    reply = {
      id: msg.id,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    };
  }
  self.postMessage(reply);
};

/**
 * Worker side of {@linkcode LoglikPool}: holds a model and scores the encoded requests of one
 * doc at a time with the same code as the in-thread path (`scorePair` over `ForwardLogProbs`
 * with the reference kernels).
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { kernelsById } from "./backend.ts";
import { ForwardLogProbs, scorePair } from "./loglikelihood.ts";
import type { LoglikRequestMsg, LoglikResponseMsg } from "./loglik_pool.ts";

let lm: ForwardLogProbs | undefined;

let ready: Promise<void> = Promise.resolve();

self.onmessage = async (e: MessageEvent<LoglikRequestMsg>) => {
  const msg = e.data;
  if (msg.op === "model") {
    const model = msg.model;
    ready = kernelsById(msg.kernelsId).then((k) => {
      lm = new ForwardLogProbs(model, k);
    });
    ready.catch(() => {}); // reported with the first request
    return;
  }
  let reply: LoglikResponseMsg;
  try {
    await ready;
    if (!lm) throw new Error("no model set");
    const model = lm;
    reply = { id: msg.id, scores: msg.pairs.map((p) => scorePair(model, msg.bos, p)) };
  } catch (err) {
    reply = {
      id: msg.id,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    };
  }
  self.postMessage(reply);
};

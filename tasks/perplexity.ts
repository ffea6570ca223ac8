/**
 * Perplexity over a text corpus, with KL divergence and top-1 agreement against the
 * full-precision model.
 *
 * Protocol (stored in every row as `protocol`):
 * 1. Encode the whole text once: one dummy-prefix space (SentencePiece/Llama convention), no BOS.
 * 2. Cut the token stream into non-overlapping windows of `context − 1` tokens; drop the remainder.
 * 3. Prepend BOS to each window and score every next-token prediction: a window of `context`
 *    positions yields `context − 1` scored tokens.
 * 4. `nll` = mean negative log-likelihood per scored token (nats), `ppl = exp(nll)`.
 * 5. Against the unquantized model, per scored position: `kl = KL(p_fp ‖ p_q)` (nats) and
 *    `top1` = whether both argmaxes agree; both averaged over scored tokens.
 *
 * Standard errors are over windows (sample std of per-window means / √windows): tokens inside one
 * window are correlated, windows much less. `ppl`'s stderr follows by the delta method
 * (`ppl · se(nll)`). `--limit N` keeps the first N windows.
 *
 * Memory: a window runs to its final hidden states (`T × dim` floats), and the classifier and
 * log-softmax are applied a chunk of positions at a time (`scoreWindowChunked`), so no `T × vocab`
 * array is ever held (0.4 GB at context 2048 for a 49k vocabulary, 1.2 GB for 152k); the
 * reference's hidden states are what its cache keeps. The numbers equal whole-window scoring.
 *
 * Where the windows run is the context's model runner's choice, recorded as `windowsOn`: with a
 * `windowScorer` (`--backend webgpu`) on the GPU, one after another (`webgpu`), models it cannot
 * run (activation quantization, MoE) staying on the CPU; else on the kernels, whole windows in one
 * call where the backend has that path for the model (`wasm-simd: whole window`), op by op
 * otherwise (`js-ref: op by op`, or the backend's reason), on worker threads when a pool is given.
 *
 * This equals the GPTQ/lm-eval style "non-overlapping windows" perplexity except that each window
 * starts with BOS (as llama2.c and the stories models were trained) instead of a plain slice of
 * the stream.
 *
 * @module
 */

import { RunningStats } from "../core/stats.ts";
import type { WindowScore } from "../runners/window_score.ts";
import { readTextDataset, TEXT_DATASETS } from "./corpora/text.ts";
import { encodingRecord } from "./encoding.ts";
import { encodeCached } from "./corpora/token_cache.ts";
import {
  DEFAULT_MAX_CONTEXT,
  type EvalModel,
  type Metric,
  runnerOf,
  type Task,
  type TaskContext,
  type TaskResult,
} from "./types.ts";

/** Bumped whenever the protocol's numbers may change. */
export const PERPLEXITY_VERSION = 1;

/**
 * Builds a perplexity task over a corpus reference: a registered corpus (`tinystories`), one of
 * its splits (`tinystories:eval`), or a local file (`file:PATH`).
 */
export function perplexityTask(ref: string): Task {
  const corpus = TEXT_DATASETS.find((d) => d.id === ref.split(":")[0]);
  const title = ref.startsWith("file:")
    ? `Perplexity on ${ref.slice(5)}`
    : `Perplexity on ${corpus?.title ?? ref}${
      ref.includes(":") ? ` (${ref.split(":")[1]} split)` : ""
    }`;
  return {
    id: ref,
    title,
    family: "perplexity",
    version: PERPLEXITY_VERSION,
    async dataset(ctx) {
      return (await readTextDataset(ref, ctx.dataDir)).info;
    },
    async run(model, ctx) {
      const { text, info } = await readTextDataset(ref, ctx.dataDir);
      return evaluatePerplexity(model, text, ctx, info);
    },
  };
}

/** Splits a token stream into BOS-prefixed windows of `context` positions (remainder dropped). */
export function makeWindows(
  stream: readonly number[],
  context: number,
  bos: number,
  limit?: number,
): number[][] {
  if (context < 2) throw new RangeError(`Context must be at least 2 tokens, got ${context}`);
  const body = context - 1;
  let n = Math.floor(stream.length / body);
  if (limit !== undefined) n = Math.min(n, limit);
  const windows: number[][] = [];
  for (let w = 0; w < n; w++) windows.push([bos, ...stream.slice(w * body, (w + 1) * body)]);
  return windows;
}

/** Runs the protocol above on `text`, windows placed by the context's model runner. */
export async function evaluatePerplexity(
  model: EvalModel,
  text: string,
  ctx: TaskContext,
  dataset: TaskResult["dataset"],
): Promise<TaskResult> {
  const { tokenizer, config } = model;
  const context = ctx.context ?? Math.min(config.maxSeqLen, DEFAULT_MAX_CONTEXT);
  if (!Number.isInteger(context) || context < 2 || context > config.maxSeqLen) {
    throw new RangeError(
      `--context must be an integer in [2, ${config.maxSeqLen}] (the model's context), got ${context}`,
    );
  }
  const stream = encodeCached(tokenizer, text);
  const windows = makeWindows(stream, context, tokenizer.bosId, ctx.limit);
  if (windows.length === 0) {
    throw new RangeError(
      `${dataset.id}: ${stream.length} tokens do not fill one window of ${context - 1} tokens`,
    );
  }
  let done = 0;
  const { scores, compared, windowsOn } = await runnerOf(ctx).scoreWindows(model, windows, {
    ...(ctx.reference ? { reference: ctx.reference } : {}),
    keyOf: (w) => `ppl-hidden:${dataset.sha256}:${context}:${w}`,
    onWindow: () => ctx.onProgress?.(++done, windows.length),
  });
  scores.forEach((s, w) => {
    if (!Number.isFinite(s.sumNll) || !Number.isFinite(s.sumKl)) {
      throw new RangeError(
        `${dataset.id}: window ${w} scores ${s.sumNll} nats (KL ${s.sumKl}): the model's ` +
          `log-probabilities are not finite (a NaN or ±Infinity in its weights or activations)`,
      );
    }
  });
  const { metrics, units, tokens, tokenStd } = perplexityMetrics(scores, compared);
  return {
    metrics,
    dataset,
    // Each window's mean NLL (and, against the reference, KL and agreement): what a paired
    // comparison of two runs needs.
    units: compared ? units : { nll: units.nll },
    protocol: {
      name: "non-overlapping-bos-windows",
      context,
      windowTokens: context - 1,
      bosPerWindow: true,
      ...encodingRecord(tokenizer),
      streamTokens: stream.length,
      windows: windows.length,
      scoredTokens: tokens,
      limit: ctx.limit ?? null,
      tokenStderrNll: tokenStd / Math.sqrt(tokens),
      stderrOver: "windows",
      klReference: compared ? "fp" : "self",
      windowsOn,
    },
  };
}

/**
 * The task's metrics from its window scores: perplexity, NLL, KL and top-1 agreement as means
 * over windows with their standard errors (KL's and top-1's 0 without a reference), each
 * window's values, the tokens scored and the per-token NLL standard deviation.
 */
function perplexityMetrics(scores: readonly WindowScore[], compared: boolean): {
  metrics: Metric[];
  units: { nll: number[]; kl: number[]; top1: number[] };
  tokens: number;
  tokenStd: number;
} {
  const nll = new RunningStats();
  const kl = new RunningStats();
  const top1 = new RunningStats();
  const units = { nll: [] as number[], kl: [] as number[], top1: [] as number[] };
  let tokens = 0, sum = 0, sumSq = 0;
  for (const s of scores) {
    units.nll.push(s.sumNll / s.scored);
    units.kl.push(s.sumKl / s.scored);
    units.top1.push(s.agree / s.scored);
    nll.push(s.sumNll / s.scored);
    kl.push(s.sumKl / s.scored);
    top1.push(s.agree / s.scored);
    tokens += s.scored;
    sum += s.sumNll;
    sumSq += s.sumSqNll;
  }
  // Every window scores the same number of tokens, so the mean of window means is the token mean.
  const tokenMean = sum / tokens;
  const tokenStd = Math.sqrt((sumSq - tokens * tokenMean * tokenMean) / (tokens - 1));
  const metrics: Metric[] = [
    {
      metric: "ppl",
      value: Math.exp(nll.mean),
      stderr: Math.exp(nll.mean) * nll.stderr,
      n: nll.n,
      higherIsBetter: false,
    },
    {
      metric: "nll",
      value: nll.mean,
      stderr: nll.stderr,
      n: nll.n,
      higherIsBetter: false,
      unit: "nats/token",
    },
    {
      metric: "kl",
      value: kl.mean,
      stderr: compared ? kl.stderr : 0,
      n: kl.n,
      higherIsBetter: false,
      unit: "nats/token",
    },
    {
      metric: "top1",
      value: top1.mean,
      stderr: compared ? top1.stderr : 0,
      n: top1.n,
      higherIsBetter: true,
    },
  ];
  return { metrics, units, tokens, tokenStd };
}

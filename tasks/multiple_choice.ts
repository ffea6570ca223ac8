/**
 * Zero-shot log-likelihood scoring with lm-evaluation-harness's mechanics
 * (EleutherAI/lm-evaluation-harness `lm_eval/api/task.py` requests and metrics,
 * `lm_eval/api/model.py` `_encode_pair`, `lm_eval/models/huggingface.py` `_loglikelihood_tokens`).
 *
 * 1. Requests. A multiple-choice doc gives one request per choice: `(context, " " + choice)`
 *    (target delimiter `" "`). A partial-scoring doc (WinoGrande, lm-eval `multiple_inputs`) puts
 *    each option into its own context and scores the one shared continuation:
 *    `(context_i, " " + continuation)`.
 * 2. Encoding a pair, as lm-eval's `_encode_pair`: trailing whitespace of the context (Python
 *    `str.isspace` characters) moves to the front of the continuation; then
 *    `whole = encode(context + continuation)`, `ctx = encode(context)`,
 *    `cont = whole[ctx.length:]`. `encode` is the model's tokenizer without BOS, with the
 *    SentencePiece dummy-prefix space, i.e. what Hugging Face's Llama tokenizer gives with
 *    `add_special_tokens=False` (lm-eval's default for causal models). An empty context encodes
 *    to no tokens and the continuation is encoded alone (lm-eval: `[prefix_token]` + `encode(cont)`).
 * 3. Sequence. **Deviation from lm-eval, on purpose:** BOS is prepended to every sequence,
 *    `[BOS] + ctx + cont`, as our perplexity task does and as llama2.c models were trained
 *    (lm-eval feeds Llama models no BOS unless the context is empty). Left truncation as
 *    lm-eval: the model reads `sequence[−(maxLength+1):][:−1]`, so BOS is the first token to go.
 * 4. Log-likelihood. `ll = Σ log p(cont_t)` over the continuation tokens (log-softmax in float64);
 *    `isGreedy` = every continuation token is the argmax of its row (first index on ties).
 * 5. Metrics per doc. `acc` = 1 when `argmax(ll)` is the gold index; `acc_norm` = 1 when
 *    `argmax(ll_i / len(choice_i))` is, with `len` the choice's length in characters (Unicode
 *    code points, as Python's `len`), without the delimiter. Ties go to the first index
 *    (`numpy.argmax`). A gold index outside the choices is counted and reported, never scored.
 * 6. Aggregation. Mean over docs; stderr = sample standard deviation / √n (lm-eval
 *    `mean_stderr`). Never `max(acc, acc_norm)`.
 *
 * Every sequence is scored on its own, so numbers do not depend on order or grouping; the one
 * optimisation, reusing the key/value cache of the longest common prefix with the previous
 * sequence (the shared context of a doc's choices), computes bit-identical values.
 *
 * @module
 */

import { RunningStats } from "../core/stats.ts";
import type { Tokenizer } from "../models/types.ts";
import {
  type EncodedPair,
  ForwardLogProbs,
  type LoglikScore,
  type LogProbModel,
  scorePair,
} from "../runners/loglikelihood.ts";
import type { Metric } from "./types.ts";

export { type EncodedPair, ForwardLogProbs, type LoglikScore, type LogProbModel, scorePair };

/** The target delimiter lm-eval puts between context and choice by default. */
export const TARGET_DELIMITER = " ";

/** One log-likelihood request: score `continuation` after `context`. */
export interface LoglikRequest {
  readonly context: string;
  readonly continuation: string;
}

/** Whether a UTF-16 code unit is a character Python's `str.isspace()` accepts (`strip()` removes). */
export function isPySpace(code: number): boolean {
  return (code >= 0x09 && code <= 0x0d) || (code >= 0x1c && code <= 0x20) || code === 0x85 ||
    code === 0xa0 || code === 0x1680 || (code >= 0x2000 && code <= 0x200a) || code === 0x2028 ||
    code === 0x2029 || code === 0x202f || code === 0x205f || code === 0x3000;
}

/** Python `str.strip()`: removes leading and trailing `str.isspace()` characters. */
export function pyStrip(s: string): string {
  let a = 0, b = s.length;
  while (a < b && isPySpace(s.charCodeAt(a))) a++;
  while (b > a && isPySpace(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

/**
 * Moves the context's trailing whitespace (Python `str.isspace` characters) to the front of the
 * continuation, as lm-eval's `_encode_pair`.
 */
export function moveTrailingWhitespace(context: string, continuation: string): LoglikRequest {
  let end = context.length;
  while (end > 0 && isPySpace(context.charCodeAt(end - 1))) end--;
  return { context: context.slice(0, end), continuation: context.slice(end) + continuation };
}

/**
 * Splits a request into context and continuation tokens as lm-eval's `_encode_pair`:
 * `cont = encode(context + continuation)[encode(context).length:]` after moving the context's
 * trailing whitespace into the continuation. The context tokens are `encode(context)`, so
 * `ctx + cont` need not equal `encode(context + continuation)` when a token straddles the cut.
 */
export function encodePair(
  tokenizer: Pick<Tokenizer, "encode">,
  context: string,
  continuation: string,
): EncodedPair {
  if (context === "") return { context: [], continuation: tokenizer.encode(continuation) };
  const r = moveTrailingWhitespace(context, continuation);
  const whole = tokenizer.encode(r.context + r.continuation, { bos: false });
  const ctx = tokenizer.encode(r.context, { bos: false });
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/**
 * A multiple-choice doc. `choices`: one context, each choice a continuation (ARC, PIQA, …).
 * `partial`: each option makes its own context and one continuation is scored (WinoGrande).
 */
export type McDoc =
  | {
    readonly kind: "choices";
    readonly context: string;
    readonly choices: readonly string[];
    /** Index of the right choice (may be out of range in a broken file: then not scored). */
    readonly gold: number;
  }
  | {
    readonly kind: "partial";
    readonly contexts: readonly string[];
    readonly continuation: string;
    readonly gold: number;
  };

/** The requests of a doc, one per choice, with lm-eval's target delimiter. */
export function docRequests(doc: McDoc, delimiter = TARGET_DELIMITER): LoglikRequest[] {
  if (doc.kind === "choices") {
    return doc.choices.map((c) => ({ context: doc.context, continuation: delimiter + c }));
  }
  return doc.contexts.map((c) => ({ context: c, continuation: delimiter + doc.continuation }));
}

/** Number of choices of a doc. */
export function choiceCount(doc: McDoc): number {
  return doc.kind === "choices" ? doc.choices.length : doc.contexts.length;
}

/** Whether a gold index points at one of the doc's choices. */
export function goldInRange(doc: McDoc): boolean {
  return Number.isInteger(doc.gold) && doc.gold >= 0 && doc.gold < choiceCount(doc);
}

/** Index of the first largest value (`numpy.argmax`). */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

/** Length in Unicode code points (Python `len(str)`). */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** The outcome of one doc. */
export interface McDocScore {
  readonly lls: readonly number[];
  readonly isGreedy: readonly boolean[];
  /** 1 when `argmax(lls)` is gold. */
  readonly acc: number;
  /** 1 when `argmax(lls / charLength(choice))` is gold (`choices` docs only). */
  readonly accNorm?: number;
}

/** Per-doc metrics from the choices' log-likelihoods (the doc's gold must be in range). */
export function docMetrics(
  doc: McDoc,
  lls: readonly number[],
  isGreedy: readonly boolean[],
): McDocScore {
  const acc = argmax(lls) === doc.gold ? 1 : 0;
  if (doc.kind === "partial") return { lls, isGreedy, acc };
  const norm = lls.map((ll, i) => ll / charLength(doc.choices[i]!));
  return { lls, isGreedy, acc, accNorm: argmax(norm) === doc.gold ? 1 : 0 };
}

/** Counts that go into a multiple-choice task's protocol. */
export interface McCounts {
  /** Docs read (after `--limit`). */
  readonly docs: number;
  /** Docs scored (gold in range). */
  readonly scored: number;
  /** Docs whose gold index is outside their choices: reported, not scored. */
  readonly invalidGold: number;
  /** 0-based indices of the first invalid-gold docs (at most 20). */
  readonly invalidGoldDocs: readonly number[];
  /** Requests (choices) scored. */
  readonly requests: number;
  /** Requests cut on the left to fit the context window. */
  readonly truncatedRequests: number;
  /** Continuation tokens scored in all. */
  readonly continuationTokens: number;
}

/** Everything {@linkcode evaluateMultipleChoice} returns. */
export interface McEvaluation {
  readonly metrics: Metric[];
  readonly counts: McCounts;
  /** Per-doc outcomes (undefined for docs not scored), in doc order. */
  readonly perDoc: readonly (McDocScore | undefined)[];
}

/** Mean ± stderr metric from per-doc values (stderr null below two docs). */
export function meanMetric(
  metric: string,
  values: readonly number[],
  higherIsBetter = true,
): Metric {
  const s = new RunningStats();
  for (const v of values) s.push(v);
  return {
    metric,
    value: s.mean,
    stderr: s.n >= 2 ? s.stderr : null,
    n: s.n,
    higherIsBetter,
  };
}

/**
 * The encoded requests of each doc (`undefined` for a doc whose gold index is out of range:
 * it is counted, not scored). Throws on a doc without choices.
 */
export function encodeDocs(
  tokenizer: Pick<Tokenizer, "encode">,
  docs: readonly McDoc[],
): (EncodedPair[] | undefined)[] {
  return docs.map((doc, d) => {
    if (choiceCount(doc) === 0) throw new RangeError(`Doc ${d}: the choice list is empty`);
    if (!goldInRange(doc)) return undefined;
    return docRequests(doc).map((r) => encodePair(tokenizer, r.context, r.continuation));
  });
}

/** Per-doc metrics, means and counts from each doc's request scores (`undefined`: not scored). */
export function aggregateMultipleChoice(
  docs: readonly McDoc[],
  scores: readonly (readonly LoglikScore[] | undefined)[],
  options: { accNorm?: boolean } = {},
): McEvaluation {
  const acc: number[] = [];
  const accNorm: number[] = [];
  const perDoc: (McDocScore | undefined)[] = [];
  const invalid: number[] = [];
  let requests = 0, truncated = 0, tokens = 0;
  docs.forEach((doc, d) => {
    const ss = scores[d];
    if (!ss) {
      invalid.push(d);
      perDoc.push(undefined);
      return;
    }
    for (const s of ss) {
      requests++;
      tokens += s.tokens;
      if (s.truncated) truncated++;
    }
    const m = docMetrics(doc, ss.map((s) => s.ll), ss.map((s) => s.isGreedy));
    perDoc.push(m);
    acc.push(m.acc);
    if (m.accNorm !== undefined) accNorm.push(m.accNorm);
  });
  if (acc.length === 0) {
    throw new RangeError(
      `No doc could be scored: ${docs.length} docs, ${invalid.length} with a gold index out of range`,
    );
  }
  const metrics = [meanMetric("acc", acc)];
  if (options.accNorm && accNorm.length > 0) metrics.push(meanMetric("acc_norm", accNorm));
  return {
    metrics,
    perDoc,
    counts: {
      docs: docs.length,
      scored: acc.length,
      invalidGold: invalid.length,
      invalidGoldDocs: invalid.slice(0, 20),
      requests,
      truncatedRequests: truncated,
      continuationTokens: tokens,
    },
  };
}

/**
 * Scores docs with a model in this thread: the protocol in this module's header. Throws on a
 * doc without choices; docs whose gold is out of range are counted, not scored. Reports `acc`,
 * and `acc_norm` when `accNorm` is true (not for partial-scoring docs).
 */
export function evaluateMultipleChoice(
  lm: LogProbModel,
  tokenizer: Pick<Tokenizer, "encode" | "bosId">,
  docs: readonly McDoc[],
  options: { accNorm?: boolean; onProgress?: (done: number, total: number) => void } = {},
): McEvaluation {
  const encoded = encodeDocs(tokenizer, docs);
  const scores = encoded.map((pairs, d) => {
    const s = pairs?.map((p) => scorePair(lm, tokenizer.bosId, p));
    options.onProgress?.(d + 1, docs.length);
    return s;
  });
  return aggregateMultipleChoice(docs, scores, options);
}

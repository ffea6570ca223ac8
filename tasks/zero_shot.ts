/**
 * The lm-evaluation-harness zero-shot tasks: `arc_easy`, `arc_challenge`, `piqa`, `hellaswag`,
 * `winogrande`, `boolq` (multiple choice, scored as `multiple_choice.ts` describes) and
 * `lambada_openai` (greedy last-word accuracy and perplexity).
 *
 * | task | data (under `--data`) | context | choices | metrics |
 * |---|---|---|---|---|
 * | `arc_easy`, `arc_challenge` | llm-foundry `arc_*.jsonl` (test: 2,376 / 1,172) | `Question: {question}\nAnswer:` | `choices.text` | acc, acc_norm |
 * | `piqa` | original `piqa/valid.jsonl` + `valid-labels.lst` (1,838) | `Question: {goal}\nAnswer:` | `[sol1, sol2]` | acc, acc_norm |
 * | `hellaswag` | llama.cpp `hellaswag_val_full.txt.gz` (10,042) | `{activity_label}: {ctx_a} {ctx_b.capitalize()}`, preprocessed | 4 preprocessed endings | acc, acc_norm |
 * | `winogrande` | original `winogrande/dev.jsonl` + `dev-labels.lst` (1,267) | partial: `sentence[:_] + option` | shared `sentence[_+1:].strip()` | acc |
 * | `boolq` | original `boolq/v6_test.json` (dev, 3,270) | `{title} -- {passage}\nQuestion: {question}?\nAnswer:` (SuperGLUE's passage) | `["no", "yes"]` | acc, acc_norm |
 * | `lambada_openai` | llm-foundry `lambada_openai.jsonl` (5,153) | text without its last word | `" " + last word` | acc (greedy), ppl |
 *
 * Zero-shot, target delimiter `" "` (none for LAMBADA), BOS before every sequence (a deliberate
 * difference from lm-eval, recorded in the protocol), left truncation to the model's context.
 * lm-eval lists only `acc` for boolq; `acc_norm` is computed the same way for it and reported too.
 * WinoGrande has no `acc_norm` (its choices are contexts). Every row's protocol names the lm-eval
 * task, its YAML version, the prompt, the file format and the counts (docs, scored, gold labels
 * out of range, truncated requests, malformed rows skipped). `--limit N` keeps the first N docs of
 * the file.
 *
 * Each multiple-choice task can also read its Hugging Face dataset instead of the bundled file:
 * `arc_easy=hf` (the lm-eval dataset's default Hub parquet file), `arc_easy=hf://datasets/…`
 * or `arc_easy=./my_arc.parquet` (rows in the HF column schema); see `hf_schemas.ts` for the
 * columns and `dataset_source.ts` for the sources. The row then records `dataFormat: "hf"` and
 * the source, and the dataset fingerprint is that file's sha256.
 *
 * @module
 */

import { RunningStats } from "../core/stats.ts";
import {
  DATASET_FILES,
  datasetFingerprint,
  type LambadaDoc,
  type McDataset,
  readArc,
  readBoolq,
  readHellaswag,
  readLambada,
  type ReadOptions,
  readPiqa,
  readWinogrande,
  type TaskDatasetInfo,
} from "./mc_datasets.ts";
import {
  HF_SCHEMAS,
  hfFingerprint,
  type HfSchema,
  readHfDataset,
  resolveHfSource,
} from "./hf_schemas.ts";
import type { SkippedRows } from "./malformed.ts";
import {
  aggregateMultipleChoice,
  encodeDocs,
  type EncodedPair,
  encodePair,
  type LoglikScore,
  type LogProbModel,
  type McDoc,
  type McEvaluation,
  meanMetric,
  scorePair,
  TARGET_DELIMITER,
} from "./multiple_choice.ts";
import {
  type EvalModel,
  type Metric,
  runnerOf,
  type Task,
  type TaskContext,
  type TaskResult,
} from "./types.ts";
import type { Tokenizer } from "../models/types.ts";
import { encodingRecord } from "./encoding.ts";

/** How every zero-shot sequence is built (shared part of each protocol). */
export const SEQUENCE_PROTOCOL = {
  fewshot: 0,
  bosPerSequence: true,
  bosNote: "BOS is prepended to every sequence (lm-eval feeds Llama models none); " +
    "it is the first token dropped by left truncation",
  encodePair: "lm-eval _encode_pair: context's trailing whitespace moved into the continuation; " +
    "cont = encode(ctx + cont)[len(encode(ctx)):]",
  truncation: "left: the model reads ([BOS] + ctx + cont)[-(maxLength+1):][:-1]",
  stderr: "sample std / sqrt(n) over docs (lm-eval mean_stderr)",
} as const;

/** What a multiple-choice task definition says. */
interface McTaskDef {
  readonly id: keyof typeof DATASET_FILES & keyof typeof HF_SCHEMAS;
  readonly title: string;
  readonly version: number;
  readonly lmEval: { readonly task: string; readonly yamlVersion: string };
  readonly format: TaskDatasetInfo["format"];
  readonly prompt: string;
  readonly choices: string;
  readonly accNorm: boolean;
  read(dataDir: string, options: ReadOptions): Promise<McDataset & { recapitalized?: number }>;
  readonly notes?: readonly string[];
}

const MC_TASKS: readonly McTaskDef[] = [
  {
    id: "arc_easy",
    title: "ARC-Easy (test), zero-shot",
    version: 1,
    lmEval: { task: "arc_easy", yamlVersion: "1.0" },
    format: "llm-foundry",
    prompt: "Question: {question}\\nAnswer:",
    choices: "choices.text",
    accNorm: true,
    read: (dataDir, options) => readArc(dataDir, "arc_easy", options),
    notes: ["llm-foundry's query is 'Question: {question}'; '\\nAnswer:' is appended"],
  },
  {
    id: "arc_challenge",
    title: "ARC-Challenge (test), zero-shot",
    version: 1,
    lmEval: { task: "arc_challenge", yamlVersion: "1.0" },
    format: "llm-foundry",
    prompt: "Question: {question}\\nAnswer:",
    choices: "choices.text",
    accNorm: true,
    read: (dataDir, options) => readArc(dataDir, "arc_challenge", options),
    notes: ["llm-foundry's query is 'Question: {question}'; '\\nAnswer:' is appended"],
  },
  {
    id: "piqa",
    title: "PIQA (validation), zero-shot",
    version: 1,
    lmEval: { task: "piqa", yamlVersion: "1.0" },
    format: "original",
    prompt: "Question: {goal}\\nAnswer:",
    choices: "[sol1, sol2] as in the file (not stripped); gold from valid-labels.lst",
    accNorm: true,
    read: readPiqa,
  },
  {
    id: "hellaswag",
    title: "HellaSwag (validation), zero-shot",
    version: 1,
    lmEval: { task: "hellaswag", yamlVersion: "1.0" },
    format: "original",
    prompt: "preprocess({activity_label}: {ctx_a} {ctx_b.capitalize()})",
    choices: "the 4 preprocessed endings",
    accNorm: true,
    read: readHellaswag,
    notes: [
      "llama.cpp's text format (preprocessed as lm-eval, ctx_b not capitalised); ctx_b is " +
      "recovered heuristically (text after the last sentence end of a context not ending in " +
      ". ! ?) and capitalised Python-style",
    ],
  },
  {
    id: "winogrande",
    title: "WinoGrande (dev = winogrande_xl validation), zero-shot, partial scoring",
    version: 1,
    lmEval: { task: "winogrande", yamlVersion: "1.0" },
    format: "original",
    prompt: "partial scoring: contexts sentence[:blank] + option1/option2",
    choices: "the shared continuation sentence[blank+1:].strip()",
    accNorm: false,
    read: readWinogrande,
  },
  {
    id: "boolq",
    title: "BoolQ (dev), zero-shot",
    version: 1,
    lmEval: { task: "boolq", yamlVersion: "2.0" },
    format: "original",
    prompt:
      "{passage}\\nQuestion: {question}?\\nAnswer:, SuperGLUE passage = '{title} -- {passage}'",
    choices: '["no", "yes"]; gold = answer (false → 0, true → 1)',
    accNorm: true,
    read: readBoolq,
    notes: ["lm-eval's YAML lists acc only; acc_norm is reported as well"],
  },
];

/** Ids of the zero-shot lm-eval tasks. */
export const ZERO_SHOT_TASK_IDS: readonly string[] = [
  ...MC_TASKS.map((t) => t.id),
  "lambada_openai",
];

function limited<T>(docs: readonly T[], limit: number | undefined): T[] {
  if (limit === undefined) return docs.slice();
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`--limit must be a positive integer, got ${limit}`);
  }
  return docs.slice(0, limit);
}

/**
 * Scores each doc's encoded requests (`undefined` docs are skipped): in worker threads when the
 * run has a pool of several threads and the reference kernels, else in this thread. The numbers
 * are the same either way.
 */
export async function scoreEncoded(
  model: EvalModel,
  ctx: Pick<TaskContext, "kernels" | "pool" | "onProgress" | "runner">,
  encoded: readonly (readonly EncodedPair[] | undefined)[],
): Promise<(LoglikScore[] | undefined)[]> {
  let done = 0;
  return await runnerOf(ctx).loglikelihood(
    model,
    model.tokenizer.bosId,
    encoded,
    () => ctx.onProgress?.(++done, encoded.length),
  );
}

/** Multiple-choice evaluation of docs with {@linkcode scoreEncoded}. */
export async function runMultipleChoice(
  model: EvalModel,
  ctx: Pick<TaskContext, "kernels" | "pool" | "onProgress" | "runner">,
  docs: readonly McDoc[],
  accNorm: boolean,
): Promise<McEvaluation> {
  const scores = await scoreEncoded(model, ctx, encodeDocs(model.tokenizer, docs));
  return aggregateMultipleChoice(docs, scores, { accNorm });
}

/**
 * Reads a task's docs: the bundled file under the data root, or `source` through the task's
 * Hugging Face schema.
 */
async function readMc(
  def: McTaskDef,
  source: string | undefined,
  ctx: Pick<TaskContext, "dataDir" | "env" | "skipMalformed">,
): Promise<McDataset & { recapitalized?: number; skipped: SkippedRows }> {
  const skip = { skipMalformed: ctx.skipMalformed ?? false };
  if (source === undefined) {
    const data = await def.read(ctx.dataDir, skip);
    return { ...data, skipped: data.skipped! };
  }
  const schema: HfSchema<McDoc> = HF_SCHEMAS[def.id];
  return await readHfDataset(schema, source, { ...skip, ...(ctx.env ? { env: ctx.env } : {}) });
}

function mcTask(def: McTaskDef, source?: string): Task {
  const schema: HfSchema<McDoc> = HF_SCHEMAS[def.id];
  if (source !== undefined) resolveHfSource(schema, source); // a malformed source fails here
  return {
    // Like `file:PATH`, a task reading another source carries it in its id, so that its rows
    // never mix with the bundled file's in summaries and leaderboards.
    id: source === undefined ? def.id : `${def.id}=${source}`,
    title: source === undefined ? def.title : `${def.title}, from ${source}`,
    family: "zero-shot",
    version: def.version,
    dataset: (ctx) =>
      source === undefined
        ? datasetFingerprint(ctx.dataDir, def.id, def.format)
        : hfFingerprint(schema, source, ctx.env ? { env: ctx.env } : {}),
    async run(model: EvalModel, ctx: TaskContext): Promise<TaskResult> {
      const data = await readMc(def, source, ctx);
      if (data.docs.length === 0) throw new RangeError(`${data.info.path}: no docs to score`);
      const docs = limited(data.docs, ctx.limit);
      const r = await runMultipleChoice(model, ctx, docs, def.accNorm);
      return {
        metrics: r.metrics,
        dataset: data.info,
        protocol: {
          name: "lm-eval-multiple-choice",
          lmEvalTask: def.lmEval.task,
          lmEvalYamlVersion: def.lmEval.yamlVersion,
          dataFormat: source === undefined ? def.format : "hf",
          ...(source === undefined ? {} : {
            source: data.info.id,
            hfDataset: schema.dataset,
            hfSplit: schema.split,
            hfColumns: schema.columns,
          }),
          prompt: def.prompt,
          choices: source === undefined ? def.choices : schema.choices,
          targetDelimiter: TARGET_DELIMITER,
          partialScoring: def.id === "winogrande",
          accNorm: def.accNorm
            ? "argmax of ll / character (code point) length of the choice, delimiter excluded"
            : null,
          ...SEQUENCE_PROTOCOL,
          ...encodingRecord(model.tokenizer),
          context: model.config.maxSeqLen,
          limit: ctx.limit ?? null,
          fileDocs: data.docs.length,
          ...data.skipped,
          ...r.counts,
          ...(data.recapitalized !== undefined
            ? { recapitalizedContextsInFile: data.recapitalized }
            : {}),
          notes: source === undefined ? def.notes ?? [] : [],
        },
      };
    },
  };
}

/** LAMBADA metrics from each doc's score: acc = greedy match, ppl = exp(−mean ll). */
export function aggregateLambada(
  scores: readonly LoglikScore[],
): { metrics: Metric[]; truncated: number; tokens: number } {
  if (scores.length === 0) throw new RangeError("No LAMBADA docs to score");
  const ll = new RunningStats();
  let truncated = 0, tokens = 0;
  for (const s of scores) {
    ll.push(s.ll);
    tokens += s.tokens;
    if (s.truncated) truncated++;
  }
  const ppl = Math.exp(-ll.mean);
  return {
    metrics: [
      meanMetric("acc", scores.map((s) => (s.isGreedy ? 1 : 0))),
      {
        metric: "ppl",
        value: ppl,
        stderr: ll.n >= 2 ? ppl * ll.stderr : null,
        n: ll.n,
        higherIsBetter: false,
      },
      {
        metric: "nll",
        value: -ll.mean,
        stderr: ll.n >= 2 ? ll.stderr : null,
        n: ll.n,
        higherIsBetter: false,
        unit: "nats/doc",
      },
    ],
    truncated,
    tokens,
  };
}

/** Scores LAMBADA docs in this thread (see {@linkcode aggregateLambada}). */
export function evaluateLambada(
  lm: LogProbModel,
  tokenizer: Pick<Tokenizer, "encode" | "bosId">,
  docs: readonly LambadaDoc[],
): { metrics: Metric[]; truncated: number; tokens: number } {
  return aggregateLambada(
    docs.map((d) =>
      scorePair(lm, tokenizer.bosId, encodePair(tokenizer, d.context, d.continuation))
    ),
  );
}

const lambadaTask: Task = {
  id: "lambada_openai",
  title: "LAMBADA OpenAI, zero-shot last-word prediction",
  family: "zero-shot",
  version: 1,
  dataset: (ctx) => datasetFingerprint(ctx.dataDir, "lambada_openai", "llm-foundry"),
  async run(model, ctx) {
    const data = await readLambada(ctx.dataDir, { skipMalformed: ctx.skipMalformed ?? false });
    if (data.docs.length === 0) throw new RangeError(`${data.info.path}: no docs to score`);
    const docs = limited(data.docs, ctx.limit);
    const encoded = docs.map((d) => [encodePair(model.tokenizer, d.context, d.continuation)]);
    const scores = await scoreEncoded(model, ctx, encoded);
    const r = aggregateLambada(scores.map((s) => s![0]!));
    return {
      metrics: r.metrics,
      dataset: data.info,
      protocol: {
        name: "lm-eval-loglikelihood",
        lmEvalTask: "lambada_openai",
        lmEvalYamlVersion: "1.0",
        dataFormat: "llm-foundry",
        prompt: "text.split(' ')[:-1] joined by ' ' (text = context + ' ' + continuation)",
        target: "' ' + text.split(' ')[-1]; no target delimiter",
        acc: "is_greedy: every token of the last word is the argmax",
        ppl: "exp(-mean over docs of the last word's summed log-likelihood) (lm-eval " +
          "'perplexity' aggregation); stderr by the delta method (lm-eval bootstraps)",
        ...SEQUENCE_PROTOCOL,
        ...encodingRecord(model.tokenizer),
        context: model.config.maxSeqLen,
        limit: ctx.limit ?? null,
        fileDocs: data.docs.length,
        ...data.skipped,
        docs: docs.length,
        truncatedRequests: r.truncated,
        continuationTokens: r.tokens,
      },
    };
  },
};

/** Ids of the zero-shot tasks that can read a Hugging Face dataset (`TASK=SOURCE`). */
export const HF_ZERO_SHOT_TASK_IDS: readonly string[] = MC_TASKS.map((t) => t.id);

/**
 * The zero-shot task with this id, or undefined.
 *
 * @param id The task id.
 * @param source `hf`, `hf://datasets/…` or a local file in the HF column schema, instead of the
 *   bundled file (multiple-choice tasks only).
 * @throws {TypeError} When `source` is given for a task without a Hugging Face schema.
 */
export function zeroShotTask(id: string, source?: string): Task | undefined {
  if (id === "lambada_openai") {
    if (source !== undefined) {
      throw new TypeError(
        `Task "lambada_openai" cannot read a dataset source ("${source}"): it has no Hugging Face ` +
          `schema; sources work for ${HF_ZERO_SHOT_TASK_IDS.join(", ")}, gsm8k`,
      );
    }
    return lambadaTask;
  }
  const def = MC_TASKS.find((t) => t.id === id);
  return def ? mcTask(def, source) : undefined;
}

/**
 * GSM8K (test, 1,319 problems), few-shot chain-of-thought generation scored by exact match, after
 * lm-evaluation-harness's `gsm8k` task (`lm_eval/tasks/gsm8k/gsm8k.yaml`, version 3.0).
 *
 * Prompt (version {@linkcode PROMPT_VERSION}): lm-eval's `gsm8k` format — each shot is
 * `"Question: {question}\nAnswer: {answer}"`, shots and the test question are joined by `"\n\n"`,
 * and the prompt ends with `"Question: {question}\nAnswer:"`. lm-eval's default `gsm8k` draws 5
 * shots per problem at random from the *train* split, which is not among our fixtures; we use
 * instead the 8 fixed chain-of-thought exemplars of lm-eval's `gsm8k_cot` (`first_n` sampler, the
 * exemplars of Wei et al. 2022; also used with this `Question:/Answer:` format by
 * `gsm8k_olmes_cot`), each written in GSM8K's answer style: the reasoning, then `"\n#### {n}"`
 * in place of the closing "The answer is {n}.", so that the strict `#### n` pattern applies.
 *
 * Generation: greedy, KV cache, until `Question:`, `</s>`, `<|im_end|>` or `"\n\n"` (lm-eval
 * v3.0's list plus the few-shot delimiter, which earlier versions listed) or EOS, at most
 * `maxGenToks` new tokens (lm-eval's default 256), capped at the model's context minus one. BOS
 * + prompt is left-truncated to `context − budget` tokens, as lm-eval's HF model truncates
 * (`context_enc[-(max_length - max_gen_toks):]`); BOS is prepended (lm-eval adds none for Llama
 * models; the zero-shot tasks do the same) and is the first token truncation drops.
 *
 * Data: the bundled `tasks/gsm8k/test.jsonl`, or with `gsm8k=SOURCE` the `openai/gsm8k` Hub file
 * (`gsm8k=hf`), another `hf://datasets/…` file or a local parquet/JSON file with the columns
 * `{question, answer}` (see `hf_schemas.ts`). A malformed line throws naming file and line, or is
 * skipped and counted with `--skip-malformed`.
 *
 * Scoring: `exact_match_strict` (`#### n`) and `exact_match_flexible` (last number), see
 * `answer_extract.ts`; mean over problems with stderr = sample std / √n (lm-eval mean_stderr).
 *
 * @module
 */

import {
  parseJsonl,
  readDataFile,
  type ReadOptions,
  type TaskDatasetInfo,
  utf8,
} from "./mc_datasets.ts";
import { HF_SCHEMAS, hfFingerprint, readHfDataset, resolveHfSource } from "./hf_schemas.ts";
import { MalformedRows, type SkippedRows } from "./malformed.ts";
import { meanMetric } from "./multiple_choice.ts";
import {
  exactMatch,
  extractFlexible,
  extractStrict,
  type Gsm8kDoc,
  parseGold,
} from "./answer_extract.ts";
import { generateUntil, type StopReason } from "./generate.ts";
import type { EvalModel, Task, TaskContext, TaskResult } from "./types.ts";
import type { Tokenizer } from "../models/types.ts";

/** Path of the GSM8K test file under the data root. */
export const GSM8K_FILE = "tasks/gsm8k/test.jsonl";
/** Version of the prompt format; bumped whenever the prompt text may change. */
export const PROMPT_VERSION = "gsm8k-qa-cot8-hash/v1";
/** Stop sequences (lm-eval gsm8k 3.0 `until` plus the few-shot delimiter `"\n\n"`). */
export const STOP_SEQUENCES: readonly string[] = ["Question:", "</s>", "<|im_end|>", "\n\n"];
/** lm-eval's default `max_gen_toks`. */
export const DEFAULT_MAX_GEN_TOKS = 256;
/** Between shots and before the test question (lm-eval `fewshot_delimiter`). */
export const FEWSHOT_DELIMITER = "\n\n";

export type { Gsm8kDoc };

/**
 * The few-shot exemplars: questions and reasoning of lm-eval's `gsm8k-cot.yaml`
 * (`fewshot_config.samples`, from Wei et al. 2022, "Chain-of-Thought Prompting Elicits Reasoning
 * in Large Language Models", Table 20 / Appendix G), reproduced as data with attribution; the
 * closing sentence "The answer is {n}." is replaced by GSM8K's `"\n#### {n}"`.
 */
export const FEWSHOT_EXEMPLARS: readonly { readonly question: string; readonly answer: string }[] =
  [
    {
      question: "There are 15 trees in the grove. Grove workers will plant trees in the grove " +
        "today. After they are done, there will be 21 trees. How many trees did the grove " +
        "workers plant today?",
      answer: "There are 15 trees originally. Then there were 21 trees after some more were " +
        "planted. So there must have been 21 - 15 = 6.\n#### 6",
    },
    {
      question: "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars " +
        "are in the parking lot?",
      answer: "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.\n#### 5",
    },
    {
      question: "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces " +
        "do they have left in total?",
      answer: "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had " +
        "32 + 42 = 74. After eating 35, they had 74 - 35 = 39.\n#### 39",
    },
    {
      question: "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 " +
        "lollipops. How many lollipops did Jason give to Denny?",
      answer: "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So " +
        "he gave Denny 20 - 12 = 8.\n#### 8",
    },
    {
      question: "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. " +
        "How many toys does he have now?",
      answer: "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that " +
        "is 4 more toys. 5 + 4 = 9.\n#### 9",
    },
    {
      question: "There were nine computers in the server room. Five more computers were " +
        "installed each day, from monday to thursday. How many computers are now in the " +
        "server room?",
      answer: "There were originally 9 computers. For each of 4 days, 5 more computers were " +
        "added. So 5 * 4 = 20 computers were added. 9 + 20 is 29.\n#### 29",
    },
    {
      question: "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, " +
        "he lost 2 more. How many golf balls did he have at the end of wednesday?",
      answer: "Michael started with 58 golf balls. After losing 23 on tuesday, he had " +
        "58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls.\n#### 33",
    },
    {
      question: "Olivia has $23. She bought five bagels for $3 each. How much money does she " +
        "have left?",
      answer: "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. " +
        "So she has 23 - 15 dollars left. 23 - 15 is 8.\n#### 8",
    },
  ];

/** lm-eval `doc_to_text`. */
function docToText(question: string): string {
  return `Question: ${question}\nAnswer:`;
}

/**
 * The few-shot prompt for a question: `shots` exemplars (`doc_to_text + " " + answer`) and the
 * question, joined by `"\n\n"`.
 */
export function buildPrompt(question: string, shots = FEWSHOT_EXEMPLARS.length): string {
  if (!Number.isInteger(shots) || shots < 0 || shots > FEWSHOT_EXEMPLARS.length) {
    throw new RangeError(`gsm8k: shots must be an integer in [0, ${FEWSHOT_EXEMPLARS.length}]`);
  }
  const parts = FEWSHOT_EXEMPLARS.slice(0, shots).map((e) =>
    `${docToText(e.question)} ${e.answer}`
  );
  parts.push(docToText(question));
  return parts.join(FEWSHOT_DELIMITER);
}

/**
 * Parses GSM8K JSONL `{question, answer}`; a malformed line throws naming `path:line`, or is
 * skipped and counted when `rows` skips malformed rows.
 */
export function parseGsm8k(path: string, text: string, rows?: MalformedRows): Gsm8kDoc[] {
  const policy = rows ?? new MalformedRows();
  return parseJsonl(path, text, policy).flatMap(({ line, value }) =>
    policy.guard(() => gsm8kDoc(path, line, value)) ?? []
  );
}

function gsm8kDoc(path: string, line: number, value: Record<string, unknown>): Gsm8kDoc {
  const { question, answer } = value;
  if (typeof question !== "string") {
    throw new TypeError(`${path}:${line}: expected a string field "question"`);
  }
  if (typeof answer !== "string") {
    throw new TypeError(`${path}:${line}: expected a string field "answer"`);
  }
  let gold: string;
  try {
    gold = parseGold(answer);
  } catch (e) {
    throw new SyntaxError(`${path}:${line}: ${(e as Error).message}`, { cause: e });
  }
  return { question, answer, gold, line };
}

/** Reads the GSM8K test file, fingerprinted. */
export async function readGsm8k(
  dataDir: string,
  options?: ReadOptions,
): Promise<{ docs: Gsm8kDoc[]; info: TaskDatasetInfo; skipped: SkippedRows }> {
  const { bytes, file } = await readDataFile(dataDir, GSM8K_FILE);
  const rows = new MalformedRows(options?.skipMalformed ?? false);
  return {
    docs: parseGsm8k(file.path, utf8(file.path, bytes), rows),
    info: { ...fileInfo(file), files: [file], format: "original" },
    skipped: rows.summary(),
  };
}

function fileInfo(file: { path: string; bytes: number; sha256: string }) {
  return { id: GSM8K_FILE, path: file.path, bytes: file.bytes, sha256: file.sha256 };
}

/** Options of {@linkcode gsm8kTask}. */
export interface Gsm8kOptions {
  /** Token budget of each answer (default 256, lm-eval's `max_gen_toks`). */
  readonly maxGenToks?: number;
  /** Number of exemplars (default 8). */
  readonly shots?: number;
  /** `hf`, `hf://datasets/…` or a local file with `{question, answer}` rows, instead of the bundled file. */
  readonly source?: string;
}

/** The outcome for one problem. */
export interface Gsm8kSample {
  readonly line: number;
  readonly gold: string;
  readonly generation: string;
  readonly reason: StopReason;
  readonly strict: string | undefined;
  readonly flexible: string | undefined;
  readonly strictCorrect: boolean;
  readonly flexibleCorrect: boolean;
  /** Prompt tokens (BOS included) before truncation. */
  readonly promptTokens: number;
  readonly truncated: boolean;
}

/** How the prompt of one problem is tokenised and truncated to leave room for the budget. */
export function encodePrompt(
  tokenizer: Pick<Tokenizer, "encode" | "bosId">,
  prompt: string,
  room: number,
): { tokens: number[]; full: number; truncated: boolean } {
  const all = [tokenizer.bosId, ...tokenizer.encode(prompt)];
  if (all.length <= room) return { tokens: all, full: all.length, truncated: false };
  return { tokens: all.slice(all.length - room), full: all.length, truncated: true };
}

/** The token budget and prompt room for a context: budget ≤ context − 1, room = context − budget. */
export function budgetFor(context: number, maxGenToks: number): { budget: number; room: number } {
  if (!Number.isInteger(maxGenToks) || maxGenToks < 1) {
    throw new RangeError(`gsm8k: maxGenToks must be a positive integer, got ${maxGenToks}`);
  }
  const budget = Math.min(maxGenToks, context - 1);
  return { budget, room: context - budget };
}

/** Generates and scores each doc in this thread. */
export function evaluateGsm8k(
  model: EvalModel,
  docs: readonly Gsm8kDoc[],
  options: Gsm8kOptions & Pick<TaskContext, "kernels" | "onProgress">,
): Gsm8kSample[] {
  const { budget, room } = budgetFor(
    model.config.maxSeqLen,
    options.maxGenToks ?? DEFAULT_MAX_GEN_TOKS,
  );
  const tok = model.tokenizer;
  return docs.map((doc, i) => {
    const p = encodePrompt(tok, buildPrompt(doc.question, options.shots), room);
    const g = generateUntil(model, p.tokens, {
      maxNewTokens: budget,
      stop: STOP_SEQUENCES,
      decode: (ids) => tok.decode(ids),
      stopToken: tok.eosId,
      kernels: options.kernels,
    });
    const strict = extractStrict(g.text);
    const flexible = extractFlexible(g.text);
    options.onProgress?.(i + 1, docs.length);
    return {
      line: doc.line,
      gold: doc.gold,
      generation: g.text,
      reason: g.reason,
      strict,
      flexible,
      strictCorrect: exactMatch(strict, doc.answer),
      flexibleCorrect: exactMatch(flexible, doc.answer),
      promptTokens: p.full,
      truncated: p.truncated,
    };
  });
}

/** The `gsm8k` task (see the module doc). */
export function gsm8kTask(options: Gsm8kOptions = {}): Task {
  const maxGenToks = options.maxGenToks ?? DEFAULT_MAX_GEN_TOKS;
  const shots = options.shots ?? FEWSHOT_EXEMPLARS.length;
  const source = options.source;
  const schema = HF_SCHEMAS.gsm8k;
  if (source !== undefined) resolveHfSource(schema, source); // a malformed source fails here
  return {
    id: source === undefined ? "gsm8k" : `gsm8k=${source}`,
    title: `GSM8K (test), ${shots}-shot chain of thought, greedy` +
      (source === undefined ? "" : `, from ${source}`),
    family: "reasoning",
    version: 1,
    async dataset(ctx) {
      if (source !== undefined) return await hfFingerprint(schema, source, envOf(ctx));
      const { file } = await readDataFile(ctx.dataDir, GSM8K_FILE);
      return { ...fileInfo(file), files: [file], format: "original" } as TaskDatasetInfo;
    },
    async run(model: EvalModel, ctx: TaskContext): Promise<TaskResult> {
      const skip = { skipMalformed: ctx.skipMalformed ?? false };
      const data = source === undefined
        ? await readGsm8k(ctx.dataDir, skip)
        : await readHfDataset(schema, source, { ...skip, ...envOf(ctx) });
      if (ctx.limit !== undefined && (!Number.isInteger(ctx.limit) || ctx.limit < 1)) {
        throw new RangeError(`--limit must be a positive integer, got ${ctx.limit}`);
      }
      const docs = data.docs.slice(0, ctx.limit ?? data.docs.length);
      if (docs.length === 0) throw new RangeError(`${data.info.path}: no GSM8K problems`);
      const samples = evaluateGsm8k(model, docs, { maxGenToks, shots, ...ctx });
      const { budget, room } = budgetFor(model.config.maxSeqLen, maxGenToks);
      const count = (r: StopReason) => samples.filter((s) => s.reason === r).length;
      return {
        metrics: [
          meanMetric("exact_match_strict", samples.map((s) => (s.strictCorrect ? 1 : 0))),
          meanMetric("exact_match_flexible", samples.map((s) => (s.flexibleCorrect ? 1 : 0))),
        ],
        dataset: data.info,
        protocol: {
          name: "lm-eval-generate-until",
          lmEvalTask: "gsm8k",
          lmEvalYamlVersion: "3.0",
          promptVersion: PROMPT_VERSION,
          prompt: "shots: 'Question: {question}\\nAnswer: {answer}' joined by '\\n\\n', then " +
            "'Question: {question}\\nAnswer:'",
          fewshot: shots,
          fewshotSource: "lm-eval gsm8k-cot.yaml exemplars (first_n), 'The answer is n.' " +
            "rewritten as '\\n#### n'",
          fewshotDelimiter: FEWSHOT_DELIMITER,
          until: STOP_SEQUENCES,
          stopToken: "EOS",
          decoding: "greedy (argmax, lowest id on ties), KV cache",
          maxGenToks,
          tokenBudget: budget,
          context: model.config.maxSeqLen,
          promptRoom: room,
          truncation: "left: [BOS] + prompt keeps its last (context - tokenBudget) tokens",
          bosPerSequence: true,
          strictMatch: "first '#### (\\-?[0-9\\.\\,]+)'",
          flexibleExtract: "last '(-?[$0-9.,]{2,})|(-?[0-9]+)'",
          exactMatch: "ignore ',', '$', '(?s).*#### ', '\\.$'; ignore case; string equality",
          stderr: "sample std / sqrt(n) over problems (lm-eval mean_stderr)",
          datasetSha256: data.info.sha256,
          dataFormat: data.info.format,
          ...(source === undefined ? {} : {
            source: data.info.id,
            hfDataset: schema.dataset,
            hfSplit: schema.split,
            hfColumns: schema.columns,
          }),
          limit: ctx.limit ?? null,
          fileDocs: data.docs.length,
          ...data.skipped,
          docs: docs.length,
          truncatedPrompts: samples.filter((s) => s.truncated).length,
          stoppedBySequence: count("stop-sequence"),
          stoppedByEos: count("stop-token"),
          stoppedByBudget: count("budget"),
          strictInvalid: samples.filter((s) => s.strict === undefined).length,
          flexibleInvalid: samples.filter((s) => s.flexible === undefined).length,
        },
      };
    },
  };
}

function envOf(ctx: Pick<TaskContext, "env">): { env?: (name: string) => string | undefined } {
  return ctx.env ? { env: ctx.env } : {};
}

/**
 * The RULER tasks (NVIDIA/RULER, "What's the Real Context Size of Your Long-Context Language
 * Models?"): synthetic long-context retrieval, tracing and aggregation tasks generated for the
 * model's tokenizer at given lengths, answered by greedy decoding and scored by substring match.
 * Paper: Hsieh et al., arXiv 2404.06654; the effective-length threshold 85.6 is the RULER
 * README's. Files followed:
 * `scripts/synthetic.yaml`, `scripts/data/synthetic/{niah,variable_tracking,
 * common_words_extraction,freq_words_extraction,constants}.py`, `scripts/data/prepare.py`,
 * `scripts/eval/synthetic/constants.py`, `scripts/eval/evaluate.py`.
 *
 * **Ids.** `ruler:{task}` or `ruler:{task}@{lengths}` where `task` is one of
 * {@linkcode RULER_TASK_NAMES} and `lengths` is one length or several joined by `+`
 * (`ruler:niah_single_1@256`, `ruler:cwe@256+512`). Without lengths, the task runs RULER's
 * lengths (4096 … 131072) that the model's context holds, or, for a context under 4096 tokens,
 * half the context and the whole context (256 and 512 for stories260K); a default length whose
 * prompt cannot fit is skipped and named in the protocol. An explicit length the model cannot
 * hold, or whose prompt cannot fit, makes the cell `unsupported` with the reason; `qa_1` and
 * `qa_2` are always `unsupported` (they need a SQuAD/HotpotQA file; file-based QA is not
 * implemented).
 *
 * **Protocol.** Seed 42 (RULER's `random_seed`); `--limit N` = samples per length (default
 * {@linkcode DEFAULT_SAMPLES}; RULER uses 500). Generation and fitting as `ruler_generate.ts` and
 * `ruler_fit.ts` describe; the prompt is BOS + task text + answer prefix (RULER's `base` model
 * template; RULER adds no BOS of its own). Decoding: greedy with the KV cache (`generate.ts`),
 * at most `tokens_to_generate` new tokens (128 NIAH, 30 vt, 120 cwe, 50 fwe, 32 QA), stopping at
 * EOS, no stop sequences. Scoring: RULER's post-processing then `string_match_all` (NIAH, vt,
 * cwe, fwe) or `string_match_part` (QA), see `ruler_score.ts`; the metric is the mean as a
 * **fraction** in [0, 1] (unit `fraction`, like every accuracy of this suite, whose regression
 * tolerances are absolute fractions; RULER prints it ×100, so RULER's 85.6 threshold is 0.856
 * here) with its standard error (sample std / √n), one metric per length
 * (`string_match_all@512`) and, with several lengths, their pooled mean (`string_match_all`).
 * Every row records the sha256 of each generated set and the deviations from RULER:
 * {@linkcode RULER_DEVIATIONS}.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import { unknownIdError } from "../core/registry.ts";
import { RunningStats } from "../core/stats.ts";
import { readTextDataset } from "./corpora/text.ts";
import { generateUntil, type StopReason } from "./generate.ts";
import { generateRulerSet, type RulerSet, VT_EXAMPLE_TOKENS } from "./ruler_fit.ts";
import {
  RULER_TASK_NAMES,
  RULER_TASKS,
  type RulerResources,
  type RulerTaskDef,
  TEMPLATES,
} from "./ruler_generate.ts";
import { cleanWikitext, essayWords, WIKITEXT_CLEANING } from "./ruler_haystack.ts";
import { RULER_RNG } from "./ruler_random.ts";
import { SeededRng } from "../core/rng.ts";
import { scorePrediction } from "./ruler_score.ts";
import { corpusWords, WORD_LIST_RULE } from "./ruler_words.ts";
import type { EvalModel, Metric, Task, TaskContext, TaskResult } from "./types.ts";

export { RULER_TASK_NAMES };

/** RULER's `random_seed`. */
export const RULER_SEED = 42;
/** Samples per length when `--limit` is not given (RULER: 500). */
export const DEFAULT_SAMPLES = 25;
/** RULER's standard lengths. */
export const RULER_LENGTHS: readonly number[] = [4096, 8192, 16384, 32768, 65536, 131072];
/** The essay corpus by default (RULER: Paul Graham essays, not available offline). */
export const DEFAULT_ESSAY = "wikitext2";
/** Predictions recorded per length in the protocol (first 200 characters each). */
const EXAMPLES = 3;
/** Bumped whenever generation or scoring may change. */
export const RULER_GENERATOR_VERSION = 1;

/** How this implementation departs from RULER (recorded in every row). */
export const RULER_DEVIATIONS: readonly string[] = [
  "random source: pure-rand xoroshiro128plus with per-sample seeds drawn from seed 42, not " +
  "Python's Mersenne Twister / numpy; samples are not RULER's byte for byte",
  "essay haystack: configurable text, default WikiText-2 raw test (cleaned), not Paul Graham's " +
  "essays",
  "sentence splitting: a rule ([.!?] + space + capital/digit/quote), not NLTK punkt",
  "word lists: derived from the essay corpus (words of 4-12 lower-case letters occurring >= 3 " +
  "times), not wonderwords / english_words.json; 'words' keys are two list words joined by '-'",
  "length fitting: each sample is the largest haystack that fits (binary search per sample), " +
  "RULER fits once per task and steps down by 'incremental' per sample",
  "token count: BOS + prompt as the model reads it (RULER counts text_to_tokens, no BOS)",
  "vt: the one-shot example is generated per sample with fresh 3-letter names (RULER renames " +
  "one cached example)",
  "qa_1/qa_2: not implemented (need SQuAD/HotpotQA files): always unsupported",
];

/** A parsed RULER task id. */
export interface RulerTaskId {
  readonly task: RulerTaskDef;
  /** Explicit lengths, absent for the default ones. */
  readonly lengths?: readonly number[];
}

/** Parses `ruler:{task}[@{len}[+{len}…]]`; unknown tasks list the valid ones. */
export function parseRulerId(id: string): RulerTaskId {
  if (!id.startsWith("ruler:")) {
    throw new TypeError(`Cannot parse RULER task id "${id}": expected "ruler:{task}[@{length}]"`);
  }
  const rest = id.slice("ruler:".length);
  const at = rest.indexOf("@");
  const name = at < 0 ? rest : rest.slice(0, at);
  const task = RULER_TASKS.find((t) => t.name === name);
  if (!task) throw unknownIdError("RULER task", name, RULER_TASK_NAMES);
  if (at < 0) return { task };
  const spec = rest.slice(at + 1);
  const lengths = spec.split("+").map((s) => {
    if (!/^[1-9][0-9]*$/.test(s)) {
      throw new SyntaxError(
        `Cannot parse RULER length "${s}" in task "${id}": expected a positive integer, or ` +
          `several joined by "+" (e.g. ruler:${name}@256+512)`,
      );
    }
    return Number(s);
  });
  if (new Set(lengths).size !== lengths.length) {
    throw new SyntaxError(`Cannot parse RULER lengths "${spec}" in task "${id}": duplicate length`);
  }
  return { task, lengths };
}

/** RULER's lengths the context holds; for a context under 4096: [context / 2, context]. */
export function defaultLengths(context: number): number[] {
  const standard = RULER_LENGTHS.filter((l) => l <= context);
  if (standard.length > 0) return standard;
  return [Math.floor(context / 2), context];
}

/** The generators' resources from an essay text: word lists and essay words. */
export function rulerResources(essayText: string, seed = RULER_SEED): RulerResources {
  const words = corpusWords(essayText);
  return {
    words,
    essay: essayWords(cleanWikitext(essayText)),
    cweVocabulary: new SeededRng(seed).shuffle(words.slice()),
    seed,
  };
}

/** Options of {@linkcode rulerTask}. */
export interface RulerOptions {
  /** Samples per length when the context gives no `limit` (default {@linkcode DEFAULT_SAMPLES}). */
  readonly samples?: number;
  /** Seed (default 42). */
  readonly seed?: number;
  /** Corpus reference of the essay text and word lists (default `wikitext2`). */
  readonly essay?: string;
}

/** The outcome for one sample. */
export interface RulerOutcome {
  readonly index: number;
  readonly prediction: string;
  readonly score: number;
  readonly reason: StopReason;
}

/** Greedy-decodes and scores each sample of a set. */
export function evaluateRulerSet(
  model: EvalModel,
  def: RulerTaskDef,
  set: RulerSet,
  ctx: Pick<TaskContext, "kernels"> & { onSample?: () => void },
): RulerOutcome[] {
  const tok = model.tokenizer;
  return set.samples.map((s) => {
    const prompt = [tok.bosId, ...tok.encode(s.input + s.answerPrefix)];
    const g = generateUntil(model, prompt, {
      maxNewTokens: def.tokensToGenerate,
      stop: [],
      decode: (ids) => tok.decode(ids),
      stopToken: tok.eosId,
      kernels: ctx.kernels,
    });
    ctx.onSample?.();
    return {
      index: s.index,
      prediction: g.text,
      score: scorePrediction(def.metric, g.text, s.outputs),
      reason: g.reason,
    };
  });
}

function fractionMetric(metric: string, scores: readonly number[]): Metric {
  const s = new RunningStats();
  for (const x of scores) s.push(x);
  return {
    metric,
    value: s.mean,
    stderr: s.n >= 2 ? s.stderr : null,
    n: s.n,
    higherIsBetter: true,
    unit: "fraction",
  };
}

/**
 * The sample sets of `lengths`: a default length that cannot fit a sample is skipped (and said
 * why), an explicit one or a QA task's throws; none at all is an `UnsupportedConfigError`.
 */
async function generateSets(
  id: string,
  def: ReturnType<typeof parseRulerId>["task"],
  res: ReturnType<typeof rulerResources>,
  model: EvalModel,
  lengths: readonly number[],
  samples: number,
  explicit: boolean,
): Promise<{ sets: RulerSet[]; skipped: Record<string, string> }> {
  const sets: RulerSet[] = [];
  const skipped: Record<string, string> = {};
  for (const length of lengths) {
    try {
      sets.push(await generateRulerSet(def, res, model.tokenizer, { length, samples }));
    } catch (e) {
      if (!(e instanceof UnsupportedConfigError) || explicit || def.config.kind === "qa") {
        throw e;
      }
      skipped[String(length)] = e.message;
    }
  }
  if (sets.length === 0) {
    throw new UnsupportedConfigError(
      `${id}: no default length fits: ${Object.values(skipped).join("; ")}`,
    );
  }
  return { sets, skipped };
}

/** What the row's protocol records of one length's set and its outcomes. */
function setRecord(s: RulerSet, o: ReturnType<typeof evaluateRulerSet>) {
  const units = s.samples.map((x) => x.units);
  return {
    length: s.length,
    sha256: s.sha256,
    samples: s.samples.length,
    unitsMin: Math.min(...units),
    unitsMax: Math.max(...units),
    promptTokensMax: Math.max(...s.samples.map((x) => x.promptTokens)),
    capped: s.samples.filter((x) => x.capped).length,
    ...(s.vtExampleNoises !== undefined ? { vtExampleNoises: s.vtExampleNoises } : {}),
    nulls: o.filter((x) => x.prediction.trim() === "").length,
    examples: o.slice(0, EXAMPLES).map((x) => ({
      outputs: s.samples[x.index]!.outputs,
      prediction: x.prediction.slice(0, 200),
      score: x.score,
    })),
    stoppedByEos: o.filter((x) => x.reason === "stop-token").length,
    stoppedByBudget: o.filter((x) => x.reason === "budget").length,
  };
}

/** The task `ruler:{task}[@lengths]` (see the module doc). */
export function rulerTask(id: string, options: RulerOptions = {}): Task {
  const parsed = parseRulerId(id);
  const def = parsed.task;
  const seed = options.seed ?? RULER_SEED;
  const essayRef = options.essay ?? DEFAULT_ESSAY;
  return {
    id,
    title: `RULER ${def.name} (synthetic, ${def.metric}), greedy`,
    family: "ruler",
    version: RULER_GENERATOR_VERSION,
    async dataset(ctx) {
      return (await readTextDataset(essayRef, ctx.dataDir)).info;
    },
    async run(model: EvalModel, ctx: TaskContext): Promise<TaskResult> {
      if (ctx.limit !== undefined && (!Number.isInteger(ctx.limit) || ctx.limit < 1)) {
        throw new RangeError(`--limit must be a positive integer, got ${ctx.limit}`);
      }
      const samples = ctx.limit ?? options.samples ?? DEFAULT_SAMPLES;
      const context = model.config.maxSeqLen;
      const explicit = parsed.lengths !== undefined;
      const lengths = parsed.lengths ?? defaultLengths(context);
      for (const l of lengths) {
        if (l > context) {
          throw new UnsupportedConfigError(
            `${id}: length ${l} exceeds the model's context of ${context} tokens`,
          );
        }
      }
      const essay = await readTextDataset(essayRef, ctx.dataDir);
      const res = rulerResources(essay.text, seed);
      const { sets, skipped } = await generateSets(id, def, res, model, lengths, samples, explicit);
      const total = sets.length * samples;
      let done = 0;
      const outcomes = sets.map((set) =>
        evaluateRulerSet(model, def, set, {
          kernels: ctx.kernels,
          onSample: () => ctx.onProgress?.(++done, total),
        })
      );
      const metrics = sets.map((set, i) =>
        fractionMetric(`${def.metric}@${set.length}`, outcomes[i]!.map((o) => o.score))
      );
      if (sets.length > 1) {
        metrics.push(fractionMetric(def.metric, outcomes.flat().map((o) => o.score)));
      }
      const template = TEMPLATES[def.config.kind];
      return {
        metrics,
        dataset: essay.info,
        protocol: {
          name: "ruler",
          rulerTask: def.name,
          generatorVersion: RULER_GENERATOR_VERSION,
          config: def.config,
          template: template.template,
          answerPrefix: template.answerPrefix,
          modelTemplate: "base (identity); BOS prepended",
          tokensToGenerate: def.tokensToGenerate,
          lengths: sets.map((s) => s.length),
          lengthsRequested: lengths,
          skippedLengths: skipped,
          context,
          samplesPerLength: samples,
          seed,
          rng: RULER_RNG,
          essay: essayRef,
          essayCleaning: essayRef === "wikitext2" ? WIKITEXT_CLEANING : "none",
          wordList: WORD_LIST_RULE,
          wordListSize: res.words.length,
          fitting: "per sample: largest haystack with BOS + prompt + answer prefix + " +
            "tokens_to_generate <= length (exponential then binary search, model tokenizer)",
          ...(def.config.kind === "vt" ? { vtExampleTokens: VT_EXAMPLE_TOKENS } : {}),
          decoding: "greedy (argmax, lowest id on ties), KV cache, stop at EOS or the budget",
          scoring: `RULER postprocess (strip; [\\x00-\\x1f] -> '\\n'; strip), ${def.metric}, ` +
            "case-insensitive substring",
          unit:
            "fraction in [0, 1] (RULER prints x100); stderr = sample std / sqrt(n) over samples",
          deviations: RULER_DEVIATIONS,
          sets: sets.map((s, i) => setRecord(s, outcomes[i]!)),
          limit: ctx.limit ?? null,
        },
      };
    },
  };
}

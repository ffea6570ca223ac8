/**
 * Fitting RULER samples to a length with the model's own tokenizer, and generating a task's
 * sample set.
 *
 * RULER's rule [NVIDIA/RULER `scripts/data/synthetic/niah.py`, `variable_tracking.py`,
 * `common_words_extraction.py`]: the haystack size (lines, words, distractor needles, list
 * words) is the largest for which `tokens(prompt) + tokens_to_generate ≤ max_seq_length`, found
 * by binary search with the target tokenizer; the prompt is the task text followed by the answer
 * prefix. Here every sample is fitted on its own (an exponential search for a size that overflows,
 * then a binary search), so each sample is the largest that fits: its size N fits and N + 1 does
 * not. RULER searches once per task and length and, for each sample, steps the size down by an
 * `incremental` (5–500 units) until it fits; both satisfy the same constraint, ours is tighter
 * (deviation, recorded in every row). Tokens are counted as the model reads them: BOS plus the
 * SentencePiece encoding of the prompt (RULER counts the tokenizer's `text_to_tokens`, no BOS).
 *
 * The variable-tracking one-shot example is sized as RULER sizes it: the largest noise that fits
 * 500 tokens with nothing to generate (with a tokenizer for which even the smallest example,
 * `hops + 1` noise lines, exceeds 500 tokens, that smallest example is used; RULER would fail). A sample whose smallest haystack already overflows makes
 * the whole (task, length) unsupported, with the token counts in the reason.
 *
 * @module
 */

import { canonicalJson, sha256Hex } from "../core/hash.ts";
import { UnsupportedConfigError } from "../core/errors.ts";
import {
  buildCwe,
  buildFwe,
  buildNiah,
  buildVt,
  minUnits,
  type RulerPrompt,
  type RulerResources,
  type RulerTaskDef,
  vtExampleText,
} from "./ruler_generate.ts";
import { sampleSeeds } from "./ruler_random.ts";
import type { Tokenizer } from "../models/types.ts";

/** Token budget of the variable-tracking one-shot example (RULER: `max_seq_length=500`). */
export const VT_EXAMPLE_TOKENS = 500;

/** A fitted sample. */
export interface RulerSample extends RulerPrompt {
  readonly index: number;
  /** The sample's own seed (drawn from the task seed). */
  readonly seed: number;
  /** Haystack size the fit chose (the generator's unit: lines, words, needles, list words). */
  readonly units: number;
  /** Tokens of BOS + input + answer prefix. */
  readonly promptTokens: number;
  /** `promptTokens + tokensToGenerate` (RULER's `length`), ≤ the target length. */
  readonly length: number;
  /** True when the size hit the generator's maximum (e.g. the cwe vocabulary) before the budget. */
  readonly capped: boolean;
}

/** The result of {@linkcode fitUnits}. */
export interface Fit<T> {
  readonly value: T;
  readonly units: number;
  readonly tokens: number;
  readonly capped: boolean;
}

/**
 * The largest unit count in [min, max] whose text fits `budget` tokens: exponential search for a
 * size that overflows, then binary search. Throws {@linkcode UnsupportedConfigError} when even
 * `min` overflows.
 */
export function fitUnits<T>(
  build: (units: number) => T,
  tokens: (value: T) => number,
  range: { readonly min: number; readonly max?: number; readonly budget: number },
): Fit<T> {
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  const memo = new Map<number, { value: T; tokens: number }>();
  const at = (u: number) => {
    let r = memo.get(u);
    if (!r) {
      const value = build(u);
      r = { value, tokens: tokens(value) };
      memo.set(u, r);
    }
    return r;
  };
  const fits = (u: number) => at(u).tokens <= range.budget;
  if (!fits(range.min)) {
    throw new UnsupportedConfigError(
      `the smallest haystack (${range.min} units) already needs ${
        at(range.min).tokens
      } tokens, over the budget of ${range.budget}`,
    );
  }
  let lo = range.min;
  let hi = Math.min(max, Math.max(lo * 2, lo + 1));
  while (hi > lo && fits(hi)) {
    lo = hi;
    if (hi === max) break;
    hi = Math.min(max, hi * 2);
  }
  if (lo === max) return { value: at(lo).value, units: lo, tokens: at(lo).tokens, capped: true };
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return { value: at(lo).value, units: lo, tokens: at(lo).tokens, capped: false };
}

/** Options of {@linkcode generateRulerSet}. */
export interface RulerSetOptions {
  /** Target length (RULER's `max_seq_length`), prompt plus generation. */
  readonly length: number;
  readonly samples: number;
}

/** A generated (task, length) set with its content hash. */
export interface RulerSet {
  readonly task: string;
  readonly length: number;
  readonly samples: readonly RulerSample[];
  /** sha256 of the canonical JSON of every sample's input, answer prefix and outputs. */
  readonly sha256: string;
  /** Noise lines of the variable-tracking example (vt only). */
  readonly vtExampleNoises?: number;
}

/** What identifies one prompt of a task: its seed, haystack size and target length. */
export interface PromptSpec {
  readonly seed: number;
  readonly units: number;
  readonly length: number;
  /** Noise lines of the variable-tracking example (vt only). */
  readonly vtExampleNoises?: number | undefined;
}

/** The prompt of any (non-QA) RULER task for a seed and a haystack size. */
export function buildRulerPrompt(
  def: RulerTaskDef,
  res: RulerResources,
  spec: PromptSpec,
): RulerPrompt {
  const c = def.config;
  switch (c.kind) {
    case "niah":
      return buildNiah(c, res, spec.seed, spec.units);
    case "vt":
      if (spec.vtExampleNoises === undefined) {
        throw new TypeError("vt prompts need the example's noise lines (vtExampleNoises)");
      }
      return buildVt(c, spec.seed, spec.units, { noises: spec.vtExampleNoises });
    case "cwe":
      return buildCwe(c, res, spec.seed, spec.units, spec.length);
    case "fwe":
      return buildFwe(c, res, spec.seed, spec.units, spec.length);
    case "qa":
      throw new UnsupportedConfigError(`ruler:${def.name}: file-based QA is not implemented`);
  }
}

/** BOS + the prompt's tokens, as the model reads it. */
export function promptTokenCount(tokenizer: Pick<Tokenizer, "encode">, p: RulerPrompt): number {
  return 1 + tokenizer.encode(p.input + p.answerPrefix).length;
}

/**
 * Generates and fits `options.samples` samples of a RULER task at a length. Throws
 * {@linkcode UnsupportedConfigError} for QA (no dataset file) and when a sample cannot fit.
 */
export async function generateRulerSet(
  def: RulerTaskDef,
  res: RulerResources,
  tokenizer: Pick<Tokenizer, "encode">,
  options: RulerSetOptions,
): Promise<RulerSet> {
  const c = def.config;
  const { length } = options;
  if (!Number.isInteger(options.samples) || options.samples < 1) {
    throw new RangeError(`RULER samples must be a positive integer, got ${options.samples}`);
  }
  if (c.kind === "qa") {
    throw new UnsupportedConfigError(
      `ruler:${def.name} needs a ${
        c.dataset === "squad" ? "SQuAD v2.0 dev" : "HotpotQA dev-distractor"
      } file (SQuAD/HotpotQA), which is not among the datasets; file-based QA is not implemented`,
    );
  }
  const budget = length - def.tokensToGenerate;
  const count = (p: RulerPrompt) => promptTokenCount(tokenizer, p);
  let vtExampleNoises: number | undefined;
  if (c.kind === "vt") {
    const min = c.numChains * (c.numHops + 1);
    try {
      vtExampleNoises = fitUnits(
        (n) => vtExampleText(c, res.seed, n),
        (t) => 1 + tokenizer.encode(t).length,
        { min, budget: VT_EXAMPLE_TOKENS },
      ).units;
    } catch (e) {
      if (!(e instanceof UnsupportedConfigError)) throw e;
      vtExampleNoises = min; // the smallest example already exceeds 500 tokens: use it
    }
  }
  const build = (seed: number, units: number): RulerPrompt =>
    buildRulerPrompt(def, res, { seed, units, length, vtExampleNoises });
  const max = c.kind === "cwe" ? res.cweVocabulary.length : undefined;
  const samples: RulerSample[] = [];
  for (const [index, seed] of sampleSeeds(res.seed, options.samples).entries()) {
    let fit: Fit<RulerPrompt>;
    try {
      fit = fitUnits((u) => build(seed, u), count, {
        min: minUnits(c),
        ...(max !== undefined ? { max } : {}),
        budget,
      });
    } catch (e) {
      if (e instanceof UnsupportedConfigError) {
        throw new UnsupportedConfigError(
          `ruler:${def.name}@${length}: sample ${index} does not fit: ${e.message} (${length} ` +
            `tokens minus ${def.tokensToGenerate} to generate)`,
          { cause: e },
        );
      }
      throw e;
    }
    samples.push({
      ...fit.value,
      index,
      seed,
      units: fit.units,
      promptTokens: fit.tokens,
      length: fit.tokens + def.tokensToGenerate,
      capped: fit.capped,
    });
  }
  const sha256 = await rulerSetHash(samples);
  return {
    task: def.name,
    length,
    samples,
    sha256,
    ...(vtExampleNoises !== undefined ? { vtExampleNoises } : {}),
  };
}

/** sha256 of the canonical JSON of the samples' input, answer prefix and outputs. */
export function rulerSetHash(samples: readonly RulerPrompt[]): Promise<string> {
  return sha256Hex(
    canonicalJson(samples.map((s) => [s.input, s.answerPrefix, s.outputs])),
  );
}

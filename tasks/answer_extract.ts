/**
 * GSM8K answer extraction and exact-match scoring, as lm-evaluation-harness's `gsm8k` task does
 * it (`lm_eval/tasks/gsm8k/gsm8k.yaml`, metadata version 3.0):
 *
 * - `strict-match`: the first match of `#### (\-?[0-9\.\,]+)` (regex filter, `take_first`);
 * - `flexible-extract`: the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)` (`group_select: -1`),
 *   its non-empty group;
 * - no match → lm-eval's fallback string `[invalid]`, which never equals a gold answer;
 * - `exact_match` removes `,`, `$`, everything up to the last `#### ` and one trailing `.` from
 *   both prediction and reference (`regexes_to_ignore`), lower-cases both (`ignore_case`), and
 *   compares the strings (no numeric parsing: `1234.50` ≠ `1234.5`, as in lm-eval).
 *
 * @module
 */

/** lm-eval's `strict-match` pattern for the `gsm8k` task. */
export const STRICT_PATTERN = String.raw`#### (\-?[0-9\.\,]+)`;
/** lm-eval's `flexible-extract` pattern (both gsm8k and gsm8k_cot). */
export const FLEXIBLE_PATTERN = String.raw`(-?[$0-9.,]{2,})|(-?[0-9]+)`;
/** What lm-eval's regex filter returns when nothing matches. */
export const INVALID = "[invalid]";

/** The `regexes_to_ignore` of lm-eval's gsm8k `exact_match`, in order. */
export const REGEXES_TO_IGNORE: readonly string[] = [",", "\\$", "(?s).*#### ", "\\.$"];

// JavaScript forms of REGEXES_TO_IGNORE (Python `re.sub` replaces every match; `(?s).` is
// `[\s\S]`; Python's `$` also matches just before a final newline).
const IGNORE: readonly RegExp[] = [/,/g, /\$/g, /[\s\S]*#### /g, /\.(?=\n?$)/g];

/** The non-empty group of a match (Python `findall` on a two-group pattern, lm-eval's choice). */
function matchText(m: RegExpMatchArray): string {
  const groups = m.length > 1 ? m.slice(1) : [m[0]];
  return (groups.find((g) => g !== undefined && g !== "") ?? "").trim();
}

/** lm-eval `strict-match`: the first `#### n` of the text, or `undefined` when there is none. */
export function extractStrict(text: string): string | undefined {
  const m = text.match(new RegExp(STRICT_PATTERN));
  return m ? matchText(m) : undefined;
}

/** lm-eval `flexible-extract`: the last number-like run of the text, or `undefined`. */
export function extractFlexible(text: string): string | undefined {
  const all = [...text.matchAll(new RegExp(FLEXIBLE_PATTERN, "g"))];
  const last = all[all.length - 1];
  return last ? matchText(last) : undefined;
}

/** lm-eval's exact-match normalisation: `regexes_to_ignore` in order, then lower case. */
export function normalizeAnswer(s: string): string {
  let out = s;
  for (const re of IGNORE) out = out.replace(re, "");
  return out.toLowerCase();
}

/**
 * The gold answer of a GSM8K `answer` field (`…\n#### 72`), normalised as lm-eval compares it;
 * throws a `SyntaxError` when the field has no `#### ` marker.
 */
export function parseGold(answer: string): string {
  if (!answer.includes("#### ")) {
    throw new SyntaxError(`GSM8K answer has no "#### " final-answer marker`);
  }
  return normalizeAnswer(answer).trim();
}

/** Exact match of an extracted prediction (`undefined` = `[invalid]`) against a gold answer. */
export function exactMatch(prediction: string | undefined, gold: string): boolean {
  return normalizeAnswer(prediction ?? INVALID) === normalizeAnswer(gold);
}

/** One GSM8K problem. */
export interface Gsm8kDoc {
  readonly question: string;
  /** The full reference solution, ending in `#### n`. */
  readonly answer: string;
  /** The final answer, normalised as lm-eval compares it (e.g. `72`). */
  readonly gold: string;
  /** 1-based line of the file (row of a parquet file). */
  readonly line: number;
}

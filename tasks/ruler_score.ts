/**
 * RULER's scoring (NVIDIA/RULER `scripts/eval/synthetic/constants.py` and `scripts/eval/evaluate.py`):
 *
 * - post-processing of a prediction: strip, replace every control character `[\x00-\x1f]` with
 *   `"\n"`, strip again;
 * - `string_match_all` (NIAH, VT, CWE, FWE): the fraction of references found in the prediction,
 *   case-insensitively, as substrings;
 * - `string_match_part` (QA): 1 when any reference is found, else 0.
 *
 * RULER averages the per-sample scores over a task and multiplies by 100; the task does the
 * averaging (with a standard error) and reports the fraction (see `ruler.ts`).
 *
 * @module
 */

/** The scoring functions RULER's eval constants name. */
export type RulerMetric = "string_match_all" | "string_match_part";

/** RULER's post-processing of a prediction (strip, control characters → newline, strip). */
export function postprocessPrediction(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.trim().replace(/[\x00-\x1f]/g, "\n").trim();
}

/** Fraction of `refs` that occur in `pred`, case-insensitively (one sample's string_match_all). */
export function stringMatchAll(pred: string, refs: readonly string[]): number {
  if (refs.length === 0) throw new RangeError("string_match_all needs at least one reference");
  const p = pred.toLowerCase();
  return refs.filter((r) => p.includes(r.toLowerCase())).length / refs.length;
}

/** 1 when any of `refs` occurs in `pred`, case-insensitively, else 0 (string_match_part). */
export function stringMatchPart(pred: string, refs: readonly string[]): number {
  if (refs.length === 0) throw new RangeError("string_match_part needs at least one reference");
  const p = pred.toLowerCase();
  return refs.some((r) => p.includes(r.toLowerCase())) ? 1 : 0;
}

/** Scores one raw prediction with the named metric (after RULER's post-processing). */
export function scorePrediction(
  metric: RulerMetric,
  prediction: string,
  refs: readonly string[],
): number {
  const p = postprocessPrediction(prediction);
  return metric === "string_match_all" ? stringMatchAll(p, refs) : stringMatchPart(p, refs);
}

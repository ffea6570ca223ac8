/**
 * The plain-text summary table printed at the end of a run.
 *
 * @module
 */

import type { ResultRow } from "./row.ts";
import { isFullPrecision } from "../methods/types.ts";

function metric(r: ResultRow, id: string) {
  return r.metrics.find((m) => m.metric === id);
}

/**
 * The accuracy shown in the `acc` column: `acc`, strict exact match for gsm8k, and for RULER
 * rows the score pooled over lengths (or the only length's score).
 */
function accOf(r: ResultRow) {
  return metric(r, "acc") ?? metric(r, "exact_match_strict") ??
    metric(r, "string_match_all") ?? metric(r, "string_match_part") ??
    r.metrics.find((m) => m.metric.startsWith("string_match_"));
}

function fmt(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? "" : x.toFixed(digits);
}

/** `value ±stderr` of an accuracy-like metric, empty when the row has none. */
function withSe(m: { value: number; stderr: number | null } | undefined): string {
  if (!m || !Number.isFinite(m.value)) return "";
  return m.stderr === null || !Number.isFinite(m.stderr)
    ? m.value.toFixed(4)
    : `${m.value.toFixed(4)} ±${m.stderr.toFixed(4)}`;
}

/**
 * One line per cell: model, task, method, configuration, bits per weight, perplexity ± stderr,
 * its change against the FP cell of the same model and task, KL, top-1 agreement, then for
 * zero-shot rows `acc` and `acc_norm` (± stderr; both always shown, never their max) with the
 * change of `acc` against the FP cell (for gsm8k the `acc` column holds strict exact match, for
 * RULER the string-match score as a fraction), and
 * status. Limits read "win" (windows) for perplexity
 * rows and "items" for the others.
 */
export function formatSummary(rows: readonly ResultRow[]): string {
  const fpPpl = new Map<string, number>();
  const fpAcc = new Map<string, number>();
  for (const r of rows) {
    const p = metric(r, "ppl");
    const a = accOf(r);
    const key = `${r.model.id}|${r.task.id}|${r.task.limit ?? ""}`;
    if (isFullPrecision(r.method) && p) fpPpl.set(key, p.value);
    if (isFullPrecision(r.method) && a) fpAcc.set(key, a.value);
  }
  const header = [
    "model",
    "task",
    "method",
    "config",
    "bpw",
    "ppl",
    "± se",
    "Δppl",
    "KL",
    "top-1",
    "acc ± se",
    "acc_norm ± se",
    "Δacc",
    "status",
  ];
  const lines = rows.map((r) => {
    const ppl = metric(r, "ppl");
    const key = `${r.model.id}|${r.task.id}|${r.task.limit ?? ""}`;
    const base = fpPpl.get(key);
    const acc = accOf(r);
    const baseAcc = fpAcc.get(key);
    const unit = r.task.family === "perplexity" ? "win" : "items";
    return [
      r.model.id,
      r.task.id + (r.task.limit ? ` (${r.task.limit} ${unit})` : ""),
      r.method.spec ?? r.method.id,
      r.quant.label,
      fmt(r.quant.bitsPerWeight ?? undefined, 2),
      fmt(ppl?.value, 4),
      fmt(ppl?.stderr ?? undefined, 4),
      ppl && base !== undefined && !isFullPrecision(r.method)
        ? `${ppl.value >= base ? "+" : ""}${(ppl.value - base).toFixed(4)}`
        : "",
      fmt(metric(r, "kl")?.value, 5),
      fmt(metric(r, "top1")?.value, 4),
      withSe(acc),
      withSe(metric(r, "acc_norm")),
      acc && baseAcc !== undefined && !isFullPrecision(r.method)
        ? `${acc.value >= baseAcc ? "+" : ""}${(acc.value - baseAcc).toFixed(4)}`
        : "",
      r.status === "ok" ? "ok" : `${r.status}: ${r.error ?? ""}`.slice(0, 60),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const numeric = new Set([4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const row = (cells: string[]) =>
    "| " +
    cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(
      " | ",
    ) + " |";
  return [
    row(header),
    "|" +
    widths.map((w, i) => (numeric.has(i) ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|") +
    "|",
    ...lines.map(row),
  ].join("\n");
}

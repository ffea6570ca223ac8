/**
 * The plain-text summary table printed at the end of a run.
 *
 * @module
 */

import type { ResultRow } from "./row.ts";

function metric(r: ResultRow, id: string) {
  return r.metrics.find((m) => m.metric === id);
}

function fmt(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? "" : x.toFixed(digits);
}

/**
 * One line per cell: model, task, method, configuration, bits per weight, perplexity ± stderr,
 * its change against the FP cell of the same model and task, KL, top-1 agreement and status.
 */
export function formatSummary(rows: readonly ResultRow[]): string {
  const fpPpl = new Map<string, number>();
  for (const r of rows) {
    const p = metric(r, "ppl");
    if (r.method.id === "fp" && p) fpPpl.set(`${r.model.id}|${r.task.id}`, p.value);
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
    "status",
  ];
  const lines = rows.map((r) => {
    const ppl = metric(r, "ppl");
    const base = fpPpl.get(`${r.model.id}|${r.task.id}`);
    return [
      r.model.id,
      r.task.id + (r.task.limit ? ` (${r.task.limit} win)` : ""),
      r.method.spec ?? r.method.id,
      r.quant.label,
      fmt(r.quant.bitsPerWeight ?? undefined, 2),
      fmt(ppl?.value, 4),
      fmt(ppl?.stderr ?? undefined, 4),
      ppl && base !== undefined && r.method.id !== "fp"
        ? `${ppl.value >= base ? "+" : ""}${(ppl.value - base).toFixed(4)}`
        : "",
      fmt(metric(r, "kl")?.value, 5),
      fmt(metric(r, "top1")?.value, 4),
      r.status === "ok" ? "ok" : `${r.status}: ${r.error ?? ""}`.slice(0, 60),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const numeric = new Set([4, 5, 6, 7, 8, 9]);
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

/**
 * Regression comparison of two runs, cell by cell (matched by `cellId`, the content hash of
 * everything that determines a cell's numbers).
 *
 * - Perplexity (`ppl`), KL divergence against full precision (`kl`) and top-1 agreement (`top1`)
 *   are compared window by window when both rows carry per-window values (`units`): the paired
 *   differences (each window's mean NLL, KL, agreement) give the mean change and its standard
 *   error over windows, and a change is a regression when it is worse, larger than `z` standard
 *   errors of that mean, and larger than a floor below which it is float rounding (NLL: 1e-4
 *   nats; KL: 1% of the baseline; top-1: 0.001). Identical windows are unchanged whatever the
 *   floor. Rows without per-window values fall back to a relative tolerance (ppl 1%, KL 1%) and
 *   to the accuracy rule below (top-1).
 * - Accuracies (`acc`, `acc_norm`) are compared with their standard errors: a drop is a regression
 *   only when it exceeds the tolerance (default 0.01 absolute) AND is significant, i.e. larger
 *   than `z` (default 2) standard errors of the difference, `√(se₁² + se₂²)`.
 * - A cell that was `ok` and is now unsupported/failed, or lost a compared metric, is a regression.
 * - Cells only in the baseline (missing) or only in the current run (new) are listed.
 *
 * @module
 */

import type { ResultRow } from "./row.ts";

/** Tolerances of {@linkcode compareRuns}. */
export interface CompareOptions {
  /** Relative perplexity tolerance (0.01 = 1%). */
  readonly pplTolerance?: number;
  /** Absolute accuracy tolerance (0.01 = one percentage point). */
  readonly accTolerance?: number;
  /** Standard errors of the difference an accuracy drop (or a paired change) must exceed. */
  readonly z?: number;
  /** Relative KL tolerance of rows without per-window values; the paired floor's fraction. */
  readonly klTolerance?: number;
  /** Smallest mean per-window NLL change (nats) a paired comparison counts. */
  readonly nllFloor?: number;
  /** Smallest mean per-window top-1 agreement change a paired comparison counts. */
  readonly top1Floor?: number;
}

/** Defaults of {@linkcode CompareOptions}. */
export const COMPARE_DEFAULTS: Required<CompareOptions> = {
  pplTolerance: 0.01,
  accTolerance: 0.01,
  z: 2,
  klTolerance: 0.01,
  nllFloor: 1e-4,
  top1Floor: 1e-3,
};

/** How a metric or cell changed. */
export type Verdict = "regression" | "improvement" | "unchanged";

/** What identifies a cell for people. */
export interface CellInfo {
  readonly cellId: string;
  readonly model: string;
  readonly task: string;
  readonly method: string;
  readonly label: string;
}

/** One compared metric of a cell present in both runs. */
export interface MetricChange extends CellInfo {
  readonly metric: string;
  readonly baseline: number;
  readonly current: number | null;
  readonly baselineStderr: number | null;
  readonly currentStderr: number | null;
  readonly verdict: Verdict;
  readonly reason: string;
}

/** A cell whose status changed (`ok` → failed, …). */
export interface StatusChange extends CellInfo {
  readonly baseline: string;
  readonly current: string;
  readonly error?: string;
  readonly verdict: Verdict;
}

/** The outcome of {@linkcode compareRuns}. */
export interface Comparison {
  readonly options: Required<CompareOptions>;
  readonly baselineCells: number;
  readonly currentCells: number;
  /** Cells present in both runs. */
  readonly common: number;
  readonly metrics: readonly MetricChange[];
  readonly statusChanges: readonly StatusChange[];
  /** Cells of the baseline absent from the current run. */
  readonly missing: readonly CellInfo[];
  /** Cells of the current run absent from the baseline. */
  readonly added: readonly CellInfo[];
  /** Number of regressions (metric or status). */
  readonly regressions: number;
}

/** Metrics the comparison gates on, and how when rows carry no per-window values. */
const GATED: Readonly<Record<string, "relative" | "stderr">> = {
  ppl: "relative",
  kl: "relative",
  top1: "stderr",
  acc: "stderr",
  acc_norm: "stderr",
};

/** The per-window values (`ResultRow.units`) a metric is paired on. */
const PAIRED_UNITS: Readonly<Record<string, string>> = { ppl: "nll", kl: "kl", top1: "top1" };

/**
 * Compares per-window values of one metric, paired window by window (see the module doc);
 * `higherIsBetter` of the per-window values (false for NLL and KL, true for agreement).
 * Exported for tests.
 */
export function comparePaired(
  base: readonly number[],
  cur: readonly number[],
  higherIsBetter: boolean,
  floor: number,
  z: number,
  unit: string,
): { verdict: Verdict; reason: string } {
  const n = base.length;
  const d = base.map((b, i) => cur[i]! - b);
  if (d.every((x) => x === 0)) return { verdict: "unchanged", reason: "identical in every window" };
  const mean = d.reduce((s, x) => s + x, 0) / n;
  const sd = n > 1 ? Math.sqrt(d.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : 0;
  const se = sd / Math.sqrt(n);
  const better = higherIsBetter ? mean > 0 : mean < 0;
  const text = `mean Δ ${unit} ${mean >= 0 ? "+" : ""}${mean.toExponential(2)} over ${n} ` +
    `window${n === 1 ? "" : "s"} (paired se ${se.toExponential(2)})`;
  if (!(Math.abs(mean) > floor)) {
    return { verdict: "unchanged", reason: `${text}: within the floor ${floor}` };
  }
  if (se > 0 && !(Math.abs(mean) > z * se)) {
    return { verdict: "unchanged", reason: `${text}: not significant (≤ ${z} se)` };
  }
  return {
    verdict: better ? "improvement" : "regression",
    reason: `${text}: ${better ? "better" : "worse"}, > the floor ${floor}${
      se > 0 ? ` and ${(Math.abs(mean) / se).toFixed(1)} se` : ""
    }`,
  };
}

function info(r: ResultRow): CellInfo {
  return {
    cellId: r.cellId,
    model: r.model.id,
    task: r.task.id,
    method: r.method.spec ?? r.method.id,
    label: r.quant.label,
  };
}

function fin(x: number | null | undefined): number | null {
  return x === null || x === undefined || !Number.isFinite(x) ? null : x;
}

/** Compares one metric value; exported for tests. */
export function compareMetric(
  kind: "relative" | "stderr",
  higherIsBetter: boolean,
  base: { value: number; stderr: number | null },
  cur: { value: number; stderr: number | null },
  options: CompareOptions = {},
): { verdict: Verdict; reason: string } {
  const o = { ...COMPARE_DEFAULTS, ...options };
  const diff = cur.value - base.value;
  const better = higherIsBetter ? diff > 0 : diff < 0;
  if (diff === 0) return { verdict: "unchanged", reason: "identical" };
  if (kind === "relative") {
    const rel = Math.abs(diff / base.value);
    const pct = `${(rel * 100).toFixed(2)}%`;
    if (!(rel > o.pplTolerance)) {
      return { verdict: "unchanged", reason: `${pct} within ${o.pplTolerance * 100}% tolerance` };
    }
    return {
      verdict: better ? "improvement" : "regression",
      reason: `${better ? "better" : "worse"} by ${pct} (> ${o.pplTolerance * 100}%)`,
    };
  }
  const se = Math.hypot(fin(base.stderr) ?? 0, fin(cur.stderr) ?? 0);
  const size = Math.abs(diff);
  const zScore = se > 0 ? size / se : Infinity;
  const zText = se > 0 ? `${zScore.toFixed(1)} se of the difference` : "no stderr";
  if (!(size > o.accTolerance)) {
    return {
      verdict: "unchanged",
      reason: `${size.toFixed(4)} within tolerance ${o.accTolerance} (${zText})`,
    };
  }
  if (!(zScore > o.z)) {
    return {
      verdict: "unchanged",
      reason: `${size.toFixed(4)} not significant (${zText} ≤ ${o.z})`,
    };
  }
  return {
    verdict: better ? "improvement" : "regression",
    reason: `${better ? "up" : "down"} ${size.toFixed(4)} (> ${o.accTolerance}, ${zText} > ${o.z})`,
  };
}

/** Compares a current run against a baseline, cell by cell by `cellId`. */
export function compareRuns(
  baseline: readonly ResultRow[],
  current: readonly ResultRow[],
  options: CompareOptions = {},
): Comparison {
  const o = { ...COMPARE_DEFAULTS, ...options };
  const cur = new Map(current.map((r) => [r.cellId, r]));
  const baseIds = new Set(baseline.map((r) => r.cellId));
  const metrics: MetricChange[] = [];
  const statusChanges: StatusChange[] = [];
  const missing: CellInfo[] = [];
  let common = 0;
  for (const b of baseline) {
    const c = cur.get(b.cellId);
    if (!c) {
      missing.push(info(b));
      continue;
    }
    common++;
    if (b.status !== c.status) {
      statusChanges.push({
        ...info(b),
        baseline: b.status,
        current: c.status,
        ...(c.error !== undefined ? { error: c.error } : {}),
        verdict: b.status === "ok" ? "regression" : c.status === "ok" ? "improvement" : "unchanged",
      });
      continue;
    }
    if (b.status !== "ok") continue;
    for (const bm of b.metrics) {
      const kind = GATED[bm.metric];
      if (!kind || !Number.isFinite(bm.value)) continue;
      const cm = c.metrics.find((m) => m.metric === bm.metric);
      const base = {
        ...info(b),
        metric: bm.metric,
        baseline: bm.value,
        baselineStderr: fin(bm.stderr),
      };
      if (!cm || !Number.isFinite(cm.value)) {
        metrics.push({
          ...base,
          current: null,
          currentStderr: null,
          verdict: "regression",
          reason: "metric missing or not finite in the current run",
        });
        continue;
      }
      const unit = PAIRED_UNITS[bm.metric];
      const bu = unit ? b.units?.[unit] : undefined, cu = unit ? c.units?.[unit] : undefined;
      const paired = bu !== undefined && cu !== undefined && bu.length === cu.length &&
        bu.length > 0 && [...bu, ...cu].every(Number.isFinite);
      const v = paired
        ? comparePaired(
          bu,
          cu,
          bm.metric === "top1",
          bm.metric === "ppl"
            ? o.nllFloor
            : bm.metric === "kl"
            ? o.klTolerance * Math.abs(bm.value)
            : o.top1Floor,
          o.z,
          unit!,
        )
        : compareMetric(
          kind,
          bm.higherIsBetter,
          { value: bm.value, stderr: fin(bm.stderr) },
          { value: cm.value, stderr: fin(cm.stderr) },
          bm.metric === "kl" ? { ...o, pplTolerance: o.klTolerance } : o,
        );
      metrics.push({ ...base, current: cm.value, currentStderr: fin(cm.stderr), ...v });
    }
  }
  const added = current.filter((r) => !baseIds.has(r.cellId)).map(info);
  const regressions = metrics.filter((m) => m.verdict === "regression").length +
    statusChanges.filter((s) => s.verdict === "regression").length;
  return {
    options: o,
    baselineCells: baseline.length,
    currentCells: current.length,
    common,
    metrics,
    statusChanges,
    missing,
    added,
    regressions,
  };
}

/** Escapes text for a Markdown table cell (pipes, angle brackets, newlines). */
export function mdCell(s: unknown): string {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function num(x: number | null, digits = 4): string {
  return x === null ? "—" : x.toFixed(digits);
}

function withSe(v: number | null, se: number | null): string {
  return se === null || v === null ? num(v) : `${num(v)} ± ${num(se)}`;
}

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => " --- ").join("|")}|`,
    ...rows.map((r) => `| ${r.map(mdCell).join(" | ")} |`),
  ].join("\n");
}

function metricTable(list: readonly MetricChange[]): string {
  return table(
    ["model", "task", "method", "config", "metric", "baseline", "current", "change", "why"],
    list.map((m) => [
      m.model,
      m.task,
      m.method,
      m.label,
      m.metric,
      withSe(m.baseline, m.baselineStderr),
      withSe(m.current, m.currentStderr),
      m.current === null
        ? "—"
        : `${m.current >= m.baseline ? "+" : ""}${(m.current - m.baseline).toFixed(4)}`,
      m.reason,
    ]),
  );
}

function cellTable(list: readonly CellInfo[]): string {
  return table(
    ["model", "task", "method", "config", "cell"],
    list.map((c) => [c.model, c.task, c.method, c.label, c.cellId]),
  );
}

/** A Markdown report of a comparison (for `$GITHUB_STEP_SUMMARY`). */
export function formatMarkdown(
  c: Comparison,
  sources: { baseline: string; current: string },
): string {
  const o = c.options;
  const out: string[] = [];
  out.push(
    c.regressions
      ? `## lowbit regression check: ❌ ${c.regressions} regression(s)`
      : "## lowbit regression check: ✅ no regressions",
  );
  out.push(
    "",
    `Baseline \`${mdCell(sources.baseline)}\` (${c.baselineCells} cells) against current \`${
      mdCell(sources.current)
    }\` (${c.currentCells} cells). Perplexity, KL and top-1 with per-window values: paired by ` +
      `window, a change counts when worse than ${o.z} paired standard errors and the floor (NLL ${o.nllFloor} nats, ` +
      `KL ${
        o.klTolerance * 100
      }% of the baseline, top-1 ${o.top1Floor}); without them: relative tolerance ${
        o.pplTolerance * 100
      }% (KL ${
        o.klTolerance * 100
      }%). Accuracies: a drop counts when it exceeds ${o.accTolerance} and ${o.z} standard errors of the difference.`,
    "",
  );
  const count = (v: Verdict) =>
    c.metrics.filter((m) => m.verdict === v).length +
    c.statusChanges.filter((s) => s.verdict === v).length;
  out.push(
    table(["cells compared", "regressions", "improvements", "missing cells", "new cells"], [[
      String(c.common),
      String(c.regressions),
      String(count("improvement")),
      String(c.missing.length),
      String(c.added.length),
    ]]),
  );
  const regressed = c.metrics.filter((m) => m.verdict === "regression");
  const improved = c.metrics.filter((m) => m.verdict === "improvement");
  if (regressed.length) out.push("", "### Regressions", "", metricTable(regressed));
  if (c.statusChanges.length) {
    out.push(
      "",
      "### Status changes",
      "",
      table(
        ["model", "task", "method", "config", "baseline", "current", "verdict", "error"],
        c.statusChanges.map((s) => [
          s.model,
          s.task,
          s.method,
          s.label,
          s.baseline,
          s.current,
          s.verdict,
          s.error ?? "",
        ]),
      ),
    );
  }
  if (improved.length) out.push("", "### Improvements", "", metricTable(improved));
  if (c.missing.length) {
    out.push("", "### Missing cells (in the baseline, not in the current run)", "");
    out.push(cellTable(c.missing));
  }
  if (c.added.length) {
    out.push("", "### New cells (not in the baseline)", "", cellTable(c.added));
  }
  if (c.metrics.length) {
    out.push(
      "",
      "<details><summary>All compared metrics</summary>",
      "",
      metricTable(c.metrics),
      "",
      "</details>",
    );
  }
  return out.join("\n") + "\n";
}

/**
 * The metrics a leaderboard page lets the reader choose: every metric the rows report (ppl, nll,
 * KL, top-1, acc, routing consistency of MoE cells, activation zeros…) plus two derived ones,
 * Δ NLL against the full-precision row of the same task and bits per weight.
 *
 * @module
 */

import type { ResultRow } from "./row.ts";

/** Key of the derived Δ NLL metric: NLL of the cell minus NLL of the FP cell of the same task. */
export const DELTA_NLL = "delta_nll";
/** Key of the derived bits-per-weight metric (`quant.bitsPerWeight`; `wBits` for FP). */
export const BITS_PER_WEIGHT = "bits_per_weight";

/** A metric the reader can select. */
export interface MetricDef {
  /** Key used in the page (`data-m`, the selector's values): `[A-Za-z0-9_-]+`. */
  readonly key: string;
  /** Metric id in the rows, or {@linkcode DELTA_NLL} / {@linkcode BITS_PER_WEIGHT}. */
  readonly metric: string;
  /** Name in words: `perplexity`. */
  readonly label: string;
  /** What the number is, one sentence. */
  readonly description: string;
  readonly higherIsBetter: boolean;
  /** Unit shown after the label, when any. */
  readonly unit?: string;
  /** Plot on a log scale when every value is positive. */
  readonly log: boolean;
  /** Show the change against the FP row of the same task in table cells. */
  readonly delta: boolean;
  /** What the ± in the table is; null when values are exact. */
  readonly stderrLabel: string | null;
}

type Known = Omit<MetricDef, "key" | "metric" | "stderrLabel"> & { stderrLabel?: string | null };

const SE_WINDOWS = "standard error over evaluation units (windows, documents)";

/** Known metrics, in the selector's order. */
const KNOWN: Readonly<Record<string, Known>> = {
  ppl: {
    label: "perplexity",
    description: "exp of the mean negative log-likelihood per token; lower is better.",
    higherIsBetter: false,
    log: true,
    delta: true,
  },
  [DELTA_NLL]: {
    label: "Δ NLL vs FP",
    unit: "nats/token",
    description:
      "NLL of the cell minus NLL of the full-precision row of the same task (0 = no loss). " +
      "± is the paired standard error over windows (the standard deviation of the per-window " +
      "differences / √windows) when both rows carry per-window NLL, else the unpaired " +
      "√(SE² + SE_FP²).",
    higherIsBetter: false,
    log: false,
    delta: false,
    stderrLabel: "paired standard error over windows (unpaired √(SE² + SE_FP²) for older rows)",
  },
  nll: {
    label: "NLL",
    unit: "nats/token",
    description: "mean negative log-likelihood; lower is better.",
    higherIsBetter: false,
    log: false,
    delta: true,
  },
  kl: {
    label: "KL to FP",
    unit: "nats/token",
    description:
      "mean KL(P_FP ‖ P_quantized) of the next-token distributions; 0 = identical to FP.",
    higherIsBetter: false,
    log: true,
    delta: false,
  },
  top1: {
    label: "top-1 agreement with FP",
    description: "share of tokens whose most likely next token equals FP's; 1 = always.",
    higherIsBetter: true,
    log: false,
    delta: false,
  },
  acc: {
    label: "accuracy",
    description: "share of documents answered correctly; higher is better.",
    higherIsBetter: true,
    log: false,
    delta: true,
  },
  acc_norm: {
    label: "length-normalized accuracy",
    description: "accuracy with choices scored per byte; higher is better.",
    higherIsBetter: true,
    log: false,
    delta: true,
  },
  [BITS_PER_WEIGHT]: {
    label: "bits per weight",
    description:
      "average storage bits per quantized weight (codes + scales + zeros); FP rows show their " +
      "own width.",
    higherIsBetter: false,
    log: false,
    delta: false,
    stderrLabel: null,
  },
  router_topk_exact: {
    label: "router top-k exact match",
    description:
      "MoE: share of (token, block) pairs whose chosen top-k experts equal FP's; 1 = always.",
    higherIsBetter: true,
    log: false,
    delta: false,
  },
  router_topk_overlap: {
    label: "router top-k overlap",
    description: "MoE: mean |S_FP ∩ S_quantized| / k of the chosen experts; 1 = identical.",
    higherIsBetter: true,
    log: false,
    delta: false,
  },
  router_kl: {
    label: "router KL",
    unit: "nats/token",
    description: "MoE: mean KL(p_FP ‖ p_quantized) of the routers' softmax over all experts.",
    higherIsBetter: false,
    log: true,
    delta: false,
  },
  act_zero_frac: {
    label: "activations quantized to zero",
    description: "weight-activation cells: share of activations rounded to zero.",
    higherIsBetter: false,
    log: false,
    delta: false,
  },
};

/** The FP (reference) row of each task key, given how to tell reference rows. */
export type RefOf = (r: ResultRow) => ResultRow | undefined;

/** One value of a metric in a cell. */
export interface MetricValue {
  readonly value: number;
  readonly stderr: number | null;
}

function finite(v: number | null | undefined): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/**
 * Standard error of the mean of the per-window differences `a − b` (windows paired by index), or
 * null when the two lists are absent, of different lengths or shorter than two.
 */
export function pairedStderr(
  a: readonly number[] | undefined,
  b: readonly number[] | undefined,
): number | null {
  if (!a || !b || a.length !== b.length || a.length < 2) return null;
  const d = a.map((x, i) => x - b[i]!);
  if (!d.every(Number.isFinite)) return null;
  const mean = d.reduce((s, x) => s + x, 0) / d.length;
  const v = d.reduce((s, x) => s + (x - mean) ** 2, 0) / (d.length - 1);
  return Math.sqrt(v / d.length);
}

/**
 * The value of `def` in row `r` (ok rows only), or undefined. `ref` is the FP row of the same
 * task (for Δ NLL), `isRef` whether `r` is itself such a row.
 */
export function metricValue(
  r: ResultRow,
  def: MetricDef,
  ref: ResultRow | undefined,
  isRef: boolean,
): MetricValue | undefined {
  if (r.status !== "ok") return undefined;
  if (def.metric === BITS_PER_WEIGHT) {
    const b = r.quant.bitsPerWeight ?? (isRef ? r.quant.wBits : null);
    return finite(b) ? { value: b, stderr: null } : undefined;
  }
  if (def.metric === DELTA_NLL) {
    const m = r.metrics.find((x) => x.metric === "nll");
    if (!m || !finite(m.value)) return undefined;
    if (isRef) return { value: 0, stderr: null };
    const f = ref?.status === "ok" ? ref.metrics.find((x) => x.metric === "nll") : undefined;
    if (!f || !finite(f.value)) return undefined;
    const paired = pairedStderr(r.units?.nll, ref?.units?.nll);
    const se = paired ??
      (finite(m.stderr) && finite(f.stderr) ? Math.hypot(m.stderr, f.stderr) : null);
    return { value: m.value - f.value, stderr: se };
  }
  const m = r.metrics.find((x) => x.metric === def.metric);
  return m && finite(m.value)
    ? { value: m.value, stderr: finite(m.stderr) ? m.stderr : null }
    : undefined;
}

/**
 * The metrics of `rows` a reader can choose, known ones first in a fixed order, then the rest
 * by id. Δ NLL is offered when some row has an NLL and an FP row of its task has one too; bits
 * per weight when some row has it.
 */
export function pageMetrics(
  rows: readonly ResultRow[],
  refOf: RefOf,
  isRef: (r: ResultRow) => boolean,
): MetricDef[] {
  const ok = rows.filter((r) => r.status === "ok");
  const present = new Map<string, { higherIsBetter: boolean; unit?: string }>();
  for (const r of ok) {
    for (const m of r.metrics) {
      if (!present.has(m.metric)) {
        present.set(m.metric, { higherIsBetter: m.higherIsBetter, unit: m.unit });
      }
    }
  }
  const derived = new Set<string>();
  if (ok.some((r) => !isRef(r) && r.quant.bitsPerWeight !== null)) derived.add(BITS_PER_WEIGHT);
  const hasNll = (r: ResultRow | undefined) => !!r?.metrics.some((m) => m.metric === "nll");
  if (ok.some((r) => !isRef(r) && hasNll(r) && hasNll(refOf(r)))) derived.add(DELTA_NLL);

  const used = new Set<string>();
  const keyOf = (id: string, i: number) => {
    let k = /^[A-Za-z0-9_-]+$/.test(id) ? id : `m${i}`;
    while (used.has(k)) k = `${k}_`;
    used.add(k);
    return k;
  };
  const out: MetricDef[] = [];
  for (const [id, known] of Object.entries(KNOWN)) {
    if (!present.has(id) && !derived.has(id)) continue;
    const unit = present.get(id === DELTA_NLL ? "nll" : id)?.unit ?? known.unit;
    out.push({
      stderrLabel: SE_WINDOWS,
      ...known,
      ...(unit ? { unit } : {}),
      key: keyOf(id, out.length),
      metric: id,
    });
  }
  const rest = [...present.keys()].filter((id) => !(id in KNOWN)).sort();
  for (const id of rest) {
    out.push({
      key: keyOf(id, out.length),
      metric: id,
      label: id,
      description: `the rows' "${id}" metric; ${
        present.get(id)!.higherIsBetter ? "higher" : "lower"
      } is better.`,
      higherIsBetter: present.get(id)!.higherIsBetter,
      ...(present.get(id)!.unit ? { unit: present.get(id)!.unit } : {}),
      log: false,
      delta: true,
      stderrLabel: SE_WINDOWS,
    });
  }
  return out;
}

/** The metric a page shows first: perplexity when a perplexity task has it, else accuracy. */
export function defaultMetric(metrics: readonly MetricDef[], rows: readonly ResultRow[]): string {
  const has = (id: string) => metrics.find((m) => m.metric === id)?.key;
  const perplexity = rows.some((r) => r.task.family === "perplexity");
  return (perplexity ? has("ppl") : undefined) ?? has("acc") ?? has("ppl") ?? metrics[0]?.key ??
    "";
}

/** A value of `def` for display. */
export function fmtMetric(def: Pick<MetricDef, "metric">, v: number): string {
  switch (def.metric) {
    case "ppl":
      return Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(4);
    case BITS_PER_WEIGHT:
      return v.toFixed(3);
    case "kl":
    case "router_kl":
      return v === 0 ? "0" : Math.abs(v) >= 0.01 ? v.toFixed(4) : v.toPrecision(3);
    case DELTA_NLL:
      return (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v).toFixed(4);
    default:
      return v.toFixed(4);
  }
}

/** A stderr of `def` for display (no sign): two significant digits below 0.01. */
export function fmtStderr(def: Pick<MetricDef, "metric">, v: number): string {
  const a = Math.abs(v);
  if (def.metric === "ppl" || def.metric === BITS_PER_WEIGHT) return fmtMetric(def, a);
  return a !== 0 && a < 0.01 ? a.toPrecision(2) : a.toFixed(4);
}

/** What a table cell shows besides the value: `value ± <what>`, or `exact value`. */
export function valueLegend(def: Pick<MetricDef, "stderrLabel">): string {
  return def.stderrLabel === null ? "exact value" : `value ± ${def.stderrLabel}`;
}

/** `label (unit)`, or the label alone. */
export function metricTitle(def: Pick<MetricDef, "label" | "unit">): string {
  return def.unit ? `${def.label} (${def.unit})` : def.label;
}

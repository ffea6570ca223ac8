/**
 * Ranking across taxonomy classes: every quantized method × configuration cell of a task, ranked
 * by one metric within each bit-width (weight bits × activation bits), with its class; and the
 * best cell of each class per bit-width, so classes can be compared at equal bits.
 *
 * @module
 */

import { escapeHtml as esc } from "./html.ts";
import {
  fmtMetric,
  fmtStderr,
  type MetricDef,
  metricTitle,
  type MetricValue,
  metricValue,
  valueLegend,
} from "./metric_defs.ts";
import { provenanceTitle } from "./provenance.ts";
import type { ResultRow } from "./row.ts";

/** One ranked cell. */
export interface RankEntry {
  readonly row: ResultRow;
  /** Id of the cell's provenance section in the page. */
  readonly prov: string;
  readonly spec: string;
  readonly taxonomy: string;
  /** The metric's value; absent for failed/unsupported cells and cells without the metric. */
  readonly value?: MetricValue;
  /** 1 + the number of cells of the group with a strictly better value. */
  readonly rank?: number;
}

/** The cells of one bit-width, best first; cells without a value last. */
export interface RankGroup {
  readonly wBits: number;
  readonly aBits: number;
  readonly entries: readonly RankEntry[];
}

/** What {@linkcode rankCells} needs to know of each row. */
export interface RankContext {
  readonly isRef: (r: ResultRow) => boolean;
  readonly refOf: (r: ResultRow) => ResultRow | undefined;
  readonly classOf: (r: ResultRow) => string;
  readonly provOf: (r: ResultRow) => string;
}

/**
 * Ranks the non-reference cells of `rows` (one task) by `def`, per bit-width (more bits first).
 * Ties share a rank.
 */
export function rankCells(
  rows: readonly ResultRow[],
  def: MetricDef,
  ctx: RankContext,
): RankGroup[] {
  const groups = new Map<string, { wBits: number; aBits: number; entries: RankEntry[] }>();
  for (const r of rows) {
    if (ctx.isRef(r)) continue;
    const k = `${r.quant.wBits}/${r.quant.aBits}`;
    const g = groups.get(k) ?? { wBits: r.quant.wBits, aBits: r.quant.aBits, entries: [] };
    groups.set(k, g);
    const value = metricValue(r, def, ctx.refOf(r), false);
    g.entries.push({
      row: r,
      prov: ctx.provOf(r),
      spec: r.method.spec ?? r.method.id,
      taxonomy: ctx.classOf(r),
      ...(value ? { value } : {}),
    });
  }
  const sign = def.higherIsBetter ? -1 : 1;
  return [...groups.values()]
    .sort((a, b) => b.wBits - a.wBits || b.aBits - a.aBits)
    .map((g) => {
      const valued = g.entries.filter((e) => e.value)
        .sort((a, b) =>
          sign * (a.value!.value - b.value!.value) || a.spec.localeCompare(b.spec) ||
          a.row.quant.label.localeCompare(b.row.quant.label)
        );
      const ranked = valued.map((e) => ({
        ...e,
        rank: 1 + valued.filter((o) => sign * (o.value!.value - e.value!.value) < 0).length,
      }));
      const rest = g.entries.filter((e) => !e.value)
        .sort((a, b) => a.spec.localeCompare(b.spec));
      return { wBits: g.wBits, aBits: g.aBits, entries: [...ranked, ...rest] };
    });
}

/** `W4 · A16`. */
export function bitsLabel(g: Pick<RankGroup, "wBits" | "aBits">): string {
  return `W${g.wBits} · A${g.aBits}`;
}

/** The class name as a badge (coloured for the known classes). */
export function classBadge(taxonomy: string): string {
  return `<span class="cls" data-cls="${esc(taxonomy)}">${esc(taxonomy)}</span>`;
}

function valueText(def: MetricDef, v: MetricValue | undefined): string {
  if (!v) return "—";
  const se = v.stderr !== null && v.stderr > 0
    ? ` <span class="se">± ${esc(fmtStderr(def, v.stderr))}</span>`
    : "";
  return `${esc(fmtMetric(def, v.value))}${se}`;
}

/** The ranking of one task as a table (a `<tbody>` per bit-width). */
export function renderRanking(groups: readonly RankGroup[], def: MetricDef, task: string): string {
  if (!groups.length) return "";
  const head = ["rank", "method", "class", "configuration", "bits/weight", metricTitle(def)];
  const bodies = groups.map((g) => {
    const rows = g.entries.map((e) => {
      const status = e.row.status === "ok" ? "" : ` (${esc(e.row.status)})`;
      const bpw = e.row.quant.bitsPerWeight;
      return `<tr class="rk" data-prov="${esc(e.prov)}" data-val="${
        e.value ? e.value.value : ""
      }" data-class="${esc(e.taxonomy)}" tabindex="0" title="${esc(provenanceTitle(e.row))}"><td>${
        e.rank ?? "–"
      }</td><th scope="row">${esc(e.spec)}${status}</th><td>${classBadge(e.taxonomy)}</td><td>${
        esc(e.row.quant.label)
      }</td><td>${bpw === null ? "—" : esc(bpw.toFixed(3))}</td><td>${
        valueText(def, e.value)
      }</td></tr>`;
    }).join("\n");
    return `<tbody data-bits="${g.wBits}-${g.aBits}"><tr class="bits"><th colspan="${head.length}" scope="rowgroup">${
      esc(bitsLabel(g))
    } (${g.entries.length} cell(s))</th></tr>\n${rows}</tbody>`;
  }).join("\n");
  return `<table class="rank" data-task="${esc(task)}">
<caption>${esc(task)}: every quantized cell ranked by ${esc(def.label)} (${
    def.higherIsBetter ? "higher" : "lower"
  } is better) within its bit-width; ${
    esc(valueLegend(def))
  }. Click a row for its provenance.</caption>
<thead><tr>${head.map((h) => `<th scope="col">${esc(h)}</th>`).join("")}</tr></thead>
${bodies}
</table>`;
}

/**
 * Classes × bit-widths: the best value of each class at each bit-width (and which cell has it),
 * ★ on the best class of each bit-width.
 */
export function renderClassSummary(
  groups: readonly RankGroup[],
  def: MetricDef,
  task: string,
): string {
  const classes = [...new Set(groups.flatMap((g) => g.entries.map((e) => e.taxonomy)))].sort();
  if (!classes.length) return "";
  const best = (g: RankGroup, cls: string) =>
    g.entries.find((e) => e.taxonomy === cls && e.rank !== undefined);
  const rows = classes.map((cls) => {
    const cells = groups.map((g) => {
      const e = best(g, cls);
      if (!e) return `<td class="na">—</td>`;
      const star = e.rank === 1
        ? ` <span class="star" title="best class at this bit-width">★</span>`
        : "";
      return `<td data-val="${e.value!.value}" data-prov="${esc(e.prov)}" tabindex="0" title="${
        esc(provenanceTitle(e.row))
      }">${esc(fmtMetric(def, e.value!.value))}${star}<br><small>${esc(e.spec)} ${
        esc(e.row.quant.label)
      }</small></td>`;
    }).join("");
    return `<tr><th scope="row">${classBadge(cls)}</th>${cells}</tr>`;
  }).join("\n");
  return `<table class="classes" data-task="${esc(task)}">
<caption>${esc(task)}: best ${esc(def.label)} of each class per bit-width (★ best class)</caption>
<thead><tr><th scope="col">class</th>${
    groups.map((g) => `<th scope="col">${esc(bitsLabel(g))}</th>`).join("")
  }</tr></thead>
<tbody>
${rows}
</tbody>
</table>`;
}

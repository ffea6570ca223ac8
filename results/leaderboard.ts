/**
 * The HTML leaderboard: one self-contained page per model (inline CSS, inline JS, inline SVG
 * charts; opens from `file://` with no network) plus an index, and the rows as JSONL and CSV.
 *
 * A model's page has a metric selector (perplexity, Δ NLL against FP, KL, top-1, accuracy, bits
 * per weight, MoE routing consistency…: every metric its rows report). The selected metric drives
 * - the results table: rows are method specs grouped by taxonomy class (taken from the method
 *   registry), columns task × bit configuration; each cell shows value ± stderr and, where it
 *   means something, the change against the full-precision row of the same task, coloured by
 *   whether it is an improvement; the best cell of each column is marked;
 * - the ranking across classes: every quantized cell ranked within its bit-width, with its class,
 *   and the best cell of each class per bit-width;
 * - the charts: the metric against bits per weight, and a method × configuration heatmap.
 *
 * Every metric's cells, rankings and charts are in the page; the selector only shows one set, so
 * the page works without its script too (showing the default metric). Clicking a cell shows its
 * provenance (model hashes, method parameters, calibration set, backend, commit, timing).
 *
 * @module
 */

import { METHODS } from "../methods/mod.ts";
import type { Method } from "../methods/types.ts";
import { accChart, type Chart, metricChart, metricHeatmap } from "./charts.ts";
import { escapeHtml as esc, slug } from "./html.ts";
import {
  BITS_PER_WEIGHT,
  defaultMetric,
  fmtMetric,
  fmtStderr,
  type MetricDef,
  metricTitle,
  metricValue,
  pageMetrics,
  valueLegend,
} from "./metric_defs.ts";
import { provenanceTitle, renderProvenance } from "./provenance.ts";
import { rankCells, type RankContext, renderClassSummary, renderRanking } from "./ranking.ts";
import type { ResultRow } from "./row.ts";
import { rowsToCsv } from "./store.ts";

/** A leaf column of a model's table: one task at one bit configuration. */
export interface Column {
  /** Task key: task id, plus the limit when one was set. */
  readonly task: string;
  readonly family: string;
  readonly label: string;
  readonly wBits: number;
  /** Bits per weight of the configuration (null for FP). */
  readonly bitsPerWeight: number | null;
}

/** One metric's value in a table cell. */
export interface MetricCell {
  readonly value: number;
  readonly stderr: number | null;
  readonly higherIsBetter: boolean;
  /** Change against the reference (FP) row of the same task and metric. */
  readonly delta?: number;
  /** Relative change against the reference, for perplexity. */
  readonly relDelta?: number;
  readonly best?: boolean;
}

/** One table cell. */
export interface Cell {
  readonly kind: "ok" | "unsupported" | "failed" | "missing";
  /** Values by metric key (ok cells). */
  readonly values?: Readonly<Record<string, MetricCell>>;
  readonly error?: string;
  /** The row behind the cell. */
  readonly row?: ResultRow;
  /** Id of the row's provenance section in the page. */
  readonly prov?: string;
}

/** One method row. */
export interface MethodRow {
  readonly spec: string;
  readonly taxonomy: string;
  readonly reference: boolean;
  readonly cells: readonly Cell[];
}

/** A taxonomy class and its method rows. */
export interface ClassGroup {
  readonly taxonomy: string;
  readonly rows: readonly MethodRow[];
}

/** The table of one model, before rendering. */
export interface ModelTable {
  readonly model: string;
  readonly columns: readonly Column[];
  readonly groups: readonly ClassGroup[];
  /** The metrics the page offers, in the selector's order. */
  readonly metrics: readonly MetricDef[];
  /** Key of the metric shown first. */
  readonly metric: string;
  /**
   * Rows not shown because a newer row has the same method spec, task and bit configuration
   * (e.g. the same matrix run on another backend, which gives another cell id).
   */
  readonly shadowed: readonly ResultRow[];
}

/** Options of {@linkcode buildTable} and {@linkcode buildSite}. */
export interface LeaderboardOptions {
  /** Method registry items (default: `METHODS.items`); gives each method id its class. */
  readonly methods?: readonly Pick<Method, "id" | "taxonomy" | "scope">[];
}

function taskKey(r: ResultRow): string {
  return r.task.limit ? `${r.task.id} (limit ${r.task.limit})` : r.task.id;
}

function specOf(r: ResultRow): string {
  return r.method.spec ?? r.method.id;
}

/** Id of the provenance section of the `i`-th row of a model. */
function provId(i: number): string {
  return `prov-${i}`;
}

/** How rows are classified: class and reference from the registry, FP row per task. */
function context(rows: readonly ResultRow[], opts: LeaderboardOptions) {
  const registry = opts.methods ?? METHODS.items;
  const classOf = (r: ResultRow) =>
    registry.find((m) => m.id === r.method.id)?.taxonomy ?? r.method.taxonomy;
  const isRef = (r: ResultRow) =>
    (registry.find((m) => m.id === r.method.id)?.scope ?? r.method.scope) === "none";
  const refs = new Map<string, ResultRow>();
  for (const r of rows) {
    if (!isRef(r) || r.status !== "ok") continue;
    const prev = refs.get(taskKey(r));
    if (!prev || (r.finishedAt ?? "") > (prev.finishedAt ?? "")) refs.set(taskKey(r), r);
  }
  const refOf = (r: ResultRow) => refs.get(taskKey(r));
  const index = new Map(rows.map((r, i) => [r, i]));
  const provOf = (r: ResultRow) => provId(index.get(r) ?? -1);
  return { classOf, isRef, refOf, provOf };
}

/** The rows shown: the newest of each (spec, task, label); the others are shadowed. */
function newest(rows: readonly ResultRow[]): { shown: ResultRow[]; shadowed: ResultRow[] } {
  const byKey = new Map<string, ResultRow>();
  const shadowed: ResultRow[] = [];
  for (const r of rows) {
    const k = `${specOf(r)}\u0000${taskKey(r)}\u0000${r.quant.label}`;
    const prev = byKey.get(k);
    if (!prev || (r.finishedAt ?? "") > (prev.finishedAt ?? "")) {
      byKey.set(k, r);
      if (prev) shadowed.push(prev);
    } else shadowed.push(r);
  }
  const old = new Set(shadowed);
  return { shown: rows.filter((r) => !old.has(r)), shadowed };
}

/**
 * Builds the table model of one model's rows. Provenance ids (`prov-<i>`) number `rows` in the
 * order given.
 */
export function buildTable(
  rows: readonly ResultRow[],
  opts: LeaderboardOptions = {},
): ModelTable {
  const { shown, shadowed } = newest(rows);
  const all = context(rows, opts);
  const { classOf, isRef, provOf } = all;
  const ctx = context(shown, opts);
  const refOf = ctx.refOf;
  const metrics = pageMetrics(shown, refOf, isRef);

  // Columns: per task (sorted), per bit configuration (more bits first).
  const tasks = [...new Set(rows.map(taskKey))].sort();
  const columns: Column[] = [];
  for (const t of tasks) {
    const tr = rows.filter((r) => taskKey(r) === t);
    const family = tr[0]!.task.family;
    const labels = new Map<string, ResultRow["quant"]>();
    for (const r of tr) labels.set(r.quant.label, r.quant);
    const sorted = [...labels].sort((a, b) => b[1].wBits - a[1].wBits || a[0].localeCompare(b[0]));
    for (const [label, q] of sorted) {
      columns.push({ task: t, family, label, wBits: q.wBits, bitsPerWeight: q.bitsPerWeight });
    }
  }

  const byKey = new Map<string, ResultRow>();
  for (const r of shown) byKey.set(`${specOf(r)}\u0000${taskKey(r)}\u0000${r.quant.label}`, r);

  const specs = new Map<string, { taxonomy: string; reference: boolean }>();
  for (const r of rows) {
    if (!specs.has(specOf(r))) specs.set(specOf(r), { taxonomy: classOf(r), reference: isRef(r) });
  }

  const methodRows: MethodRow[] = [...specs].map(([spec, info]) => ({
    spec,
    ...info,
    cells: columns.map((c): Cell => {
      const r = byKey.get(`${spec}\u0000${c.task}\u0000${c.label}`);
      if (!r) return { kind: "missing" };
      if (r.status !== "ok") {
        return { kind: r.status, error: r.error ?? r.status, row: r, prov: provOf(r) };
      }
      const ref = refOf(r);
      const values: Record<string, MetricCell> = {};
      for (const def of metrics) {
        const v = metricValue(r, def, ref, info.reference);
        if (!v) continue;
        const f = ref && def.delta && !info.reference
          ? metricValue(ref, def, ref, true)
          : undefined;
        const delta = f ? v.value - f.value : undefined;
        values[def.key] = {
          value: v.value,
          stderr: v.stderr,
          higherIsBetter: def.higherIsBetter,
          ...(delta !== undefined ? { delta } : {}),
          ...(delta !== undefined && f!.value && def.metric === "ppl"
            ? { relDelta: delta / f!.value }
            : {}),
        };
      }
      return { kind: "ok", values, row: r, prov: provOf(r) };
    }),
  }));

  // Best per column and metric among ok cells.
  const marked = methodRows.map((mr) => ({
    ...mr,
    cells: mr.cells.map((c) => (c.values ? { ...c, values: { ...c.values } } : c)),
  }));
  columns.forEach((_, i) => {
    for (const def of metrics) {
      let best: number | undefined;
      for (const mr of marked) {
        const v = mr.cells[i]!.values?.[def.key];
        if (!v) continue;
        if (best === undefined || (def.higherIsBetter ? v.value > best : v.value < best)) {
          best = v.value;
        }
      }
      if (best === undefined) continue;
      for (const mr of marked) {
        const vals = mr.cells[i]!.values as Record<string, MetricCell> | undefined;
        const v = vals?.[def.key];
        if (v && v.value === best) vals![def.key] = { ...v, best: true };
      }
    }
  });

  const classes = [...new Set(marked.map((m) => m.taxonomy))].sort((a, b) => {
    const ra = marked.some((m) => m.taxonomy === a && m.reference) ? 0 : 1;
    const rb = marked.some((m) => m.taxonomy === b && m.reference) ? 0 : 1;
    return ra - rb || a.localeCompare(b);
  });
  const groups = classes.map((taxonomy) => ({
    taxonomy,
    rows: marked.filter((m) => m.taxonomy === taxonomy).sort((a, b) =>
      Number(b.reference) - Number(a.reference) || a.spec.localeCompare(b.spec)
    ),
  }));
  return {
    model: rows[0]?.model.id ?? "",
    columns,
    groups,
    metrics,
    metric: defaultMetric(metrics, shown),
    shadowed,
  };
}

function fmtDelta(def: MetricDef, c: MetricCell): string {
  const d = c.delta!;
  const sign = d >= 0 ? "+" : "−";
  if (def.metric === "ppl" && c.relDelta !== undefined) {
    return `${sign}${fmtMetric(def, Math.abs(d))} (${sign}${
      Math.abs(c.relDelta * 100).toFixed(1)
    }%)`;
  }
  return `${sign}${Math.abs(d).toFixed(4)}`;
}

/** One metric's content of a cell: a span the page shows when the metric is selected. */
function renderMetric(def: MetricDef, c: MetricCell | undefined): string {
  if (!c) return `<span class="mv na" data-m="${def.key}" data-val="">—</span>`;
  const se = c.stderr !== null && Number.isFinite(c.stderr) && c.stderr > 0
    ? `<span class="se"> ± ${fmtStderr(def, c.stderr)}</span>`
    : "";
  let delta = "";
  if (c.delta !== undefined) {
    const good = c.delta === 0 ? "same" : (c.delta > 0) === c.higherIsBetter ? "good" : "bad";
    delta = `<br><span class="d ${good}">Δ\u00a0${fmtDelta(def, c)}</span>`;
  }
  const best = c.best
    ? ` <span class="star" title="best in column" aria-label="best">★</span>`
    : "";
  return `<span class="mv${
    c.best ? " best" : ""
  }" data-m="${def.key}" data-val="${c.value}"><span class="v">${
    esc(fmtMetric(def, c.value))
  }</span>${se}${best}${delta}</span>`;
}

function renderCell(t: ModelTable, col: Column, c: Cell, i: number): string {
  const prov = c.prov ? ` data-prov="${esc(c.prov)}" tabindex="0"` : "";
  const attrs = `data-col="${i}" data-wbits="${col.wBits}"${prov}`;
  if (c.kind === "missing") return `<td ${attrs} data-v="" class="na">—</td>`;
  if (c.kind !== "ok") {
    return `<td ${attrs} data-v="" class="status ${c.kind}" title="${esc(c.error)}">${c.kind}</td>`;
  }
  const shown = c.values![t.metric];
  return `<td ${attrs} data-v="${shown ? shown.value : ""}"${
    shown?.best ? ' class="best"' : ""
  } title="${esc(provenanceTitle(c.row!))}">${
    t.metrics.map((def) => renderMetric(def, c.values![def.key])).join("")
  }</td>`;
}

/** Escaped text with line-break opportunities after `:`, `,` and `=` (long method specs). */
function breakable(s: string): string {
  return esc(s).replace(/([:,=])/g, "$1<wbr>");
}

/** Per metric, a span of `text(def)` shown only while that metric is selected. */
function perMetric(metrics: readonly MetricDef[], text: (def: MetricDef) => string): string {
  return metrics.map((def) => `<span data-m="${def.key}">${text(def)}</span>`).join("");
}

/** The metric selector and the filters. */
function renderControls(t: ModelTable): string {
  const options = t.metrics.map((m) =>
    `<option value="${m.key}"${m.key === t.metric ? " selected" : ""}>${esc(metricTitle(m))} ${
      m.higherIsBetter ? "↑" : "↓"
    }</option>`
  ).join("");
  const classBoxes = t.groups.map((g) =>
    `<label><input type="checkbox" checked data-filter-class="${esc(g.taxonomy)}"> ${
      esc(g.taxonomy)
    }</label>`
  ).join(" ");
  const bits = [...new Set(t.columns.map((c) => c.wBits))].sort((a, b) => b - a);
  const bitBoxes = bits.map((b) =>
    `<label><input type="checkbox" checked data-filter-wbits="${b}"> W${b}</label>`
  ).join(" ");
  return `<form id="controls" aria-label="metric and filters" autocomplete="off" onsubmit="return false">
<label class="metric">Metric <select id="metric" name="metric">${options}</select></label>
<span class="note">${perMetric(t.metrics, (d) => esc(d.description))}</span><br>
<fieldset><legend>Taxonomy class</legend>${classBoxes}</fieldset>
<fieldset><legend>Weight bits</legend>${bitBoxes}</fieldset>
</form>`;
}

/**
 * Renders a model's table as an HTML `<table>` (plus the metric selector and filters before it,
 * and the list of shadowed rows after it).
 */
export function renderTable(t: ModelTable): string {
  const tasks = [...new Set(t.columns.map((c) => c.task))];
  const top = tasks.map((task, ti) => {
    const n = t.columns.filter((c) => c.task === task).length;
    return `<th scope="colgroup" colspan="${n}" data-taskgroup="${ti}">${esc(task)}</th>`;
  }).join("");
  const leaves = t.columns.map((c, i) =>
    `<th scope="col" data-sort="${i}" data-task="${
      tasks.indexOf(c.task)
    }" data-wbits="${c.wBits}"><button type="button">${esc(c.label)}</button>${
      c.bitsPerWeight !== null
        ? `<span class="bpw">${esc(c.bitsPerWeight.toFixed(2))} b/w</span>`
        : ""
    }</th>`
  ).join("");
  const width = t.columns.length + 1;
  const bodies = t.groups.map((g) => {
    const rows = g.rows.map((r) =>
      `<tr class="m"><th scope="row">${breakable(r.spec)}${r.reference ? " (reference)" : ""}</th>${
        r.cells.map((c, i) => renderCell(t, t.columns[i]!, c, i)).join("")
      }</tr>`
    ).join("\n");
    return `<tbody data-class="${
      esc(g.taxonomy)
    }"><tr class="group"><th colspan="${width}" scope="rowgroup">${
      esc(g.taxonomy)
    }</th></tr>\n${rows}</tbody>`;
  }).join("\n");
  const caption = `<strong>${esc(t.model)}</strong>: ${
    perMetric(t.metrics, (d) =>
      `${esc(metricTitle(d))} (${d.higherIsBetter ? "higher" : "lower"} is better), ${
        esc(valueLegend(d))
      }${d.delta ? "; Δ against the full-precision reference (green better, red worse)" : ""}`)
  }; ★ best in column. Click a header to sort within each class, a cell for its provenance.`;
  return `${renderControls(t)}
<p class="cap" id="lb-cap">${caption}</p>
<div class="scroll" role="region" aria-labelledby="lb-cap" tabindex="0">
<table id="lb" aria-labelledby="lb-cap">
<thead><tr><th rowspan="2" scope="col" data-sort="method"><button type="button">method</button></th>${top}</tr>
<tr>${leaves}</tr></thead>
${bodies}
</table>
</div>${shadowedNote(t)}`;
}

function shadowedNote(t: ModelTable): string {
  if (!t.shadowed.length) return "";
  const items = t.shadowed.map((r) =>
    `<li>${esc(specOf(r))} ${esc(r.quant.label)} ${esc(taskKey(r))}: backend ${
      esc(r.env?.backend ?? "?")
    }, finished ${esc(r.finishedAt)}, cell <code>${esc(r.cellId)}</code></li>`
  ).join("\n");
  return `<details><summary>${t.shadowed.length} older row(s) with the same method, task and bit configuration are not shown (the newest is)</summary>
<ul>
${items}
</ul></details>`;
}

/** A chart of one task and one metric. */
export interface MetricChart extends Chart {
  /** Key of the metric it shows. */
  readonly metric: string;
  readonly task: string;
}

function figure(c: MetricChart, file: string): string {
  return `<figure data-m="${c.metric}">
${c.svg}
<figcaption><strong>${esc(c.title)}.</strong> ${esc(c.description)} <a href="${
    esc(file)
  }">SVG</a></figcaption>
</figure>`;
}

/**
 * The charts of one model's rows: per task and metric, the metric against bits per weight
 * (accuracy with its Pareto front for zero-shot tasks) and a method × configuration heatmap.
 */
export async function buildCharts(
  rows: readonly ResultRow[],
  prefix: string,
  opts: LeaderboardOptions = {},
  metrics?: readonly MetricDef[],
): Promise<MetricChart[]> {
  const { isRef, refOf } = context(rows, opts);
  const defs = metrics ?? pageMetrics(rows, refOf, isRef);
  const charts: MetricChart[] = [];
  const tasks = [...new Set(rows.map(taskKey))].sort();
  for (const [ti, task] of tasks.entries()) {
    const tr = rows.filter((r) => taskKey(r) === task && r.status === "ok");
    if (!tr.length) continue;
    const p = tasks.length > 1 ? `${prefix}-t${ti}` : prefix;
    const ref = tr.find(isRef);
    const quant = tr.filter((r) => !isRef(r) && r.quant.bitsPerWeight !== null);
    const labels = [...new Map(quant.map((r) => [r.quant.label, r.quant.wBits]))]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([l]) => l);
    const push = (c: Chart | null, metric: string) => {
      if (!c) return;
      charts.push({
        ...c,
        name: tasks.length > 1 ? `${slug(task)}-${c.name}` : c.name,
        metric,
        task,
      });
    };
    for (const def of defs) {
      const pts = quant.flatMap((r) => {
        const v = metricValue(r, def, refOf(r), false);
        return v
          ? [{
            method: specOf(r),
            label: r.quant.label,
            bitsPerWeight: r.quant.bitsPerWeight!,
            value: v.value,
            stderr: v.stderr,
          }]
          : [];
      });
      if (!pts.length) continue;
      const fp = ref ? metricValue(ref, def, ref, true)?.value : undefined;
      if (def.metric === BITS_PER_WEIGHT) {
        // nothing to plot against itself
      } else if (tr[0]!.task.family !== "perplexity" && def.higherIsBetter && def.delta) {
        const acc = pts.map((x) => ({ ...x, acc: x.value }));
        push(await accChart(acc, fp, task, def.metric, `${p}-${def.key}`), def.key);
      } else {
        push(await metricChart(pts, def, fp, task, p), def.key);
      }
      push(await metricHeatmap(pts, labels, def, task, p), def.key);
    }
  }
  return charts;
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
h2{margin-top:1.6rem}
table{border-collapse:collapse;margin:1rem 0}
caption,th[data-taskgroup]{text-align:left}
caption{padding:.2rem 0;color:#444}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:right;vertical-align:top}
th[scope=row],tr.group th,tr.bits th{text-align:left}
thead th{background:#f3f3f3}
thead th[data-sort=method],table.rank thead th,table.classes thead th{text-align:left}
.scroll{overflow-x:auto;max-width:100%}
.cap{color:#444;margin:.6rem 0 .2rem}
#lb{font-size:13px;margin-top:.3rem}
#lb th,#lb td{padding:.25rem .35rem}
#lb th[scope=row]{min-width:6rem;max-width:10rem}
#lb .se{display:block}
.bpw{display:block;font-size:.75em;color:#777;font-weight:normal}
tr.group th{background:#e8eef8;font-weight:600}
tr.bits th{background:#eef3ea;font-weight:600}
th button{font:inherit;background:none;border:0;cursor:pointer;padding:0}
.se{color:#777;font-size:.85em;white-space:nowrap}
.d{font-size:.8em}.d.good{color:#1a7f37}.d.bad{color:#c0262d}.d.same{color:#777}
td.best{background:#fff6cc}.star{color:#b58900}
td.status{color:#a33;font-style:italic;cursor:help}td.status.unsupported{color:#777}
td.na,.mv.na{color:#bbb;text-align:center}
[data-prov]{cursor:pointer}
[data-prov]:hover,[data-prov]:focus{outline:2px solid #7aa7e0;outline-offset:-2px}
#controls{position:sticky;top:0;z-index:5;background:#fff;padding:.4rem 0;border-bottom:1px solid #ddd}
#controls .metric{font-weight:600;margin-right:.6rem}
#controls select{font:inherit}
#controls .note{color:#555;font-size:.9em}
fieldset{display:inline-block;margin:.3rem 1rem .3rem 0}
figure{margin:1rem 0}figcaption{max-width:60rem;color:#444}
figure svg{max-width:100%;height:auto}
.cls{display:inline-block;padding:0 .35rem;border-radius:.6rem;background:#eee;font-size:.9em}
.cls[data-cls=baseline]{background:#e6e6e6}.cls[data-cls=compensation]{background:#d6e6fb}
.cls[data-cls=rotation]{background:#eadcf7}.cls[data-cls=salience]{background:#fde2c4}
.cls[data-cls=optimization]{background:#d5f0d9}
table.rank td,table.classes td{white-space:nowrap}
table.classes small{color:#666}
.downloads a{margin-right:.6rem}
#detail{position:fixed;top:0;right:0;bottom:0;width:min(32rem,92vw);box-sizing:border-box;overflow:auto;background:#fff;border-left:1px solid #999;box-shadow:-4px 0 14px rgba(0,0,0,.18);padding:1rem;z-index:10}
#detail[hidden]{display:none}
#detail dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .7rem;margin:0}
#detail dt{font-weight:600}#detail dd{margin:0;overflow-wrap:anywhere}
#detail ul{margin:0;padding-left:1rem}
#detail-close{float:right}
section.ranking,figure,#lb-cap{scroll-margin-top:9rem}
.hidden{display:none}
`;

/** CSS that shows only the selected metric's elements (`data-m`) once `body[data-metric]` is set. */
function metricCss(metrics: readonly MetricDef[]): string {
  return metrics.map((m) => `body:not([data-metric="${m.key}"]) [data-m="${m.key}"]{display:none}`)
    .join("\n");
}

const JS = `
(function(){
  var table=document.getElementById("lb");
  var select=document.getElementById("metric");
  function num(td){var v=td?td.getAttribute("data-v"):"";return v===""||v===null?NaN:Number(v);}
  function sortBy(th,dir){
    var col=th.getAttribute("data-sort");
    table.querySelectorAll("thead th[data-sort]").forEach(function(o){o.removeAttribute("aria-sort");});
    th.setAttribute("aria-sort",dir===1?"ascending":"descending");
    table.querySelectorAll("tbody").forEach(function(tb){
      var rows=Array.prototype.slice.call(tb.querySelectorAll("tr.m"));
      rows.sort(function(a,b){
        if(col==="method"){return dir*a.cells[0].textContent.localeCompare(b.cells[0].textContent);}
        var x=num(a.querySelector('td[data-col="'+col+'"]')),y=num(b.querySelector('td[data-col="'+col+'"]'));
        if(isNaN(x)&&isNaN(y))return 0;if(isNaN(x))return 1;if(isNaN(y))return -1;
        return dir*(x-y);
      });
      rows.forEach(function(r){tb.appendChild(r);});
    });
  }
  table.querySelectorAll("thead th[data-sort]").forEach(function(th){
    th.querySelector("button").addEventListener("click",function(){
      sortBy(th,th.getAttribute("aria-sort")==="ascending"?-1:1);
    });
  });
  function setMetric(k){
    document.body.setAttribute("data-metric",k);
    table.querySelectorAll("td[data-col]").forEach(function(td){
      var s=null;
      td.querySelectorAll(".mv").forEach(function(e){if(e.getAttribute("data-m")===k)s=e;});
      td.setAttribute("data-v",s?(s.getAttribute("data-val")||""):"");
      td.classList.toggle("best",!!s&&s.classList.contains("best"));
    });
    var sorted=table.querySelector("thead th[aria-sort]");
    if(sorted)sortBy(sorted,sorted.getAttribute("aria-sort")==="ascending"?1:-1);
  }
  if(select)select.addEventListener("change",function(){setMetric(select.value);});
  function apply(){
    document.querySelectorAll("input[data-filter-class]").forEach(function(cb){
      table.querySelectorAll('tbody[data-class="'+cb.getAttribute("data-filter-class")+'"]').forEach(function(tb){tb.classList.toggle("hidden",!cb.checked);});
    });
    document.querySelectorAll("input[data-filter-wbits]").forEach(function(cb){
      table.querySelectorAll('[data-wbits="'+cb.getAttribute("data-filter-wbits")+'"]').forEach(function(el){el.classList.toggle("hidden",!cb.checked);});
    });
    table.querySelectorAll("thead th[data-taskgroup]").forEach(function(th){
      var n=table.querySelectorAll('thead th[data-sort][data-task="'+th.getAttribute("data-taskgroup")+'"]:not(.hidden)').length;
      th.colSpan=Math.max(n,1);th.classList.toggle("hidden",n===0);
    });
  }
  document.querySelectorAll("input[data-filter-class],input[data-filter-wbits]").forEach(function(cb){cb.addEventListener("change",apply);});
  var panel=document.getElementById("detail"),body=document.getElementById("detail-body"),last=null;
  function show(el){
    var src=document.getElementById(el.getAttribute("data-prov"));
    if(!src||!panel)return;
    body.innerHTML=src.innerHTML;
    panel.hidden=false;last=el;
    document.getElementById("detail-close").focus();
  }
  function hide(){if(!panel||panel.hidden)return;panel.hidden=true;if(last)last.focus();}
  document.addEventListener("click",function(e){
    var t=e.target;if(!t.closest||t.closest("button,a,input,select,label"))return;
    var el=t.closest("[data-prov]");if(el)show(el);
  });
  document.addEventListener("keydown",function(e){
    if(e.key==="Escape"){hide();return;}
    var el=e.target;
    if((e.key==="Enter"||e.key===" ")&&el.hasAttribute&&el.hasAttribute("data-prov")){e.preventDefault();show(el);}
  });
  document.getElementById("detail-close").addEventListener("click",hide);
  function init(){apply();if(select)setMetric(select.value);}
  init();
  window.addEventListener("pageshow",init);
})();
`;

function page(title: string, body: string, script = "", css = "", bodyAttrs = ""): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}${css}</style>
</head>
<body${bodyAttrs}>
${body}
${script ? `<script>${script}</script>` : ""}
</body>
</html>
`;
}

/** Groups rows by model id, in model order. */
function byModel(rows: readonly ResultRow[]): Map<string, ResultRow[]> {
  const out = new Map<string, ResultRow[]>();
  for (const r of [...rows].sort((a, b) => a.model.id.localeCompare(b.model.id))) {
    const list = out.get(r.model.id) ?? [];
    list.push(r);
    out.set(r.model.id, list);
  }
  return out;
}

/** Rows as JSONL, one compact JSON object per line. */
function toJsonl(rows: readonly ResultRow[]): string {
  return rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : "");
}

/** The rankings of every task and metric, each shown while its metric is selected. */
function renderRankings(
  rows: readonly ResultRow[],
  metrics: readonly MetricDef[],
  ctx: RankContext,
): string {
  const tasks = [...new Set(rows.map(taskKey))].sort();
  return metrics.map((def) => {
    const parts = tasks.map((task) => {
      const groups = rankCells(rows.filter((r) => taskKey(r) === task), def, ctx);
      if (!groups.some((g) => g.entries.some((e) => e.value))) return "";
      return `${renderClassSummary(groups, def, task)}\n${renderRanking(groups, def, task)}`;
    }).filter(Boolean);
    return `<section class="ranking" data-m="${def.key}">
${parts.length ? parts.join("\n") : `<p>No quantized cell reports ${esc(def.label)}.</p>`}
</section>`;
  }).join("\n");
}

/** Name of the all-rows data files on the index page (`.jsonl`, `.csv`). */
export const ALL_ROWS = "lowbit-results";

/**
 * Builds the whole site in memory: `index.html`, one `<model>.html` per model, each chart as
 * `<model>-<chart>.svg`, each model's rows as `<model>.jsonl` and `<model>.csv`, and every row
 * as `lowbit-results.jsonl` and `.csv`. Keys are paths relative to the output directory.
 */
export async function buildSite(
  rows: readonly ResultRow[],
  opts: LeaderboardOptions = {},
): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const index: string[] = [];
  const used = new Set<string>(["index", ALL_ROWS]);
  for (const [model, mrows] of byModel(rows)) {
    let name = slug(model);
    for (let k = 2; used.has(name); k++) name = `${slug(model)}-${k}`;
    used.add(name);
    const table = buildTable(mrows, opts);
    const hidden = new Set(table.shadowed);
    const shown = mrows.filter((r) => !hidden.has(r));
    const all = context(mrows, opts);
    const ctx: RankContext = { ...all, refOf: context(shown, opts).refOf };
    const charts = await buildCharts(shown, name, opts, table.metrics);
    const chartFile = (c: MetricChart) => `${name}-${c.name}.svg`;
    for (const c of charts) files.set(chartFile(c), c.svg + "\n");
    files.set(`${name}.jsonl`, toJsonl(mrows));
    files.set(`${name}.csv`, rowsToCsv(mrows));
    const ok = mrows.filter((r) => r.status === "ok").length;
    const commits = [...new Set(mrows.map((r) => r.env?.git?.commit).filter(Boolean))];
    const downloads = `<p class="downloads">Raw data (${mrows.length} row(s)): <a href="${
      esc(`${name}.jsonl`)
    }" download>JSONL</a> (one result row per line) <a href="${
      esc(`${name}.csv`)
    }" download>CSV</a> (one line per metric)</p>`;
    const body = `<p><a href="index.html">← all models</a></p>
<h1>${esc(model)}</h1>
<p>${mrows.length} cell(s): ${ok} ok, ${mrows.length - ok} unsupported or failed. ${
      commits.length
        ? `lowbit commit(s): ${commits.map((c) => `<code>${esc(c)}</code>`).join(", ")}.`
        : ""
    }</p>
${downloads}
<h2>Results</h2>
${renderTable(table)}
<h2>Ranking across classes</h2>
<p>Quantized cells of each task ranked by the selected metric within each bit-width (weight bits ·
activation bits; configurations of one bit-width differ in grid and so in bits per weight, shown),
with the taxonomy class of each method; above each ranking, the best cell of each class.</p>
${renderRankings(shown, table.metrics, ctx)}
<h2>Charts</h2>
${
      charts.length
        ? charts.map((c) => figure(c, chartFile(c))).join("\n")
        : "<p>No chartable rows.</p>"
    }
${
      table.metrics.filter((m) => !charts.some((c) => c.metric === m.key)).map((m) =>
        `<p data-m="${m.key}">No chart of ${esc(m.label)}.</p>`
      ).join("\n")
    }
<aside id="detail" aria-label="provenance of the selected cell" hidden>
<button type="button" id="detail-close">close ✕</button>
<div id="detail-body"></div>
</aside>
<div id="provenance" hidden>
${mrows.map((r, i) => renderProvenance(r, provId(i))).join("\n")}
</div>`;
    files.set(
      `${name}.html`,
      page(
        `lowbit leaderboard: ${model}`,
        body,
        JS,
        metricCss(table.metrics),
        table.metric ? ` data-metric="${table.metric}"` : "",
      ),
    );
    index.push(
      `<tr><th scope="row"><a href="${esc(`${name}.html`)}">${esc(model)}</a></th><td>${
        new Set(mrows.map(specOf)).size
      }</td><td>${new Set(mrows.map((r) => r.quant.label)).size}</td><td>${
        new Set(mrows.map(taskKey)).size
      }</td><td>${ok}</td><td>${mrows.length - ok}</td><td><a href="${
        esc(`${name}.jsonl`)
      }" download>JSONL</a> <a href="${esc(`${name}.csv`)}" download>CSV</a></td></tr>`,
    );
  }
  files.set(`${ALL_ROWS}.jsonl`, toJsonl(rows));
  files.set(`${ALL_ROWS}.csv`, rowsToCsv(rows));
  files.set(
    "index.html",
    page(
      "lowbit leaderboard",
      `<h1>lowbit leaderboard</h1>
<table>
<caption>Models with results</caption>
<thead><tr><th scope="col">model</th><th scope="col">methods</th><th scope="col">bit configurations</th><th scope="col">tasks</th><th scope="col">ok cells</th><th scope="col">unsupported/failed</th><th scope="col">raw data</th></tr></thead>
<tbody>
${index.join("\n")}
</tbody>
</table>
<p class="downloads">Every row (${rows.length}): <a href="${ALL_ROWS}.jsonl" download>JSONL</a> <a href="${ALL_ROWS}.csv" download>CSV</a></p>`,
    ),
  );
  return files;
}

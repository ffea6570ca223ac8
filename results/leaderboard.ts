/**
 * The HTML leaderboard: one self-contained page per model (inline CSS, inline JS, inline SVG
 * charts; opens from `file://` with no network) plus an index.
 *
 * Rows are method specs grouped by taxonomy class (taken from the method registry), columns are
 * task × bit configuration × metric (`ppl` for perplexity tasks, `acc`/`acc_norm` for zero-shot).
 * Each cell shows value ± stderr and the change against the full-precision reference row of the
 * same task, coloured by whether it is an improvement; the best cell of each column is marked.
 *
 * @module
 */

import { METHODS } from "../methods/mod.ts";
import type { Method } from "../methods/types.ts";
import { accChart, type Chart, klHeatmap, pplChart } from "./charts.ts";
import { escapeHtml as esc, slug } from "./html.ts";
import type { ResultRow } from "./row.ts";

/** A leaf column of a model's table. */
export interface Column {
  /** Task key: task id, plus the limit when one was set. */
  readonly task: string;
  readonly family: string;
  readonly label: string;
  readonly wBits: number;
  readonly metric: string;
}

/** One table cell. */
export interface Cell {
  readonly kind: "ok" | "unsupported" | "failed" | "missing";
  readonly value?: number;
  readonly stderr?: number | null;
  readonly higherIsBetter?: boolean;
  /** Change against the reference (FP) row of the same task and metric. */
  readonly delta?: number;
  /** Relative change against the reference, for perplexity. */
  readonly relDelta?: number;
  readonly best?: boolean;
  readonly error?: string;
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

/** Metrics shown in the table for a task family. */
function tableMetrics(family: string, rows: readonly ResultRow[]): string[] {
  const present = new Set(rows.flatMap((r) => r.metrics.map((m) => m.metric)));
  const wanted = family === "perplexity" ? ["ppl"] : ["acc", "acc_norm"];
  const shown = wanted.filter((m) => present.has(m));
  return shown.length ? shown : [...present].sort();
}

/** Builds the table model of one model's rows. */
export function buildTable(
  rows: readonly ResultRow[],
  opts: LeaderboardOptions = {},
): ModelTable {
  const registry = opts.methods ?? METHODS.items;
  const classOf = (r: ResultRow) =>
    registry.find((m) => m.id === r.method.id)?.taxonomy ?? r.method.taxonomy;
  const isRef = (r: ResultRow) =>
    (registry.find((m) => m.id === r.method.id)?.scope ?? r.method.scope) === "none";

  // Columns: per task (sorted), per bit configuration (more bits first), per metric.
  const tasks = [...new Set(rows.map(taskKey))].sort();
  const columns: Column[] = [];
  for (const t of tasks) {
    const tr = rows.filter((r) => taskKey(r) === t);
    const family = tr[0]!.task.family;
    const metrics = tableMetrics(family, tr);
    const labels = new Map<string, number>();
    for (const r of tr) labels.set(r.quant.label, r.quant.wBits);
    const sorted = [...labels].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    for (const [label, wBits] of sorted) {
      for (const metric of metrics) columns.push({ task: t, family, label, wBits, metric });
    }
  }

  // Cells: the newest row for each (spec, task, label).
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
  const refValue = new Map<string, number>();
  for (const r of rows) {
    if (!isRef(r) || r.status !== "ok") continue;
    for (const m of r.metrics) refValue.set(`${taskKey(r)}\u0000${m.metric}`, m.value);
  }

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
      if (r.status !== "ok") return { kind: r.status, error: r.error ?? r.status };
      const m = r.metrics.find((x) => x.metric === c.metric);
      if (!m || !Number.isFinite(m.value)) return { kind: "missing" };
      const ref = refValue.get(`${c.task}\u0000${c.metric}`);
      const delta = ref !== undefined && !info.reference ? m.value - ref : undefined;
      return {
        kind: "ok",
        value: m.value,
        stderr: m.stderr,
        higherIsBetter: m.higherIsBetter,
        delta,
        relDelta: delta !== undefined && ref ? delta / ref : undefined,
      };
    }),
  }));

  // Best per column among ok cells.
  const marked = methodRows.map((mr) => ({ ...mr, cells: [...mr.cells] }));
  columns.forEach((_, i) => {
    let best: number | undefined;
    let hib = false;
    for (const mr of marked) {
      const c = mr.cells[i]!;
      if (c.kind !== "ok") continue;
      hib = c.higherIsBetter!;
      if (best === undefined || (hib ? c.value! > best : c.value! < best)) best = c.value!;
    }
    if (best === undefined) return;
    for (const mr of marked) {
      const c = mr.cells[i]!;
      if (c.kind === "ok" && c.value === best) mr.cells[i] = { ...c, best: true };
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
  return { model: rows[0]?.model.id ?? "", columns, groups, shadowed };
}

function fmtValue(metric: string, v: number): string {
  return metric === "ppl" && Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(4);
}

function fmtDelta(metric: string, c: Cell): string {
  const d = c.delta!;
  const sign = d >= 0 ? "+" : "−";
  if (metric === "ppl" && c.relDelta !== undefined) {
    return `${sign}${fmtValue(metric, Math.abs(d))} (${sign}${
      Math.abs(c.relDelta * 100).toFixed(1)
    }%)`;
  }
  return `${sign}${Math.abs(d).toFixed(4)}`;
}

function renderCell(col: Column, c: Cell, i: number): string {
  const attrs = `data-col="${i}" data-wbits="${col.wBits}"`;
  if (c.kind === "missing") return `<td ${attrs} data-v="" class="na">—</td>`;
  if (c.kind !== "ok") {
    return `<td ${attrs} data-v="" class="status ${c.kind}" title="${esc(c.error)}">${c.kind}</td>`;
  }
  const se = c.stderr !== null && c.stderr !== undefined && Number.isFinite(c.stderr)
    ? `<span class="se"> ± ${fmtValue(col.metric, c.stderr)}</span>`
    : "";
  let delta = "";
  if (c.delta !== undefined) {
    const good = c.delta === 0 ? "same" : (c.delta > 0) === c.higherIsBetter ? "good" : "bad";
    delta = `<br><span class="d ${good}">Δ ${fmtDelta(col.metric, c)}</span>`;
  }
  const best = c.best
    ? ` <span class="star" title="best in column" aria-label="best">★</span>`
    : "";
  return `<td ${attrs} data-v="${c.value}"${c.best ? ' class="best"' : ""}><span class="v">${
    fmtValue(col.metric, c.value!)
  }</span>${se}${best}${delta}</td>`;
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
caption,th[data-taskgroup]{text-align:left}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:right;vertical-align:top;white-space:nowrap}
th[scope=row],tr.group th{text-align:left}
thead th{background:#f3f3f3}
.scroll{overflow-x:auto;max-width:100%}
tr.group th{background:#e8eef8;font-weight:600}
th button{font:inherit;background:none;border:0;cursor:pointer;padding:0}
.se{color:#777;font-size:.85em}
.d{font-size:.8em}.d.good{color:#1a7f37}.d.bad{color:#c0262d}.d.same{color:#777}
td.best{background:#fff6cc}.star{color:#b58900}
td.status{color:#a33;font-style:italic;cursor:help}td.status.unsupported{color:#777}
td.na{color:#bbb;text-align:center}
fieldset{display:inline-block;margin:.3rem 1rem .3rem 0}
figure{margin:1rem 0}figcaption{max-width:60rem;color:#444}
.hidden{display:none}
`;

const JS = `
(function(){
  var table=document.getElementById("lb");
  function num(td){var v=td?td.getAttribute("data-v"):"";return v===""||v===null?NaN:Number(v);}
  table.querySelectorAll("thead th[data-sort]").forEach(function(th){
    th.querySelector("button").addEventListener("click",function(){
      var col=th.getAttribute("data-sort");
      var dir=th.getAttribute("aria-sort")==="ascending"?-1:1;
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
    });
  });
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
  apply();
  window.addEventListener("pageshow",apply);
})();
`;

/** Renders a model's table as an HTML `<table>` (plus the filter controls before it). */
export function renderTable(t: ModelTable): string {
  const tasks = [...new Set(t.columns.map((c) => c.task))];
  const top = tasks.map((task, ti) => {
    const n = t.columns.filter((c) => c.task === task).length;
    return `<th scope="colgroup" colspan="${n}" data-taskgroup="${ti}">${esc(task)}</th>`;
  }).join("");
  const leaves = t.columns.map((c, i) =>
    `<th scope="col" data-sort="${i}" data-task="${
      tasks.indexOf(c.task)
    }" data-wbits="${c.wBits}"><button type="button">${esc(c.label)} ${esc(c.metric)}${
      c.metric === "ppl" ? " ↓" : ""
    }</button></th>`
  ).join("");
  const width = t.columns.length + 1;
  const bodies = t.groups.map((g) => {
    const rows = g.rows.map((r) =>
      `<tr class="m"><th scope="row">${esc(r.spec)}${r.reference ? " (reference)" : ""}</th>${
        r.cells.map((c, i) => renderCell(t.columns[i]!, c, i)).join("")
      }</tr>`
    ).join("\n");
    return `<tbody data-class="${
      esc(g.taxonomy)
    }"><tr class="group"><th colspan="${width}" scope="rowgroup">${
      esc(g.taxonomy)
    }</th></tr>\n${rows}</tbody>`;
  }).join("\n");
  const classBoxes = t.groups.map((g) =>
    `<label><input type="checkbox" checked data-filter-class="${esc(g.taxonomy)}"> ${
      esc(g.taxonomy)
    }</label>`
  ).join(" ");
  const bits = [...new Set(t.columns.map((c) => c.wBits))].sort((a, b) => b - a);
  const bitBoxes = bits.map((b) =>
    `<label><input type="checkbox" checked data-filter-wbits="${b}"> W${b}</label>`
  ).join(" ");
  return `<form aria-label="filters" autocomplete="off" onsubmit="return false">
<fieldset><legend>Taxonomy class</legend>${classBoxes}</fieldset>
<fieldset><legend>Weight bits</legend>${bitBoxes}</fieldset>
</form>
<div class="scroll">
<table id="lb">
<caption>${
    esc(t.model)
  }: value ± standard error; Δ against the full-precision reference (green better, red worse); ★ best in column; click a header to sort within each class.</caption>
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

function figure(c: Chart): string {
  return `<figure>
${c.svg}
<figcaption><strong>${esc(c.title)}.</strong> ${esc(c.description)}</figcaption>
</figure>`;
}

/** The charts of one model's rows: per perplexity task ppl and KL, per zero-shot task acc. */
export async function buildCharts(
  rows: readonly ResultRow[],
  prefix: string,
  opts: LeaderboardOptions = {},
): Promise<Chart[]> {
  const registry = opts.methods ?? METHODS.items;
  const isRef = (r: ResultRow) =>
    (registry.find((m) => m.id === r.method.id)?.scope ?? r.method.scope) === "none";
  const charts: Chart[] = [];
  const tasks = [...new Set(rows.map(taskKey))].sort();
  for (const [ti, task] of tasks.entries()) {
    const tr = rows.filter((r) => taskKey(r) === task && r.status === "ok");
    if (!tr.length) continue;
    const p = tasks.length > 1 ? `${prefix}-t${ti}` : prefix;
    const val = (r: ResultRow, m: string) => r.metrics.find((x) => x.metric === m);
    const ref = tr.find(isRef);
    const quant = tr.filter((r) => !isRef(r) && r.quant.bitsPerWeight !== null);
    const named = (c: Chart | null) =>
      c ? { ...c, name: tasks.length > 1 ? `${slug(task)}-${c.name}` : c.name } : null;
    if (tr[0]!.task.family === "perplexity") {
      const pts = quant.flatMap((r) => {
        const m = val(r, "ppl");
        return m && Number.isFinite(m.value) && m.value > 0
          ? [{
            method: specOf(r),
            label: r.quant.label,
            bitsPerWeight: r.quant.bitsPerWeight!,
            ppl: m.value,
          }]
          : [];
      });
      const c1 = named(await pplChart(pts, ref && val(ref, "ppl")?.value, task, p));
      if (c1) charts.push(c1);
      const labels = [...new Map(quant.map((r) => [r.quant.label, r.quant.wBits]))]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([l]) => l);
      const kl = quant.flatMap((r) => {
        const m = val(r, "kl");
        return m && Number.isFinite(m.value)
          ? [{ method: specOf(r), label: r.quant.label, kl: m.value }]
          : [];
      });
      const c2 = named(await klHeatmap(kl, labels, task, p));
      if (c2) charts.push(c2);
    } else {
      const pts = quant.flatMap((r) => {
        const m = val(r, "acc");
        return m && Number.isFinite(m.value)
          ? [{
            method: specOf(r),
            label: r.quant.label,
            bitsPerWeight: r.quant.bitsPerWeight!,
            acc: m.value,
            stderr: m.stderr,
          }]
          : [];
      });
      const c = named(await accChart(pts, ref && val(ref, "acc")?.value, task, "acc", p));
      if (c) charts.push(c);
    }
  }
  return charts;
}

function page(title: string, body: string, script = ""): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
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

/**
 * Builds the whole site in memory: `index.html`, one `<model>.html` per model, and each chart as
 * `<model>-<chart>.svg`. Keys are paths relative to the output directory.
 */
export async function buildSite(
  rows: readonly ResultRow[],
  opts: LeaderboardOptions = {},
): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const index: string[] = [];
  const used = new Set<string>();
  for (const [model, mrows] of byModel(rows)) {
    let name = slug(model);
    for (let k = 2; used.has(name); k++) name = `${slug(model)}-${k}`;
    used.add(name);
    const table = buildTable(mrows, opts);
    const hidden = new Set(table.shadowed);
    const charts = await buildCharts(mrows.filter((r) => !hidden.has(r)), name, opts);
    for (const c of charts) files.set(`${name}-${c.name}.svg`, c.svg + "\n");
    const ok = mrows.filter((r) => r.status === "ok").length;
    const commits = [...new Set(mrows.map((r) => r.env?.git?.commit).filter(Boolean))];
    const body = `<p><a href="index.html">← all models</a></p>
<h1>${esc(model)}</h1>
<p>${mrows.length} cell(s): ${ok} ok, ${mrows.length - ok} unsupported or failed. ${
      commits.length
        ? `lowbit commit(s): ${commits.map((c) => `<code>${esc(c)}</code>`).join(", ")}.`
        : ""
    }</p>
<h2>Results</h2>
${renderTable(table)}
<h2>Charts</h2>
${charts.length ? charts.map(figure).join("\n") : "<p>No chartable rows.</p>"}
<p>Charts are also available as SVG files: ${
      charts.map((c) => `<a href="${esc(`${name}-${c.name}.svg`)}">${esc(c.name)}</a>`).join(", ")
    }.</p>`;
    files.set(`${name}.html`, page(`lowbit leaderboard: ${model}`, body, JS));
    index.push(
      `<tr><th scope="row"><a href="${esc(`${name}.html`)}">${esc(model)}</a></th><td>${
        new Set(mrows.map(specOf)).size
      }</td><td>${new Set(mrows.map((r) => r.quant.label)).size}</td><td>${
        new Set(mrows.map(taskKey)).size
      }</td><td>${ok}</td><td>${mrows.length - ok}</td></tr>`,
    );
  }
  files.set(
    "index.html",
    page(
      "lowbit leaderboard",
      `<h1>lowbit leaderboard</h1>
<table>
<caption>Models with results</caption>
<thead><tr><th scope="col">model</th><th scope="col">methods</th><th scope="col">bit configurations</th><th scope="col">tasks</th><th scope="col">ok cells</th><th scope="col">unsupported/failed</th></tr></thead>
<tbody>
${index.join("\n")}
</tbody>
</table>`,
    ),
  );
  return files;
}

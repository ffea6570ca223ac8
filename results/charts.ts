/**
 * Leaderboard charts: vega-lite specs compiled at build time and rendered to static SVG with
 * vega's headless view (`renderer: "none"`), so pages need no chart runtime.
 *
 * @module
 */

import * as vega from "vega";
import * as vl from "vega-lite";
import { escapeHtml } from "./html.ts";
import { fmtMetric, type MetricDef, metricTitle } from "./metric_defs.ts";

/** One point of a metric-vs-bits-per-weight chart. */
export interface MetricPoint {
  readonly method: string;
  readonly label: string;
  readonly bitsPerWeight: number;
  readonly value: number;
  readonly stderr: number | null;
}

/** One cell of a method × configuration heatmap. */
export interface HeatCell {
  readonly method: string;
  readonly label: string;
  readonly value: number;
}

/** What a chart needs to know of its metric. */
export type ChartMetric = Pick<
  MetricDef,
  "key" | "metric" | "label" | "unit" | "higherIsBetter" | "log"
>;

/** One point of the accuracy-vs-bits-per-weight chart. */
export interface AccPoint {
  readonly method: string;
  readonly label: string;
  readonly bitsPerWeight: number;
  readonly acc: number;
  readonly stderr: number | null;
}

/** A rendered chart: the SVG text and its text alternative. */
export interface Chart {
  /** File-name stem, e.g. `ppl`. */
  readonly name: string;
  readonly title: string;
  /** Text alternative: what the chart shows, in words. */
  readonly description: string;
  /** Standalone SVG document (with `<title>` and `<desc>`, `role="img"` and `aria-label`). */
  readonly svg: string;
}

/** Compiles a vega-lite spec and renders it to SVG text with vega's headless view. */
export async function renderVegaLite(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Makes an SVG self-describing and safe to inline next to others: `role="img"`, `aria-label`,
 * `<title>`/`<desc>`, and element ids prefixed with `prefix` so several charts on one page
 * cannot clash.
 */
export function decorateSvg(svg: string, prefix: string, title: string, desc: string): string {
  const p = prefix.replace(/[^A-Za-z0-9_-]/g, "_");
  return svg
    .replace(/\bid="([^"]+)"/g, `id="${p}-$1"`)
    .replace(/url\(#([^)]+)\)/g, `url(#${p}-$1)`)
    .replace(/href="#([^"]+)"/g, `href="#${p}-$1"`)
    .replace(
      /^<svg\b/,
      `<svg role="img" aria-label="${escapeHtml(`${title}. ${desc}`)}"`,
    )
    .replace(
      /^(<svg[^>]*>)/,
      `$1<title>${escapeHtml(title)}</title><desc>${escapeHtml(desc)}</desc>`,
    );
}

const WIDTH = 520;

/** The quantization grid of a configuration label, for the line chart's dash legend. */
function grid(label: string): string {
  return /g\d+/.test(label) ? "per group" : "per channel/tensor";
}

/** `method label (value)` of the point with the lowest/highest value. */
function extremes<T extends { method: string; label: string; value: number }>(
  points: readonly T[],
  m: ChartMetric,
): { best: T; worst: T } {
  const lo = points.reduce((a, b) => (b.value < a.value ? b : a));
  const hi = points.reduce((a, b) => (b.value > a.value ? b : a));
  return m.higherIsBetter ? { best: hi, worst: lo } : { best: lo, worst: hi };
}

/**
 * A metric against bits per weight: one line per method (solid per channel/tensor, dashed per
 * group; the legend draws the two as lines), ±1 stderr bars, and the FP value as a grey dashed
 * rule. Log scale for `m.log` when every value is positive. Null when there are no points.
 */
export async function metricChart(
  points: readonly MetricPoint[],
  m: ChartMetric,
  fp: number | undefined,
  task: string,
  prefix: string,
): Promise<Chart | null> {
  if (!points.length) return null;
  const name = metricTitle(m);
  const title = `${m.label} vs bits per weight (${task})`;
  const log = m.log && points.every((p) => p.value > 0) && (fp === undefined || fp > 0);
  const values = [...points]
    .map((p) => {
      const se = p.stderr ?? 0;
      const lo = log && p.value - se <= 0 ? p.value : p.value - se;
      return { ...p, grouping: grid(p.label), lo, hi: p.value + se };
    })
    .sort((a, b) => a.bitsPerWeight - b.bitsPerWeight);
  const x = {
    field: "bitsPerWeight",
    type: "quantitative",
    title: "bits per weight",
    scale: { zero: false },
  };
  const y = {
    field: "value",
    type: "quantitative",
    scale: log ? { type: "log", nice: false } : { zero: false },
    title: log ? `${name}, log scale` : name,
  };
  const color = { field: "method", type: "nominal", title: "method", legend: { labelLimit: 320 } };
  const layers: Record<string, unknown>[] = [{
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x,
      y,
      color: {
        ...color,
        legend: { ...color.legend, symbolType: "stroke", symbolStrokeWidth: 2 },
      },
      strokeDash: {
        field: "grouping",
        type: "nominal",
        title: "quantization grid",
        scale: {
          domain: ["per channel/tensor", "per group"],
          range: [[1, 0], [6, 3]],
        },
        legend: {
          symbolType: "stroke",
          symbolStrokeWidth: 2,
          symbolSize: 500,
          encode: { symbols: { update: { stroke: { value: "#333" } } } },
        },
      },
      tooltip: [
        { field: "method" },
        { field: "label" },
        { field: "bitsPerWeight", format: ".3f" },
        { field: "value", title: m.label, format: ".4g" },
        { field: "stderr", format: ".2g" },
      ],
    },
  }];
  if (values.some((v) => v.hi !== v.lo)) {
    layers.push({
      data: { values },
      mark: { type: "rule", opacity: 0.6 },
      encoding: {
        x: { field: "bitsPerWeight", type: "quantitative" },
        y: { field: "lo", type: "quantitative" },
        y2: { field: "hi" },
        color: { field: "method", type: "nominal" },
      },
    });
  }
  if (fp !== undefined && (!log || fp > 0)) {
    layers.push({
      data: { values: [{ value: fp, what: "FP reference" }] },
      mark: { type: "rule", strokeDash: [4, 4], color: "#555" },
      encoding: { y: { field: "value", type: "quantitative" } },
    });
  }
  const svg = await renderVegaLite({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    width: WIDTH,
    height: 300,
    layer: layers,
  } as unknown as vl.TopLevelSpec);
  const methods = [...new Set(points.map((p) => p.method))];
  const { best, worst } = extremes(points, m);
  const description = `${name} on ${task} for ${methods.length} method(s) (${
    methods.join(", ")
  }) at ${points.length} quantized configuration(s)${log ? ", log scale" : ""}${
    fp !== undefined ? `; FP reference ${fmtMetric(m, fp)}` : ""
  }. Best: ${best.method} ${best.label} at ${
    fmtMetric(m, best.value)
  }; worst: ${worst.method} ${worst.label} at ${fmtMetric(m, worst.value)}.`;
  return {
    name: m.key,
    title,
    description,
    svg: decorateSvg(svg, `${prefix}-${m.key}`, title, description),
  };
}

/**
 * A method × bit-configuration heatmap of a metric, each cell labelled with its value; red is
 * worse whichever way the metric points. Null when there are no cells.
 */
export async function metricHeatmap(
  cells: readonly HeatCell[],
  labelOrder: readonly string[],
  m: ChartMetric,
  task: string,
  prefix: string,
): Promise<Chart | null> {
  if (!cells.length) return null;
  const name = metricTitle(m);
  const title = `${m.label} by method and configuration (${task})`;
  const positive = cells.every((c) => c.value > 0);
  const vals = cells.map((c) => c.value);
  const [min, max] = [Math.min(...vals), Math.max(...vals)];
  const scaleType = m.log ? (positive ? "log" : "symlog") : "linear";
  // Text is white on the darker (worse) half of the colour range.
  const mid = scaleType === "log" ? Math.sqrt(min * max) : (min + max) / 2;
  const dark = m.higherIsBetter ? `datum.value < ${mid}` : `datum.value > ${mid}`;
  const svg = await renderVegaLite({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    data: { values: cells.map((c) => ({ ...c, text: fmtMetric(m, c.value) })) },
    encoding: {
      x: { field: "label", type: "ordinal", sort: [...labelOrder], title: "bit configuration" },
      y: { field: "method", type: "nominal", title: "method", axis: { labelLimit: 320 } },
    },
    width: { step: 58 },
    height: { step: 24 },
    layer: [
      {
        mark: "rect",
        encoding: {
          color: {
            field: "value",
            type: "quantitative",
            scale: { type: scaleType, scheme: "orangered", reverse: m.higherIsBetter },
            title: name,
            legend: { format: ".2g" },
          },
        },
      },
      {
        mark: { type: "text", fontSize: 9 },
        encoding: {
          text: { field: "text" },
          color: { condition: { test: dark, value: "white" }, value: "black" },
        },
      },
    ],
  } as unknown as vl.TopLevelSpec);
  const { best, worst } = extremes(cells, m);
  const description = `Heatmap of ${name} on ${task}, ${
    new Set(cells.map((c) => c.method)).size
  } method(s) by ${
    new Set(cells.map((c) => c.label)).size
  } bit configuration(s). Best: ${best.method} ${best.label} (${
    fmtMetric(m, best.value)
  }); worst: ${worst.method} ${worst.label} (${fmtMetric(m, worst.value)}).`;
  return {
    name: `${m.key}-heatmap`,
    title,
    description,
    svg: decorateSvg(svg, `${prefix}-${m.key}-heatmap`, title, description),
  };
}

/**
 * The points on the Pareto front of accuracy against bits per weight: no other point has fewer
 * or equal bits and higher accuracy.
 */
export function paretoFront(points: readonly AccPoint[]): AccPoint[] {
  const sorted = [...points].sort((a, b) => a.bitsPerWeight - b.bitsPerWeight || b.acc - a.acc);
  const front: AccPoint[] = [];
  let best = -Infinity;
  for (const p of sorted) {
    if (p.acc > best) {
      front.push(p);
      best = p.acc;
    }
  }
  return front;
}

/**
 * Accuracy against bits per weight with ±1 stderr bars, the Pareto front as a line and the FP
 * accuracy as a dashed rule. Null when there are no points.
 */
export async function accChart(
  points: readonly AccPoint[],
  fpAcc: number | undefined,
  task: string,
  metric: string,
  prefix: string,
): Promise<Chart | null> {
  if (!points.length) return null;
  const title = `${metric} vs bits per weight (${task})`;
  const values = points.map((p) => ({
    ...p,
    lo: p.acc - (p.stderr ?? 0),
    hi: p.acc + (p.stderr ?? 0),
  }));
  const front = paretoFront(points);
  const layers: Record<string, unknown>[] = [
    {
      data: { values },
      mark: { type: "rule" },
      encoding: {
        x: {
          field: "bitsPerWeight",
          type: "quantitative",
          title: "bits per weight",
          scale: { zero: false },
        },
        y: { field: "lo", type: "quantitative", title: metric, scale: { zero: false } },
        y2: { field: "hi" },
        color: { field: "method", type: "nominal", title: "method" },
      },
    },
    {
      data: { values },
      mark: { type: "point", filled: true },
      encoding: {
        x: { field: "bitsPerWeight", type: "quantitative" },
        y: { field: "acc", type: "quantitative" },
        color: { field: "method", type: "nominal" },
      },
    },
    {
      data: { values: front },
      mark: { type: "line", color: "#333", strokeWidth: 1 },
      encoding: {
        x: { field: "bitsPerWeight", type: "quantitative" },
        y: { field: "acc", type: "quantitative" },
      },
    },
  ];
  if (fpAcc !== undefined) {
    layers.push({
      data: { values: [{ acc: fpAcc }] },
      mark: { type: "rule", strokeDash: [4, 4], color: "#555" },
      encoding: { y: { field: "acc", type: "quantitative" } },
    });
  }
  const svg = await renderVegaLite({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    width: WIDTH,
    height: 300,
    layer: layers,
  } as unknown as vl.TopLevelSpec);
  const description =
    `${metric} on ${task} against bits per weight for ${points.length} configuration(s), with ±1 standard error bars${
      fpAcc !== undefined ? ` and the FP ${metric} ${fpAcc.toFixed(4)} as a dashed line` : ""
    }. Pareto front: ${
      front.map((p) => `${p.method} ${p.label} (${p.acc.toFixed(4)})`).join(", ")
    }.`;
  return {
    name: `acc-${metric}`,
    title,
    description,
    svg: decorateSvg(svg, `${prefix}-acc-${metric}`, title, description),
  };
}

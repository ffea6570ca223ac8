/**
 * Leaderboard charts: vega-lite specs compiled at build time and rendered to static SVG with
 * vega's headless view (`renderer: "none"`), so pages need no chart runtime.
 *
 * @module
 */

import * as vega from "vega";
import * as vl from "vega-lite";
import { escapeHtml } from "./html.ts";

/** One point of the perplexity-vs-bits chart. */
export interface PplPoint {
  readonly method: string;
  readonly label: string;
  readonly bitsPerWeight: number;
  readonly ppl: number;
}

/** One cell of the KL heatmap. */
export interface KlCell {
  readonly method: string;
  readonly label: string;
  readonly kl: number;
}

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

/**
 * Perplexity (log scale) against bits per weight, one line per method, with the FP reference as a
 * dashed rule. Null when there are no points.
 */
export async function pplChart(
  points: readonly PplPoint[],
  fpPpl: number | undefined,
  task: string,
  prefix: string,
): Promise<Chart | null> {
  if (!points.length) return null;
  const title = `Perplexity vs bits per weight (${task})`;
  const layers: Record<string, unknown>[] = [{
    data: {
      values: [...points]
        .map((p) => ({ ...p, grouping: /g\d+/.test(p.label) ? "per group" : "per channel/tensor" }))
        .sort((a, b) => a.bitsPerWeight - b.bitsPerWeight),
    },
    mark: { type: "line", point: true },
    encoding: {
      x: {
        field: "bitsPerWeight",
        type: "quantitative",
        title: "bits per weight",
        scale: { zero: false },
      },
      y: {
        field: "ppl",
        type: "quantitative",
        scale: { type: "log", nice: false },
        title: "perplexity (log scale)",
      },
      color: { field: "method", type: "nominal", title: "method", legend: { labelLimit: 320 } },
      strokeDash: { field: "grouping", type: "nominal", title: "quantization grid" },
      tooltip: [{ field: "method" }, { field: "label" }, { field: "ppl", format: ".4f" }],
    },
  }];
  if (fpPpl !== undefined) {
    layers.push({
      data: { values: [{ ppl: fpPpl, what: "FP reference" }] },
      mark: { type: "rule", strokeDash: [4, 4], color: "#555" },
      encoding: { y: { field: "ppl", type: "quantitative" } },
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
  const worst = points.reduce((a, b) => (b.ppl > a.ppl ? b : a));
  const best = points.reduce((a, b) => (b.ppl < a.ppl ? b : a));
  const description = `Perplexity on ${task} for ${methods.length} method(s) (${
    methods.join(", ")
  }) at ${points.length} quantized configuration(s), log scale${
    fpPpl !== undefined ? `; FP reference ${fpPpl.toFixed(3)}` : ""
  }. Lowest: ${best.method} ${best.label} at ${
    best.ppl.toFixed(3)
  }; highest: ${worst.method} ${worst.label} at ${worst.ppl.toFixed(3)}.`;
  return {
    name: "ppl",
    title,
    description,
    svg: decorateSvg(svg, `${prefix}-ppl`, title, description),
  };
}

/** A method × bit-configuration heatmap of KL divergence to FP. Null when there are no cells. */
export async function klHeatmap(
  cells: readonly KlCell[],
  labelOrder: readonly string[],
  task: string,
  prefix: string,
): Promise<Chart | null> {
  if (!cells.length) return null;
  const title = `KL divergence to FP (${task})`;
  const positive = cells.every((c) => c.kl > 0);
  const svg = await renderVegaLite({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    data: { values: cells.map((c) => ({ ...c, text: c.kl.toPrecision(2) })) },
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
            field: "kl",
            type: "quantitative",
            scale: { type: positive ? "log" : "symlog", scheme: "orangered" },
            title: "KL (nats/token)",
            legend: { format: ".2g" },
          },
        },
      },
      {
        mark: { type: "text", fontSize: 10 },
        encoding: {
          text: { field: "text" },
          color: { condition: { test: "datum.kl > 0.3", value: "white" }, value: "black" },
        },
      },
    ],
  } as unknown as vl.TopLevelSpec);
  const worst = cells.reduce((a, b) => (b.kl > a.kl ? b : a));
  const best = cells.reduce((a, b) => (b.kl < a.kl ? b : a));
  const description = `Heatmap of KL divergence to the FP model on ${task}, ${
    new Set(cells.map((c) => c.method)).size
  } method(s) by ${
    new Set(cells.map((c) => c.label)).size
  } bit configuration(s). Smallest: ${best.method} ${best.label} (${
    best.kl.toPrecision(3)
  }); largest: ${worst.method} ${worst.label} (${worst.kl.toPrecision(3)}).`;
  return {
    name: "kl",
    title,
    description,
    svg: decorateSvg(svg, `${prefix}-kl`, title, description),
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

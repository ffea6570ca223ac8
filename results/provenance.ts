/**
 * Where a leaderboard cell's numbers come from: the model files' hashes, the method and its
 * parameters, the calibration set, the evaluation protocol, the machine and the lowbit commit.
 * A short form for a hover title, and a full form for the page's details panel.
 *
 * @module
 */

import { escapeHtml as esc } from "./html.ts";
import type { ResultRow } from "./row.ts";

/** The first `n` characters of a hash, with an ellipsis when shortened. */
export function shortHash(h: string | null | undefined, n = 12): string {
  if (!h) return "?";
  return h.length > n ? `${h.slice(0, n)}…` : h;
}

function seconds(ms: number | undefined): string {
  return ms === undefined || !Number.isFinite(ms) ? "?" : `${(ms / 1000).toFixed(1)} s`;
}

function spec(r: ResultRow): string {
  return r.method.spec ?? r.method.id;
}

function commitText(r: ResultRow): string {
  const g = r.env?.git;
  if (!g?.commit) return "unknown";
  return `${g.commit}${g.dirty ? " (dirty tree)" : ""}`;
}

/** A few lines for a `title` attribute: enough to tell two runs of a cell apart. */
export function provenanceTitle(r: ResultRow): string {
  const files = r.model.files.map((f) => shortHash(f.sha256, 8)).join(", ");
  const c = r.calibration;
  return [
    `${spec(r)} ${r.quant.label} · ${r.task.id}`,
    `model ${r.model.id}${files ? ` sha256 ${files}` : ""}`,
    `backend ${r.env?.backend ?? "?"} · commit ${shortHash(r.env?.git?.commit, 12)}`,
    ...(c
      ? [
        `calibration ${c.source} ${c.samples}×${c.seqLen} seed ${c.seed} tokens ${
          shortHash(c.tokensSha256, 8)
        }`,
      ]
      : []),
    `finished ${r.finishedAt ?? "?"} · wall ${seconds(r.wallMs)}${
      r.quantizeMs !== undefined ? ` · quantize ${seconds(r.quantizeMs)}` : ""
    }`,
    "click for details",
  ].join("\n");
}

/** `<code>` of a short hash whose full value is its title. */
function hash(h: string | null | undefined, n = 16): string {
  if (!h) return "?";
  return `<code title="${esc(h)}" data-full="${esc(h)}">${esc(shortHash(h, n))}</code>`;
}

function json(v: unknown): string {
  return `<code>${esc(JSON.stringify(v))}</code>`;
}

function item(dt: string, dd: string): string {
  return `<dt>${esc(dt)}</dt><dd>${dd}</dd>`;
}

/**
 * The full provenance of a row as a `<section>` (hidden in the page; the details panel shows a
 * copy): model, method, quantization, task, calibration, environment, timing.
 */
export function renderProvenance(r: ResultRow, id: string): string {
  const q = r.quant;
  const t = r.task;
  const c = r.calibration;
  const e = r.env;
  const p = t.protocol ?? {};
  const items: string[] = [
    item("status", esc(r.status) + (r.error ? `: ${esc(r.error)}` : "")),
    item(
      "model",
      `${esc(r.model.id)} (${esc(r.model.format)}, ${esc(r.model.params)} parameters)`,
    ),
    item(
      "model files",
      r.model.files.length
        ? `<ul>${
          r.model.files.map((f) =>
            `<li>${esc(f.path)} (${esc(f.bytes)} B) sha256 ${hash(f.sha256)}</li>`
          ).join("")
        }</ul>`
        : "none recorded",
    ),
    item(
      "method",
      `${esc(spec(r))}: ${esc(r.method.id)} v${esc(r.method.version)}, class ${
        esc(r.method.taxonomy)
      }, scope ${esc(r.method.scope)}`,
    ),
    item("method params", json(r.method.params)),
    item(
      "quantization",
      `${esc(q.label)}: W${esc(q.wBits)} A${esc(q.aBits)}, ${esc(q.granularity)}${
        q.groupSize ? ` (group ${esc(q.groupSize)})` : ""
      }, ${q.symmetric ? "symmetric" : "asymmetric"}, ${
        q.bitsPerWeight !== null ? `${esc(q.bitsPerWeight.toFixed(3))} bits/weight` : "unquantized"
      }${q.act ? `; activations ${json(q.act)}` : ""}`,
    ),
    item(
      "task",
      `${esc(t.id)} v${esc(t.version)} (${esc(t.family)})${
        t.limit ? `, limit ${esc(t.limit)}` : ""
      }`,
    ),
    item(
      "evaluation data",
      t.dataset ? `${esc(t.dataset.id)} sha256 ${hash(t.dataset.sha256)}` : "not recorded",
    ),
    item(
      "protocol",
      Object.keys(p).length
        ? esc(
          Object.entries(p).filter(([, v]) => typeof v !== "object" || v === null).map((
            [k, v],
          ) => `${k}=${v}`).join(", "),
        )
        : "not recorded",
    ),
    item(
      "calibration",
      c
        ? `${esc(c.source)}${c.recipe ? ` (${esc(c.recipe)})` : ""}: ${esc(c.samples)} samples × ${
          esc(c.seqLen)
        } tokens, seed ${esc(c.seed)}; tokens sha256 ${hash(c.tokensSha256)}; data ${
          esc(c.dataset?.id ?? "?")
        } sha256 ${hash(c.dataset?.sha256)}`
        : "none (method without calibration)",
    ),
    item("backend", esc(e?.backend ?? "?") + (e?.gpu ? `; GPU ${json(e.gpu)}` : "")),
    item(
      "lowbit",
      `${esc(e?.lowbit ?? "?")}, commit <code class="commit">${esc(commitText(r))}</code>`,
    ),
    item(
      "runtime",
      e
        ? `Deno ${esc(e.deno)}, V8 ${esc(e.v8)}, TypeScript ${esc(e.typescript)}; ${esc(e.os)} ${
          esc(e.arch)
        }, ${esc(e.cpus)} CPU(s)`
        : "?",
    ),
    item("finished", esc(r.finishedAt ?? "?")),
    item(
      "time",
      `wall ${esc(seconds(r.wallMs))}${
        r.quantizeMs !== undefined
          ? `, of which quantization ${esc(seconds(r.quantizeMs))}`
          : "; quantization time not recorded (FP, a reused quantized model, or an older row)"
      }`,
    ),
    ...(r.routing
      ? [item(
        "routing",
        `${esc(r.routing.windows)} window(s) of ${esc(r.routing.source)}; expert load per block ` +
          `recorded for FP and quantized`,
      )]
      : []),
    ...(r.notes?.length
      ? [item("notes", `<ul>${r.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>`)]
      : []),
    item("cell id", `<code>${esc(r.cellId)}</code>`),
  ];
  return `<section id="${esc(id)}" data-cell="${esc(r.cellId)}">
<h3>${esc(spec(r))} ${esc(q.label)} · ${esc(t.id)}</h3>
<dl>${items.join("\n")}</dl>
</section>`;
}

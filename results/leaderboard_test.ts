import assert from "node:assert/strict";
import { paretoFront } from "./charts.ts";
import { escapeHtml } from "./html.ts";
import { buildSite, buildTable, renderTable } from "./leaderboard.ts";
import { leaderboardMain } from "./leaderboard_cli.ts";
import { loadRows } from "./load.ts";
import { makeRow } from "./make_row.ts";
import type { ResultRow } from "./row.ts";

function ppl(method: string, wBits: number, value: number, extra: Record<string, number> = {}) {
  return makeRow({
    method,
    wBits,
    metrics: {
      ppl: [value, value * 0.02],
      ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, [v, 0] as const])),
    },
  });
}

const ROWS: ResultRow[] = [
  ppl("fp", 32, 10, { kl: 0 }),
  ppl("rtn", 8, 10.1, { kl: 0.001 }),
  ppl("rtn", 4, 12, { kl: 0.2 }),
  ppl("gptq", 4, 11, { kl: 0.1 }),
  makeRow({ method: "gptq", wBits: 8, status: "failed", error: 'Hessian <b>"not"</b> PD' }),
];

Deno.test("buildTable: classes come from the registry, columns ordered by bits", () => {
  const registry = [
    { id: "fp", taxonomy: "baseline", scope: "none" },
    { id: "rtn", taxonomy: "rotation", scope: "weight-only" }, // the row says "baseline"
    { id: "gptq", taxonomy: "compensation", scope: "weight-only" },
  ] as const;
  const t = buildTable(ROWS, { methods: registry });
  assert.deepEqual(t.groups.map((g) => [g.taxonomy, g.rows.map((r) => r.spec)]), [
    ["baseline", ["fp"]],
    ["compensation", ["gptq"]],
    ["rotation", ["rtn"]],
  ]);
  assert.deepEqual(t.columns.map((c) => `${c.label} ${c.metric}`), [
    "FP32 ppl",
    "W8A16 ppl",
    "W4A16 ppl",
  ]);
});

Deno.test("buildTable: delta against FP, best per column, failed cells", () => {
  const t = buildTable(ROWS);
  const row = (spec: string) => t.groups.flatMap((g) => g.rows).find((r) => r.spec === spec)!;
  const rtn4 = row("rtn").cells[2]!;
  assert.equal(rtn4.kind, "ok");
  assert.ok(Math.abs(rtn4.delta! - 2) < 1e-12);
  assert.ok(Math.abs(rtn4.relDelta! - 0.2) < 1e-12);
  assert.equal(rtn4.best, undefined);
  assert.equal(row("gptq").cells[2]!.best, true);
  assert.equal(row("gptq").cells[1]!.kind, "failed");
  assert.equal(row("rtn").cells[1]!.best, true);
  assert.equal(row("fp").cells[0]!.delta, undefined);
  assert.equal(row("fp").cells[1]!.kind, "missing");

  const html = renderTable(t);
  assert.match(html, /<span class="d bad">Δ \+2\.0000 \(\+20\.0%\)<\/span>/);
  assert.match(
    html,
    /class="status failed" title="Hessian &lt;b&gt;&quot;not&quot;&lt;\/b&gt; PD">failed</,
  );
  assert.equal((html.match(/<tr class="m">/g) ?? []).length, 3);
  assert.equal((html.match(/class="best"/g) ?? []).length, 3);
});

Deno.test("buildTable: higher-is-better accuracy colours a gain green", () => {
  const t = buildTable([
    makeRow({ method: "fp", task: "arc", metrics: { acc: [0.5, 0.02], acc_norm: [0.52, 0.02] } }),
    makeRow({ method: "rtn", task: "arc", metrics: { acc: [0.55, 0.02], acc_norm: [0.4, 0.02] } }),
  ]);
  assert.deepEqual(t.columns.map((c) => `${c.label} ${c.metric}`), [
    "FP32 acc",
    "FP32 acc_norm",
    "W4A16 acc",
    "W4A16 acc_norm",
  ]);
  const html = renderTable(t);
  assert.match(html, /<span class="d good">Δ \+0\.0500<\/span>/);
  assert.match(html, /<span class="d bad">Δ −0\.1200<\/span>/);
});

Deno.test("buildSite: data strings are escaped, scripts are only ours", async () => {
  const evil = '<script>alert("x")</script>';
  const rows = ROWS.map((r) => ({
    ...r,
    model: { ...r.model, id: evil },
    method: { ...r.method, spec: r.method.id === "rtn" ? `rtn:${evil}` : r.method.spec },
  }));
  const files = await buildSite(rows);
  const pages = [...files.keys()].filter((k) => k.endsWith(".html"));
  assert.equal(pages.length, 2);
  for (const [name, text] of files) {
    assert.ok(!text.includes(evil), `${name} contains the raw script`);
    assert.ok(!/[<>"]/.test(name.replace(/\.(html|svg)$/, "")), name);
  }
  const page = files.get(pages.find((p) => p !== "index.html")!)!;
  assert.ok(page.includes(escapeHtml(evil)));
  assert.equal((page.match(/<script/g) ?? []).length, 1);
  assert.ok(files.get("index.html")!.includes(escapeHtml(evil)));
  assert.equal((files.get("index.html")!.match(/<script/g) ?? []).length, 0);
});

Deno.test("buildSite: charts are inline SVG figures and separate files", async () => {
  const rows = [
    ...ROWS,
    makeRow({ method: "fp", task: "arc", metrics: { acc: [0.5, 0.02] } }),
    makeRow({ method: "rtn", wBits: 4, task: "arc", metrics: { acc: [0.45, 0.02] } }),
    makeRow({ method: "rtn", wBits: 8, task: "arc", metrics: { acc: [0.5, 0.02] } }),
  ];
  const files = await buildSite(rows);
  const svgs = [...files.keys()].filter((k) => k.endsWith(".svg")).sort();
  assert.deepEqual(svgs, [
    "tiny-arc-acc-acc.svg",
    "tiny-tinystories_eval-kl.svg",
    "tiny-tinystories_eval-ppl.svg",
  ]);
  const page = files.get("tiny.html")!;
  assert.equal((page.match(/<figure>/g) ?? []).length, 3);
  assert.equal((page.match(/<figcaption>/g) ?? []).length, 3);
  for (const s of svgs) {
    const svg = files.get(s)!;
    assert.match(svg, /^<svg role="img" aria-label="[^"]+"[^>]*><title>/);
    assert.ok(page.includes(svg.trim()), `${s} not inlined`);
    // vega drew marks: paths or rects beyond the background
    assert.ok((svg.match(/<path|<rect/g) ?? []).length > 3, s);
  }
  // KL heatmap labels its cells; KL 0.2 of rtn W4 appears as text.
  assert.match(files.get("tiny-tinystories_eval-kl.svg")!, />0\.20</);
  // ids are unique across the inlined charts
  const ids = [...page.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, ids.length);
});

Deno.test("buildTable: a second run of the same cell is shown once, the older one listed", async () => {
  const older = {
    ...ppl("rtn", 4, 13),
    cellId: "other-backend",
    finishedAt: "2026-01-01T00:00:00Z",
  };
  const t = buildTable([...ROWS, older]);
  assert.deepEqual(t.shadowed.map((r) => r.cellId), ["other-backend"]);
  const rtn = t.groups.flatMap((g) => g.rows).find((r) => r.spec === "rtn")!;
  assert.equal(rtn.cells[2]!.value, 12);
  assert.match(renderTable(t), /1 older row\(s\)[^]*<code>other-backend<\/code>/);
  const page = (await buildSite([...ROWS, older])).get("tiny.html")!;
  // the chart plots one point per configuration: rtn W4 at ppl 12, not 13
  assert.match(
    page,
    /Perplexity on tinystories:eval for 2 method\(s\) \(rtn, gptq\) at 3 quantized/,
  );
});

Deno.test("the page's inline script parses", async () => {
  const page = (await buildSite(ROWS)).get("tiny.html")!;
  const script = page.match(/<script>([^]*?)<\/script>/)![1]!;
  assert.ok(script.includes("addEventListener"));
  new Function(script); // throws SyntaxError if the generated script is broken
});

Deno.test("paretoFront keeps points no cheaper point beats", () => {
  const p = (bitsPerWeight: number, acc: number) => ({
    method: "m",
    label: "",
    bitsPerWeight,
    acc,
    stderr: null,
  });
  const front = paretoFront([p(4, 0.5), p(3, 0.4), p(5, 0.45), p(8, 0.6), p(2, 0.3)]);
  assert.deepEqual(front.map((x) => x.bitsPerWeight), [2, 3, 4, 8]);
});

Deno.test("leaderboard CLI: writes the site, exit 2 on missing or empty input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await leaderboardMain(["--in", `${dir}/nope`, "--out", `${dir}/site`]), 2);
    await Deno.mkdir(`${dir}/runs/a`, { recursive: true });
    await Deno.writeTextFile(`${dir}/runs/a/results.jsonl`, "");
    assert.equal(await leaderboardMain(["--in", `${dir}/runs`, "--out", `${dir}/site`]), 2);
    // No blank page: nothing is written for empty input.
    await assert.rejects(Deno.stat(`${dir}/site`), Deno.errors.NotFound);
    await Deno.writeTextFile(
      `${dir}/runs/a/results.jsonl`,
      ROWS.map((r) => JSON.stringify(r)).join("\n") + "\n",
    );
    assert.equal(await leaderboardMain(["--in", `${dir}/runs`, "--out", `${dir}/site`]), 0);
    const index = await Deno.readTextFile(`${dir}/site/index.html`);
    assert.match(index, /<a href="tiny\.html">tiny<\/a>/);
    assert.ok((await Deno.stat(`${dir}/site/tiny-ppl.svg`)).size > 1000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Real rows: the committed w2-w8 baseline (what pages.yml publishes on manual dispatch). */
const REAL = new URL("../bench/baselines/w2-w8.jsonl", import.meta.url).pathname;

Deno.test({
  name: "leaderboard over the real w2-w8 rows (the committed baseline)",
  fn: async () => {
    const rows = await loadRows(REAL);
    const specs = new Set(rows.map((r) => r.method.spec ?? r.method.id));
    const files = await buildSite(rows);
    const page = [...files].find(([k]) => k.endsWith(".html") && k !== "index.html")![1];
    assert.equal((page.match(/<tr class="m">/g) ?? []).length, specs.size);
    for (const s of specs) assert.ok(page.includes(`>${escapeHtml(s)}`), s);
    // every ok cell with a ppl shows up as a sortable value
    const okPpl = rows.filter((r) =>
      r.status === "ok" && r.metrics.some((m) => m.metric === "ppl")
    );
    assert.equal((page.match(/data-v="[0-9]/g) ?? []).length, okPpl.length);
  },
});

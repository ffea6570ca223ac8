import assert from "node:assert/strict";
import { paretoFront } from "./charts.ts";
import { escapeHtml } from "./html.ts";
import { buildSite, buildTable, renderTable } from "./leaderboard.ts";
import { BITS_PER_WEIGHT, DELTA_NLL, metricValue, pageMetrics } from "./metric_defs.ts";
import { renderProvenance } from "./provenance.ts";
import { rankCells, renderRanking } from "./ranking.ts";
import { rowsToCsv } from "./store.ts";
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
  assert.deepEqual(t.columns.map((c) => c.label), ["FP32", "W8A16", "W4A16"]);
  assert.deepEqual(t.metrics.map((m) => m.key), ["ppl", "kl", "bits_per_weight"]);
  assert.equal(t.metric, "ppl");
});

Deno.test("buildTable: delta against FP, best per column, failed cells", () => {
  const t = buildTable(ROWS);
  const row = (spec: string) => t.groups.flatMap((g) => g.rows).find((r) => r.spec === spec)!;
  const rtn4 = row("rtn").cells[2]!;
  assert.equal(rtn4.kind, "ok");
  const ppl4 = rtn4.values!.ppl!;
  assert.ok(Math.abs(ppl4.delta! - 2) < 1e-12);
  assert.ok(Math.abs(ppl4.relDelta! - 0.2) < 1e-12);
  assert.equal(ppl4.best, undefined);
  // KL is a distance to FP already: no Δ; its best is marked on its own
  assert.equal(rtn4.values!.kl!.delta, undefined);
  assert.equal(row("gptq").cells[2]!.values!.kl!.best, true);
  assert.equal(row("gptq").cells[2]!.values!.ppl!.best, true);
  assert.equal(row("gptq").cells[1]!.kind, "failed");
  assert.equal(row("rtn").cells[1]!.values!.ppl!.best, true);
  assert.equal(row("fp").cells[0]!.values!.ppl!.delta, undefined);
  // FP's bits per weight is its own width
  assert.equal(row("fp").cells[0]!.values!.bits_per_weight!.value, 32);
  assert.equal(row("fp").cells[1]!.kind, "missing");

  const html = renderTable(t);
  assert.match(html, /<span class="d bad">Δ\u00a0\+2\.0000 \(\+20\.0%\)<\/span>/);
  assert.match(
    html,
    /class="status failed" title="Hessian &lt;b&gt;&quot;not&quot;&lt;\/b&gt; PD">failed</,
  );
  assert.equal((html.match(/<tr class="m">/g) ?? []).length, 3);
  // the cells of the selected metric (ppl) that are best in their column
  assert.equal((html.match(/<td [^>]*class="best"/g) ?? []).length, 3);
  // every metric's value is in the cell, shown by metric
  assert.match(html, /<span class="mv" data-m="kl" data-val="0\.2"><span class="v">0\.2000</);
  assert.match(html, /<option value="kl">KL to FP \(nats\/token\) ↓<\/option>/);
});

Deno.test("buildTable: higher-is-better accuracy colours a gain green", () => {
  const t = buildTable([
    makeRow({ method: "fp", task: "arc", metrics: { acc: [0.5, 0.02], acc_norm: [0.52, 0.02] } }),
    makeRow({ method: "rtn", task: "arc", metrics: { acc: [0.55, 0.02], acc_norm: [0.4, 0.02] } }),
  ]);
  assert.deepEqual(t.columns.map((c) => c.label), ["FP32", "W4A16"]);
  assert.deepEqual(t.metrics.map((m) => m.key), ["acc", "acc_norm", "bits_per_weight"]);
  assert.equal(t.metric, "acc");
  const html = renderTable(t);
  assert.match(html, /<span class="d good">Δ\u00a0\+0\.0500<\/span>/);
  assert.match(html, /<span class="d bad">Δ\u00a0−0\.1200<\/span>/);
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
    assert.ok(!/[<>"]/.test(name.replace(/\.(html|svg|jsonl|csv)$/, "")), name);
    if (!/\.(html|svg)$/.test(name)) continue; // raw data files hold the data as it is
    assert.ok(!text.includes(evil), `${name} contains the raw script`);
  }
  assert.deepEqual(
    files.get("lowbit-results.jsonl")!.trim().split("\n").map((l) => JSON.parse(l)),
    rows,
  );
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
    "tiny-arc-acc-heatmap.svg",
    "tiny-arc-bits_per_weight-heatmap.svg",
    "tiny-tinystories_eval-bits_per_weight-heatmap.svg",
    "tiny-tinystories_eval-kl-heatmap.svg",
    "tiny-tinystories_eval-kl.svg",
    "tiny-tinystories_eval-ppl-heatmap.svg",
    "tiny-tinystories_eval-ppl.svg",
  ]);
  const page = files.get("tiny.html")!;
  assert.equal((page.match(/<figure data-m="[a-z_]+">/g) ?? []).length, svgs.length);
  assert.equal((page.match(/<figcaption>/g) ?? []).length, svgs.length);
  for (const s of svgs) {
    const svg = files.get(s)!;
    assert.match(svg, /^<svg role="img" aria-label="[^"]+"[^>]*><title>/);
    assert.ok(page.includes(svg.trim()), `${s} not inlined`);
    assert.ok(page.includes(`<a href="${s}">SVG</a>`), `${s} not linked`);
    // vega drew marks: paths or rects beyond the background
    assert.ok((svg.match(/<path|<rect/g) ?? []).length > 3, s);
  }
  // The KL heatmap labels its cells; KL 0.2 of rtn W4 appears as text.
  assert.match(files.get("tiny-tinystories_eval-kl-heatmap.svg")!, />0\.2000</);
  // The line chart's "quantization grid" legend draws lines, not dots.
  const ppl = files.get("tiny-tinystories_eval-ppl.svg")!;
  const legend = ppl.slice(ppl.indexOf("titled 'quantization grid'"));
  assert.match(
    legend,
    /role-legend-symbol[^>]*><path [^>]*d="M-\d+(\.\d+)?,0L\d+(\.\d+)?,0"[^>]*stroke="#333"/,
  );
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
  assert.equal(rtn.cells[2]!.values!.ppl!.value, 12);
  assert.match(renderTable(t), /1 older row\(s\)[^]*<code>other-backend<\/code>/);
  const page = (await buildSite([...ROWS, older])).get("tiny.html")!;
  // the chart plots one point per configuration: rtn W4 at ppl 12, not 13
  assert.match(
    page,
    /perplexity on tinystories:eval for 2 method\(s\) \(rtn, gptq\) at 3 quantized/,
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
    const plain = page.replaceAll("<wbr>", "");
    for (const s of specs) {
      assert.ok(plain.includes(`<tr class="m"><th scope="row">${escapeHtml(s)}`), s);
    }
    // every ok cell with a ppl shows up as a sortable value
    const okPpl = rows.filter((r) =>
      r.status === "ok" && r.metrics.some((m) => m.metric === "ppl")
    );
    assert.equal((page.match(/data-v="[0-9]/g) ?? []).length, okPpl.length);
    // the ranking of every metric lists every quantized cell once
    const quantized = rows.filter((r) => r.method.id !== "fp").length;
    for (const section of page.split('<section class="ranking"').slice(1)) {
      assert.equal((section.match(/<tr class="rk"/g) ?? []).length, quantized);
    }
  },
});

Deno.test("pageMetrics: known metrics first, derived Δ NLL and bits per weight, MoE routing", () => {
  const fp = makeRow({ method: "fp", metrics: { ppl: [10, 0.2], nll: [2.3, 0.02], kl: [0, 0] } });
  const moe = makeRow({
    method: "rtn",
    metrics: {
      ppl: [11, 0.2],
      nll: [2.4, 0.03],
      kl: [0.1, 0.01],
      zeta: [1, 0],
      router_kl: [0.02, 0.001],
      router_topk_exact: [0.9, 0.01],
      act_zero_frac: [0.1, 0.01],
    },
  });
  const isRef = (r: ResultRow) => r.method.id === "fp";
  const defs = pageMetrics([fp, moe], () => fp, isRef);
  assert.deepEqual(defs.map((d) => d.key), [
    "ppl",
    DELTA_NLL,
    "nll",
    "kl",
    BITS_PER_WEIGHT,
    "router_topk_exact",
    "router_kl",
    "act_zero_frac",
    "zeta",
  ]);
  const d = defs.find((x) => x.key === DELTA_NLL)!;
  const v = metricValue(moe, d, fp, false)!;
  assert.ok(Math.abs(v.value - 0.1) < 1e-12);
  // rows without per-window NLL: unpaired √(0.03² + 0.02²), and the page says so
  assert.ok(Math.abs(v.stderr! - Math.hypot(0.03, 0.02)) < 1e-15);
  assert.match(d.stderrLabel!, /unpaired √\(SE² \+ SE_FP²\) for older rows/);
  // with them: the paired standard error. Differences 0.1, 0.12, 0.08, 0.1: mean 0.1, sample
  // variance (0 + 0.0004 + 0.0004 + 0) / 3, se √(0.0008 / 3 / 4) ≈ 0.008165.
  const withUnits = (r: ResultRow, nll: number[]): ResultRow => ({ ...r, units: { nll } });
  const fpU = withUnits(fp, [2, 2.5, 1.5, 2]), moeU = withUnits(moe, [2.1, 2.62, 1.58, 2.1]);
  const p = metricValue(moeU, d, fpU, false)!;
  assert.ok(Math.abs(p.stderr! - Math.sqrt(0.0008 / 12)) < 1e-12, `${p.stderr}`);
  assert.ok(p.stderr! < v.stderr!, "pairing removes the windows' shared difficulty");
  assert.deepEqual(metricValue(fp, d, fp, true), { value: 0, stderr: null });
  const b = defs.find((x) => x.key === BITS_PER_WEIGHT)!;
  assert.equal(metricValue(moe, b, fp, false)!.value, 4.5);
  assert.equal(defs.find((x) => x.key === "router_topk_exact")!.higherIsBetter, true);
  // no FP row with an NLL: no Δ NLL
  assert.ok(!pageMetrics([moe], () => undefined, isRef).some((x) => x.key === DELTA_NLL));
});

Deno.test("rankCells: per bit-width, best first, ties share a rank, FP left out, failures last", () => {
  const rows = [
    makeRow({ method: "fp", metrics: { ppl: [10, 0.1] } }),
    makeRow({ method: "rtn", wBits: 4, metrics: { ppl: [12, 0.1] } }),
    makeRow({ method: "gptq", wBits: 4, metrics: { ppl: [11, 0.1] } }),
    makeRow({ method: "awq", wBits: 4, taxonomy: "salience", metrics: { ppl: [11, 0.1] } }),
    makeRow({ method: "quarot", wBits: 4, status: "unsupported", error: "no" }),
    makeRow({ method: "rtn", wBits: 8, metrics: { ppl: [10.1, 0.1] } }),
  ];
  const isRef = (r: ResultRow) => r.method.id === "fp";
  const defs = pageMetrics(rows, () => rows[0], isRef);
  const ppl = defs.find((d) => d.key === "ppl")!;
  const groups = rankCells(rows, ppl, {
    isRef,
    refOf: () => rows[0],
    classOf: (r) => r.method.taxonomy,
    provOf: (r) => `prov-${rows.indexOf(r)}`,
  });
  assert.deepEqual(
    groups.map((g) => [g.wBits, g.entries.map((e) => `${e.rank ?? "-"} ${e.spec}`)]),
    [[8, ["1 rtn"]], [4, ["1 awq", "1 gptq", "3 rtn", "- quarot"]]],
  );
  const html = renderRanking(groups, ppl, "t");
  assert.equal((html.match(/<tr class="rk"/g) ?? []).length, 5);
  assert.match(html, /data-prov="prov-3" data-val="11" data-class="salience"/);
  assert.match(html, /<th scope="row">quarot \(unsupported\)<\/th>/);
});

Deno.test("renderProvenance: hashes, calibration, commit, escaped", () => {
  const base = makeRow({ method: "gptq:actOrder=true" });
  const row: ResultRow = {
    ...base,
    model: {
      ...base.model,
      id: "<b>m</b>",
      files: [{ path: "model.safetensors", bytes: 10, sha256: "ab".repeat(32) }],
    },
    method: { ...base.method, params: { actOrder: true, note: "<i>" } },
    calibration: {
      source: "wikitext2",
      samples: 128,
      seqLen: 2048,
      seed: 7,
      dataset: { id: "wikitext2:train", path: "/x", bytes: 1, sha256: "cd".repeat(32) },
      tokensSha256: "ef".repeat(32),
      offsets: [1, 2],
      protocol: {},
    },
    env: { ...base.env, git: { commit: "0123456789abcdef", dirty: true } },
    quantizeMs: 1500,
  };
  const html = renderProvenance(row, "prov-0");
  assert.match(html, /^<section id="prov-0" data-cell="tiny\|gptq:actOrder=true\|W4A16\|/);
  assert.ok(html.includes(`title="${"ab".repeat(32)}"`), "full sha256 on hover");
  assert.ok(html.includes(`>${"ab".repeat(8)}…</code>`), "short sha256 shown");
  assert.match(html, /wikitext2: 128 samples × 2048 tokens, seed 7; tokens sha256 <code[^>]*>efef/);
  assert.match(html, /<code class="commit">0123456789abcdef \(dirty tree\)<\/code>/);
  assert.match(html, /of which quantization 1\.5 s/);
  assert.ok(html.includes("&lt;b&gt;m&lt;/b&gt;") && !html.includes("<b>m</b>"));
  assert.ok(html.includes("&quot;&lt;i&gt;&quot;"));
});

Deno.test("buildSite: raw rows as JSONL and CSV per model and for all models", async () => {
  const rows = [...ROWS, makeRow({ model: "index", metrics: { ppl: [5, 0.1] } })];
  const files = await buildSite(rows);
  const parse = (t: string) => t.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(parse(files.get("tiny.jsonl")!), ROWS);
  assert.equal(files.get("tiny.csv"), rowsToCsv(ROWS));
  assert.deepEqual(
    new Set(parse(files.get("lowbit-results.jsonl")!).map((r) => r.cellId)),
    new Set(rows.map((r) => r.cellId)),
  );
  assert.equal(files.get("lowbit-results.csv"), rowsToCsv(rows));
  // a model called "index" does not overwrite the index
  assert.ok(files.has("index-2.html"));
  assert.match(files.get("index.html")!, /<a href="tiny\.jsonl" download>JSONL<\/a>/);
  assert.match(files.get("tiny.html")!, /<a href="tiny\.csv" download>CSV<\/a>/);
});

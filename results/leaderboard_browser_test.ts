/**
 * Browser test of the generated leaderboard: Chromium (Debian's `chromium` package, or
 * `$CHROMIUM_PATH`) driven by puppeteer-core opens the page from disk. Skipped when no Chromium
 * is installed. The screenshot goes to `$LOWBIT_TEST_OUTPUT` (default: a temporary directory).
 * The site published by the workflows (built by the CLI from the committed baseline, and from a
 * results directory) must show every method row and configuration of its input.
 */

import assert from "node:assert/strict";
import Papa from "papaparse";
import puppeteer, { type Page } from "puppeteer-core";
import { buildSite } from "./leaderboard.ts";
import { leaderboardMain } from "./leaderboard_cli.ts";
import { makeRow } from "./make_row.ts";
import type { ResultRow } from "./row.ts";
import { CSV_COLUMNS } from "./store.ts";
import { findChromium } from "../testing/chromium.ts";

const chromium = findChromium();

const ROWS = [
  makeRow({ method: "fp", metrics: { ppl: [10, 0.2], kl: [0, 0] } }),
  makeRow({ method: "rtn", wBits: 8, metrics: { ppl: [10.1, 0.2], kl: [0.001, 0] } }),
  makeRow({ method: "rtn", wBits: 4, metrics: { ppl: [12, 0.2], kl: [0.2, 0] } }),
  makeRow({ method: "gptq", wBits: 4, metrics: { ppl: [11, 0.2], kl: [0.1, 0] } }),
  makeRow({ method: "gptq:actOrder=true", wBits: 4, metrics: { ppl: [10.5, 0.2], kl: [0.08, 0] } }),
  makeRow({ method: "gptq", wBits: 8, status: "failed", error: "Hessian not PD" }),
  makeRow({ method: "fp", task: "arc", metrics: { acc: [0.5, 0.02] } }),
  makeRow({ method: "rtn", wBits: 4, task: "arc", metrics: { acc: [0.45, 0.02] } }),
  makeRow({ method: "gptq", wBits: 4, task: "arc", metrics: { acc: [0.48, 0.02] } }),
];

Deno.test({
  name: "leaderboard page in Chromium: no console errors, charts drawn, sorting and filters work",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-site-" });
    const files = await buildSite(ROWS);
    for (const [name, text] of files) await Deno.writeTextFile(`${dir}/${name}`, text);
    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      const requests: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("request", (r) => requests.push(r.url()));
      await page.goto(`file://${dir}/tiny.html`, { waitUntil: "load" });

      // every chart rendered with marks; the selected metric's (ppl: line and heatmap) shown
      const marks = await page.$$eval(
        "figure svg",
        (svgs) => svgs.map((s) => s.querySelectorAll("path, rect, line, circle").length),
      );
      assert.equal(marks.length, 8);
      for (const n of marks) assert.ok(n > 5, `chart with ${n} marks`);
      const shownFigures = () =>
        page.$$eval(
          "figure",
          (fs) =>
            fs.filter((f) => f.getClientRects().length > 0).map((f) => f.getAttribute("data-m")),
        );
      assert.deepEqual(await shownFigures(), ["ppl", "ppl"]);

      const order = () =>
        page.$$eval(
          'tbody[data-class="compensation"] tr.m th',
          (ths) => ths.map((t) => t.textContent),
        );
      assert.deepEqual(await order(), ["gptq", "gptq:actOrder=true"]);
      // the W4A16 ppl column of tinystories:eval: ascending puts the lower ppl first
      const header = await page.$$eval(
        "thead th[data-sort] button",
        (bs) =>
          bs.findIndex((b) =>
            b.textContent === "W4A16" && b.closest("th")!.getAttribute("data-task") === "1"
          ),
      );
      assert.ok(header >= 0);
      const buttons = await page.$$("thead th[data-sort] button");
      await buttons[header]!.click();
      assert.deepEqual(await order(), ["gptq:actOrder=true", "gptq"]);
      await buttons[header]!.click();
      assert.deepEqual(await order(), ["gptq", "gptq:actOrder=true"]);
      // arc's columns have no ppl; switching to acc shows arc's values and charts
      await page.select("#metric", "acc");
      assert.deepEqual(await shownFigures(), ["acc", "acc"]);
      const arcW4 = await page.$$eval(
        'tbody[data-class="compensation"] tr.m',
        (trs) => trs.map((tr) => tr.querySelector('td[data-col="1"]')!.getAttribute("data-v")),
      );
      assert.deepEqual(arcW4, ["0.48", ""]);
      await page.select("#metric", "ppl");

      // the failed cell carries its reason on hover
      const failed = await page.$eval("td.status.failed", (td) => td.getAttribute("title"));
      assert.equal(failed, "Hessian not PD");

      // filters: hide a class, hide the W8 columns
      await page.click('input[data-filter-class="compensation"]');
      const hidden = await page.$eval(
        'tbody[data-class="compensation"]',
        (tb) => tb.ownerDocument.defaultView!.getComputedStyle(tb).display,
      );
      assert.equal(hidden, "none");
      await page.click('input[data-filter-wbits="8"]');
      const w8 = await page.$$eval(
        'td[data-wbits="8"]',
        (tds) =>
          tds.filter((td) => td.ownerDocument.defaultView!.getComputedStyle(td).display !== "none")
            .length,
      );
      assert.equal(w8, 0);
      // headers stay aligned with the cells: as many visible leaf headers as cells in a row
      const visible = (sel: string) =>
        page.$$eval(
          sel,
          (els) =>
            els.filter((e) => e.ownerDocument.defaultView!.getComputedStyle(e).display !== "none")
              .length,
        );
      const leaves = await visible("thead th[data-sort]:not([data-sort=method])");
      assert.equal(leaves, await visible('tbody[data-class="baseline"] tr.group + tr.m td'));
      assert.equal(leaves, 4); // FP32 and W4A16 of arc (acc) and of tinystories (ppl)
      const spans = await page.$$eval(
        "thead th[data-taskgroup]",
        (ths) => ths.map((t) => Number(t.getAttribute("colspan"))),
      );
      assert.deepEqual(spans, [2, 2]);

      const out = Deno.env.get("LOWBIT_TEST_OUTPUT") ?? dir;
      await Deno.mkdir(out, { recursive: true });
      await page.screenshot({ path: `${out}/leaderboard.png` as `${string}.png`, fullPage: true });
      assert.ok((await Deno.stat(`${out}/leaderboard.png`)).size > 10_000);

      assert.deepEqual(errors, []);
      assert.deepEqual(requests.filter((u) => !u.startsWith("file://")), [], "network requests");
    } finally {
      await browser.close();
      if (!Deno.env.get("LOWBIT_TEST_OUTPUT")) await Deno.remove(dir, { recursive: true });
    }
  },
});

const BASELINE = new URL("../bench/baselines/w2-w8.jsonl", import.meta.url).pathname;

Deno.test({
  name:
    "published leaderboard in Chromium: every method row and configuration of the committed baseline is visible, built from the file (pages.yml) and from a results directory (bench.yml)",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // What the page must show, counted from the JSONL itself.
    const rows = (await Deno.readTextFile(BASELINE)).trim().split("\n").map((l) => JSON.parse(l));
    const specs = new Set<string>(rows.map((r) => r.method.spec ?? r.method.id));
    const labels = new Set<string>(rows.map((r) => r.quant.label));
    const models = new Set<string>(rows.map((r) => r.model.id));
    const values = rows.filter((r) =>
      r.status === "ok" && r.metrics.some((m: { metric: string }) =>
        m.metric === "ppl"
      )
    ).length;
    assert.deepEqual([specs.size, labels.size, models.size, values], [5, 13, 1, 30]);

    const dir = await Deno.makeTempDir({ prefix: "lowbit-published-" });
    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"],
    });
    try {
      // pages.yml on workflow_dispatch: --in the committed baseline.
      assert.equal(await leaderboardMain(["--in", BASELINE, "--out", `${dir}/file`]), 0);
      // bench.yml (published by pages.yml on workflow_run): --in the results directory.
      await Deno.mkdir(`${dir}/runs/w2-w8`, { recursive: true });
      await Deno.copyFile(BASELINE, `${dir}/runs/w2-w8/results.jsonl`);
      assert.equal(await leaderboardMain(["--in", `${dir}/runs`, "--out", `${dir}/dir`]), 0);

      for (const site of ["file", "dir"]) {
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on("console", (m) => {
          if (m.type() === "error") errors.push(m.text());
        });
        page.on("pageerror", (e) => errors.push(String(e)));
        await page.goto(`file://${dir}/${site}/index.html`, { waitUntil: "load" });
        const shown = (sel: string) =>
          page.$$eval(sel, (els) => els.filter((e) => e.getClientRects().length > 0).length);
        assert.equal(await shown("tbody tr"), models.size, `${site}: index rows`);
        await Promise.all([page.waitForNavigation(), page.click("tbody tr a")]);

        // Every method row is displayed (not hidden by a filter or a script error)...
        assert.equal(await shown("#lb tbody tr.m"), specs.size, `${site}: method rows`);
        const names = await page.$$eval(
          "#lb tbody tr.m th",
          (ths) => ths.map((t) => (t.textContent ?? "").replace(/ \(reference\)$/, "")),
        );
        assert.deepEqual(new Set(names), specs);
        // ...with a column per configuration and every value cell.
        assert.equal(await shown('thead th[data-sort]:not([data-sort="method"])'), labels.size);
        assert.equal(await shown('#lb td[data-v]:not([data-v=""])'), values, `${site}: values`);
        assert.deepEqual(errors, [], `${site}: console errors`);
        await page.close();
      }
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The value of `metric` the page should show for a row, computed from the JSONL alone. */
function expected(r: ResultRow, metric: string, fp: ResultRow): number | undefined {
  const m = (row: ResultRow, id: string) => row.metrics.find((x) => x.metric === id)?.value;
  if (metric === "bits_per_weight") return r.quant.bitsPerWeight ?? r.quant.wBits;
  if (metric === "delta_nll") return m(r, "nll")! - m(fp, "nll")!;
  return m(r, metric);
}

/** Elements matching `sel` that are displayed. */
function shown(page: Page, sel: string): Promise<number> {
  return page.$$eval(sel, (els) => els.filter((e) => e.getClientRects().length > 0).length);
}

/** The committed baseline: its rows, its FP row, and the row of a cell by method spec and label. */
interface Baseline {
  readonly rows: ResultRow[];
  readonly fp: ResultRow;
  readonly cell: (s: string, label: string) => ResultRow | undefined;
}

/** The method spec of a row, as the page names it. */
function spec(r: ResultRow): string {
  return r.method.spec ?? r.method.id;
}

/** Reads the committed baseline's rows. */
async function readBaseline(): Promise<Baseline> {
  const text = await Deno.readTextFile(BASELINE);
  const rows: ResultRow[] = text.trim().split("\n").map((l) => JSON.parse(l));
  const fp = rows.find((r) => r.method.id === "fp")!;
  const cell = (s: string, label: string) =>
    rows.find((r) => spec(r) === s && r.quant.label === label);
  return { rows, fp, cell };
}

/** Layout at 1280 px: the page does not scroll sideways, the caption is within the viewport. */
async function checkLayout(page: Page, what: string): Promise<void> {
  const l = await page.$eval("html", (html) => {
    const document = html.ownerDocument;
    const cap = document.getElementById("lb-cap")!.getBoundingClientRect();
    const scroll = document.querySelector(".scroll")!;
    const box = scroll.getBoundingClientRect();
    return {
      scrollWidth: html.scrollWidth,
      tableFits: scroll.scrollWidth <= scroll.clientWidth,
      cap: [cap.left, cap.right, cap.width],
      box: [box.left, box.right],
    };
  });
  assert.ok(l.scrollWidth <= 1280, `${what}: page scrollWidth ${l.scrollWidth}`);
  assert.ok(
    l.cap[0]! >= 0 && l.cap[1]! <= 1280 && l.cap[2]! > 0,
    `${what}: caption ${l.cap}`,
  );
  assert.ok(l.box[0]! >= 0 && l.box[1]! <= 1280, `${what}: table box ${l.box}`);
  // The baseline's 13 configurations fit without scrolling the table's own box either.
  assert.ok(l.tableFits, `${what}: the table scrolls sideways in its box`);
}

/** The selector offers the metrics of the rows, the derived ones included. */
async function checkMetricOptions(page: Page): Promise<void> {
  const options = await page.$$eval("#metric option", (os) => os.map((o) => o.value));
  for (const m of ["ppl", "delta_nll", "kl", "top1", "bits_per_weight"]) {
    assert.ok(options.includes(m), `option ${m}`);
  }
}

/** The leaderboard's cells: method spec, configuration label, value and visible metric content. */
function table(page: Page) {
  return page.$eval("html", (html) => {
    const document = html.ownerDocument;
    const labels = [...document.querySelectorAll("#lb thead th[data-sort] button")]
      .map((b) => b.textContent!).slice(1);
    return [...document.querySelectorAll("#lb tr.m")].flatMap((tr) => {
      const s = tr.querySelector("th")!.textContent!.replace(/ \(reference\)$/, "");
      return [...tr.querySelectorAll("td[data-col]")].map((td) => {
        const visible = [...td.querySelectorAll(".mv")].filter((e) =>
          e.getClientRects().length > 0
        );
        return {
          spec: s,
          label: labels[Number(td.getAttribute("data-col"))]!,
          v: td.getAttribute("data-v"),
          visible: visible.map((e) => e.getAttribute("data-m")),
          text: visible.map((e) => e.querySelector(".v")?.textContent ?? "").join(""),
        };
      });
    });
  });
}

/** Every shown cell holds the JSONL's value of `metric`, and only that metric's content. */
async function checkMetricCells(page: Page, metric: string, baseline: Baseline): Promise<void> {
  const { rows, fp, cell } = baseline;
  let values = 0;
  for (const c of await table(page)) {
    const r = cell(c.spec, c.label);
    if (!r) {
      assert.equal(c.v, "", `${metric} ${c.spec} ${c.label}: no row, no value`);
      continue;
    }
    const want = expected(r, metric, fp)!;
    assert.deepEqual(c.visible, [metric], `${metric} ${c.spec} ${c.label}`);
    assert.ok(
      Math.abs(Number(c.v) - want) <= 1e-12 * Math.max(1, Math.abs(want)),
      `${metric} ${c.spec} ${c.label}: data-v ${c.v}, JSONL ${want}`,
    );
    const t = Number(c.text.replace("−", "-"));
    assert.ok(
      Math.abs(t - want) <= 0.005 * Math.abs(want) + 1e-4,
      `${metric} ${c.spec} ${c.label}: shows ${c.text}, JSONL ${want}`,
    );
    values++;
  }
  assert.equal(values, rows.length, `${metric}: one value per row`);
}

/** The charts follow the selector: only `metric`'s are shown, and one ranking section. */
async function checkMetricCharts(page: Page, metric: string): Promise<void> {
  const figures = await page.$$eval(
    "figure",
    (fs) => fs.filter((f) => f.getClientRects().length > 0).map((f) => f.getAttribute("data-m")),
  );
  assert.ok(figures.length >= 1, `${metric}: a chart`);
  assert.ok(figures.every((m) => m === metric), `${metric}: charts ${figures}`);
  assert.equal(await shown(page, "section.ranking"), 1);
}

/**
 * Ranking: every non-FP cell once, ordered by the metric within each bit-width, with the JSONL's
 * value and the method's class.
 */
async function checkRanking(page: Page, metric: string, baseline: Baseline): Promise<void> {
  const { rows, fp, cell } = baseline;
  const ranking = await page.$eval(
    `section.ranking[data-m="${metric}"]`,
    (sec) =>
      [...sec.querySelectorAll("table.rank tbody")].map((tb) =>
        [...tb.querySelectorAll("tr.rk")].map((tr) => ({
          spec: tr.querySelector("th")!.textContent!,
          label: tr.querySelectorAll("td")[2]!.textContent!,
          cls: tr.querySelector(".cls")!.textContent!,
          val: Number(tr.getAttribute("data-val")),
        }))
      ),
  );
  const listed = ranking.flat();
  const quantized = rows.filter((r) => r.method.id !== "fp");
  assert.deepEqual(
    listed.map((e) => `${e.spec} ${e.label}`).sort(),
    quantized.map((r) => `${spec(r)} ${r.quant.label}`).sort(),
    `${metric}: ranking lists every non-FP cell`,
  );
  const higher = metric === "top1";
  for (const group of ranking) {
    const wBits = new Set(group.map((e) => cell(e.spec, e.label)!.quant.wBits));
    assert.equal(wBits.size, 1, `${metric}: one bit-width per group`);
    for (let i = 1; i < group.length; i++) {
      const [a, b] = [group[i - 1]!.val, group[i]!.val];
      assert.ok(higher ? a >= b : a <= b, `${metric}: ranking order ${a}, ${b}`);
    }
    for (const e of group) {
      const r = cell(e.spec, e.label)!;
      assert.ok(Math.abs(e.val - expected(r, metric, fp)!) < 1e-12, `${metric} ${e.spec}`);
      assert.equal(e.cls, r.method.taxonomy);
    }
  }
}

/**
 * Provenance: a cell's hover title and its details panel show the JSONL's commit and model
 * sha256 (shortened), backend and calibration; a ranking row opens the same details.
 */
async function checkProvenance(page: Page, baseline: Baseline): Promise<void> {
  const target = baseline.cell("gptq", "W4A16")!;
  const td = `#lb tbody[data-class="compensation"] tr.m td[data-col="${await page.$$eval(
    "#lb thead th[data-sort] button",
    (bs) => bs.findIndex((b) => b.textContent === "W4A16") - 1,
  )}"]`;
  const title = await page.$eval(td, (e) => e.getAttribute("title")!);
  assert.ok(title.includes(target.env.git.commit!.slice(0, 12)), title);
  assert.ok(title.includes(target.model.files[0]!.sha256.slice(0, 8)), title);
  assert.equal(await shown(page, "#detail"), 0);
  await page.click(td);
  assert.equal(await shown(page, "#detail"), 1);
  const detail = await page.$eval(
    "#detail",
    (e) => (e as unknown as { innerText: string }).innerText,
  );
  assert.ok(detail.includes(target.env.git.commit!), "commit");
  for (const f of target.model.files) assert.ok(detail.includes(f.sha256.slice(0, 16)), f.path);
  assert.ok(detail.includes(target.env.backend), "backend");
  assert.ok(detail.includes(target.calibration!.tokensSha256.slice(0, 16)), "calibration");
  assert.ok(detail.includes(target.finishedAt), "finishedAt");
  assert.ok(detail.includes(`"percdamp":${target.method.params.percdamp}`), "params");
  const full = await page.$$eval("#detail code[data-full]", (cs) => cs.map((c) => c.title));
  for (const f of target.model.files) assert.ok(full.includes(f.sha256), "full sha256");
  await page.keyboard.press("Escape");
  assert.equal(await shown(page, "#detail"), 0);
  // a ranking row opens the same details
  await page.click(
    `section.ranking[data-m="ppl"] tr.rk[data-prov="${await page.$eval(
      td,
      (e) => e.getAttribute("data-prov"),
    )}"] th`,
  );
  assert.ok(
    (await page.$eval("#detail", (e) => (e as unknown as { innerText: string }).innerText))
      .includes(
        target.cellId,
      ),
  );
  await page.click("#detail-close");
}

/** Legend of the line chart: a solid and a dashed line, not two dots. */
async function checkLegend(page: Page): Promise<void> {
  const symbols = await page.$eval(
    'figure[data-m="ppl"] svg',
    (svg) => {
      const legend = [...svg.querySelectorAll(".role-legend")].find((g) =>
        (g.getAttribute("aria-label") ?? "").includes("quantization grid")
      )!;
      return [...legend.querySelectorAll(".role-legend-symbol path")].map((p) => {
        const cs = p.ownerDocument.defaultView!.getComputedStyle(p);
        return {
          dash: p.getAttribute("stroke-dasharray"),
          stroke: cs.stroke,
          d: p.getAttribute("d")!,
        };
      });
    },
  );
  assert.equal(symbols.length, 2);
  assert.notEqual(symbols[0]!.dash, symbols[1]!.dash);
  for (const s of symbols) {
    assert.match(s.d, /^M-?[\d.]+,0L[\d.]+,0$/, "a line, not a dot");
    assert.notEqual(s.stroke, "none");
  }
}

/** Raw data: the links serve the input rows, as JSONL and as rowsToCsv's long-form CSV. */
async function checkRawData(page: Page, url: string, rows: ResultRow[]): Promise<void> {
  const links = await page.$$eval(
    "a[download]",
    (as) => as.map((a) => ({ text: a.textContent, href: a.getAttribute("href")! })),
  );
  const file = (kind: string) =>
    decodeURIComponent(new URL(links.find((l) => l.text === kind)!.href, url).pathname);
  const jsonl = await Deno.readTextFile(file("JSONL"));
  assert.deepEqual(jsonl.trim().split("\n").map((l) => JSON.parse(l)), rows);
  const csv = Papa.parse<Record<string, string>>(await Deno.readTextFile(file("CSV")), {
    header: true,
    skipEmptyLines: true,
  });
  assert.deepEqual(csv.meta.fields, [...CSV_COLUMNS]);
  assert.equal(
    csv.data.length,
    rows.reduce((n, r) => n + Math.max(1, r.metrics.length), 0),
  );
  for (const r of rows) {
    for (const m of r.metrics) {
      const line = csv.data.find((d) => d.cellId === r.cellId && d.metric === m.metric);
      assert.equal(Number(line?.value), m.value, `${r.cellId} ${m.metric}`);
    }
  }
}

/** The index at 1280 px, and its all-rows download. */
async function checkIndex(page: Page, dir: string): Promise<void> {
  await page.goto(`file://${dir}/index.html`, { waitUntil: "load" });
  assert.ok(await page.$eval("html", (html) => html.scrollWidth <= 1280));
  const all = await page.$$eval(
    "a[download]",
    (as) => as.map((a) => a.getAttribute("href")!),
  );
  assert.ok(all.includes("lowbit-results.jsonl"));
}

Deno.test({
  name:
    "baseline leaderboard in Chromium at 1280×800: metric selector, ranking across classes, provenance, raw data, legend, no sideways scroll",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const baseline = await readBaseline();

    const dir = await Deno.makeTempDir({ prefix: "lowbit-1280-" });
    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"],
    });
    try {
      assert.equal(await leaderboardMain(["--in", BASELINE, "--out", dir]), 0);
      const page = await browser.newPage();
      await page.setViewport({ width: 1280, height: 800 });
      const errors: string[] = [];
      const requests: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("request", (r) => requests.push(r.url()));
      const url = `file://${dir}/stories260K.html`;
      await page.goto(url, { waitUntil: "load" });

      await checkLayout(page, "ppl");
      await page.screenshot({ path: `${dir}/leaderboard-1280.png` });
      await checkMetricOptions(page);
      // Each metric: the cells, the charts and the ranking follow the selector.
      for (const metric of ["kl", "top1", "bits_per_weight", "delta_nll", "ppl"]) {
        await page.select("#metric", metric);
        await checkMetricCells(page, metric, baseline);
        await checkMetricCharts(page, metric);
        await checkRanking(page, metric, baseline);
        await checkLayout(page, metric);
      }
      await checkProvenance(page, baseline);
      await checkLegend(page);
      await checkRawData(page, url, baseline.rows);
      await checkIndex(page, dir);

      assert.deepEqual(errors, []);
      assert.deepEqual(requests.filter((u) => !u.startsWith("file://")), [], "network requests");
      const out = Deno.env.get("LOWBIT_TEST_OUTPUT");
      if (out) {
        await Deno.mkdir(out, { recursive: true });
        await Deno.copyFile(`${dir}/leaderboard-1280.png`, `${out}/leaderboard-1280.png`);
      }
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

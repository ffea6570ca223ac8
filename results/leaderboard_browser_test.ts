/**
 * Browser test of the generated leaderboard: Chromium (Debian's `chromium` package, or
 * `$CHROMIUM_PATH`) driven by puppeteer-core opens the page from disk. Skipped when no Chromium
 * is installed. The screenshot goes to `$LOWBIT_TEST_OUTPUT` (default: a temporary directory).
 * The site published by the workflows (built by the CLI from the committed baseline, and from a
 * results directory) must show every method row and configuration of its input.
 */

import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import { buildSite } from "./leaderboard.ts";
import { leaderboardMain } from "./leaderboard_cli.ts";
import { makeRow } from "./make_row.ts";
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

      // every chart rendered with marks
      const marks = await page.$$eval(
        "figure svg",
        (svgs) => svgs.map((s) => s.querySelectorAll("path, rect, line, circle").length),
      );
      assert.equal(marks.length, 3);
      for (const n of marks) assert.ok(n > 5, `chart with ${n} marks`);

      const order = () =>
        page.$$eval(
          'tbody[data-class="compensation"] tr.m th',
          (ths) => ths.map((t) => t.textContent),
        );
      assert.deepEqual(await order(), ["gptq", "gptq:actOrder=true"]);
      // the W4A16 ppl column of tinystories:eval: ascending puts the lower ppl first
      const header = await page.$$eval(
        "thead th[data-sort] button",
        (bs) => bs.findIndex((b) => b.textContent?.startsWith("W4A16 ppl")),
      );
      assert.ok(header >= 0);
      const buttons = await page.$$("thead th[data-sort] button");
      await buttons[header]!.click();
      assert.deepEqual(await order(), ["gptq:actOrder=true", "gptq"]);
      await buttons[header]!.click();
      assert.deepEqual(await order(), ["gptq", "gptq:actOrder=true"]);

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

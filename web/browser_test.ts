/**
 * The in-browser page end to end: built by `buildWeb`, served on 127.0.0.1, opened in headless
 * Chromium (Debian's `chromium` or `$CHROMIUM_PATH`, driven by puppeteer-core); one small cell
 * (stories260K, RTN W4 per channel, 2 windows) runs in the tab and must equal the CLI's row for
 * the same cell to 1e-4 relative, through the page default (WebGPU when the tab has an adapter:
 * SwiftShader in headless Chromium, labelled fallback) and through WASM. Skipped without Chromium.
 */

import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import { buildWeb, DEFAULT_FIXTURES } from "./build.ts";
import type { WebCellResult } from "./cell.ts";
import type { ResultRow } from "../results/row.ts";
import { sandbox } from "../testing/sandbox.ts";
import { sharedPath } from "../testing/fixtures.ts";

const chromium = [
  Deno.env.get("CHROMIUM_PATH"),
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
].find((p) => {
  try {
    return !!p && Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

const cli = new URL("../cli.ts", import.meta.url).pathname;

/** The CLI's rows for stories260K RTN W4 per channel, 2 windows of TinyStories. */
async function cliRows(dir: string, vars: Record<string, string>): Promise<ResultRow[]> {
  const out = `${dir}/cli`;
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      cli,
      "--model",
      "stories260K",
      "--methods",
      "rtn",
      "--bits",
      "4",
      "--group",
      "channel",
      "--tasks",
      "tinystories",
      "--limit",
      "2",
      "--threads",
      "1",
      "--backend",
      "wasm",
      "--out",
      out,
      "--data",
      sharedPath("data"),
      "--quiet",
    ],
    env: { ...vars, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
  const text = await Deno.readTextFile(`${out}/results.jsonl`);
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

/** Serves `dir` on 127.0.0.1 (an ephemeral port). */
function serve(dir: string): Deno.HttpServer<Deno.NetAddr> {
  const types: Record<string, string> = {
    html: "text/html",
    js: "text/javascript",
    json: "application/json",
    wasm: "application/wasm",
  };
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    let path = decodeURIComponent(new URL(req.url).pathname);
    if (path.includes("..")) return new Response("bad path", { status: 400 });
    if (path === "/") path = "/index.html";
    try {
      const body = await Deno.readFile(`${dir}${path}`);
      const ext = path.split(".").pop() ?? "";
      return new Response(body, {
        headers: { "content-type": types[ext] ?? "application/octet-stream" },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

Deno.test({
  name: "in-browser page: a cell in Chromium (WebGPU, then WASM) equals the CLI row to 1e-4",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using sb = await sandbox("lowbit-web-");
    const site = `${sb.dir}/site`;
    await buildWeb({ out: site, ...DEFAULT_FIXTURES });
    const rows = await cliRows(sb.dir, sb.vars);
    const want = rows.find((r) => r.method.id === "rtn")!;
    const server = serve(site);
    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: [
        "--no-sandbox",
        "--no-proxy-server",
        "--enable-unsafe-webgpu",
        "--enable-features=Vulkan",
      ],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`http://127.0.0.1:${server.addr.port}/`, { waitUntil: "load" });
      await page.waitForFunction(() => "lowbitRun" in globalThis, { timeout: 30_000 });
      const run = (backend?: string) =>
        page.evaluate(
          (b) =>
            (globalThis as unknown as { lowbitRun: (c: unknown) => Promise<WebCellResult> })
              .lowbitRun({
                model: "stories260K",
                method: "rtn",
                bits: 4,
                group: "channel",
                limit: 2,
                ...(b ? { backend: b } : {}),
              }),
          backend,
        ) as Promise<WebCellResult>;
      // The page's default (WebGPU when the tab has an adapter), then WASM as without one.
      for (const backend of [undefined, "wasm"]) {
        const got = await run(backend);
        console.log(
          `in-tab: ${got.backend} ${JSON.stringify(got.gpu ?? null)} ${got.ms.toFixed(0)} ms`,
        );
        if (backend === "wasm") assert.equal(got.backend, "wasm-simd");
        if (got.gpu) assert.equal(typeof got.gpu.fallback, "boolean");
        assert.equal(got.windows, 2);
        for (const m of ["ppl", "kl", "top1"] as const) {
          const b = want.metrics.find((x) => x.metric === m)!.value;
          const a = got[m];
          assert.ok(
            Math.abs(a - b) <= 1e-4 * Math.abs(b),
            `${got.backend} ${m}: tab ${a}, CLI ${b}`,
          );
        }
      }
      assert.deepEqual(errors, []);
      // The form shows the same cell.
      await page.select("#method", "rtn");
      await page.select("#bits", "4");
      await page.$eval("#limit", (e) => {
        (e as unknown as { value: string }).value = "1";
      });
      await page.click("button");
      // Done when the output is no longer "running…".
      await page.waitForFunction(
        'document.getElementById("result").textContent.length > 0 && ' +
          '!document.getElementById("result").textContent.startsWith("running")',
        { timeout: 120_000 },
      );
      const text = await page.$eval("#result", (e) => e.textContent ?? "");
      assert.match(text, /^perplexity \d+\.\d{4} · KL \d\.\d{5} nats\/token · top-1 /);
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});

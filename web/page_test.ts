/**
 * The browser page end to end: the page is built, served with the model and data fixtures from
 * a local HTTP server, opened in headless Chromium (Debian's `chromium`, or `$CHROMIUM_PATH`,
 * driven by puppeteer-core), runs RTN W4 on stories260K over 2 TinyStories windows — through the
 * page's default (WebGPU when the tab has an adapter: SwiftShader in headless Chromium, labelled
 * fallback) and through WASM — and both must equal the CLI's numbers for the same cell (1e-4
 * relative). Skipped without Chromium.
 */

import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import { buildWeb } from "./build.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { findChromium } from "../testing/chromium.ts";
import { startMirror } from "../testing/mirror_server.ts";
import type { PageResult } from "./app.ts";

const chromium = findChromium();
const webFixtures = await needs("models/stories260K-hf", "data/text/tinystories");

async function cliRow(out: string): Promise<Record<string, { value: number }>> {
  const cmd = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli.ts", import.meta.url).pathname,
      "--model",
      sharedPath("models", "stories260K-hf"),
      "--methods",
      "rtn",
      "--bits",
      "4",
      "--group",
      "channel",
      "--tasks",
      "tinystories:eval",
      "--limit",
      "2",
      "--data",
      sharedPath("data"),
      "--out",
      out,
      "--quiet",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(cmd.success, new TextDecoder().decode(cmd.stderr));
  const rows = (await Deno.readTextFile(`${out}/results.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  const row = rows.find((r) => r.method.id === "rtn" && r.status === "ok");
  assert.ok(row, "the CLI wrote the RTN row");
  return Object.fromEntries(
    (row.metrics as { metric: string; value: number }[]).map((m) => [m.metric, m]),
  );
}

webFixtures.test({
  name:
    "browser page: RTN W4 on stories260K computed in Chromium (WebGPU, then WASM) equals the CLI's cell (1e-4)",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // One static server for the page (/app) and the fixtures (/shared, a symlink).
    const dir = await Deno.makeTempDir({ prefix: "lowbit-web-" });
    await Deno.mkdir(`${dir}/site`);
    await Deno.symlink(sharedPath(), `${dir}/site/shared`);
    const server = await startMirror(`${dir}/site`);
    try {
      await buildWeb(`${dir}/site/app`);
      const cli = await cliRow(`${dir}/cli`);
      const browser = await puppeteer.launch({
        executablePath: chromium,
        headless: true,
        args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan"],
        protocolTimeout: 600_000,
      });
      try {
        const backends: string[] = [];
        for (const backend of ["auto", "wasm"]) {
          const page = await browser.newPage();
          const errors: string[] = [];
          page.on("pageerror", (e) => errors.push(String(e)));
          const q = new URLSearchParams({
            model: "/shared/models/stories260K-hf/",
            data: "/shared/data/",
            method: "rtn",
            config: "W4A16",
            group: "channel",
            limit: "2",
            backend,
            run: "1",
          });
          await page.goto(`${server.endpoint}/app/index.html?${q}`);
          await page.waitForFunction(() => "lowbitResult" in globalThis, {
            timeout: 480_000,
            polling: 1000,
          }).catch(async (e) => {
            const status = await page.$eval("#status", (el) => el.textContent);
            throw new Error(`${backend}: no result; the page says "${status}"`, { cause: e });
          });
          const r = await page.evaluate(() =>
            (globalThis as unknown as { lowbitResult: PageResult }).lowbitResult
          );
          assert.equal(r.status, "done", r.error ?? "");
          assert.deepEqual(errors, []);
          for (const k of ["ppl", "kl", "top1"]) {
            const a = r.quantized![k]!.value, b = cli[k]!.value;
            assert.ok(
              Math.abs(a - b) <= 1e-4 * Math.abs(b) + 1e-9,
              `${backend} (${r.backend}) ${k}: page ${a}, CLI ${b}`,
            );
          }
          assert.ok(r.quantized!.ppl!.value > r.fp!.ppl!.value);
          // WebGPU windows say which adapter ran them, and a software one is never GPU speed.
          if (r.backend!.startsWith("webgpu")) assert.equal(r.gpu?.fallback, true);
          backends.push(r.backend!);
          await page.close();
        }
        assert.match(backends[1]!, /^wasm/);
      } finally {
        await browser.close();
      }
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

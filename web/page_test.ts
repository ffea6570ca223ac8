/**
 * The browser page end to end, as on a fresh machine: the page is built into a temporary
 * directory and that directory alone is served (the TinyStories text included); the model comes
 * from a stand-in Hugging Face Hub (a local server with the Hub's `/{repo}/resolve/{rev}/{file}`
 * paths and its cross-origin header), named by the page's `endpoint` query parameter. In headless
 * Chromium (Debian's `chromium`, or `$CHROMIUM_PATH`, driven by puppeteer-core) the page runs RTN
 * W4 over 2 TinyStories windows — on its default model (stories260K, llama2.c, sha256-checked)
 * and default data root, through WebGPU when the tab has an adapter (SwiftShader, labelled
 * fallback) and through WASM — and must equal the CLI's cell (1e-4 relative) while its progress
 * bar and text pass through intermediate values (download bytes, evaluation windows). A
 * transformers-layout copy (shared fixture `models/stories260K-hf`) is loaded the same way as
 * `hf:owner/repo` and as a directory URL. Model references resolve without a browser. Browser
 * tests are skipped without Chromium.
 */

import assert from "node:assert/strict";
import puppeteer, { type Browser } from "puppeteer-core";
import { buildWeb } from "./build.ts";
import { bundledDataDir, hfMirrorRoot, needs, sharedPath } from "../testing/fixtures.ts";
import { findChromium } from "../testing/chromium.ts";
import { type Mirror, startMirror } from "../testing/mirror_server.ts";
import { stories260K } from "../models/registry.ts";
import type { PageResult } from "./app.ts";
import { loadModelFromSource, resolveModelSource } from "./model_source.ts";

const chromium = findChromium();
const hubGate = await needs("hf-mirror");
const hfDirGate = await needs("models/stories260K-hf");
const RESOLVE = `karpathy/tinyllamas/resolve/${stories260K.revision}/stories260K`;

type Metrics = Record<string, { value: number }>;

/** The CLI's RTN W4 row on `model` over 2 TinyStories windows (the bundled text). */
async function cliRow(out: string, model: string, env: Record<string, string>): Promise<Metrics> {
  const cmd = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli.ts", import.meta.url).pathname,
      ...["--model", model, "--methods", "rtn", "--bits", "4", "--group", "channel"],
      ...["--tasks", "tinystories:eval", "--limit", "2", "--data", bundledDataDir()],
      ...["--out", out, "--quiet"],
    ],
    env,
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

/**
 * A network's pace on loopback: the body in pieces of at most 64 KiB, 20 ms apart (loopback would hand the
 * page a megabyte in one read, with no download progress to show).
 */
function paced(): TransformStream<Uint8Array, Uint8Array> {
  const PIECE = 65536;
  let first = true;
  return new TransformStream({
    async transform(chunk, out) {
      for (let at = 0; at < chunk.length; at += PIECE) {
        if (!first) await new Promise((r) => setTimeout(r, 20));
        first = false;
        out.enqueue(chunk.subarray(at, at + PIECE));
      }
    },
  });
}

/**
 * A stand-in Hub: the files under `root` (laid out `{owner}/{repo}/resolve/{rev}/{path}`) served
 * by the test mirror, behind a proxy that adds the Hub's `access-control-allow-origin: *` (the
 * page is on another origin) and paces bodies ({@linkcode paced}).
 */
async function standInHub(root: string): Promise<Mirror> {
  const mirror = await startMirror(root);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const res = await fetch(`${mirror.endpoint}${new URL(req.url).pathname}`, {
      method: req.method,
    });
    const headers = new Headers(res.headers);
    headers.set("access-control-allow-origin", "*");
    return new Response(res.body?.pipeThrough(paced()) ?? null, { status: res.status, headers });
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests: mirror.requests,
    close: async () => {
      await server.shutdown();
      await mirror.close();
    },
  };
}

/** What the page's progress elements showed, recorded by a MutationObserver from the start. */
interface ProgressSeen {
  /** Every text `#progress-text` was given. */
  texts: string[];
  /** Every `value` `#progress` had before it was changed. */
  values: string[];
}

function recordProgress(): void {
  const seen: ProgressSeen = { texts: [], values: [] };
  (globalThis as unknown as { progressSeen: ProgressSeen }).progressSeen = seen;
  new MutationObserver((records) => {
    for (const r of records) {
      const el = r.target as Element;
      if (r.type === "attributes" && el.id === "progress" && r.oldValue !== null) {
        seen.values.push(r.oldValue);
      }
      if (r.type === "childList" && el.id === "progress-text") {
        for (const n of r.addedNodes) seen.texts.push(n.textContent ?? "");
      }
    }
  }).observe(document, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeOldValue: true,
    attributeFilter: ["value"],
  });
}

/**
 * Opens the page with `query` and `run=1` in a fresh browser context (no HTTP cache shared with
 * earlier runs), waits for its result, and returns it with what the progress elements showed.
 */
async function runPage(
  browser: Browser,
  pageUrl: string,
  query: Record<string, string>,
): Promise<{ r: PageResult; seen: ProgressSeen; errors: string[] }> {
  const context = await browser.createBrowserContext();
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.evaluateOnNewDocument(recordProgress);
    await page.goto(`${pageUrl}?${new URLSearchParams({ ...query, run: "1" })}`);
    await page.waitForFunction(() => "lowbitResult" in globalThis, {
      timeout: 480_000,
      polling: 1000,
    }).catch(async (e) => {
      const status = await page.$eval("#status", (el) => el.textContent);
      throw new Error(`${JSON.stringify(query)}: no result; the page says "${status}"`, {
        cause: e,
      });
    });
    const [r, seen] = await page.evaluate(() => {
      const g = globalThis as unknown as { lowbitResult: PageResult; progressSeen: ProgressSeen };
      return [g.lowbitResult, g.progressSeen] as const;
    });
    return { r, seen, errors };
  } finally {
    await context.close();
  }
}

function assertMatchesCli(r: PageResult, cli: Metrics, what: string): void {
  assert.equal(r.status, "done", r.error ?? "");
  for (const k of ["ppl", "kl", "top1"]) {
    const a = r.quantized![k]!.value, b = cli[k]!.value;
    assert.ok(
      Math.abs(a - b) <= 1e-4 * Math.abs(b) + 1e-9,
      `${what} (${r.backend}) ${k}: page ${a}, CLI ${b}`,
    );
  }
  assert.ok(r.quantized!.ppl!.value > r.fp!.ppl!.value);
  // WebGPU windows say which adapter ran them, and a software one is never GPU speed.
  if (r.backend!.startsWith("webgpu")) assert.equal(r.gpu?.fallback, true);
}

function launch(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan"],
    protocolTimeout: 600_000,
  });
}

Deno.test("page models: registry ids, hf: references and URLs resolve to the Hub's resolve URLs", () => {
  const s = resolveModelSource("stories260K");
  assert.equal(s.kind, "llama2c");
  if (s.kind !== "llama2c") return;
  assert.equal(
    s.checkpoint.url,
    `https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin`,
  );
  assert.equal(
    s.tokenizer.url,
    `https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin`,
  );
  assert.equal(s.checkpoint.sha256, stories260K.checkpoint!.sha256);
  assert.equal(s.tokenizer.bytes, stories260K.tokenizer!.bytes);
  assert.deepEqual(resolveModelSource("hf:o/r@refs/pr/1", "http://127.0.0.1:9/"), {
    kind: "hf",
    id: "hf:o/r@refs/pr/1",
    base: "http://127.0.0.1:9/o/r/resolve/refs%2Fpr%2F1/",
  });
  assert.deepEqual(resolveModelSource("hf:o/r"), {
    kind: "hf",
    id: "hf:o/r",
    base: "https://huggingface.co/o/r/resolve/main/",
  });
  assert.deepEqual(resolveModelSource("../m/x", undefined, "http://h/web/index.html"), {
    kind: "hf",
    id: "../m/x",
    base: "http://h/m/x/",
  });
  assert.throws(() => resolveModelSource("hf:o"), /invalid Hugging Face reference/);
  assert.throws(() => resolveModelSource("stories15M"), /unknown model "stories15M".*stories260K/);
});

hubGate.test({
  name: "page models: llama2.c files are sha256-checked against the registry",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-web-sha-" });
    const hub = await startMirror(dir);
    try {
      const good = await startMirror();
      try {
        const m = await loadModelFromSource(resolveModelSource("stories260K", good.endpoint));
        assert.equal(m.id, "stories260K");
        assert.deepEqual(m.files.map((f) => [f.path, f.sha256]), [
          ["stories260K.bin", stories260K.checkpoint!.sha256],
          ["tok512.bin", stories260K.tokenizer!.sha256],
        ]);
      } finally {
        await good.close();
      }
      // Same size, one byte changed: refused, naming the URL and both hashes.
      const src = `${(await hfMirrorRoot())!}/${RESOLVE}`;
      await Deno.mkdir(`${dir}/${RESOLVE}`, { recursive: true });
      const bytes = await Deno.readFile(`${src}/stories260K.bin`);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
      await Deno.writeFile(`${dir}/${RESOLVE}/stories260K.bin`, bytes);
      await Deno.copyFile(`${src}/tok512.bin`, `${dir}/${RESOLVE}/tok512.bin`);
      await assert.rejects(
        loadModelFromSource(resolveModelSource("stories260K", hub.endpoint)),
        new RegExp(`stories260K\\.bin.*registry pins ${stories260K.checkpoint!.sha256}`),
      );
    } finally {
      await hub.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

hubGate.test({
  name: "browser page from its build alone: default model stories260K from a stand-in Hub, RTN " +
    "W4 (WebGPU, then WASM) equals the CLI's cell (1e-4), progress shown on the way",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-web-" });
    const hub = await standInHub((await hfMirrorRoot())!);
    let site: Mirror | undefined;
    try {
      await buildWeb(`${dir}/dist`);
      site = await startMirror(`${dir}/dist`);
      const cli = await cliRow(`${dir}/cli`, "stories260K", {
        HF_ENDPOINT: hub.endpoint,
        HF_HUB_CACHE: `${dir}/hf-cache`,
        HF_HUB_OFFLINE: "",
      });
      const browser = await launch();
      try {
        // The form's defaults: nothing beside the project's checkouts.
        const page = await browser.newPage();
        await page.goto(`${site.endpoint}/index.html`);
        const defaults = await page.evaluate(() =>
          ["model", "endpoint", "data", "method"].map((id) =>
            (document.getElementById(id) as HTMLInputElement).value
          )
        );
        assert.deepEqual(defaults, ["stories260K", "https://huggingface.co", "data/", "rtn"]);
        await page.close();

        const backends: string[] = [];
        for (const backend of ["auto", "wasm"]) {
          const { r, seen, errors } = await runPage(browser, `${site.endpoint}/index.html`, {
            endpoint: hub.endpoint,
            method: "rtn",
            config: "W4A16",
            group: "channel",
            limit: "2",
            backend,
          });
          assertMatchesCli(r, cli, backend);
          assert.deepEqual(errors, []);
          assert.equal(r.model, "stories260K");
          assert.deepEqual(r.files?.map((f) => f.sha256), [
            stories260K.checkpoint!.sha256,
            stories260K.tokenizer!.sha256,
          ]);
          // Progress: part of the checkpoint downloaded, a window of two evaluated, the bar
          // between empty and full, before the result.
          const download = seen.texts.map((t) =>
            /^downloading stories260K\.bin: ([\d,]+) of ([\d,]+) bytes$/.exec(t)
          ).filter((m) => m !== null).map((m) =>
            m.slice(1).map((x) => Number(x.replace(/,/g, "")))
          );
          assert.ok(
            download.some(([a, b]) => a! > 0 && a! < b! && b === stories260K.checkpoint!.bytes),
            `${backend}: no partial download shown in ${JSON.stringify(seen.texts)}`,
          );
          assert.ok(seen.texts.includes("evaluating: window 1 of 2"), seen.texts.join(" | "));
          assert.ok(seen.texts.includes("full precision: window 1 of 2"), seen.texts.join(" | "));
          assert.ok(
            seen.values.some((v) => Number(v) > 0 && Number(v) < 1),
            `${backend}: the bar never stood between 0 and 1: ${seen.values.join(" ")}`,
          );
          backends.push(r.backend!);
        }
        assert.match(backends[1]!, /^wasm/);
      } finally {
        await browser.close();
      }
      // The model came from the Hub's resolve paths, the text from the build.
      for (const f of ["stories260K.bin", "tok512.bin"]) {
        assert.ok(hub.requests.includes(`/${RESOLVE}/${f}`), hub.requests.join(" "));
      }
      assert.ok(
        site.requests.includes("/data/text/tinystories/tinystories_val_head.txt"),
        site.requests.join(" "),
      );
    } finally {
      await site?.close();
      await hub.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

hfDirGate.test({
  name: "browser page: a transformers-layout copy as hf:owner/repo (WebGPU) and as a directory " +
    "URL (WASM) equals the CLI's cell on that directory (1e-4)",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-web-hf-" });
    // The stand-in Hub holds the fixture as repository lowbit/stories260K-hf at revision main.
    await Deno.mkdir(`${dir}/hub/lowbit/stories260K-hf/resolve`, { recursive: true });
    await Deno.symlink(
      sharedPath("models", "stories260K-hf"),
      `${dir}/hub/lowbit/stories260K-hf/resolve/main`,
    );
    const hub = await standInHub(`${dir}/hub`);
    let site: Mirror | undefined;
    try {
      await buildWeb(`${dir}/dist`);
      site = await startMirror(`${dir}/dist`);
      const cli = await cliRow(`${dir}/cli`, sharedPath("models", "stories260K-hf"), {});
      const browser = await launch();
      try {
        const runs: Record<string, string>[] = [
          { model: "hf:lowbit/stories260K-hf", endpoint: hub.endpoint, backend: "auto" },
          { model: `${hub.endpoint}/lowbit/stories260K-hf/resolve/main/`, backend: "wasm" },
        ];
        for (const run of runs) {
          const { r, errors } = await runPage(browser, `${site.endpoint}/index.html`, {
            ...run,
            method: "rtn",
            config: "W4A16",
            group: "channel",
            limit: "2",
          });
          assertMatchesCli(r, cli, run.model!);
          assert.deepEqual(errors, []);
          assert.equal(r.model, run.model);
          assert.ok(r.files?.some((f) => f.path === "model.safetensors"));
        }
      } finally {
        await browser.close();
      }
      assert.ok(hub.requests.includes("/lowbit/stories260K-hf/resolve/main/config.json"));
    } finally {
      await site?.close();
      await hub.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { FormatError, NotAvailableError } from "../core/errors.ts";
import { startMirror } from "../testing/mirror_server.ts";
import { type HostileStep, startHostileServer } from "../testing/hostile_server.ts";
import { writeSafetensors } from "../testing/safetensors_writer.ts";
import { hfMirrorRoot, needs, sharedPath } from "../testing/fixtures.ts";
import { datasetMirror } from "../testing/dataset_mirror.ts";
import {
  type DownloadEvent,
  type EnvGetter,
  hubCacheDir,
  hubCacheHint,
  hubEndpoint,
  hubFile,
  hubOffline,
  hubRepoDir,
  hubTimeouts,
  parseHfRef,
  sha256File,
} from "./hub.ts";

const storiesSums = await needs("hf-mirror", "SHA256SUMS");
const stories = await needs("hf-mirror");

const REPO = "karpathy/tinyllamas";
const FILE = "stories260K/stories260K.bin";
const MIRROR_FILE = `${await hfMirrorRoot()}/${REPO}/resolve/main/${FILE}`;

function envOf(vars: Record<string, string>): EnvGetter {
  return (name) => vars[name];
}

/** The sha256 pinned for `relPath` in ../shared/SHA256SUMS (independent of our code). */
async function pinnedSha256(relPath: string): Promise<string> {
  const sums = await Deno.readTextFile(sharedPath("SHA256SUMS"));
  const line = sums.split("\n").find((l) => l.trim().endsWith(`  ${relPath}`));
  assert.ok(line, `${relPath} is pinned in SHA256SUMS`);
  return line.split(/\s+/)[0]!;
}

/** All file names under `dir`, recursively. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(...await listFiles(p));
    else out.push(p);
  }
  return out;
}

/** Every file and folder under `dir`, recursively (folders end with `/`). */
async function listEntries(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(`${p}/`, ...await listEntries(p));
    else out.push(p);
  }
  return out.sort();
}

/** Runs `fn` with a running mirror and a fresh cache dir, cleaning both up. */
async function withMirror(
  fn: (ctx: { endpoint: string; requests: string[]; cache: string }) => Promise<void>,
): Promise<void> {
  const mirror = await startMirror();
  const cache = await Deno.makeTempDir({ prefix: "lowbit-hub-" });
  try {
    await fn({ endpoint: mirror.endpoint, requests: mirror.requests, cache });
  } finally {
    await mirror.close();
    await Deno.remove(cache, { recursive: true });
  }
}

storiesSums.test("hubFile() downloads a file byte-identical to the pinned sha256 into the HF cache layout", async () => {
  await withMirror(async ({ endpoint, cache }) => {
    const env = envOf({ HF_ENDPOINT: `${endpoint}/`, HF_HUB_CACHE: cache });
    const path = await hubFile(REPO, FILE, { env });
    const repoDir = join(cache, "models--karpathy--tinyllamas");
    assert.equal(path, join(repoDir, "snapshots", "main", FILE));
    assert.equal(
      await sha256File(path),
      await pinnedSha256(`hf-mirror/${REPO}/resolve/main/${FILE}`),
    );
    assert.equal((await Deno.stat(path)).size, (await Deno.stat(MIRROR_FILE)).size);
    assert.equal((await Deno.readTextFile(join(repoDir, "refs", "main"))).trim(), "main");
    assert.ok((await Deno.lstat(path)).isSymlink, "snapshot entry is a symlink");
    assert.ok(!(await Deno.readLink(path)).startsWith("/"), "symlink is relative");
    const target = await Deno.realPath(path);
    assert.equal(join(target, ".."), await Deno.realPath(join(repoDir, "blobs")));
    const files = await listFiles(repoDir);
    assert.deepEqual(files.filter((f) => f.endsWith(".incomplete")), []);
  });
});

stories.test("hubFile() serves a second call from the cache without a request", async () => {
  await withMirror(async ({ endpoint, requests, cache }) => {
    const env = envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache });
    const first = await hubFile(REPO, FILE, { env });
    assert.equal(requests.length, 1);
    const events: DownloadEvent[] = [];
    const second = await hubFile(REPO, FILE, { env, onProgress: (e) => events.push(e) });
    assert.equal(second, first);
    assert.equal(requests.length, 1);
    assert.deepEqual(events.map((e) => e.status), ["cached"]);
  });
});

stories.test("hubFile() with HF_HUB_OFFLINE=1 fails on an empty cache and works on a filled one", async () => {
  await withMirror(async ({ endpoint, requests, cache }) => {
    const offline = envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1" });
    await assert.rejects(hubFile(REPO, FILE, { env: offline }), (e: unknown) => {
      assert.ok(e instanceof NotAvailableError);
      assert.match(e.message, /HF_HUB_OFFLINE/);
      assert.ok(e.message.includes(FILE));
      assert.ok(e.message.includes(cache));
      return true;
    });
    assert.equal(requests.length, 0);
    await hubFile(REPO, FILE, { env: envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache }) });
    const path = await hubFile(REPO, FILE, { env: offline });
    assert.equal(await sha256File(path), await sha256File(MIRROR_FILE));
    assert.equal(requests.length, 1);
  });
});

Deno.test("hubOffline() accepts the huggingface_hub truthy spellings", () => {
  for (const v of ["1", "true", "YES", "on"]) assert.ok(hubOffline(envOf({ HF_HUB_OFFLINE: v })));
  for (const v of ["0", "false", ""]) assert.ok(!hubOffline(envOf({ HF_HUB_OFFLINE: v })));
  assert.ok(!hubOffline(envOf({})));
});

stories.test("hubFile() throws NotAvailableError naming the URL for a missing file", async () => {
  await withMirror(async ({ endpoint, cache }) => {
    const env = envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache });
    await assert.rejects(hubFile(REPO, "stories260K/missing.bin", { env }), (e: unknown) => {
      assert.ok(e instanceof NotAvailableError);
      assert.ok(e.message.includes(`${endpoint}/${REPO}/resolve/main/stories260K/missing.bin`));
      assert.match(e.message, /404/);
      return true;
    });
  });
});

stories.test("hubFile() rejects a wrong sha256 and leaves no blob behind", async () => {
  await withMirror(async ({ endpoint, cache }) => {
    const env = envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache });
    const wrong = "0".repeat(64);
    await assert.rejects(hubFile(REPO, FILE, { env, sha256: wrong }), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /sha256 mismatch/);
      assert.ok(e.message.includes(wrong));
      assert.ok(e.message.includes(`/resolve/main/${FILE}`));
      return true;
    });
    assert.deepEqual(await listEntries(cache), [], "nothing new in the cache");
  });
});

stories.test("hubFile() rejects a wrong expected size", async () => {
  await withMirror(async ({ endpoint, cache }) => {
    const env = envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache });
    await assert.rejects(hubFile(REPO, FILE, { env, size: 12 }), /size mismatch: expected 12/);
  });
});

storiesSums.test("hubFile() checks options.sha256 on a cache hit", async () => {
  await withMirror(async ({ endpoint, cache }) => {
    const env = envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache });
    const sha256 = await pinnedSha256(`hf-mirror/${REPO}/resolve/main/${FILE}`);
    const path = await hubFile(REPO, FILE, { env, sha256 });
    assert.equal(await hubFile(REPO, FILE, { env, sha256 }), path);
    await assert.rejects(hubFile(REPO, FILE, { env, sha256: "f".repeat(64) }), (e: unknown) => {
      assert.ok(e instanceof Error && e.message.includes(path));
      return true;
    });
  });
});

Deno.test("hubFile() throws NotAvailableError naming HF_ENDPOINT when the endpoint is unreachable", async () => {
  const cache = await Deno.makeTempDir({ prefix: "lowbit-hub-" });
  try {
    const env = envOf({ HF_ENDPOINT: "http://127.0.0.1:1", HF_HUB_CACHE: cache });
    await assert.rejects(hubFile(REPO, FILE, { env }), (e: unknown) => {
      assert.ok(e instanceof NotAvailableError);
      assert.ok(e.message.includes("HF_ENDPOINT=http://127.0.0.1:1"));
      assert.ok(e.message.includes(`http://127.0.0.1:1/${REPO}/resolve/main/${FILE}`));
      return true;
    });
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

stories.test("hubFile() reports progress ending with done and loaded === total", async () => {
  await withMirror(async ({ endpoint, cache }) => {
    const env = envOf({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache });
    const events: DownloadEvent[] = [];
    await hubFile(REPO, FILE, { env, onProgress: (e) => events.push(e) });
    const size = (await Deno.stat(MIRROR_FILE)).size;
    assert.equal(events[0]?.status, "initiate");
    const last = events.at(-1)!;
    assert.equal(last.status, "done");
    assert.equal(last.loaded, size);
    assert.equal(last.total, size);
    assert.ok(events.some((e) => e.status === "progress"));
    const loads = events.filter((e) => e.status === "progress").map((e) => e.loaded);
    assert.deepEqual(loads, [...loads].sort((a, b) => a - b));
  });
});

stories.test("hubFile() follows a Hub-style redirect, keeping x-repo-commit and the sha256 etag", async () => {
  const mirror = await startMirror();
  const commit = "0123456789abcdef0123456789abcdef01234567";
  const sha = await sha256File(MIRROR_FILE);
  const seen: (string | null)[] = [];
  const hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(req.headers.get("authorization"));
    const location = `${mirror.endpoint}${new URL(req.url).pathname}`;
    return new Response(null, {
      status: 302,
      headers: { location, "x-repo-commit": commit, "x-linked-etag": `"${sha}"` },
    });
  });
  let hubClosed = false;
  const cache = await Deno.makeTempDir({ prefix: "lowbit-hub-" });
  try {
    const env = envOf({
      HF_ENDPOINT: `http://127.0.0.1:${hub.addr.port}`,
      HF_HUB_CACHE: cache,
      HF_TOKEN: "hf_secret",
    });
    const path = await hubFile(REPO, FILE, { env });
    const repoDir = join(cache, "models--karpathy--tinyllamas");
    assert.equal(path, join(repoDir, "snapshots", commit, FILE));
    assert.equal(await Deno.readTextFile(join(repoDir, "refs", "main")), commit);
    assert.equal(await Deno.realPath(path), await Deno.realPath(join(repoDir, "blobs", sha)));
    assert.deepEqual(seen, ["Bearer hf_secret"]);
    // A commit revision hits its snapshot without network.
    await hub.shutdown();
    hubClosed = true;
    assert.equal(await hubFile(REPO, FILE, { env, revision: commit }), path);
    assert.equal(mirror.requests.length, 1);
  } finally {
    if (!hubClosed) await hub.shutdown();
    await mirror.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("hubFile() rejects repository and path names that would leave the cache", async () => {
  const env = envOf({ HF_HUB_CACHE: "/nonexistent", HF_HUB_OFFLINE: "1" });
  await assert.rejects(hubFile("../evil", FILE, { env }), TypeError);
  await assert.rejects(hubFile(REPO, "../../x", { env }), TypeError);
  await assert.rejects(hubFile(REPO, FILE, { env, revision: "../main" }), TypeError);
});

Deno.test("parseHfRef() parses hf:owner/repo[@rev] and rejects other forms", () => {
  assert.deepEqual(parseHfRef("hf:karpathy/tinyllamas"), {
    repo: "karpathy/tinyllamas",
    revision: "main",
  });
  assert.deepEqual(parseHfRef("hf:Qwen/Qwen1.5-MoE-A2.7B@v1.0"), {
    repo: "Qwen/Qwen1.5-MoE-A2.7B",
    revision: "v1.0",
  });
  assert.deepEqual(parseHfRef("hf:a/b@refs/pr/1").revision, "refs/pr/1");
  for (const bad of ["karpathy/tinyllamas", "hf:tinyllamas", "hf:a/b/c", "hf:a/b@", "hf:../b"]) {
    assert.throws(() => parseHfRef(bad), TypeError, bad);
  }
});

Deno.test("hubCacheDir() follows the huggingface_hub precedence", () => {
  const all = {
    HF_HUB_CACHE: "/a/hub",
    HUGGINGFACE_HUB_CACHE: "/b/hub",
    HF_HOME: "/c",
    XDG_CACHE_HOME: "/d",
    HOME: "/home/u",
  };
  const without = (...names: string[]) =>
    envOf(Object.fromEntries(Object.entries(all).filter(([k]) => !names.includes(k))));
  assert.equal(hubCacheDir(envOf(all)), "/a/hub");
  assert.equal(hubCacheDir(without("HF_HUB_CACHE")), "/b/hub");
  assert.equal(hubCacheDir(without("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")), "/c/hub");
  assert.equal(
    hubCacheDir(without("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME")),
    "/d/huggingface/hub",
  );
  assert.equal(
    hubCacheDir(without("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")),
    "/home/u/.cache/huggingface/hub",
  );
  assert.equal(hubCacheDir(envOf({ HF_HOME: "~/hf", HOME: "/home/u" })), "/home/u/hf/hub");
  assert.equal(hubCacheDir(envOf({ HF_HUB_CACHE: "", HF_HOME: "/c" })), "/c/hub");
});

Deno.test("hubEndpoint() strips trailing slashes and defaults to huggingface.co", () => {
  assert.equal(
    hubEndpoint(envOf({ HF_ENDPOINT: "http://127.0.0.1:8080//" })),
    "http://127.0.0.1:8080",
  );
  assert.equal(hubEndpoint(envOf({})), "https://huggingface.co");
});

stories.test("startMirror() serves GET and HEAD with Content-Length and refuses traversal", async () => {
  const mirror = await startMirror();
  try {
    const url = `${mirror.endpoint}/${REPO}/resolve/main/${FILE}`;
    const size = String((await Deno.stat(MIRROR_FILE)).size);
    const head = await fetch(url, { method: "HEAD" });
    await head.body?.cancel();
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), size);
    assert.equal(head.headers.get("x-repo-commit"), null);
    const getRes = await fetch(url);
    assert.equal((await getRes.arrayBuffer()).byteLength, Number(size));
    for (const bad of ["/%2e%2e/SHA256SUMS", "/karpathy/..%2F..%2FSHA256SUMS", "/nope"]) {
      const res = await fetch(`${mirror.endpoint}${bad}`);
      await res.body?.cancel();
      assert.ok(res.status === 400 || res.status === 404, `${bad} -> ${res.status}`);
    }
    assert.equal(mirror.requests.length, 5);
  } finally {
    await mirror.close();
  }
});

Deno.test("hubFile() with repoType dataset: datasets/ URL, datasets-- cache, separate from models", async () => {
  const bytes = new TextEncoder().encode('{"question":"q","answer":"#### 1"}\n');
  await using m = await datasetMirror([{ repo: "openai/gsm8k", path: "main/test.jsonl", bytes }]);
  const env = m.env();
  const path = await hubFile("openai/gsm8k", "main/test.jsonl", { repoType: "dataset", env });
  assert.deepEqual(m.mirror.requests, ["/datasets/openai/gsm8k/resolve/main/main/test.jsonl"]);
  const repoDir = join(m.cache, "datasets--openai--gsm8k");
  assert.equal(hubRepoDir("openai/gsm8k", env, "dataset"), repoDir);
  assert.equal(hubRepoDir("openai/gsm8k", env), join(m.cache, "models--openai--gsm8k"));
  assert.equal(path, join(repoDir, "snapshots", "main", "main", "test.jsonl"));
  assert.deepEqual(await Deno.readFile(path), bytes);
  // The dataset's cache entry does not answer for a model repository of the same name.
  await assert.rejects(
    hubFile("openai/gsm8k", "main/test.jsonl", { env }),
    (e: unknown) => e instanceof NotAvailableError && /404/.test(e.message),
  );
  assert.equal(m.mirror.requests[1], "/openai/gsm8k/resolve/main/main/test.jsonl");
  // Offline: served from the dataset cache; an uncached file names the dataset and the setting.
  const offline = m.env({ HF_HUB_OFFLINE: "1" });
  assert.equal(
    await hubFile("openai/gsm8k", "main/test.jsonl", { repoType: "dataset", env: offline }),
    path,
  );
  await assert.rejects(
    hubFile("openai/gsm8k", "main/train.jsonl", { repoType: "dataset", env: offline }),
    (e: unknown) =>
      e instanceof NotAvailableError &&
      e.message.includes("main/train.jsonl of dataset openai/gsm8k@main") &&
      e.message.includes("HF_HUB_OFFLINE=1"),
  );
  assert.equal(m.mirror.requests.length, 2);
  await assert.rejects(
    hubFile("openai/gsm8k", "x", { repoType: "space" as "model", env }),
    TypeError,
  );
});

// ---------------------------------------------------------------------------------------------
// A hostile server: stalls, truncation, HTML for JSON, 5xx, redirect loops. Every test asserts
// that the error names the URL and the problem, that nothing enters the cache, and that it ends
// quickly (small timeouts and retry delays instead of huggingface_hub's 10 s and 1 s).

const HREPO = "acme/tiny";
const route = (file: string) => `/${HREPO}/resolve/main/${file}`;
/** Timeouts of 0.3 s instead of 10 s. */
const FAST_TIMEOUTS = { HF_HUB_ETAG_TIMEOUT: "0.3", HF_HUB_DOWNLOAD_TIMEOUT: "0.3" };
/** Three attempts, 5 ms apart instead of 1 s, 2 s. */
const FAST_RETRY = { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 };
const CONFIG = new TextEncoder().encode('{"model_type":"llama","hidden_size":8}\n');
const SAFETENSORS = writeSafetensors(
  new Map([["w", { shape: [16, 16], data: new Float32Array(256).fill(0.5) }]]),
);
const HTML =
  "\n  <!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>Log in</body></html>\n";

/** Runs `fn` against a hostile server with `routes` and a fresh, empty cache; cleans both up. */
async function withHostile(
  routes: Record<string, HostileStep | HostileStep[]>,
  fn: (ctx: {
    server: ReturnType<typeof startHostileServer>;
    cache: string;
    env: (extra?: Record<string, string>) => EnvGetter;
  }) => Promise<void>,
): Promise<void> {
  await using server = startHostileServer(routes);
  const cache = await Deno.makeTempDir({ prefix: "lowbit-hub-hostile-" });
  try {
    await fn({
      server,
      cache,
      env: (extra = {}) =>
        envOf({ HF_ENDPOINT: server.endpoint, HF_HUB_CACHE: cache, ...FAST_TIMEOUTS, ...extra }),
    });
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
}

/**
 * Asserts that `promise` rejects with `cls` whose message contains every `parts` entry, that it
 * took less than `ms`, and that the cache holds nothing (no blob, no temporary file, no snapshot
 * or ref, not even an empty folder).
 */
async function assertRefused(
  promise: Promise<unknown>,
  cache: string,
  cls: new (...args: never[]) => Error,
  parts: (string | RegExp)[],
  ms = 5000,
): Promise<Error> {
  const t0 = performance.now();
  let error: Error | undefined;
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof cls, `${cls.name} expected, got ${e}`);
    for (const p of parts) {
      if (typeof p === "string") assert.ok(e.message.includes(p), `"${p}" in: ${e.message}`);
      else assert.match(e.message, p);
    }
    error = e;
    return true;
  });
  const elapsed = performance.now() - t0;
  assert.ok(elapsed < ms, `took ${elapsed.toFixed(0)} ms (limit ${ms})`);
  assert.deepEqual(await listEntries(cache), [], "nothing new in the cache");
  return error!;
}

Deno.test("hubFile() times out on a server that never sends headers, names HF_HUB_ETAG_TIMEOUT, retries, caches nothing", async () => {
  await withHostile({ [route("config.json")]: { kind: "stallHeaders" } }, async (h) => {
    const url = `${h.server.endpoint}${route("config.json")}`;
    await assertRefused(
      hubFile(HREPO, "config.json", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      NotAvailableError,
      [url, "no response headers within 0.3 s", "HF_HUB_ETAG_TIMEOUT", "gave up after 3 attempts"],
    );
    assert.equal(h.server.count(route("config.json")), 3);
  });
});

Deno.test("hubFile() bounds a redirect target's headers by HF_HUB_DOWNLOAD_TIMEOUT", async () => {
  const routes = {
    [route("model.safetensors")]: {
      kind: "respond",
      status: 302,
      headers: { location: "/cdn/blob" },
    } as const,
    "/cdn/blob": { kind: "stallHeaders" } as const,
  };
  await withHostile(routes, async (h) => {
    await assertRefused(
      hubFile(HREPO, "model.safetensors", {
        env: h.env({ HF_HUB_ETAG_TIMEOUT: "30", HF_HUB_DOWNLOAD_TIMEOUT: "0.2" }),
        retry: { attempts: 1 },
      }),
      h.cache,
      NotAvailableError,
      [`${h.server.endpoint}/cdn/blob`, "within 0.2 s", "HF_HUB_DOWNLOAD_TIMEOUT", "1 attempt"],
    );
  });
});

Deno.test("hubFile() times out on a body that stalls midway (idle timer), names HF_HUB_DOWNLOAD_TIMEOUT", async () => {
  const step = { kind: "stallBody", body: SAFETENSORS, sent: 100 } as const;
  await withHostile({ [route("model.safetensors")]: step }, async (h) => {
    const url = `${h.server.endpoint}${route("model.safetensors")}`;
    await assertRefused(
      hubFile(HREPO, "model.safetensors", { env: h.env(), retry: { ...FAST_RETRY, attempts: 2 } }),
      h.cache,
      NotAvailableError,
      [
        url,
        `stalled: nothing received for 0.3 s after 100 of ${SAFETENSORS.length} bytes`,
        "HF_HUB_DOWNLOAD_TIMEOUT",
        "gave up after 2 attempts",
      ],
    );
    assert.equal(h.server.count(route("model.safetensors")), 2);
  });
});

Deno.test("hubFile()'s idle timer restarts on every chunk: a slow but steady body is not a timeout", async () => {
  // 5-byte chunks 0.1 s apart, 0.9 s in all, with a 0.5 s idle timeout.
  const fetchSlowly: typeof fetch = () => {
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((r) => setTimeout(r, 100));
        if (i >= CONFIG.length) return controller.close();
        controller.enqueue(CONFIG.subarray(i, i + 5));
        i += 5;
      },
    });
    return Promise.resolve(new Response(body, { headers: { "content-type": "application/json" } }));
  };
  await withHostile({}, async (h) => {
    const env = h.env({ HF_HUB_DOWNLOAD_TIMEOUT: "0.5" });
    const path = await hubFile(HREPO, "config.json", { env, fetch: fetchSlowly });
    assert.deepEqual(await Deno.readFile(path), CONFIG);
  });
});

Deno.test("hubFile() refuses an HTML page served with 200 for config.json, by Content-Type or by its start", async () => {
  const asPage = { kind: "respond", body: HTML, headers: { "content-type": "text/html" } } as const;
  const disguised = {
    kind: "respond",
    body: HTML,
    headers: { "content-type": "application/json" },
  } as const;
  await withHostile(
    { [route("config.json")]: asPage, [route("tokenizer.json")]: disguised },
    async (h) => {
      for (
        const [file, problem] of [
          ["config.json", "web page (Content-Type: text/html)"],
          ["tokenizer.json", 'HTML page (it starts "<!DOCTYPE html>'],
        ]
      ) {
        await assertRefused(
          hubFile(HREPO, file!, { env: h.env(), retry: FAST_RETRY }),
          h.cache,
          FormatError,
          [`${h.server.endpoint}${route(file!)}`, problem!, file!, "nothing was written"],
        );
        assert.equal(h.server.count(route(file!)), 1, "refused content is not retried");
      }
    },
  );
});

Deno.test("hubFile() refuses JSON that does not parse, naming the file and the parse error", async () => {
  const step = { kind: "respond", body: '{"model_type": "llama",' } as const;
  await withHostile({ [route("config.json")]: step }, async (h) => {
    await assertRefused(
      hubFile(HREPO, "config.json", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      FormatError,
      [`${h.server.endpoint}${route("config.json")}`, "config.json is not valid JSON"],
    );
    assert.equal(h.server.count(route("config.json")), 1);
  });
});

Deno.test("hubFile() retries a safetensors body cut short (Content-Length larger, connection closed), then gives up", async () => {
  const step = { kind: "truncate", body: SAFETENSORS, sent: 200 } as const;
  await withHostile({ [route("model.safetensors")]: step }, async (h) => {
    await assertRefused(
      hubFile(HREPO, "model.safetensors", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      NotAvailableError,
      [
        `${h.server.endpoint}${route("model.safetensors")}`,
        `cut off after 200 of ${SAFETENSORS.length} bytes`,
        "gave up after 3 attempts",
      ],
    );
    assert.equal(h.server.count(route("model.safetensors")), 3);
  });
});

Deno.test("hubFile() refuses a truncated safetensors file sent without Content-Length (no sha256 to check)", async () => {
  const cut = SAFETENSORS.subarray(0, SAFETENSORS.length - 100);
  const short = cut.subarray(0, 20); // not even the whole header
  await withHostile({
    [route("model.safetensors")]: { kind: "respond", body: cut, contentLength: false },
    [route("model-00002.safetensors")]: { kind: "respond", body: short, contentLength: false },
  }, async (h) => {
    await assertRefused(
      hubFile(HREPO, "model.safetensors", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      FormatError,
      [
        `${h.server.endpoint}${route("model.safetensors")}`,
        'tensor "w" ends at byte 1024',
        "truncated",
      ],
    );
    await assertRefused(
      hubFile(HREPO, "model-00002.safetensors", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      FormatError,
      ["model-00002.safetensors", "header length", "goes past the end of the file"],
    );
  });
});

Deno.test("hubFile() retries 500, 429 and a dropped connection, then succeeds and caches the file", async () => {
  const steps: HostileStep[] = [
    { kind: "respond", status: 500, body: "oops\n" },
    { kind: "respond", status: 429, body: "slow down\n", headers: { "retry-after": "0" } },
    { kind: "reset" },
    { kind: "respond", body: SAFETENSORS },
  ];
  await withHostile({ [route("model.safetensors")]: steps }, async (h) => {
    const events: DownloadEvent[] = [];
    const path = await hubFile(HREPO, "model.safetensors", {
      env: h.env(),
      retry: { ...FAST_RETRY, attempts: 4 },
      onProgress: (e) => events.push(e),
    });
    assert.equal(h.server.count(route("model.safetensors")), 4, "four attempts");
    assert.deepEqual(await Deno.readFile(path), SAFETENSORS);
    assert.equal(events.at(-1)?.status, "done");
    const repoDir = join(h.cache, "models--acme--tiny");
    assert.deepEqual(
      (await listFiles(repoDir)).sort(),
      [
        join(repoDir, "blobs", await sha256File(path)),
        join(repoDir, "refs", "main"),
        join(repoDir, "snapshots", "main", "model.safetensors"),
      ].sort(),
    );
  });
});

Deno.test("hubFile() fails after the configured attempts on 503 forever, saying how many", async () => {
  const step = { kind: "respond", status: 503, body: "maintenance\n" } as const;
  await withHostile({ [route("config.json")]: step }, async (h) => {
    await assertRefused(
      hubFile(HREPO, "config.json", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      NotAvailableError,
      [
        `GET ${h.server.endpoint}${route("config.json")} returned 503`,
        "gave up after 3 attempts",
      ],
    );
    assert.equal(h.server.count(route("config.json")), 3);
  });
});

Deno.test("hubFile() does not retry 404 or other 4xx", async () => {
  await withHostile({
    [route("gone.json")]: { kind: "respond", status: 410, body: "gone\n" },
  }, async (h) => {
    await assertRefused(
      hubFile(HREPO, "config.json", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      NotAvailableError,
      [`GET ${h.server.endpoint}${route("config.json")} returned 404`],
    );
    await assertRefused(
      hubFile(HREPO, "gone.json", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      Error,
      [`GET ${h.server.endpoint}${route("gone.json")} returned 410`],
    );
    assert.deepEqual(h.server.requests, [route("config.json"), route("gone.json")]);
  });
});

Deno.test("hubFile() stops a redirect loop without retrying it", async () => {
  const loop = {
    kind: "respond",
    status: 302,
    headers: { location: route("config.json") },
  } as const;
  await withHostile({ [route("config.json")]: loop }, async (h) => {
    await assertRefused(
      hubFile(HREPO, "config.json", { env: h.env(), retry: FAST_RETRY }),
      h.cache,
      NotAvailableError,
      [`${h.server.endpoint}${route("config.json")}`, "redirected more than 10 times"],
    );
    assert.equal(h.server.count(route("config.json")), 11);
  });
});

Deno.test("hubFile() leaves a cached file as it was when forceDownload fails, and replaces it when it succeeds", async () => {
  const newer = new TextEncoder().encode('{"model_type":"llama","hidden_size":16}');
  const steps: HostileStep[] = [
    { kind: "respond", body: CONFIG },
    { kind: "respond", body: HTML },
    { kind: "respond", body: newer },
  ];
  await withHostile({ [route("config.json")]: steps }, async (h) => {
    const env = h.env();
    const path = await hubFile(HREPO, "config.json", { env });
    const before = await listEntries(h.cache);
    await assert.rejects(
      hubFile(HREPO, "config.json", { env, forceDownload: true, retry: FAST_RETRY }),
      FormatError,
    );
    assert.deepEqual(await listEntries(h.cache), before);
    assert.deepEqual(await Deno.readFile(await hubFile(HREPO, "config.json", { env })), CONFIG);
    assert.equal(await hubFile(HREPO, "config.json", { env, forceDownload: true }), path);
    assert.deepEqual(await Deno.readFile(path), newer);
    assert.equal(h.server.count(route("config.json")), 3);
    await assert.rejects(
      hubFile(HREPO, "config.json", { env: h.env({ HF_HUB_OFFLINE: "1" }), forceDownload: true }),
      (e: unknown) => e instanceof NotAvailableError && /forceDownload/.test(e.message),
    );
  });
});

Deno.test("hubFile() names the cache path and how to refetch when a cached file is bad (poisoned by an older version)", async () => {
  await withHostile({ [route("config.json")]: { kind: "respond", body: CONFIG } }, async (h) => {
    const env = h.env();
    // What an older lowbit left: the mirror's login page cached as config.json.
    const repoDir = join(h.cache, "models--acme--tiny");
    const blob = join(repoDir, "blobs", "f".repeat(64));
    const snap = join(repoDir, "snapshots", "main", "config.json");
    await Deno.mkdir(join(repoDir, "blobs"), { recursive: true });
    await Deno.mkdir(join(repoDir, "snapshots", "main"), { recursive: true });
    await Deno.mkdir(join(repoDir, "refs"));
    await Deno.writeTextFile(blob, HTML);
    await Deno.symlink(join("..", "..", "blobs", "f".repeat(64)), snap);
    await Deno.writeTextFile(join(repoDir, "refs", "main"), "main");
    for (const e of [{ env }, { env: h.env({ HF_HUB_OFFLINE: "1" }) }]) {
      await assert.rejects(hubFile(HREPO, "config.json", e), (err: unknown) => {
        assert.ok(err instanceof FormatError);
        assert.equal(err.file, snap);
        assert.ok(err.message.includes("HTML page"), err.message);
        assert.ok(err.message.includes(`delete it and the blob it links to, ${blob}`), err.message);
        assert.match(err.message, /forceDownload/);
        return true;
      });
    }
    assert.equal(h.server.count(route("config.json")), 0);
    assert.match(hubCacheHint(snap, env)!, /cached Hugging Face download; delete it/);
    assert.equal(hubCacheHint("/etc/hosts", env), undefined);
    // forceDownload (or deleting the link) heals the cache.
    assert.equal(await hubFile(HREPO, "config.json", { env, forceDownload: true }), snap);
    assert.deepEqual(await Deno.readFile(await hubFile(HREPO, "config.json", { env })), CONFIG);
  });
});

Deno.test("hubTimeouts() reads HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT and names a bad one", async () => {
  assert.deepEqual(hubTimeouts(envOf({})), { etagMs: 10_000, downloadMs: 10_000 });
  assert.deepEqual(
    hubTimeouts(envOf({ HF_HUB_ETAG_TIMEOUT: "2.5", HF_HUB_DOWNLOAD_TIMEOUT: "0" })),
    { etagMs: 2500, downloadMs: 10_000 },
  );
  assert.equal(hubTimeouts(envOf({ HF_HUB_DOWNLOAD_TIMEOUT: "1e12" })).downloadMs, 2 ** 31 - 1);
  for (
    const [name, value] of [
      ["HF_HUB_DOWNLOAD_TIMEOUT", "abc"],
      ["HF_HUB_DOWNLOAD_TIMEOUT", "-1"],
      ["HF_HUB_ETAG_TIMEOUT", "10s"],
      ["HF_HUB_ETAG_TIMEOUT", "Infinity"],
    ] as const
  ) {
    assert.throws(() => hubTimeouts(envOf({ [name]: value })), TypeError, `${name}="${value}"`);
    // hubFile checks them before anything else, cache hit or not.
    await assert.rejects(
      hubFile(HREPO, "config.json", { env: envOf({ [name]: value, HF_HUB_OFFLINE: "1" }) }),
      TypeError,
      name,
    );
  }
  await assert.rejects(hubFile(HREPO, "x.json", { retry: { attempts: 0 } }), RangeError);
});

Deno.test("hubFile() refuses a dataset's parquet file without its PAR1 magic at both ends", async () => {
  const file = "data/test-00000-of-00001.parquet";
  const path = `/datasets/${HREPO}/resolve/main/${file}`;
  const cut = new TextEncoder().encode(
    "PAR1 row groups ... (the footer and its magic are missing)",
  );
  await withHostile({ [path]: { kind: "respond", body: cut, contentLength: false } }, async (h) => {
    await assertRefused(
      hubFile(HREPO, file, { repoType: "dataset", env: h.env(), retry: FAST_RETRY }),
      h.cache,
      FormatError,
      [`${h.server.endpoint}${path}`, "is not a Parquet file"],
    );
  });
});

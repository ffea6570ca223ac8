import assert from "node:assert/strict";
import { join } from "node:path";
import { NotAvailableError } from "../core/errors.ts";
import { startMirror } from "../testing/mirror_server.ts";
import { hfMirrorRoot, needs, sharedPath } from "../testing/fixtures.ts";
import { datasetMirror } from "../testing/dataset_mirror.ts";
import {
  type DownloadEvent,
  type EnvGetter,
  hubCacheDir,
  hubEndpoint,
  hubFile,
  hubOffline,
  hubRepoDir,
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
    const blobs = join(cache, "models--karpathy--tinyllamas", "blobs");
    assert.deepEqual(await listFiles(blobs), []);
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

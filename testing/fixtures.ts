/**
 * The shared fixtures (`../shared` beside the checkout) for tests, and the one way a test says it
 * needs them.
 *
 * The root is `LOWBIT_SHARED` when set, otherwise `../shared` relative to the project root (never
 * to the working directory). Fixture files are read in place, never copied. A checkout without
 * them (a fresh clone, a hosted CI runner) still runs every test that does not need them:
 *
 * - TinyStories ships in the repository (`data/`, {@linkcode bundledDataDir}); tests that need
 *   only that text read the bundled copy and always run.
 * - stories260K's Hub files (`hf-mirror/karpathy/tinyllamas/…`) are the fixture `hf-mirror`; when
 *   it is absent they are fetched once from the Hub (`HF_ENDPOINT`, default huggingface.co, or the
 *   Hugging Face cache) into a temporary mirror of the same layout ({@linkcode hfMirrorRoot}).
 * - A test that needs a fixture is registered with `(await needs(fixture)).test`: `Deno.test`, or
 *   `Deno.test.ignore` when the fixture is missing (with a line on stderr naming it and
 *   `LOWBIT_SHARED`), so it is reported as ignored instead of failing.
 *
 * @module
 */

import { tmpdir } from "node:os";
import { join } from "node:path";
import { hubFile, sha256File } from "../models/hub.ts";
import { stories260K as STORIES } from "../models/registry.ts";

export { bundledDataDir } from "../core/paths.ts";

/** The shared fixture root, without a trailing slash. */
export function sharedRoot(): string {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("LOWBIT_SHARED");
  } catch {
    // no --allow-env: use the default location
  }
  if (fromEnv) return fromEnv.replace(/\/+$/, "");
  return decodeURIComponent(new URL("../../shared", import.meta.url).pathname);
}

/** Path of a shared fixture, e.g. `sharedPath("models", "stories260K-hf", "config.json")`. */
export function sharedPath(...parts: string[]): string {
  return [sharedRoot(), ...parts].join("/");
}

/** Whether the shared fixture `parts` (a file or a directory) exists. */
export function hasFixture(...parts: string[]): boolean {
  try {
    Deno.statSync(sharedPath(...parts));
    return true;
  } catch {
    return false;
  }
}

/** The stories260K files of the registry, as served below a mirror root. */
const HUB_FILES = [STORIES.checkpoint!, STORIES.tokenizer!].map((f) => ({
  ...f,
  mirrorPath: [...STORIES.repo.split("/"), "resolve", STORIES.revision, ...f.path.split("/")],
}));

let mirrorRoot: Promise<{ root?: string; why?: string }> | undefined;

/**
 * A directory laid out as `{owner}/{repo}/resolve/{revision}/{path}` holding stories260K's Hub
 * files, for `startMirror()`: the shared fixture `hf-mirror` when present; else a mirror in the
 * system's temporary directory, filled from the Hugging Face cache or downloaded from
 * `HF_ENDPOINT` (default https://huggingface.co; `HF_HUB_OFFLINE` respected), sha256-checked;
 * else `undefined` (the reason is in {@linkcode needs}' message). Resolved once per module.
 */
export async function hfMirrorRoot(): Promise<string | undefined> {
  return (await resolveMirror()).root;
}

function resolveMirror(): Promise<{ root?: string; why?: string }> {
  mirrorRoot ??= (async () => {
    if (hasFixture("hf-mirror")) return { root: sharedPath("hf-mirror") };
    const root = join(tmpdir(), "lowbit-test-hub-mirror");
    try {
      for (const f of HUB_FILES) await fillFromHub(root, f);
      return { root };
    } catch (e) {
      return { why: e instanceof Error ? e.message : String(e) };
    }
  })();
  return mirrorRoot;
}

/** Puts one Hub file into the temporary mirror (atomically), unless a checked copy is there. */
async function fillFromHub(
  root: string,
  f: (typeof HUB_FILES)[number],
): Promise<void> {
  const dest = join(root, ...f.mirrorPath);
  if (await sha256File(dest).catch(() => undefined) === f.sha256) return;
  const env = (name: string) => Deno.env.get(name);
  const options = { revision: STORIES.revision, sha256: f.sha256, size: f.bytes };
  let scratch: string | undefined;
  try {
    let src: string;
    try {
      // A cache hit makes no request and writes nothing.
      src = await hubFile(STORIES.repo, f.path, {
        ...options,
        env: (name) => name === "HF_HUB_OFFLINE" ? "1" : env(name),
      });
    } catch {
      // Download into a private cache: parallel test modules never share a half-written one.
      scratch = await Deno.makeTempDir({ prefix: "lowbit-test-hf-" });
      const cache = scratch;
      src = await hubFile(STORIES.repo, f.path, {
        ...options,
        env: (name) => name === "HF_HUB_CACHE" ? cache : env(name),
        fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(30_000) }),
      });
    }
    await Deno.mkdir(join(dest, ".."), { recursive: true });
    const tmp = `${dest}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    await Deno.copyFile(src, tmp);
    await Deno.rename(tmp, dest);
  } finally {
    if (scratch) await Deno.remove(scratch, { recursive: true });
  }
}

const reported = new Set<string>();

/** What {@linkcode needs} gives a test module. */
export interface FixtureGate {
  /**
   * `Deno.test` when every fixture is present, else `Deno.test.ignore`: the same arguments (a
   * definition's own `ignore` still applies), and the test keeps its own file and line.
   */
  readonly test: typeof Deno.test;
  /** Whether a fixture is missing (the tests are then ignored). */
  readonly ignore: boolean;
}

/**
 * The gate of tests that need shared fixtures: `fixtures` are paths below the shared root (e.g.
 * `"models/stories260K-moe"`, `"data/text/wikitext2/wiki.test.raw"`); when one is missing, the
 * tests registered with `.test` are ignored, after one line on stderr per missing fixture naming
 * it, where it was looked for and `LOWBIT_SHARED`. `"hf-mirror"` (stories260K's Hub files) counts
 * as present when {@linkcode hfMirrorRoot} found or fetched it.
 *
 * ```ts
 * const moe = await needs("models/stories260K-moe");
 * moe.test("MoE forward …", async () => {});
 * ```
 */
export async function needs(...fixtures: string[]): Promise<FixtureGate> {
  let missing = false;
  for (const fixture of fixtures) {
    let why: string | undefined;
    if (fixture === "hf-mirror") {
      const m = await resolveMirror();
      if (m.root === undefined) {
        why = `stories260K: shared fixture hf-mirror not found at ${sharedPath("hf-mirror")} ` +
          `(set LOWBIT_SHARED to the shared fixture directory) and not fetched from the Hub ` +
          `(${m.why})`;
      }
    } else if (!hasFixture(...fixture.split("/"))) {
      why = `shared fixture ${fixture} not found at ${sharedPath(fixture)} (set LOWBIT_SHARED ` +
        `to the shared fixture directory, default ../shared beside the checkout)`;
    }
    if (why === undefined) continue;
    missing = true;
    if (!reported.has(fixture)) {
      reported.add(fixture);
      console.error(`ignoring tests that need ${why}`);
    }
  }
  // Deno.test.ignore ignores whatever the definition says (its type just forbids `ignore`).
  return { test: missing ? Deno.test.ignore as typeof Deno.test : Deno.test, ignore: missing };
}

/**
 * Test helper: a temporary Hugging Face mirror holding dataset files, laid out as the Hub serves
 * them (`datasets/{owner}/{name}/resolve/main/{path}`), served by the static mirror server, with
 * a fresh Hugging Face cache; all removed again by `await using`.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { type Mirror, startMirror } from "./mirror_server.ts";

/** A file to serve: `repo` is `owner/name`, `path` the file's path inside the dataset repo. */
export interface MirrorFile {
  readonly repo: string;
  readonly path: string;
  readonly bytes: Uint8Array;
}

/** What {@linkcode datasetMirror} gives a test. */
export interface DatasetMirror extends AsyncDisposable {
  readonly mirror: Mirror;
  /** The mirror's root directory. */
  readonly root: string;
  /** The Hugging Face cache (`HF_HUB_CACHE`). */
  readonly cache: string;
  /** `HF_ENDPOINT` and `HF_HUB_CACHE` (plus `extra`) as an env lookup. */
  env(extra?: Record<string, string>): (name: string) => string | undefined;
}

/** Writes `files` under a temporary mirror root and serves it. */
export async function datasetMirror(files: readonly MirrorFile[]): Promise<DatasetMirror> {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-dataset-mirror-" });
  const root = join(dir, "mirror");
  const cache = join(dir, "hf");
  for (const f of files) {
    const p = join(root, "datasets", ...f.repo.split("/"), "resolve", "main", ...f.path.split("/"));
    await Deno.mkdir(dirname(p), { recursive: true });
    await Deno.writeFile(p, f.bytes);
  }
  const mirror = await startMirror(root);
  return {
    mirror,
    root,
    cache,
    env(extra = {}) {
      const vars: Record<string, string> = {
        HF_ENDPOINT: mirror.endpoint,
        HF_HUB_CACHE: cache,
        ...extra,
      };
      return (name) => vars[name];
    },
    async [Symbol.asyncDispose]() {
      await mirror.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

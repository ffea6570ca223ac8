/**
 * A plain static file server standing in for `HF_ENDPOINT` in tests: by default it serves
 * stories260K's Hub files from the shared fixture `hf-mirror` (`../shared` beside the repository,
 * or `$LOWBIT_SHARED`), or from a mirror fetched from the Hub when that is absent (see
 * `testing/fixtures.ts`).
 *
 * The server sends no Hugging Face headers (no `x-repo-commit`, no etag), like a dumb mirror.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { hfMirrorRoot } from "./fixtures.ts";

/** Content types by file extension (pages and modules need theirs); others are octet streams. */
const CONTENT_TYPES: Record<string, string> = {
  html: "text/html",
  js: "text/javascript",
  json: "application/json",
  wasm: "application/wasm",
};

/** A running mirror. */
export interface Mirror {
  /** Base URL, e.g. `http://127.0.0.1:41234`, to use as `HF_ENDPOINT`. */
  readonly endpoint: string;
  /** Path of every request received, in order (e.g. `/karpathy/tinyllamas/resolve/main/x.bin`). */
  readonly requests: string[];
  /** Stops the server and waits until it has stopped. */
  close(): Promise<void>;
}

/**
 * Serves the files under `root` on 127.0.0.1 at a free port: GET and HEAD, `Content-Length`, a
 * content type for `.html`/`.js`/`.json`/`.wasm` (browser tests), 404 for missing files, 400 for paths that try to leave `root`, 405 for other methods.
 *
 * @param root Directory to serve; default {@linkcode hfMirrorRoot} (`../shared/hf-mirror`, or
 *   stories260K fetched from the Hub). Tests using the default pass `await needs("hf-mirror")`.
 * @returns The running mirror; call `close()` when done.
 * @throws {Error} When no root is given and there is no mirror of stories260K.
 */
export async function startMirror(root?: string): Promise<Mirror> {
  root ??= await hfMirrorRoot();
  if (root === undefined) {
    throw new Error(
      "no Hugging Face mirror to serve: the shared fixture hf-mirror is missing (set " +
        "LOWBIT_SHARED) and stories260K could not be fetched from the Hub; declare the test " +
        'with `await needs("hf-mirror")` so that it is ignored instead',
    );
  }
  const base = resolve(root);
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const { pathname } = new URL(req.url);
    requests.push(pathname);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    let segments: string[];
    try {
      segments = pathname.split("/").slice(1).map(decodeURIComponent);
    } catch {
      return new Response("bad path\n", { status: 400 });
    }
    if (segments.some((s) => s === "" || s === "." || s === ".." || /[\\/\0]/.test(s))) {
      return new Response("bad path\n", { status: 400 });
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(join(base, ...segments));
    } catch {
      return new Response("not found\n", { status: 404 });
    }
    const info = await file.stat();
    if (!info.isFile || req.method === "HEAD") file.close();
    if (!info.isFile) return new Response("not found\n", { status: 404 });
    const ext = segments.at(-1)!.split(".").pop()!;
    const headers = {
      "content-length": String(info.size),
      "content-type": CONTENT_TYPES[ext] ?? "application/octet-stream",
    };
    return new Response(req.method === "HEAD" ? null : file.readable, { headers });
  });
  const { port } = server.addr;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () => server.shutdown(),
  };
}

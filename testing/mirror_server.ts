/**
 * A plain static file server standing in for `HF_ENDPOINT` in tests, and the location of the
 * shared fixtures (`../shared` beside the repository, or `$LOWBIT_SHARED`).
 *
 * The server sends no Hugging Face headers (no `x-repo-commit`, no etag), like a dumb mirror.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { sharedPath } from "./fixtures.ts";

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
 * @param root Directory to serve; default `../shared/hf-mirror` (see `testing/fixtures.ts`).
 * @returns The running mirror; call `close()` when done.
 */
export function startMirror(root: string = sharedPath("hf-mirror")): Promise<Mirror> {
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
  return Promise.resolve({
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () => server.shutdown(),
  });
}

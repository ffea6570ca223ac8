/**
 * A small Hugging Face Hub client that downloads single files into the standard `huggingface_hub`
 * cache, so the cache is shared with Python and huggingface.js users.
 *
 * Model and dataset repositories go through the same code; they differ only in the URL
 * (`{endpoint}/{owner}/{name}/…` for models, `{endpoint}/datasets/{owner}/{name}/…` for datasets)
 * and the cache folder prefix (`models--` or `datasets--`), as in `huggingface_hub`.
 *
 * Cache layout under {@linkcode hubCacheDir} (one folder per repository):
 *
 * ```text
 * {models|datasets}--{owner}--{name}/
 *   blobs/<sha256>                 file contents, named by their sha256
 *   blobs/<...>.incomplete         a download in progress, renamed when complete and verified
 *   snapshots/<commit>/<path>      relative symlink to ../../blobs/<sha256> (a copy if symlinks fail)
 *   refs/<revision>                text file holding the commit the revision resolved to
 * ```
 *
 * Deviations from `huggingface_hub`, all so that a plain static mirror (`HF_ENDPOINT`) works:
 * - The commit is the `x-repo-commit` response header when the server sends one. A static mirror
 *   sends none, so the commit is then the revision itself (a 40-hex revision is a commit anyway):
 *   `refs/main` holds `main` and the snapshot folder is `snapshots/main/`.
 * - The blob is named by the sha256 of its bytes, computed while streaming. For LFS files on the
 *   Hub that equals the `x-linked-etag` (checked); for small git files the Hub's etag is a git sha1,
 *   where `huggingface_hub` would name the blob by that sha1 instead.
 * - The temporary file carries a random infix (`<name>.<random>.incomplete`) instead of a lock file,
 *   so concurrent downloads of one file never write into the same temporary file.
 * - Model and dataset repositories only (no `spaces--`).
 *
 * Environment: `HF_ENDPOINT`, `HF_HUB_CACHE` (and its fallbacks), `HF_HUB_OFFLINE`, `HF_TOKEN`.
 * Every function takes an {@linkcode EnvGetter}, so tests need not touch the process environment.
 * Library code never prints: progress is reported through `onProgress`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { NotAvailableError } from "../core/errors.ts";

/** Reads one environment variable; `undefined` when unset. */
export type EnvGetter = (name: string) => string | undefined;

/** A progress event of {@linkcode hubFile}, shaped like transformers.js's `progress_callback`. */
export interface DownloadEvent {
  /** `initiate` before the request, `download` once headers arrived, `progress` per chunk, `done` when the file is in the cache, `cached` on a cache hit. */
  readonly status: "initiate" | "download" | "progress" | "done" | "cached";
  /** The repository, `owner/name`. */
  readonly repo: string;
  /** The file's path inside the repository. */
  readonly file: string;
  /** Bytes received so far. */
  readonly loaded: number;
  /** Expected bytes, 0 while unknown. */
  readonly total: number;
}

/** The kind of Hub repository: `model` (the default) or `dataset`. */
export type RepoType = "model" | "dataset";

/** Options of {@linkcode hubFile}. */
export interface HubFileOptions {
  /** `model` (default) or `dataset`: selects the URL prefix and the cache folder. */
  repoType?: RepoType;
  /** Branch, tag or commit; default `main`. */
  revision?: string;
  /** Expected lower-case hex sha256 of the file; checked on download and on cache hits. */
  sha256?: string;
  /** Expected size in bytes; checked on download. */
  size?: number;
  /** Receives progress events. */
  onProgress?: (event: DownloadEvent) => void;
  /** Environment lookup; default `Deno.env.get`. */
  env?: EnvGetter;
  /** The fetch to use; default the global `fetch`. */
  fetch?: typeof fetch;
}

const DEFAULT_ENDPOINT = "https://huggingface.co";
const SHA256_RE = /^[0-9a-f]{64}$/;
const COMMIT_RE = /^[0-9a-f]{40}$/;
const SEGMENT_RE = /^[\w.-]+$/;
const MAX_REDIRECTS = 10;

const defaultEnv: EnvGetter = (name) => Deno.env.get(name);

/** A usable path segment: word characters, dots and dashes, but not `.` or `..`. */
function isSegment(s: string): boolean {
  return SEGMENT_RE.test(s) && s !== "." && s !== "..";
}

/**
 * Parses `hf:owner/repo` or `hf:owner/repo@revision` (revision defaults to `main`).
 *
 * @param ref The reference.
 * @returns The repository `owner/repo` and the revision.
 * @throws {TypeError} When `ref` is not of that form.
 */
export function parseHfRef(ref: string): { repo: string; revision: string } {
  const m = /^hf:([^/@]+)\/([^/@]+)(?:@(.+))?$/.exec(ref);
  const [owner, name, revision = "main"] = m ? [m[1]!, m[2]!, m[3]] : [];
  if (owner === undefined || !isSegment(owner) || !isSegment(name!) || !isRevision(revision)) {
    throw new TypeError(
      `invalid Hugging Face reference "${ref}": expected hf:owner/repo or hf:owner/repo@revision`,
    );
  }
  return { repo: `${owner}/${name}`, revision };
}

function isRevision(revision: string): boolean {
  return revision.split("/").every(isSegment);
}

/** Whether `HF_HUB_OFFLINE` is set to `1`, `true`, `yes` or `on` (case-insensitive). */
export function hubOffline(env: EnvGetter = defaultEnv): boolean {
  return ["1", "true", "yes", "on"].includes((env("HF_HUB_OFFLINE") ?? "").trim().toLowerCase());
}

/** The Hub endpoint: `HF_ENDPOINT` without trailing slashes, else `https://huggingface.co`. */
export function hubEndpoint(env: EnvGetter = defaultEnv): string {
  return (env("HF_ENDPOINT") || DEFAULT_ENDPOINT).replace(/\/+$/, "");
}

/**
 * The absolute Hub cache directory: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else
 * `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
 * Empty variables count as unset; a leading `~/` is expanded.
 */
export function hubCacheDir(env: EnvGetter = defaultEnv): string {
  const get = (name: string) => env(name) || undefined;
  const home = () => get("HOME") ?? get("USERPROFILE") ?? homedir();
  const expand = (p: string) => p === "~" || p.startsWith("~/") ? join(home(), p.slice(1)) : p;
  const hfHome = get("HF_HOME");
  const xdg = get("XDG_CACHE_HOME");
  const dir = get("HF_HUB_CACHE") ?? get("HUGGINGFACE_HUB_CACHE") ??
    (hfHome !== undefined
      ? join(expand(hfHome), "hub")
      : join(xdg !== undefined ? expand(xdg) : join(home(), ".cache"), "huggingface", "hub"));
  return resolve(expand(dir));
}

/**
 * The cache folder of a repository: `{cacheDir}/models--{owner}--{name}`, or
 * `{cacheDir}/datasets--{owner}--{name}` for a dataset.
 */
export function hubRepoDir(
  repo: string,
  env: EnvGetter = defaultEnv,
  repoType: RepoType = "model",
): string {
  if (repoType !== "model" && repoType !== "dataset") {
    throw new TypeError(`invalid repository type "${repoType}": expected "model" or "dataset"`);
  }
  checkRepo(repo);
  return join(hubCacheDir(env), `${repoType}s--${repo.split("/").join("--")}`);
}

/** The repository's URL path below the endpoint: `owner/name` or `datasets/owner/name`. */
function repoUrlPath(repo: string, repoType: RepoType): string {
  return repoType === "dataset" ? `datasets/${repo}` : repo;
}

function checkRepo(repo: string): void {
  const parts = repo.split("/");
  if (parts.length > 2 || !parts.every(isSegment)) {
    throw new TypeError(`invalid Hugging Face repository "${repo}": expected owner/name`);
  }
}

function checkPath(repo: string, path: string): void {
  if (!path.split("/").every((s) => s !== "" && s !== "." && s !== ".." && !s.includes("\\"))) {
    throw new TypeError(`invalid file path "${path}" in ${repo}: expected a relative path`);
  }
}

/**
 * Streams a file through sha256.
 *
 * @param path The file.
 * @returns Its lower-case hex sha256.
 */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/**
 * Returns the local path of `path` in `repo`, from the cache or downloaded into it.
 *
 * A cache hit (`refs/<revision>` → `snapshots/<commit>/<path>`, or a 40-hex revision's snapshot)
 * makes no request. Otherwise `{endpoint}/{repo}/resolve/{revision}/{path}` (with `datasets/`
 * before `{repo}` for a dataset) is streamed to
 * `blobs/`, checked against every known size (`x-linked-size`, `content-length`, `options.size`)
 * and sha256 (`options.sha256`, a sha256 etag), and linked into the snapshot. `HF_TOKEN` is sent
 * as a bearer token to the endpoint's origin.
 *
 * @param repo The repository, `owner/name` (a model unless `options.repoType` says `dataset`).
 * @param path The file's path inside the repository.
 * @param options Repository type, revision, expected hash and size, progress callback, env and
 *   fetch.
 * @returns The absolute path of the file in the cache snapshot.
 * @throws {NotAvailableError} When offline and not cached, on network failure, on 401/403/404.
 * @throws {Error} When the size or sha256 does not match (nothing is left in the cache).
 */
export async function hubFile(
  repo: string,
  path: string,
  options: HubFileOptions = {},
): Promise<string> {
  const revision = options.revision ?? "main";
  const repoType = options.repoType ?? "model";
  const env = options.env ?? defaultEnv;
  const repoDir = hubRepoDir(repo, env, repoType); // checks the repository and its type
  checkPath(repo, path);
  if (!isRevision(revision)) throw new TypeError(`invalid revision "${revision}" for ${repo}`);
  const emit = options.onProgress ?? (() => {});
  const expectedSha = options.sha256?.toLowerCase();
  const what = `${path} of ${repoType === "dataset" ? "dataset " : ""}${repo}@${revision}`;

  const cached = await cachedSnapshot(repoDir, revision, path);
  if (cached !== undefined) {
    if (expectedSha !== undefined) {
      const got = await sha256File(cached);
      if (got !== expectedSha) {
        throw new Error(
          `cached file ${cached} (${what}) has sha256 ${got}, expected ${expectedSha}; ` +
            `delete it to download it again`,
        );
      }
    }
    const size = (await Deno.stat(cached)).size;
    emit({ status: "cached", repo, file: path, loaded: size, total: size });
    return cached;
  }

  const settings = `HF_ENDPOINT=${env("HF_ENDPOINT") || `(unset, using ${DEFAULT_ENDPOINT})`}, ` +
    `HF_HUB_OFFLINE=${env("HF_HUB_OFFLINE") || "(unset)"}`;
  if (hubOffline(env)) {
    throw new NotAvailableError(
      `${what} is not in the Hugging Face cache at ${hubCacheDir(env)} and HF_HUB_OFFLINE=` +
        `${env("HF_HUB_OFFLINE")} forbids downloading it; unset HF_HUB_OFFLINE, or set ` +
        `HF_ENDPOINT to a reachable mirror, or populate the cache`,
    );
  }
  const url =
    `${hubEndpoint(env)}/${repoUrlPath(repo, repoType)}/resolve/${encodeURIComponent(revision)}/` +
    path.split("/").map(encodeURIComponent).join("/");
  emit({ status: "initiate", repo, file: path, loaded: 0, total: 0 });

  let res: Response;
  let meta: Headers;
  try {
    ({ res, meta } = await get(url, env("HF_TOKEN") || undefined, options.fetch ?? fetch));
  } catch (cause) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    throw new NotAvailableError(
      `cannot download ${what}: GET ${url} failed (${msg}); ${settings}`,
      {
        cause,
      },
    );
  }
  if (!res.ok || res.body === null) {
    await res.body?.cancel();
    const status = `GET ${url} returned ${res.status} ${res.statusText}`;
    if ([401, 403, 404].includes(res.status)) {
      const hint = res.status === 404 ? "the file does not exist there" : "check HF_TOKEN";
      throw new NotAvailableError(`cannot download ${what}: ${status} (${hint}); ${settings}`);
    }
    throw new Error(`cannot download ${what}: ${status}`);
  }

  const sizes: [string, number][] = [];
  const linkedSize = meta.get("x-linked-size");
  const length = res.headers.get("content-length");
  if (linkedSize !== null) sizes.push(["x-linked-size", Number(linkedSize)]);
  if (length !== null && !res.headers.has("content-encoding")) {
    sizes.push(["content-length", Number(length)]);
  }
  if (options.size !== undefined) sizes.push(["options.size", options.size]);
  const etag = (meta.get("x-linked-etag") ?? meta.get("etag") ?? "").replace(/^W\//, "")
    .replaceAll('"', "").toLowerCase();
  const shas: [string, string][] = [];
  if (SHA256_RE.test(etag)) shas.push(["etag", etag]);
  if (expectedSha !== undefined) shas.push(["options.sha256", expectedSha]);
  const total = sizes[0]?.[1] ?? 0;
  emit({ status: "download", repo, file: path, loaded: 0, total });

  const blobs = join(repoDir, "blobs");
  await Deno.mkdir(blobs, { recursive: true });
  const tmp = join(blobs, `${shas[0]?.[1] ?? "download"}.${randomId()}.incomplete`);
  let blob: string | undefined;
  try {
    const hash = createHash("sha256");
    let loaded = 0;
    const file = await Deno.open(tmp, { write: true, createNew: true });
    try {
      for await (const chunk of res.body) {
        hash.update(chunk);
        await writeAll(file, chunk);
        loaded += chunk.length;
        emit({ status: "progress", repo, file: path, loaded, total });
      }
    } catch (cause) {
      const msg = cause instanceof Error ? cause.message : String(cause);
      throw new NotAvailableError(`download of ${url} was interrupted (${msg}); ${settings}`, {
        cause,
      });
    } finally {
      file.close();
    }
    const got = hash.digest("hex");
    for (const [source, want] of sizes) {
      if (want !== loaded) {
        throw new Error(`${url}: size mismatch: expected ${want} bytes (${source}), got ${loaded}`);
      }
    }
    for (const [source, want] of shas) {
      if (want !== got) {
        throw new Error(`${url}: sha256 mismatch: expected ${want} (${source}), got ${got}`);
      }
    }
    blob = join(blobs, got);
    await Deno.rename(tmp, blob);
    const header = meta.get("x-repo-commit");
    const commit = header !== null && isSegment(header) ? header : revision.replaceAll("/", "--");
    const snap = join(repoDir, "snapshots", commit, ...path.split("/"));
    await Deno.mkdir(dirname(snap), { recursive: true });
    await Deno.remove(snap).catch(() => {});
    try {
      await Deno.symlink(relative(dirname(snap), blob), snap);
    } catch {
      await Deno.copyFile(blob, snap);
    }
    if (!COMMIT_RE.test(revision)) {
      const ref = join(repoDir, "refs", ...revision.split("/"));
      await Deno.mkdir(dirname(ref), { recursive: true });
      await Deno.writeTextFile(ref, commit);
    }
    emit({ status: "done", repo, file: path, loaded, total: loaded });
    return snap;
  } finally {
    if (blob === undefined) await Deno.remove(tmp).catch(() => {});
  }
}

/** The snapshot file for `revision`, if the cache has it (a dangling link counts as missing). */
async function cachedSnapshot(
  repoDir: string,
  revision: string,
  path: string,
): Promise<string | undefined> {
  let commit = revision;
  if (!COMMIT_RE.test(revision)) {
    try {
      commit = (await Deno.readTextFile(join(repoDir, "refs", ...revision.split("/")))).trim();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  }
  if (!isSegment(commit)) return undefined;
  const snap = join(repoDir, "snapshots", commit, ...path.split("/"));
  try {
    return (await Deno.stat(snap)).isFile ? snap : undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * GETs `url`, following redirects by hand so that the Hub's `x-repo-commit`, `x-linked-etag` and
 * `x-linked-size` headers on the redirect (the Hub sends LFS files from a CDN) are kept. The token
 * goes only to the endpoint's origin.
 */
async function get(
  url: string,
  token: string | undefined,
  fetchFn: typeof fetch,
): Promise<{ res: Response; meta: Headers }> {
  const meta = new Headers();
  const origin = new URL(url).origin;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = {};
    if (token !== undefined && new URL(current).origin === origin) {
      headers.authorization = `Bearer ${token}`;
    }
    const res = await fetchFn(current, { headers, redirect: "manual" });
    for (const name of ["x-repo-commit", "x-linked-etag", "x-linked-size", "etag"]) {
      const value = res.headers.get(name);
      if (value !== null && !meta.has(name)) meta.set(name, value);
    }
    const location = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || location === null) return { res, meta };
    await res.body?.cancel();
    current = new URL(location, current).href;
  }
  throw new Error(`more than ${MAX_REDIRECTS} redirects`);
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
}

function randomId(): string {
  return crypto.randomUUID().slice(0, 8);
}

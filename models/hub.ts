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
 * Downloads are robust against a misbehaving server or mirror (see {@linkcode hubFile}): they time
 * out instead of hanging, retry transient failures with backoff, and check a file's content before
 * it enters the cache (an HTML page for `config.json`, a truncated `model.safetensors` and
 * unparsable JSON are refused), so a bad download never poisons later runs.
 *
 * Environment: `HF_ENDPOINT`, `HF_HUB_CACHE` (and its fallbacks), `HF_HUB_OFFLINE`, `HF_TOKEN`,
 * `HF_HUB_ETAG_TIMEOUT` and `HF_HUB_DOWNLOAD_TIMEOUT` (seconds, default 10, as `huggingface_hub`).
 * Every function takes an {@linkcode EnvGetter}, so tests need not touch the process environment.
 * Library code never prints: progress is reported through `onProgress`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, relative, resolve, sep as SEP } from "node:path";
import { FormatError, NotAvailableError } from "../core/errors.ts";
import { exists } from "../core/paths.ts";

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
  /**
   * Download even when the cache holds the file (the new file replaces the snapshot entry once it
   * passed the checks; a failed download leaves the cached one as it was). Default `false`.
   */
  forceDownload?: boolean;
  /** When and how often to retry; see {@linkcode RetryOptions}. */
  retry?: RetryOptions;
}

/**
 * Retry policy of {@linkcode hubFile}: 5xx, 429, network errors other than a refused connection,
 * timeouts and bodies cut short are retried after base·2^(n-1) ms (at least the server's
 * `Retry-After`), capped at `maxDelayMs`; other responses and refused content are not.
 */
export interface RetryOptions {
  /** Attempts in all, at least 1; default 5. */
  attempts?: number;
  /** Wait before the second attempt, in ms, doubled before each later one; default 1000. */
  baseDelayMs?: number;
  /** Longest wait between two attempts, in ms (also caps `Retry-After`); default 8000. */
  maxDelayMs?: number;
}

/** Timeouts of {@linkcode hubFile} in ms, from the environment (see {@linkcode hubTimeouts}). */
export interface HubTimeouts {
  /** `HF_HUB_ETAG_TIMEOUT`: for the endpoint's response headers (the metadata request). */
  readonly etagMs: number;
  /** `HF_HUB_DOWNLOAD_TIMEOUT`: for a redirect target's headers, and per idle read of a body. */
  readonly downloadMs: number;
}

const DEFAULT_ENDPOINT = "https://huggingface.co";
const SHA256_RE = /^[0-9a-f]{64}$/;
const COMMIT_RE = /^[0-9a-f]{40}$/;
const SEGMENT_RE = /^[\w.-]+$/;
const MAX_REDIRECTS = 10;
/** Both timeouts' default in seconds (`huggingface_hub`'s `DEFAULT_{ETAG,DOWNLOAD}_TIMEOUT`). */
const DEFAULT_TIMEOUT_S = 10;
/** The longest delay `setTimeout` takes (longer ones would fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DEFAULT_RETRY: Required<RetryOptions> = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 8000 };
/** Network errors that another attempt would not cure. */
const NOT_RETRIED_RE = /connection refused|are blocked/i;

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
 * The download timeouts: `HF_HUB_ETAG_TIMEOUT` and `HF_HUB_DOWNLOAD_TIMEOUT`, in seconds (decimals
 * allowed), default 10 each. Unset, empty and `0` mean the default, as in `huggingface_hub`.
 *
 * @param env Environment lookup; default `Deno.env.get`.
 * @returns Both timeouts in ms.
 * @throws {TypeError} Naming the variable when a value is not a non-negative number.
 */
export function hubTimeouts(env: EnvGetter = defaultEnv): HubTimeouts {
  return {
    etagMs: timeoutMs(env, "HF_HUB_ETAG_TIMEOUT"),
    downloadMs: timeoutMs(env, "HF_HUB_DOWNLOAD_TIMEOUT"),
  };
}

function timeoutMs(env: EnvGetter, name: string): number {
  const raw = (env(name) ?? "").trim();
  const s = raw === "" ? 0 : Number(raw);
  if (!Number.isFinite(s) || s < 0) {
    throw new TypeError(
      `${name}=${JSON.stringify(env(name))} is not a timeout: expected a number of seconds, e.g. ` +
        `${name}=30 (default ${DEFAULT_TIMEOUT_S})`,
    );
  }
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.round((s || DEFAULT_TIMEOUT_S) * 1000)));
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
 * makes no request; its content is checked as below, and a cached file that fails the check is an
 * error naming the cache path and how to download it again. Otherwise
 * `{endpoint}/{repo}/resolve/{revision}/{path}` (with `datasets/` before `{repo}` for a dataset) is
 * streamed to a temporary file in `blobs/`, checked, and only then renamed to its blob and linked
 * into the snapshot, so the cache never holds an unchecked file. Checks: every known size
 * (`x-linked-size`, `content-length`, `options.size`) and sha256 (`options.sha256`, a sha256
 * etag); no HTML page for a non-HTML file (by `Content-Type` or by the first bytes); `.json`
 * parses; a `.safetensors` header is in the file, is a JSON object, and its tensors' data lies in
 * the file; a `.parquet` file has its `PAR1` magic at both ends. `HF_TOKEN` is sent as a bearer
 * token to the endpoint's origin.
 *
 * Timeouts (see {@linkcode hubTimeouts}): the endpoint's response headers within
 * `HF_HUB_ETAG_TIMEOUT` seconds; a redirect target's headers, and every read of the body, within
 * `HF_HUB_DOWNLOAD_TIMEOUT` seconds (an idle timer, restarted by every chunk). A timeout, a
 * network error (other than a refused connection), a body cut short, 429 and 5xx are retried with
 * exponential backoff ({@linkcode RetryOptions}); other 4xx and refused content are not.
 *
 * @param repo The repository, `owner/name` (a model unless `options.repoType` says `dataset`).
 * @param path The file's path inside the repository.
 * @param options Repository type, revision, expected hash and size, progress callback,
 *   `forceDownload`, retry policy, env and fetch.
 * @returns The absolute path of the file in the cache snapshot.
 * @throws {NotAvailableError} When offline and not cached; on 401/403/404; on network failure,
 *   timeout or 429/5xx once the attempts are used up (the message says how many were made).
 * @throws {FormatError} When the server sent something that is not the file (an HTML page,
 *   unparsable JSON, a truncated safetensors file; `file` is the URL, nothing enters the cache),
 *   or when a cached file fails those checks (`file` is the cache path).
 * @throws {TypeError} On a bad `HF_HUB_ETAG_TIMEOUT` / `HF_HUB_DOWNLOAD_TIMEOUT`, repository,
 *   path or revision.
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
  const timeouts = hubTimeouts(env);
  const retry = retryPolicy(options.retry);
  const emit = options.onProgress ?? (() => {});
  const expectedSha = options.sha256?.toLowerCase();
  const what = `${path} of ${repoType === "dataset" ? "dataset " : ""}${repo}@${revision}`;

  if (!options.forceDownload) {
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
      const problem = await contentProblem(cached, path, null);
      if (problem !== undefined) {
        throw new FormatError(cached, `${problem}; ${refetchHint(cached, what)}`);
      }
      const size = (await Deno.stat(cached)).size;
      emit({ status: "cached", repo, file: path, loaded: size, total: size });
      return cached;
    }
  }

  const settings = `HF_ENDPOINT=${env("HF_ENDPOINT") || `(unset, using ${DEFAULT_ENDPOINT})`}, ` +
    `HF_HUB_OFFLINE=${env("HF_HUB_OFFLINE") || "(unset)"}`;
  if (hubOffline(env)) {
    if (options.forceDownload) {
      throw new NotAvailableError(
        `cannot download ${what} again (forceDownload): HF_HUB_OFFLINE=${env("HF_HUB_OFFLINE")} ` +
          `is set, which forbids downloading; unset HF_HUB_OFFLINE`,
      );
    }
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

  const job: Job = {
    repo,
    path,
    revision,
    repoDir,
    url,
    what,
    settings,
    timeouts,
    expectedSha,
    size: options.size,
    token: env("HF_TOKEN") || undefined,
    fetch: options.fetch ?? fetch,
    emit,
  };
  // Folders this call creates are removed again (when still empty) if it fails, so that a refused
  // download leaves no trace (an empty repository folder is a corrupt entry to `scan-cache`).
  const created: string[] = [];
  for (const dir of [repoDir, join(repoDir, "blobs")]) {
    if (!await exists(dir)) created.push(dir);
  }
  try {
    for (let attempt = 1;; attempt++) {
      try {
        return await downloadOnce(job);
      } catch (e) {
        if (!(e instanceof Transient)) {
          if (attempt > 1 && e instanceof Error) {
            e.message += ` (on attempt ${attempt} of ${retry.attempts}, after ${attempt - 1} ` +
              `retried failure${attempt > 2 ? "s" : ""})`;
          }
          throw e;
        }
        if (attempt >= retry.attempts) {
          throw new NotAvailableError(
            `cannot download ${what}: ${e.message}; gave up after ${attempt} attempt` +
              `${attempt === 1 ? "" : "s"} (5xx, 429, network errors and timeouts are retried, ` +
              `${retry.attempts} attempt${retry.attempts === 1 ? "" : "s"} at most); ${settings}`,
            { cause: e },
          );
        }
        await sleep(backoffMs(retry, attempt, e.retryAfterMs));
      }
    }
  } catch (e) {
    for (const dir of created.reverse()) await Deno.remove(dir).catch(() => {});
    throw e;
  }
}

/** What one download attempt needs. */
interface Job {
  readonly repo: string;
  readonly path: string;
  readonly revision: string;
  readonly repoDir: string;
  readonly url: string;
  readonly what: string;
  readonly settings: string;
  readonly timeouts: HubTimeouts;
  readonly expectedSha: string | undefined;
  readonly size: number | undefined;
  readonly token: string | undefined;
  readonly fetch: typeof fetch;
  readonly emit: (event: DownloadEvent) => void;
}

/** A failure worth another attempt: 5xx, 429, a network error, a timeout, a body cut short. */
class Transient extends Error {
  override name = "Transient";
  /** The server's `Retry-After`, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number, options?: ErrorOptions) {
    super(message, options);
    this.retryAfterMs = retryAfterMs;
  }
}

/** One attempt: request, stream to a temporary file, check, then move into the cache. */
async function downloadOnce(job: Job): Promise<string> {
  const { repo, path, url, what, settings, emit } = job;
  const { res, meta, controller, target } = await request(job);
  const via = target === url ? "" : ` (redirected to ${target})`;
  if (!res.ok || res.body === null) {
    await res.body?.cancel();
    const status = `GET ${url}${via} returned ${res.status} ${res.statusText}`;
    if (res.status >= 500 || res.status === 429) {
      throw new Transient(status, retryAfterMs(res.headers.get("retry-after")));
    }
    if ([401, 403, 404].includes(res.status)) {
      const hint = res.status === 404 ? "the file does not exist there" : "check HF_TOKEN";
      throw new NotAvailableError(`cannot download ${what}: ${status} (${hint}); ${settings}`);
    }
    throw new Error(`cannot download ${what}: ${status}`);
  }
  const refused = (problem: string) =>
    new FormatError(
      url,
      `${problem}${via}; refused, nothing was written to the Hugging Face cache (${what}; ` +
        `${settings})`,
    );
  const contentType = res.headers.get("content-type");
  if (isHtmlType(contentType) && !HTML_EXTENSIONS.has(extension(path))) {
    await res.body.cancel();
    throw refused(
      `the server sent a web page (Content-Type: ${contentType}), not ${baseName(path)}`,
    );
  }

  const sizes: [string, number][] = [];
  const linkedSize = meta.get("x-linked-size");
  const length = res.headers.get("content-length");
  if (linkedSize !== null) sizes.push(["x-linked-size", Number(linkedSize)]);
  if (length !== null && !res.headers.has("content-encoding")) {
    sizes.push(["content-length", Number(length)]);
  }
  if (job.size !== undefined) sizes.push(["options.size", job.size]);
  const etag = (meta.get("x-linked-etag") ?? meta.get("etag") ?? "").replace(/^W\//, "")
    .replaceAll('"', "").toLowerCase();
  const shas: [string, string][] = [];
  if (SHA256_RE.test(etag)) shas.push(["etag", etag]);
  if (job.expectedSha !== undefined) shas.push(["options.sha256", job.expectedSha]);
  const total = sizes[0]?.[1] ?? 0;
  emit({ status: "download", repo, file: path, loaded: 0, total });

  const blobs = join(job.repoDir, "blobs");
  let tmp: string | undefined;
  let blob: string | undefined;
  try {
    let file: Deno.FsFile;
    [tmp, file] = await createTemp(blobs, shas[0]?.[1] ?? "download").catch(async (e) => {
      await res.body?.cancel();
      throw e;
    });
    const { loaded, sha256: got } = await receive(res.body, controller, file, job, target, total);
    for (const [source, want] of sizes) {
      if (want !== loaded) {
        const message = `${url}: size mismatch: expected ${want} bytes (${source}), got ${loaded}`;
        if (source === "content-length") throw new Transient(message);
        throw new Error(message);
      }
    }
    for (const [source, want] of shas) {
      if (want !== got) {
        throw new Error(`${url}: sha256 mismatch: expected ${want} (${source}), got ${got}`);
      }
    }
    const problem = await contentProblem(tmp, path, contentType);
    if (problem !== undefined) throw refused(problem);

    blob = join(blobs, got);
    await Deno.rename(tmp, blob);
    const header = meta.get("x-repo-commit");
    const commit = header !== null && isSegment(header)
      ? header
      : job.revision.replaceAll("/", "--");
    const snap = join(job.repoDir, "snapshots", commit, ...path.split("/"));
    await Deno.mkdir(dirname(snap), { recursive: true });
    await Deno.remove(snap).catch(() => {});
    try {
      await Deno.symlink(relative(dirname(snap), blob), snap);
    } catch {
      await Deno.copyFile(blob, snap);
    }
    if (!COMMIT_RE.test(job.revision)) {
      const ref = join(job.repoDir, "refs", ...job.revision.split("/"));
      await Deno.mkdir(dirname(ref), { recursive: true });
      await Deno.writeTextFile(ref, commit);
    }
    emit({ status: "done", repo, file: path, loaded, total: loaded });
    return snap;
  } finally {
    if (tmp !== undefined && blob === undefined) await Deno.remove(tmp).catch(() => {});
  }
}

/** Creates `{dir}/{stem}.{random}.incomplete` (and `dir`, also if it vanishes meanwhile). */
async function createTemp(dir: string, stem: string): Promise<[string, Deno.FsFile]> {
  for (let i = 0;; i++) {
    await Deno.mkdir(dir, { recursive: true });
    const tmp = join(dir, `${stem}.${randomId()}.incomplete`);
    try {
      return [tmp, await Deno.open(tmp, { write: true, createNew: true })];
    } catch (e) {
      // Another process's failed download may have removed the empty folder just now.
      if (!(e instanceof Deno.errors.NotFound) || i >= 2) throw e;
    }
  }
}

/**
 * Streams `body` into `file` (closing it), hashing it; every read must deliver within
 * `HF_HUB_DOWNLOAD_TIMEOUT`, else `controller` aborts the request.
 */
async function receive(
  body: ReadableStream<Uint8Array>,
  controller: AbortController,
  file: Deno.FsFile,
  job: Job,
  target: string,
  total: number,
): Promise<{ loaded: number; sha256: string }> {
  const hash = createHash("sha256");
  const reader = body.getReader();
  const ms = job.timeouts.downloadMs;
  let loaded = 0;
  let done = false;
  try {
    while (true) {
      let idle = false;
      const timer = setTimeout(() => {
        idle = true;
        controller.abort();
      }, ms);
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (cause) {
        const of = `${loaded}${total > 0 ? ` of ${total}` : ""} bytes`;
        if (idle) {
          throw new Transient(
            `download of ${target} stalled: nothing received for ${seconds(ms)} s after ${of}; ` +
              `raise HF_HUB_DOWNLOAD_TIMEOUT (seconds, now ${seconds(ms)}) if the connection ` +
              `is slow`,
            undefined,
            { cause },
          );
        }
        throw new Transient(
          `download of ${target} was cut off after ${of} (${describeError(cause)})`,
          undefined,
          { cause },
        );
      } finally {
        clearTimeout(timer);
      }
      if (chunk.done) break;
      hash.update(chunk.value);
      await writeAll(file, chunk.value);
      loaded += chunk.value.length;
      job.emit({ status: "progress", repo: job.repo, file: job.path, loaded, total });
    }
    done = true;
  } finally {
    file.close();
    if (!done) await reader.cancel().catch(() => {});
  }
  return { loaded, sha256: hash.digest("hex") };
}

/**
 * GETs the job's URL, following redirects by hand so that the Hub's `x-repo-commit`,
 * `x-linked-etag` and `x-linked-size` headers on the redirect (the Hub sends LFS files from a CDN)
 * are kept. The token goes only to the endpoint's origin. The endpoint's headers must arrive
 * within `HF_HUB_ETAG_TIMEOUT`, a redirect target's within `HF_HUB_DOWNLOAD_TIMEOUT`.
 *
 * @returns The final response, the kept headers, the controller that aborts the response's body,
 *   and the final URL.
 */
async function request(job: Job): Promise<{
  res: Response;
  meta: Headers;
  controller: AbortController;
  target: string;
}> {
  const meta = new Headers();
  const origin = new URL(job.url).origin;
  let current = job.url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = {};
    if (job.token !== undefined && new URL(current).origin === origin) {
      headers.authorization = `Bearer ${job.token}`;
    }
    const [ms, variable] = hop === 0
      ? [job.timeouts.etagMs, "HF_HUB_ETAG_TIMEOUT"]
      : [job.timeouts.downloadMs, "HF_HUB_DOWNLOAD_TIMEOUT"];
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), ms);
    let res: Response;
    try {
      res = await job.fetch(current, { headers, redirect: "manual", signal: controller.signal });
    } catch (cause) {
      if (controller.signal.aborted) {
        throw new Transient(
          `GET ${current} sent no response headers within ${seconds(ms)} s; raise ${variable} ` +
            `(seconds, now ${seconds(ms)}) if the server is slow`,
          undefined,
          { cause },
        );
      }
      const msg = describeError(cause);
      const failed = `GET ${current} failed (${msg})`;
      if (NOT_RETRIED_RE.test(msg)) {
        throw new NotAvailableError(`cannot download ${job.what}: ${failed}; ${job.settings}`, {
          cause,
        });
      }
      throw new Transient(failed, undefined, { cause });
    } finally {
      clearTimeout(timer);
    }
    for (const name of ["x-repo-commit", "x-linked-etag", "x-linked-size", "etag"]) {
      const value = res.headers.get(name);
      if (value !== null && !meta.has(name)) meta.set(name, value);
    }
    const location = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || location === null) {
      return { res, meta, controller, target: current };
    }
    await res.body?.cancel();
    current = new URL(location, current).href;
  }
  throw new NotAvailableError(
    `cannot download ${job.what}: GET ${job.url} was redirected more than ${MAX_REDIRECTS} ` +
      `times (last to ${current}); ${job.settings}`,
  );
}

/** An error's message with its causes' messages (`fetch failed: … Connection refused`). */
function describeError(e: unknown): string {
  const parts: string[] = [];
  for (let c = e, depth = 0; c !== undefined && c !== null && depth < 5; depth++) {
    const msg = c instanceof Error ? c.message : String(c);
    if (msg !== "" && !parts.includes(msg)) parts.push(msg);
    c = c instanceof Error ? c.cause : undefined;
  }
  return parts.join(": ");
}

/** `Retry-After` (seconds or an HTTP date) in ms. */
function retryAfterMs(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const s = Number(value);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function retryPolicy(options: RetryOptions = {}): Required<RetryOptions> {
  const policy = {
    attempts: options.attempts ?? DEFAULT_RETRY.attempts,
    baseDelayMs: options.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs,
    maxDelayMs: options.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs,
  };
  if (!Number.isSafeInteger(policy.attempts) || policy.attempts < 1) {
    throw new RangeError(`retry.attempts must be an integer ≥ 1, got ${policy.attempts}`);
  }
  for (const key of ["baseDelayMs", "maxDelayMs"] as const) {
    if (!(policy[key] >= 0 && policy[key] <= MAX_TIMER_MS)) {
      throw new RangeError(
        `retry.${key} must be between 0 and ${MAX_TIMER_MS}, got ${policy[key]}`,
      );
    }
  }
  return policy;
}

/** The wait after failed attempt `attempt` (1-based): base·2^(attempt-1), capped. */
function backoffMs(policy: Required<RetryOptions>, attempt: number, retryAfter?: number): number {
  const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return retryAfter === undefined
    ? backoff
    : Math.max(backoff, Math.min(policy.maxDelayMs, retryAfter));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function seconds(ms: number): string {
  return String(ms / 1000);
}

/**
 * How to get a fresh copy of a file in the Hugging Face cache, for messages about a cached file
 * that does not parse: names the snapshot entry (and the blob it links to) to delete, and the
 * `forceDownload` option of {@linkcode hubFile}.
 *
 * @param path A path, e.g. one returned by {@linkcode hubFile}.
 * @param env Environment lookup (for {@linkcode hubCacheDir}).
 * @returns The hint, or `undefined` when `path` is not inside the Hugging Face cache.
 */
export function hubCacheHint(path: string, env: EnvGetter = defaultEnv): string | undefined {
  const abs = resolve(path);
  const rel = relative(hubCacheDir(env), abs);
  if (rel === "" || rel === ".." || rel.startsWith(`..${SEP}`) || isAbsolute(rel)) {
    return undefined;
  }
  return refetchHint(abs);
}

function refetchHint(path: string, what?: string): string {
  let blob = "";
  try {
    if (Deno.lstatSync(path).isSymlink) {
      blob = ` and the blob it links to, ${Deno.realPathSync(path)},`;
    }
  } catch {
    // a dangling or vanished link: the path alone is enough
  }
  return `${path} is a cached Hugging Face download${what ? ` of ${what}` : ""}; delete it` +
    `${blob} to download it again (hubFile option forceDownload re-downloads it)`;
}

/** Extensions of files that are HTML by name. */
const HTML_EXTENSIONS = new Set(["html", "htm", "xhtml"]);
/** JSON files up to this size are parsed whole; larger ones only have their ends checked. */
const JSON_PARSE_LIMIT = 64 * 1024 * 1024;
/** The safetensors library's limit on the header. */
const SAFETENSORS_HEADER_LIMIT = 100_000_000;

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function extension(path: string): string {
  const base = baseName(path);
  const dot = base.lastIndexOf(".");
  return dot <= 0 ? "" : base.slice(dot + 1).toLowerCase();
}

function isHtmlType(contentType: string | null): boolean {
  const mime = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  return mime === "text/html" || mime === "application/xhtml+xml";
}

/** Whether `head` starts like an HTML page (`<!DOCTYPE html`, `<html`), after a BOM and spaces. */
function startsLikeHtml(head: Uint8Array): boolean {
  const text = new TextDecoder().decode(head.subarray(0, 256)).replace(/^\uFEFF?\s*/, "")
    .toLowerCase();
  return text.startsWith("<!doctype html") || text.startsWith("<html");
}

/**
 * What is wrong with `file` as the repository file `name`, or `undefined` when it looks right.
 * Only `.json`, `.safetensors` and `.parquet` have a format check; every non-HTML file is
 * refused when it is (or is served as) an HTML page.
 */
async function contentProblem(
  file: string,
  name: string,
  contentType: string | null,
): Promise<string | undefined> {
  const ext = extension(name);
  const base = baseName(name);
  const html = HTML_EXTENSIONS.has(ext);
  if (!html && isHtmlType(contentType)) {
    return `the server sent a web page (Content-Type: ${contentType}), not ${base}`;
  }
  using f = await Deno.open(file);
  const size = (await f.stat()).size;
  const head = await readAt(f, 0, Math.min(size, 1024));
  if (!html && startsLikeHtml(head)) {
    const start = new TextDecoder().decode(head.subarray(0, 40)).trim().replace(/\s+/g, " ");
    return `the body is an HTML page (it starts ${JSON.stringify(start)}), not ${base}`;
  }
  if (ext === "json") {
    if (size <= JSON_PARSE_LIMIT) {
      try {
        JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await readAt(f, 0, size)));
      } catch (e) {
        return `${base} is not valid JSON (${(e as Error).message}; ${size} bytes)`;
      }
    } else {
      const first = new TextDecoder().decode(head).replace(/^\uFEFF?\s*/, "")[0];
      const tail = new TextDecoder().decode(await readAt(f, size - 1024, 1024)).trimEnd();
      const last = tail[tail.length - 1];
      if (!((first === "{" && last === "}") || (first === "[" && last === "]"))) {
        return `${base} does not look like JSON: it starts with ${JSON.stringify(first ?? "")} ` +
          `and ends with ${JSON.stringify(last ?? "")} (truncated?)`;
      }
    }
  } else if (ext === "safetensors") {
    return await safetensorsProblem(f, size, head, base);
  } else if (ext === "parquet") {
    // PAR1, or PARE for an encrypted footer.
    const magic = (bytes: Uint8Array) => /^PAR[1E]$/.test(new TextDecoder().decode(bytes));
    if (size < 8 || !magic(head.subarray(0, 4)) || !magic(await readAt(f, size - 4, 4))) {
      return `${base} is not a Parquet file (no PAR1 magic at both its start and end; ` +
        `${size} bytes: truncated?)`;
    }
  }
  return undefined;
}

/** What is wrong with a safetensors header (it and the tensors' data must lie in the file). */
async function safetensorsProblem(
  f: Deno.FsFile,
  size: number,
  head: Uint8Array,
  base: string,
): Promise<string | undefined> {
  if (size < 8) return `${base} has ${size} bytes, too few for a safetensors file (truncated?)`;
  const headerLen = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(size - 8)) {
    return `${base}: safetensors header length ${headerLen} goes past the end of the file ` +
      `(${size} bytes: truncated, or not a safetensors file)`;
  }
  if (headerLen > BigInt(SAFETENSORS_HEADER_LIMIT)) {
    return `${base}: safetensors header length ${headerLen} is over the ` +
      `${SAFETENSORS_HEADER_LIMIT}-byte limit (not a safetensors file?)`;
  }
  const n = Number(headerLen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await readAt(f, 8, n)));
  } catch (e) {
    return `${base}: safetensors header is not valid JSON (${(e as Error).message})`;
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    return `${base}: safetensors header is not a JSON object`;
  }
  const dataLen = size - 8 - n;
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const offsets = (entry as { data_offsets?: unknown } | null)?.data_offsets;
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      return `${base}: safetensors tensor "${name}" has no valid data_offsets`;
    }
    if (offsets[1] > dataLen) {
      return `${base}: safetensors tensor "${name}" ends at byte ${offsets[1]} of the data, but ` +
        `the file holds ${dataLen} bytes of data (truncated)`;
    }
  }
  return undefined;
}

/** Up to `n` bytes of `f` from `offset` (fewer at the end of the file). */
async function readAt(f: Deno.FsFile, offset: number, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(Math.max(0, n));
  await f.seek(Math.max(0, offset), Deno.SeekMode.Start);
  let got = 0;
  while (got < out.length) {
    const r = await f.read(out.subarray(got));
    if (r === null) break;
    got += r;
  }
  return out.subarray(0, got);
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

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
}

function randomId(): string {
  return crypto.randomUUID().slice(0, 8);
}

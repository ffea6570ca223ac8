/**
 * Where the browser page gets a model, and loading it over HTTP with download progress.
 *
 * The page's model field takes:
 * - a registry id (`stories260K`): the registry's files from the Hub's resolve URLs,
 *   `{endpoint}/{repo}/resolve/{revision}/{path}` — a llama2.c checkpoint and tokenizer, each
 *   checked against the registry's size and sha256 — or, for a transformers-layout entry, the
 *   repository's files as for `hf:`;
 * - `hf:owner/repo[@rev]`: a transformers-layout repository, read from
 *   `{endpoint}/owner/repo/resolve/{rev}/` (revision default `main`);
 * - a URL (absolute, or relative to the page and ending in `/`): a directory in transformers
 *   layout, e.g. a served copy or a Hub `…/resolve/{rev}/` base.
 *
 * The endpoint is the Hub's (`https://huggingface.co`, whose resolve URLs allow cross-origin
 * reads) or any server of the same layout. Only `fetch` is used: no Node built-ins, no cache.
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { FormatError } from "../core/errors.ts";
import { buildHfModel, type HfLoadOptions } from "../models/hf_model.ts";
import { parseLlama2cCheckpoint, parseLlama2cTokenizer } from "../models/llama2c.ts";
import { MODELS } from "../models/registry.ts";
import type { LoadedModel } from "../models/types.ts";

/** The Hugging Face Hub, the page's default endpoint. */
export const DEFAULT_ENDPOINT = "https://huggingface.co";

/** A file to download, with what the registry pins about it. */
export interface RemoteFile {
  readonly url: string;
  /** Name recorded in the model's provenance (the file's base name, as the CLI records it). */
  readonly name: string;
  readonly sha256?: string;
  readonly bytes?: number;
}

/** A model reference resolved to URLs. */
export type ModelSource =
  | {
    readonly kind: "llama2c";
    readonly id: string;
    readonly checkpoint: RemoteFile;
    readonly tokenizer: RemoteFile;
  }
  | {
    readonly kind: "hf";
    readonly id: string;
    /** Directory URL ending in `/`. */
    readonly base: string;
  };

/** Progress of one file's download: bytes received and, when known, the file's size. */
export interface DownloadProgress {
  readonly url: string;
  readonly loaded: number;
  readonly total?: number;
}

const SEGMENT_RE = /^[\w.-]+$/;
const isSegment = (s: string) => SEGMENT_RE.test(s) && s !== "." && s !== "..";

/** `{endpoint}/{repo}/resolve/{revision}/{path}`, encoded as the Hub client encodes it. */
export function resolveUrl(endpoint: string, repo: string, revision: string, path = ""): string {
  return `${endpoint.replace(/\/+$/, "")}/${repo}/resolve/${encodeURIComponent(revision)}/` +
    path.split("/").map(encodeURIComponent).join("/");
}

/**
 * Resolves the model field's text to URLs (see the module doc).
 *
 * @param ref Registry id, `hf:owner/repo[@rev]`, or a directory URL.
 * @param endpoint The Hub endpoint (default {@linkcode DEFAULT_ENDPOINT}).
 * @param pageUrl What a relative URL is resolved against (the page's location).
 * @throws {TypeError} On a malformed `hf:` reference or a bare word that is no registry id.
 */
export function resolveModelSource(
  ref: string,
  endpoint: string = DEFAULT_ENDPOINT,
  pageUrl?: string | URL,
): ModelSource {
  if (MODELS.has(ref)) {
    const e = MODELS.get(ref);
    if (e.format === "llama2c") {
      const file = (f: NonNullable<typeof e.checkpoint>): RemoteFile => ({
        url: resolveUrl(endpoint, e.repo, e.revision, f.path),
        name: f.path.slice(f.path.lastIndexOf("/") + 1),
        ...(f.sha256 ? { sha256: f.sha256 } : {}),
        ...(f.bytes ? { bytes: f.bytes } : {}),
      });
      return {
        kind: "llama2c",
        id: ref,
        checkpoint: file(e.checkpoint!),
        tokenizer: file(e.tokenizer!),
      };
    }
    return { kind: "hf", id: ref, base: resolveUrl(endpoint, e.repo, e.revision) };
  }
  if (ref.startsWith("hf:")) {
    const m = /^hf:([^/@]+)\/([^/@]+)(?:@(.+))?$/.exec(ref);
    const [owner, name, revision = "main"] = m ? [m[1]!, m[2]!, m[3]] : [];
    if (
      owner === undefined || !isSegment(owner) || !isSegment(name!) ||
      !revision.split("/").every(isSegment)
    ) {
      throw new TypeError(
        `invalid Hugging Face reference "${ref}": expected hf:owner/repo or hf:owner/repo@revision`,
      );
    }
    return { kind: "hf", id: ref, base: resolveUrl(endpoint, `${owner}/${name}`, revision) };
  }
  if (/^[\w.-]+$/.test(ref)) {
    throw new TypeError(
      `unknown model "${ref}": known ids are ${MODELS.items.map((m) => m.id).join(", ")}; a ` +
        `model may also be named hf:owner/repo[@rev] or by the URL of a transformers-layout ` +
        `directory (ending in /)`,
    );
  }
  const url = new URL(ref, pageUrl);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return { kind: "hf", id: ref, base: url.href };
}

/**
 * Fetches `url` whole, reporting bytes received as they arrive (the size from the registry when
 * given, else from `Content-Length`).
 *
 * @returns The bytes, or `undefined` on a 404 when `optional`.
 * @throws {FormatError} On another HTTP error, naming the URL.
 */
export async function fetchBytes(
  url: string,
  onProgress?: (p: DownloadProgress) => void,
  options: { expectedBytes?: number; optional?: boolean } = {},
): Promise<Uint8Array | undefined> {
  const res = await fetch(url);
  if (!res.ok) {
    await res.body?.cancel();
    if (options.optional && res.status === 404) return undefined;
    throw new FormatError(url, `HTTP ${res.status} (expected a file of the model)`);
  }
  const header = Number(res.headers.get("content-length"));
  const total = options.expectedBytes ?? (header > 0 ? header : undefined);
  onProgress?.({ url, loaded: 0, ...(total ? { total } : {}) });
  if (!res.body) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    onProgress?.({ url, loaded: bytes.length, total: bytes.length });
    return bytes;
  }
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    // A compressed response's Content-Length counts compressed bytes: never report past 100%.
    onProgress?.({ url, loaded, ...(total ? { total: Math.max(total, loaded) } : {}) });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

/** Downloads a registry file and checks its size and sha256 when the registry pins them. */
async function fetchPinned(
  f: RemoteFile,
  onProgress?: (p: DownloadProgress) => void,
): Promise<{ bytes: Uint8Array; sha256: string }> {
  const bytes = (await fetchBytes(f.url, onProgress, f.bytes ? { expectedBytes: f.bytes } : {}))!;
  if (f.bytes !== undefined && bytes.length !== f.bytes) {
    throw new FormatError(f.url, `${bytes.length} bytes, but the registry pins ${f.bytes}`);
  }
  const sha256 = await sha256Hex(bytes);
  if (f.sha256 !== undefined && sha256 !== f.sha256) {
    throw new FormatError(
      f.url,
      `sha256 ${sha256}, but the registry pins ${f.sha256}: not the registered file`,
    );
  }
  return { bytes, sha256 };
}

/** Options of {@linkcode loadModelFromSource}. */
export interface WebLoadOptions extends HfLoadOptions {
  /** Download progress of each file. */
  readonly onProgress?: (p: DownloadProgress) => void;
}

/** Downloads and parses the model `source` names. */
export async function loadModelFromSource(
  source: ModelSource,
  options: WebLoadOptions = {},
): Promise<LoadedModel> {
  const { onProgress } = options;
  if (source.kind === "llama2c") {
    const ckpt = await fetchPinned(source.checkpoint, onProgress);
    const tok = await fetchPinned(source.tokenizer, onProgress);
    const { config, weights } = parseLlama2cCheckpoint(ckpt.bytes, source.checkpoint.url);
    const tokenizer = parseLlama2cTokenizer(tok.bytes, config.vocabSize, source.tokenizer.url);
    return {
      id: source.id,
      format: "llama2c",
      config,
      weights,
      tokenizer,
      files: [
        { path: source.checkpoint.name, bytes: ckpt.bytes.length, sha256: ckpt.sha256 },
        { path: source.tokenizer.name, bytes: tok.bytes.length, sha256: tok.sha256 },
      ],
    };
  }
  const root = new URL(source.base);
  return await buildHfModel(
    async (name, optional) => {
      const url = new URL(name, root).href;
      const bytes = await fetchBytes(url, onProgress, optional ? { optional } : {});
      return bytes === undefined ? undefined : { bytes, path: url };
    },
    source.id,
    options.residence ? { residence: options.residence } : {},
  );
}

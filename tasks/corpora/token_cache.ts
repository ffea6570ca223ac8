/**
 * A text's token stream, encoded once per machine: kept in memory for the run and on disk in
 * `$XDG_CACHE_HOME/lowbit/tokens` (else `$HOME/.cache/lowbit/tokens`), keyed by the tokenizer's
 * fingerprint and the text's sha256. Encoding WikiText-2's test text with a SentencePiece-style
 * `tokenizer.json` (Llama 2, Phi-3) takes seconds; every perplexity cell and calibration draw of a
 * matrix needs the same stream.
 *
 * A cache file is `Uint32` little-endian ids. One that does not fit the tokenizer (a length that
 * is not a whole number of ids, an id outside the vocabulary) is ignored and rewritten; files are
 * written to a temporary name and renamed, so a reader never sees half of one. Without a
 * fingerprint (a tokenizer built by hand) or without file access, only the run's memory is used.
 *
 * @module
 */

import { Sha256 } from "../../core/sha256_sync.ts";
import type { Tokenizer } from "../../models/types.ts";

/** Bumped whenever encoding may change for the same tokenizer files. */
export const TOKEN_CACHE_VERSION = 1;

const memory = new Map<string, readonly number[]>();

/** Forgets the token streams kept in memory (the files stay). */
export function forgetTokenStreams(): void {
  memory.clear();
}

/** The cache directory: `$XDG_CACHE_HOME/lowbit/tokens`, else `$HOME/.cache/lowbit/tokens`. */
export function tokenCacheDir(): string | undefined {
  try {
    const xdg = Deno.env.get("XDG_CACHE_HOME") || undefined;
    const home = Deno.env.get("HOME") || Deno.env.get("USERPROFILE");
    if (xdg === undefined && home === undefined) return undefined;
    return `${xdg ?? `${home}/.cache`}/lowbit/tokens`;
  } catch {
    return undefined; // no --allow-env or --allow-sys
  }
}

/**
 * `tokenizer.encode(text, { bos: false })`, from the cache when this tokenizer has encoded this
 * text before (in this run or, with a fingerprint, on this machine).
 *
 * @param dir The on-disk cache directory (default {@linkcode tokenCacheDir}; `null`: memory only).
 */
export function encodeCached(
  tokenizer: Tokenizer,
  text: string,
  dir: string | null = tokenCacheDir() ?? null,
): readonly number[] {
  const fp = tokenizer.fingerprint;
  if (fp === undefined) return tokenizer.encode(text, { bos: false }); // nothing to key it by
  const key = `${fp}-${new Sha256().update(text).hex()}`;
  const inMemory = memory.get(key);
  if (inMemory) return inMemory;
  const file = dir ? `${dir}/v${TOKEN_CACHE_VERSION}-${key}.u32` : undefined;
  const cached = file ? readIds(file, tokenizer.vocabSize) : undefined;
  const ids = cached ?? tokenizer.encode(text, { bos: false });
  if (file && !cached) writeIds(file, ids);
  memory.set(key, ids);
  return ids;
}

function readIds(file: string, vocab: number): number[] | undefined {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(file);
  } catch {
    return undefined;
  }
  if (bytes.length % 4 !== 0) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ids = new Array<number>(bytes.length / 4);
  for (let i = 0; i < ids.length; i++) {
    const id = view.getUint32(i * 4, true);
    if (id >= vocab) return undefined;
    ids[i] = id;
  }
  return ids;
}

function writeIds(file: string, ids: readonly number[]): void {
  const bytes = new Uint8Array(ids.length * 4);
  const view = new DataView(bytes.buffer);
  ids.forEach((id, i) => view.setUint32(i * 4, id, true));
  const tmp = `${file}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  try {
    Deno.mkdirSync(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    Deno.writeFileSync(tmp, bytes);
    Deno.renameSync(tmp, file);
  } catch {
    // A read-only or missing cache only costs the next run an encoding.
    try {
      Deno.removeSync(tmp);
    } catch { /* never written */ }
  }
}

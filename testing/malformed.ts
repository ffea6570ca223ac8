/**
 * Test helper for `malformed_test.ts`: generated malformed inputs and the one check each must
 * pass. A {@linkcode MalformedCase} writes its input into a fresh scratch directory, runs the
 * loader or reader that must refuse it, and names the message it expects (the file or flag and
 * the problem); {@linkcode refusal} runs it and says what was wrong, if anything: no error, a
 * hang, an internal error (`x is not a function`), a message that names neither file nor
 * problem, a file written, a file handle left open.
 *
 * Builders for the inputs: safetensors files from edited tensor lists and headers, llama2.c
 * checkpoints and tokenizers of any header, gzip.
 *
 * @module
 */

import { FormatError, NotAvailableError, UnsupportedConfigError } from "../core/errors.ts";

/** Environment lookup handed to a case's run (offline, a private HF cache in the scratch dir). */
export type Env = (name: string) => string | undefined;

/** One generated malformed input. */
export interface MalformedCase {
  /** The family it belongs to, e.g. `config.json`, `tensor`, `dataset`. */
  readonly family: string;
  /** What is wrong with it, e.g. `hidden_size = "64"`. */
  readonly name: string;
  /** Writes the input files into `dir`, a fresh scratch directory. */
  readonly setup: (dir: string) => Promise<void>;
  /** Loads or reads the input; must reject. `env` points the HF cache at `dir/.hf-cache`. */
  readonly run: (dir: string, env: Env) => Promise<unknown>;
  /** The message must match this: the file (or flag) and the problem. */
  readonly expect: RegExp;
  /** Whether open file descriptors are compared before and after (default true). */
  readonly countFds?: boolean;
}

/** The HF cache directory a case's `env` names, relative to its scratch directory. */
export const CASE_CACHE = ".hf-cache";

/** Messages of JavaScript's own errors: a parser that let bad input reach code that assumed it. */
const INTERNAL =
  /is not a function|Cannot read propert|is not iterable|is not defined|undefined is not|null is not|Maximum call stack|Invalid array length|Invalid typed array length|Array buffer allocation failed|out of memory/i;

/** The error classes bad input may surface as (`core/errors.ts`: plain ones name file or field). */
const LOUD = [
  FormatError,
  UnsupportedConfigError,
  NotAvailableError,
  TypeError,
  RangeError,
  SyntaxError,
];

/** Paths and sizes of every file below `dir`, sorted. */
export async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for await (const e of Deno.readDir(d)) {
      const path = `${d}/${e.name}`;
      if (e.isDirectory) await walk(path, `${rel}${e.name}/`);
      else out.push(`${rel}${e.name} ${(await Deno.lstat(path)).size}`);
    }
  };
  await walk(dir, "");
  return out.sort();
}

/**
 * Open file descriptors of this process (Linux) on files under `dir`, or undefined where they
 * cannot be read. Only the case's own directory counts: test modules running in parallel in this
 * process open files of their own.
 */
export function openFds(dir: string): number | undefined {
  try {
    let n = 0;
    for (const e of Deno.readDirSync("/proc/self/fd")) {
      try {
        if (Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith(`${dir}/`)) n++;
      } catch {
        // closed meanwhile
      }
    }
    return n;
  } catch {
    return undefined;
  }
}

class Hang extends Error {}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Hang(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a run that should have failed returned, shortly. */
function summary(value: unknown): string {
  if (value === undefined) return "undefined";
  if (typeof value === "object" && value !== null) {
    return `an object with ${Object.keys(value).slice(0, 6).join(", ")}`;
  }
  return String(value).slice(0, 80);
}

/**
 * Runs a case in a fresh scratch directory: it must reject within `timeoutMs` with one of the
 * error classes of bad input, a message matching `c.expect` and no JavaScript-internal message;
 * the scratch directory must hold the same files afterwards (nothing written, no HF cache); no
 * file descriptor may stay open.
 *
 * @returns `undefined` when the case failed loudly as it should, else what went wrong.
 */
export async function refusal(c: MalformedCase, timeoutMs = 20_000): Promise<string | undefined> {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-malformed-" });
  try {
    await c.setup(dir);
    const before = await listing(dir);
    const cache = `${dir}/${CASE_CACHE}`;
    const vars: Record<string, string> = { HF_HUB_OFFLINE: "1", HF_HUB_CACHE: cache };
    const fds = c.countFds === false ? undefined : openFds(dir);
    let error: unknown;
    try {
      const value = await withTimeout(c.run(dir, (name) => vars[name]), timeoutMs);
      return `did not fail: it returned ${summary(value)}`;
    } catch (e) {
      error = e;
    }
    if (error instanceof Hang) return `hung: ${error.message}`;
    if (!(error instanceof Error)) return `threw a non-Error: ${String(error)}`;
    const what = `${error.name}: ${error.message}`;
    if (!LOUD.some((k) => error instanceof k)) {
      return `threw an unexpected error class: ${what}`;
    }
    if (INTERNAL.test(error.message)) return `an internal error escaped: ${what}`;
    if (!c.expect.test(error.message)) return `unclear message (expected ${c.expect}): ${what}`;
    const after = await listing(dir);
    if (after.join("\n") !== before.join("\n")) {
      const added = after.filter((f) => !before.includes(f));
      return `the scratch directory changed (${added.join(", ") || "files removed"}): ${what}`;
    }
    const fdsAfter = openFds(dir);
    if (fds !== undefined && fdsAfter !== undefined && fdsAfter > fds) {
      return `${fdsAfter - fds} file descriptor(s) left open: ${what}`;
    }
    return undefined;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Escapes a string for a RegExp. */
export function re(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

// ---------------------------------------------------------------------------------------------
// safetensors

/** A tensor to write: its header fields and bytes. */
export interface RawTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** A header entry as written, editable before serialisation. */
export interface HeaderEntry {
  dtype: unknown;
  shape: unknown;
  data_offsets: unknown;
}

/**
 * A safetensors file of `tensors` laid back to back in the given order; `edit` may change the
 * header object (entries, `data_offsets`, dtypes, shapes) before it is written, `headerText`
 * replaces the header's text altogether.
 */
export function safetensorsFile(
  tensors: readonly RawTensor[],
  edit?: (header: Record<string, HeaderEntry>) => void,
  headerText?: string | Uint8Array,
): Uint8Array {
  const header: Record<string, HeaderEntry> = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = {
      dtype: t.dtype,
      shape: [...t.shape],
      data_offsets: [offset, offset + t.data.length],
    };
    offset += t.data.length;
  }
  edit?.(header);
  const head = headerText instanceof Uint8Array
    ? headerText
    : new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let p = 8 + head.length;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.length;
  }
  return out;
}

/** A copy of `bytes` with the float32 at element `index` of `t`'s data set to `value`. */
export function withFloat(t: RawTensor, index: number, value: number): RawTensor {
  const data = t.data.slice();
  new DataView(data.buffer).setFloat32(4 * index, value, true);
  return { ...t, data };
}

// ---------------------------------------------------------------------------------------------
// llama2.c

/** The header of a small synthetic llama2.c checkpoint (GQA: 2 heads, 1 KV head). */
export const LLAMA2C_HEADER = {
  dim: 8,
  hidden_dim: 16,
  n_layers: 2,
  n_heads: 2,
  n_kv_heads: 1,
  vocab_size: 16,
  seq_len: 4,
} as const;

/** A header's 7 fields in file order. */
export const LLAMA2C_FIELDS = Object.keys(LLAMA2C_HEADER) as (keyof typeof LLAMA2C_HEADER)[];

/** Where one tensor of a llama2.c checkpoint lies: float index of its first value, and count. */
export interface Llama2cRegion {
  readonly name: string;
  readonly start: number;
  readonly count: number;
}

/** The tensors of a llama2.c checkpoint of `header`, in file order (run.c's layout). */
export function llama2cRegions(
  header: Readonly<Record<keyof typeof LLAMA2C_HEADER, number>> = LLAMA2C_HEADER,
): Llama2cRegion[] {
  const { dim, hidden_dim: hidden, n_layers: layers, n_heads: heads, n_kv_heads: kv } = header;
  const vocab = Math.abs(header.vocab_size);
  const head = dim / heads;
  const kvDim = head * kv;
  const regions: Llama2cRegion[] = [];
  let at = 0;
  const add = (name: string, count: number) => {
    regions.push({ name, start: at, count });
    at += count;
  };
  add("token_embedding", vocab * dim);
  for (
    const [name, per] of [
      ["rms_att", dim],
      ["wq", dim * dim],
      ["wk", kvDim * dim],
      ["wv", kvDim * dim],
      ["wo", dim * dim],
      ["rms_ffn", dim],
      ["w1", hidden * dim],
      ["w2", dim * hidden],
      ["w3", hidden * dim],
    ] as const
  ) {
    for (let l = 0; l < layers; l++) add(`${name}[${l}]`, per);
  }
  add("rms_final", dim);
  const freq = Math.floor((header.seq_len * head) / 2);
  add("freq_cis_real", freq);
  add("freq_cis_imag", freq);
  if (header.vocab_size < 0) add("wcls", vocab * dim);
  return regions;
}

/** A llama2.c checkpoint: the 7-int32 header and small deterministic float32 weights. */
export function llama2cCheckpoint(
  header: Readonly<Record<keyof typeof LLAMA2C_HEADER, number>> = LLAMA2C_HEADER,
  edit?: (floats: Float32Array, regions: Llama2cRegion[]) => void,
): Uint8Array {
  const regions = llama2cRegions(header);
  const last = regions[regions.length - 1]!;
  const floats = new Float32Array(last.start + last.count);
  for (let i = 0; i < floats.length; i++) floats[i] = ((i % 13) - 6) * 0.01;
  edit?.(floats, regions);
  const out = new Uint8Array(28 + 4 * floats.length);
  const view = new DataView(out.buffer);
  LLAMA2C_FIELDS.forEach((f, i) => view.setInt32(4 * i, header[f], true));
  floats.forEach((x, i) => view.setFloat32(28 + 4 * i, x, true));
  return out;
}

/** A llama2.c tokenizer file: `max_token_length`, then score, length and bytes per piece. */
export function llama2cTokenizer(
  pieces: readonly (string | Uint8Array)[],
  options: { maxTokenLength?: number; lengths?: Record<number, number> } = {},
): Uint8Array {
  const bytes = pieces.map((p) => typeof p === "string" ? new TextEncoder().encode(p) : p);
  const max = options.maxTokenLength ?? Math.max(1, ...bytes.map((b) => b.length));
  const size = 4 + bytes.reduce((n, b) => n + 8 + b.length, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setInt32(0, max, true);
  let p = 4;
  bytes.forEach((b, i) => {
    view.setFloat32(p, -i, true);
    view.setInt32(p + 4, options.lengths?.[i] ?? b.length, true);
    out.set(b, p + 8);
    p += 8 + b.length;
  });
  return out;
}

/** The pieces of a 16-token llama2.c vocabulary (specials, the dummy-prefix space, letters). */
export const LLAMA2C_PIECES: readonly string[] = [
  "<unk>",
  "<s>",
  "</s>",
  " ",
  ..."abcdefghijkl",
];

// ---------------------------------------------------------------------------------------------

/** gzip of `bytes`. */
export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Writes `files` (path relative to `dir` → text or bytes), creating folders. */
export async function writeFiles(
  dir: string,
  files: Readonly<Record<string, string | Uint8Array>>,
): Promise<void> {
  for (const [rel, body] of Object.entries(files)) {
    const path = `${dir}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof body === "string") await Deno.writeTextFile(path, body);
    else await Deno.writeFile(path, body);
  }
}

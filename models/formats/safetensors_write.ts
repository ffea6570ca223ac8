/**
 * Writes safetensors files for real exports: any dtype, in memory or streamed tensor by tensor to
 * a file (only one tensor's bytes are held at a time when the tensors are given as producers),
 * and the sharded form `model-0000i-of-0000N.safetensors` + `model.safetensors.index.json`.
 *
 * Layout (huggingface/safetensors): an 8-byte little-endian header length `n`, `n` bytes of JSON
 * `{"__metadata__": {…}, name: {dtype, shape, data_offsets: [begin, end]}, …}` padded with
 * spaces to a multiple of 8 (as the reference writer does, so the data starts 8-byte aligned),
 * then the tensors' bytes back to back; offsets are relative to the start of the data.
 * Deviation from the reference writer: tensors keep the caller's order (the reference sorts by
 * dtype size, then name); readers do not care, and streaming needs a known order.
 *
 * @module
 */

import {
  assertLittleEndianHost,
  bytesOf,
  checkRawTensor,
  DTYPE_BYTES,
  elementCount,
  type RawTensor,
  type SafetensorsDtype,
} from "./tensor.ts";

/** A tensor's name, dtype and shape (all the header needs). */
export interface TensorSpec {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
}

/** A tensor to write; `data` may be a producer called once, just before its bytes are written. */
export interface TensorEntry extends TensorSpec {
  readonly data: ArrayBufferView | (() => ArrayBufferView | Promise<ArrayBufferView>);
}

/** A tensor whose bytes are at hand. */
export interface EagerTensorEntry extends TensorSpec {
  readonly data: ArrayBufferView;
}

/** The default `__metadata__`, as PyTorch checkpoints carry it. */
export const DEFAULT_METADATA: Readonly<Record<string, string>> = { format: "pt" };

/** Data bytes of a tensor spec. */
export function tensorBytes(spec: TensorSpec): number {
  const size = DTYPE_BYTES[spec.dtype];
  if (size === undefined) {
    throw new RangeError(
      `tensor "${spec.name}": unknown dtype "${spec.dtype}" (known: ${
        Object.keys(DTYPE_BYTES).join(", ")
      })`,
    );
  }
  if (!spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(
      `tensor "${spec.name}": shape [${spec.shape.join(", ")}] must hold non-negative integers`,
    );
  }
  return elementCount(spec.shape) * size;
}

/**
 * The file prefix: the 8-byte length and the JSON header padded with spaces to a multiple of 8.
 *
 * @throws {RangeError} For a duplicate or empty name, the reserved name `__metadata__`, an
 *   unknown dtype, a bad shape, or a metadata value that is not a string.
 */
export function safetensorsHeader(
  specs: readonly TensorSpec[],
  metadata: Readonly<Record<string, string>> = DEFAULT_METADATA,
): { prefix: Uint8Array; dataBytes: number } {
  const header: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") {
      throw new RangeError(`__metadata__ value of "${k}" must be a string, got ${typeof v}`);
    }
  }
  header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const spec of specs) {
    if (spec.name === "" || spec.name === "__metadata__") {
      throw new RangeError(`tensor name "${spec.name}" is not allowed`);
    }
    if (Object.hasOwn(header, spec.name)) {
      throw new RangeError(`tensor "${spec.name}" appears twice`);
    }
    const bytes = tensorBytes(spec);
    header[spec.name] = {
      dtype: spec.dtype,
      shape: [...spec.shape],
      data_offsets: [offset, offset + bytes],
    };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const prefix = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
  prefix.set(json, 8);
  return { prefix, dataBytes: offset };
}

async function tensorData(entry: TensorEntry): Promise<Uint8Array> {
  const data = typeof entry.data === "function" ? await entry.data() : entry.data;
  checkRawTensor(entry.name, { dtype: entry.dtype, shape: entry.shape, data });
  return bytesOf(data);
}

/**
 * A whole safetensors file in memory. Every `data` must be a view (not a producer).
 *
 * @throws {RangeError} As {@linkcode safetensorsHeader}, or naming a tensor whose byte length does
 *   not match its shape and dtype.
 */
export function serializeSafetensors(
  tensors: readonly EagerTensorEntry[],
  metadata: Readonly<Record<string, string>> = DEFAULT_METADATA,
): Uint8Array {
  assertLittleEndianHost();
  const { prefix, dataBytes } = safetensorsHeader(tensors, metadata);
  const out = new Uint8Array(prefix.length + dataBytes);
  out.set(prefix);
  let p = prefix.length;
  for (const t of tensors) {
    checkRawTensor(t.name, t);
    out.set(bytesOf(t.data), p);
    p += t.data.byteLength;
  }
  return out;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let p = 0;
  while (p < bytes.length) p += await file.write(bytes.subarray(p));
}

/**
 * Streams a safetensors file to `path`: the header first (from the specs alone), then each
 * tensor's bytes, calling a producer only when its turn comes. On error the partial file is
 * removed.
 *
 * @returns The file's size in bytes.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: readonly TensorEntry[],
  metadata: Readonly<Record<string, string>> = DEFAULT_METADATA,
): Promise<number> {
  assertLittleEndianHost();
  const { prefix, dataBytes } = safetensorsHeader(tensors, metadata);
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, prefix);
    for (const t of tensors) await writeAll(file, await tensorData(t));
  } catch (e) {
    file.close();
    await Deno.remove(path).catch(() => {});
    throw e;
  }
  file.close();
  return prefix.length + dataBytes;
}

/**
 * Splits tensors, in order, into shards of at most `maxShardBytes` data bytes: a tensor that
 * would overflow the current shard starts a new one, and a tensor larger than the limit gets a
 * shard of its own (huggingface_hub `split_state_dict_into_shards_factory`, except that order is
 * kept instead of emitting oversized tensors first).
 */
export function planShards<T extends TensorSpec>(
  tensors: readonly T[],
  maxShardBytes: number,
): T[][] {
  if (!(maxShardBytes > 0)) {
    throw new RangeError(`maxShardBytes must be positive, got ${maxShardBytes}`);
  }
  const shards: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const t of tensors) {
    const bytes = tensorBytes(t);
    if (current.length > 0 && size + bytes > maxShardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/** The name of shard `i` (0-based) of `n`: `{base}-0000{i+1}-of-0000{n}.safetensors`. */
export function shardFileName(i: number, n: number, base = "model"): string {
  const pad = (x: number) => String(x).padStart(5, "0");
  return `${base}-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

/** `model.safetensors.index.json` content. */
export interface ShardIndex {
  readonly metadata: { readonly total_size: number };
  readonly weight_map: Readonly<Record<string, string>>;
}

/** Options of {@linkcode writeShardedSafetensors}. */
export interface ShardOptions {
  /** Largest data bytes per shard (transformers' default `max_shard_size` is 5 GB). */
  readonly maxShardBytes?: number;
  /** File name base (default `model`). */
  readonly baseName?: string;
  /** `__metadata__` of every shard (default `{format: "pt"}`). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/**
 * Writes tensors as a checkpoint directory the way transformers' `save_pretrained` lays it out:
 * one `model.safetensors` when everything fits in one shard, else
 * `model-0000i-of-0000N.safetensors` files plus `model.safetensors.index.json` with
 * `metadata.total_size` (the sum of tensor data bytes, headers excluded) and `weight_map`.
 * Shards are streamed one after another.
 *
 * @returns The files written (shards in order, then the index when there is one).
 */
export async function writeShardedSafetensors(
  dir: string,
  tensors: readonly TensorEntry[],
  options: ShardOptions = {},
): Promise<{ files: string[]; index?: ShardIndex }> {
  const base = options.baseName ?? "model";
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new RangeError(`tensor "${t.name}" appears twice`);
    seen.add(t.name);
  }
  const shards = planShards(tensors, options.maxShardBytes ?? 5e9);
  await Deno.mkdir(dir, { recursive: true });
  if (shards.length === 1) {
    const name = `${base}.safetensors`;
    await writeSafetensorsFile(`${dir}/${name}`, shards[0]!, options.metadata);
    return { files: [name] };
  }
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < shards.length; i++) {
    const name = shardFileName(i, shards.length, base);
    await writeSafetensorsFile(`${dir}/${name}`, shards[i]!, options.metadata);
    for (const t of shards[i]!) {
      weightMap[t.name] = name;
      total += tensorBytes(t);
    }
    files.push(name);
  }
  const index: ShardIndex = { metadata: { total_size: total }, weight_map: weightMap };
  const indexName = `${base}.safetensors.index.json`;
  await Deno.writeTextFile(`${dir}/${indexName}`, JSON.stringify(index, null, 2) + "\n");
  files.push(indexName);
  return { files, index };
}

/**
 * Entries named `{prefix}.{key}` for a codec's output (e.g. prefix `model.layers.0.mlp.up_proj`
 * and `{qweight, qzeros, scales, g_idx}`), in the record's order; an empty prefix keeps the keys.
 */
export function namedEntries(
  prefix: string,
  tensors: Readonly<Record<string, RawTensor>>,
): EagerTensorEntry[] {
  return Object.entries(tensors).map(([key, t]) => ({
    name: prefix === "" ? key : `${prefix}.${key}`,
    dtype: t.dtype,
    shape: t.shape,
    data: t.data,
  }));
}

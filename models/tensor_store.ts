/**
 * Tensors of a checkpoint by name, read on demand: the headers of every safetensors shard are
 * parsed up front (names, dtypes, shapes, byte ranges), the bytes of a tensor only when asked.
 * Two sources: files already in memory (here; fetched over HTTP by the browser page) and files
 * on disk (`file_tensor_store.ts`, positional reads, so a checkpoint larger than memory is never
 * held whole).
 *
 * @module
 */

import { FormatError } from "../core/errors.ts";
import {
  parseSafetensorsHeader,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsEntry,
  toFloat32,
} from "./safetensors.ts";

/** One tensor's description and where it is. */
export interface TensorInfo extends SafetensorsEntry {
  readonly name: string;
  /** Path or URL of its file, for error messages. */
  readonly file: string;
}

/** Tensors of a checkpoint, by name. */
export interface TensorStore {
  /** Every tensor, in file and header order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /**
   * The raw little-endian bytes of a tensor, or of its byte range `[from, to)` (a fresh copy or
   * a view; do not modify).
   */
  bytes(name: string, from?: number, to?: number): Uint8Array;
  /** Closes open files (later reads reopen them). */
  close(): void;
}

/**
 * Float32 values of a tensor of `store` (converted from F16/BF16/F64), or of the elements
 * `[from, to)` of it.
 */
export function readFloat32(
  store: TensorStore,
  name: string,
  from?: number,
  to?: number,
): Float32Array {
  const info = store.tensors.get(name);
  if (!info) throw new FormatError("checkpoint", `tensor "${name}" is missing`);
  const size = SAFETENSORS_DTYPE_BYTES[info.dtype] ?? 1;
  const bytes = from === undefined
    ? store.bytes(name)
    : store.bytes(name, from * size, (to ?? info.length / size) * size);
  const data = toFloat32({ dtype: info.dtype, data: bytes }, name, info.file);
  // A NaN or ±Infinity in a weight is a corrupt checkpoint: refuse it rather than report its
  // NaN perplexity.
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new FormatError(
        info.file,
        `tensor "${name}" holds ${data[i]} at element ${(from ?? 0) + i} (expected finite values)`,
      );
    }
  }
  return data;
}

/** The absolute byte range of `[from, to)` of a tensor, checked. */
export function byteRange(t: TensorInfo, from = 0, to = t.length): [number, number] {
  if (
    !(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && to <= t.length)
  ) {
    throw new RangeError(
      `tensor "${t.name}": byte range [${from}, ${to}) outside [0, ${t.length})`,
    );
  }
  return [t.offset + from, t.offset + to];
}

/** Adds a file's header entries to `out`; a name already there is an error. */
export function addEntries(
  out: Map<string, TensorInfo>,
  entries: Map<string, SafetensorsEntry>,
  file: string,
): void {
  for (const [name, e] of entries) {
    const prev = out.get(name);
    if (prev) {
      throw new FormatError(file, `tensor "${name}" is also in ${prev.file}`);
    }
    out.set(name, { ...e, name, file });
  }
}

/** Tensors of safetensors files held in memory. */
export function memoryTensorStore(
  files: readonly { readonly path: string; readonly bytes: Uint8Array }[],
): TensorStore {
  const tensors = new Map<string, TensorInfo>();
  const bytesOf = new Map<string, Uint8Array>();
  for (const f of files) {
    addEntries(tensors, parseSafetensorsHeader(f.bytes, f.bytes.length, f.path), f.path);
    bytesOf.set(f.path, f.bytes);
  }
  return {
    tensors,
    bytes(name, from, to) {
      const t = tensors.get(name);
      if (!t) throw new FormatError("checkpoint", `tensor "${name}" is missing`);
      const [a, b] = byteRange(t, from, to);
      return bytesOf.get(t.file)!.subarray(a, b);
    },
    close() {},
  };
}

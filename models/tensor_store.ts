/**
 * Tensors of a checkpoint by name, read on demand: the headers of every safetensors shard are
 * parsed up front (names, dtypes, shapes, byte ranges), the bytes of a tensor only when asked.
 * Two sources: files on disk (read with positional reads, so a checkpoint larger than memory is
 * never held whole) and files already in memory (fetched over HTTP by the browser page).
 *
 * @module
 */

import { FormatError } from "../core/errors.ts";
import {
  parseSafetensorsHeader,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsEntry,
  safetensorsHeaderLength,
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
  return toFloat32({ dtype: info.dtype, data: bytes }, name, info.file);
}

function range(t: TensorInfo, from = 0, to = t.length): [number, number] {
  if (
    !(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && to <= t.length)
  ) {
    throw new RangeError(
      `tensor "${t.name}": byte range [${from}, ${to}) outside [0, ${t.length})`,
    );
  }
  return [t.offset + from, t.offset + to];
}

function addEntries(
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
      const [a, b] = range(t, from, to);
      return bytesOf.get(t.file)!.subarray(a, b);
    },
    close() {},
  };
}

function readFully(file: Deno.FsFile, offset: number, out: Uint8Array, path: string): void {
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < out.length) {
    const n = file.readSync(out.subarray(done));
    if (n === null || n === 0) {
      throw new FormatError(path, `file ends ${out.length - done} bytes early at ${offset + done}`);
    }
    done += n;
  }
}

/**
 * Tensors of safetensors files on disk: headers are read now, tensor bytes on each
 * {@linkcode TensorStore.bytes} call (synchronously, with positional reads).
 */
export function fileTensorStore(paths: readonly string[]): TensorStore {
  const tensors = new Map<string, TensorInfo>();
  const open = new Map<string, Deno.FsFile>();
  const handle = (path: string): Deno.FsFile => {
    let f = open.get(path);
    if (!f) {
      f = Deno.openSync(path, { read: true });
      open.set(path, f);
    }
    return f;
  };
  for (const path of paths) {
    const size = Deno.statSync(path).size;
    const f = handle(path);
    const head = new Uint8Array(Math.min(8, size));
    readFully(f, 0, head, path);
    const headerLen = safetensorsHeaderLength(head, size, path);
    const prefix = new Uint8Array(8 + headerLen);
    readFully(f, 0, prefix, path);
    addEntries(tensors, parseSafetensorsHeader(prefix, size, path), path);
  }
  return {
    tensors,
    bytes(name, from, to) {
      const t = tensors.get(name);
      if (!t) throw new FormatError("checkpoint", `tensor "${name}" is missing`);
      const [a, b] = range(t, from, to);
      // Aligned to the element size, so typed-array views need no copy.
      const size = SAFETENSORS_DTYPE_BYTES[t.dtype] ?? 1;
      const buf = new Uint8Array(new ArrayBuffer(Math.ceil((b - a) / size) * size), 0, b - a);
      readFully(handle(t.file), a, buf, t.file);
      return buf;
    },
    close() {
      for (const f of open.values()) f.close();
      open.clear();
    },
  };
}

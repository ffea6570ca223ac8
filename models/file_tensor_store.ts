/**
 * Tensors of safetensors files on disk, read on demand with positional reads: the headers are
 * parsed up front, a tensor's bytes only when asked, so a checkpoint larger than memory is never
 * held whole (see `tensor_store.ts` for the interface and the in-memory form).
 *
 * @module
 */

import { FormatError } from "../core/errors.ts";
import {
  parseSafetensorsHeader,
  SAFETENSORS_DTYPE_BYTES,
  safetensorsHeaderLength,
} from "./safetensors.ts";
import { addEntries, byteRange, type TensorInfo, type TensorStore } from "./tensor_store.ts";

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
  const close = () => {
    for (const f of open.values()) f.close();
    open.clear();
  };
  try {
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
  } catch (e) {
    close(); // a malformed shard leaves no file open
    throw e;
  }
  return {
    tensors,
    bytes(name, from, to) {
      const t = tensors.get(name);
      if (!t) throw new FormatError("checkpoint", `tensor "${name}" is missing`);
      const [a, b] = byteRange(t, from, to);
      // Aligned to the element size, so typed-array views need no copy.
      const size = SAFETENSORS_DTYPE_BYTES[t.dtype] ?? 1;
      const buf = new Uint8Array(new ArrayBuffer(Math.ceil((b - a) / size) * size), 0, b - a);
      readFully(handle(t.file), a, buf, t.file);
      return buf;
    },
    close,
  };
}

/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`, then the tensor
 * bytes (offsets are relative to the end of the header). Also the shard index
 * `model.safetensors.index.json` of sharded checkpoints.
 *
 * @module
 */

import { FormatError } from "../core/errors.ts";
import { describe, isRecord } from "../core/describe.ts";

/** One tensor of a safetensors file; `data` is a view into the file's bytes. */
export interface SafetensorsTensor {
  /** Safetensors dtype name (`F32`, `F16`, `BF16`, …). */
  dtype: string;
  shape: number[];
  /** The tensor's raw little-endian bytes (a view, not a copy). */
  data: Uint8Array;
}

/** Bytes per element of every safetensors dtype this parser accepts. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Where one tensor's bytes lie in a safetensors file. */
export interface SafetensorsEntry {
  /** Safetensors dtype name (`F32`, `F16`, `BF16`, …). */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte offset of the tensor's first byte from the start of the file. */
  readonly offset: number;
  /** Byte length. */
  readonly length: number;
}

/**
 * Bytes of a safetensors file's prefix needed to read its header: the 8-byte length field.
 * {@linkcode parseSafetensorsHeader} then needs `8 + headerLength(prefix)` bytes.
 */
export function safetensorsHeaderLength(
  prefix: Uint8Array,
  fileSize: number,
  file: string,
): number {
  if (prefix.length < 8 || fileSize < 8) {
    throw new FormatError(
      file,
      `safetensors file too short: ${fileSize} bytes, expected an 8-byte header length`,
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(fileSize - 8)) {
    throw new FormatError(
      file,
      `safetensors header length ${headerLen} goes past the end of the file ` +
        `(${fileSize - 8} bytes after the length field)`,
    );
  }
  return Number(headerLen);
}

/**
 * Parses and validates a safetensors header, given the file's first `8 + headerLength` bytes
 * and its total size (the tensor data need not be read).
 *
 * Checks: the header is a JSON object; every tensor has a known `dtype`, a `shape` of
 * non-negative integers and `data_offsets` `[begin, end]` with begin ≤ end ≤ data size; the
 * byte length equals product(shape) × dtype size; the tensors cover the data back to back (no
 * overlap, no gap, nothing after the last one). `__metadata__` is ignored.
 *
 * @param prefix At least the first `8 + headerLength` bytes of the file.
 * @param fileSize The file's size in bytes.
 * @param file The file's name or path, for error messages.
 * @returns Tensors by name, in header order, with absolute byte ranges.
 * @throws {FormatError} Naming the file (and the tensor) when anything is malformed.
 */
export function parseSafetensorsHeader(
  prefix: Uint8Array,
  fileSize: number,
  file: string,
): Map<string, SafetensorsEntry> {
  const headerLen = safetensorsHeaderLength(prefix, fileSize, file);
  const dataStart = 8 + headerLen;
  if (prefix.length < dataStart) {
    throw new RangeError(`${file}: ${dataStart} header bytes needed, ${prefix.length} given`);
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(prefix.subarray(8, dataStart)),
    );
  } catch (e) {
    throw new FormatError(
      file,
      `safetensors header is not valid JSON: ${(e as Error).message}`,
      { cause: e },
    );
  }
  if (!isRecord(header)) {
    throw new FormatError(file, `safetensors header is not a JSON object: ${describe(header)}`);
  }
  const dataLen = fileSize - dataStart;
  const tensors = new Map<string, SafetensorsEntry>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const bad = (message: string) => new FormatError(file, `tensor "${name}": ${message}`);
    if (!isRecord(entry)) {
      throw bad(
        `header entry must be an object {dtype, shape, data_offsets}, got ${describe(entry)}`,
      );
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== "string") throw bad(`missing or non-string "dtype": ${describe(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw bad(
        `missing or invalid "shape" (expected an array of non-negative integers): ${
          describe(shape)
        }`,
      );
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw bad(
        `missing or invalid "data_offsets" (expected [begin, end] non-negative integers): ${
          describe(offsets)
        }`,
      );
    }
    const size = SAFETENSORS_DTYPE_BYTES[dtype];
    if (size === undefined) {
      throw bad(
        `unknown dtype "${dtype}" (known: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")})`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw bad(`data_offsets begin ${begin} is after end ${end}`);
    if (end > dataLen) {
      throw bad(`data_offsets [${begin}, ${end}] go past the end of the data (${dataLen} bytes)`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== elements * size) {
      throw bad(
        `holds ${end - begin} bytes but shape [${shape.join(", ")}] of ${dtype} needs ` +
          `${elements * size} bytes`,
      );
    }
    ranges.push({ name, begin, end });
    tensors.set(name, {
      dtype,
      shape: [...shape as number[]],
      offset: dataStart + begin,
      length: end - begin,
    });
  }
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  // The tensors must cover the data exactly, back to back (as the reference implementation
  // requires): an overlap, a gap or bytes after the last tensor mean a corrupt file.
  let reach: { name: string; begin: number; end: number } | undefined;
  for (const r of ranges) {
    if (r.begin === r.end) continue; // empty tensors occupy no bytes
    const covered = reach?.end ?? 0;
    if (reach && r.begin < covered) {
      throw new FormatError(
        file,
        `tensor "${r.name}" [${r.begin}, ${r.end}] overlaps tensor "${reach.name}" ` +
          `[${reach.begin}, ${reach.end}]`,
      );
    }
    if (r.begin > covered) {
      throw new FormatError(
        file,
        `bytes [${covered}, ${r.begin}) of the data belong to no tensor (${
          reach ? `between "${reach.name}" and "${r.name}"` : `before "${r.name}"`
        }): the tensors of a safetensors file lie back to back`,
      );
    }
    reach = r;
  }
  const end = reach?.end ?? 0;
  if (end < dataLen) {
    throw new FormatError(
      file,
      `the data holds ${dataLen - end} bytes after the last tensor (${dataLen} bytes of data, ` +
        `the tensors end at ${end}): truncated header or trailing garbage`,
    );
  }
  return tensors;
}

/**
 * Parses and validates a whole safetensors file held in memory (see
 * {@linkcode parseSafetensorsHeader} for the checks).
 *
 * @param bytes The whole file.
 * @param file The file's name or path, for error messages.
 * @returns Tensors by name, in header order, with views into `bytes`.
 * @throws {FormatError} Naming the file (and the tensor) when anything is malformed.
 */
export function parseSafetensors(
  bytes: Uint8Array,
  file: string,
): Map<string, SafetensorsTensor> {
  const entries = parseSafetensorsHeader(bytes, bytes.length, file);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, e] of entries) {
    tensors.set(name, {
      dtype: e.dtype,
      shape: [...e.shape],
      data: bytes.subarray(e.offset, e.offset + e.length),
    });
  }
  return tensors;
}

/**
 * Converts a tensor to float32: `F32` (a view when the data is 4-byte aligned, otherwise a
 * copy), `F16`, `BF16` and `F64` (always a fresh array).
 *
 * @param t The tensor.
 * @param name Its name, for error messages.
 * @param file Its file, for error messages.
 * @returns `product(shape)` float32 values.
 * @throws {FormatError} For any other dtype or a byte length that is not a whole number of elements.
 */
export function toFloat32(
  t: { dtype: string; data: Uint8Array },
  name: string,
  file: string,
): Float32Array {
  const size = SAFETENSORS_DTYPE_BYTES[t.dtype];
  if (size !== undefined && t.data.length % size !== 0) {
    throw new FormatError(
      file,
      `tensor "${name}": ${t.data.length} bytes is not a whole number of ${t.dtype} elements`,
    );
  }
  const data = t.data;
  const n = size === undefined ? 0 : data.length / size;
  if (!LITTLE_ENDIAN_HOST) return toFloat32Slow(t.dtype, data, n, name, file);
  switch (t.dtype) {
    case "F32":
      return data.byteOffset % 4 === 0
        ? new Float32Array(data.buffer, data.byteOffset, n)
        : new Float32Array(data.slice().buffer);
    case "F16": {
      const half = data.byteOffset % 2 === 0
        ? new Float16Array(data.buffer, data.byteOffset, n)
        : new Float16Array(data.slice().buffer);
      return new Float32Array(half);
    }
    case "BF16": {
      const src = data.byteOffset % 2 === 0
        ? new Uint16Array(data.buffer, data.byteOffset, n)
        : new Uint16Array(data.slice().buffer);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case "F64": {
      const src = data.byteOffset % 8 === 0
        ? new Float64Array(data.buffer, data.byteOffset, n)
        : new Float64Array(data.slice().buffer);
      return new Float32Array(src);
    }
    default:
      throw unsupportedDtype(t.dtype, name, file);
  }
}

function toFloat32Slow(
  dtype: string,
  data: Uint8Array,
  n: number,
  name: string,
  file: string,
): Float32Array {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float32Array(n);
  const bits = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case "F32":
        out[i] = view.getFloat32(4 * i, true);
        break;
      case "F16":
        out[i] = view.getFloat16(2 * i, true);
        break;
      case "BF16":
        bits.setUint32(4 * i, view.getUint16(2 * i, true) << 16);
        out[i] = bits.getFloat32(4 * i);
        break;
      case "F64":
        out[i] = view.getFloat64(8 * i, true);
        break;
      default:
        throw unsupportedDtype(dtype, name, file);
    }
  }
  return out;
}

function unsupportedDtype(dtype: string, name: string, file: string): FormatError {
  return new FormatError(
    file,
    `tensor "${name}": cannot convert dtype ${dtype} to float32 (supported: F32, F16, BF16, F64)`,
  );
}

/**
 * Parses `model.safetensors.index.json` of a sharded checkpoint.
 *
 * @param json The parsed JSON.
 * @param file The file's name or path, for error messages.
 * @returns The shard of every tensor, and the distinct shard files sorted by name.
 * @throws {FormatError} When `weight_map` is missing, empty or names an unsafe path.
 */
export function parseShardIndex(
  json: unknown,
  file: string,
): { weightMap: Map<string, string>; files: string[] } {
  if (!isRecord(json)) {
    throw new FormatError(file, `shard index must be a JSON object, got ${describe(json)}`);
  }
  const map = json.weight_map;
  if (!isRecord(map)) {
    throw new FormatError(
      file,
      `shard index field "weight_map" must be an object {tensor: file}, got ${describe(map)}`,
    );
  }
  const weightMap = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || shard.length === 0) {
      throw new FormatError(
        file,
        `weight_map entry "${tensor}" must be a file name, got ${describe(shard)}`,
      );
    }
    if (
      shard.startsWith("/") || shard.includes("\\") ||
      shard.split("/").some((s) => s === ".." || s === "")
    ) {
      throw new FormatError(
        file,
        `weight_map entry "${tensor}" names an unsafe path "${shard}" (must be relative, without "..")`,
      );
    }
    weightMap.set(tensor, shard);
  }
  if (weightMap.size === 0) throw new FormatError(file, `shard index "weight_map" is empty`);
  const files = [...new Set(weightMap.values())].sort();
  return { weightMap, files };
}

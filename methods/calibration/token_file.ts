/**
 * Replayable calibration: windows given as token ids in a file (`--calib-tokens FILE`), so
 * another implementation's exact calibration set (GPTQ's random slices of the stream with no BOS,
 * AWQ's blocks, …) can be replayed and its quantized weights compared weight for weight.
 *
 * Two formats, each `[samples][seqLen]` non-negative integer token ids:
 * - JSON: an array of equally long arrays of integers (`json.dumps(ids.tolist())`);
 * - NPY (`numpy.save`): a C-order 2-D array of `<i4`, `<i8`, `<u2`, `<u4` or `<u8` (as
 *   `torch.Tensor.numpy()` gives for `input_ids`), version 1.0, 2.0 or 3.0.
 *
 * The ids are used exactly as given (no BOS is added). The row's calibration records the file's
 * name, size and sha256, and the sha256 of the ids as every calibration set does.
 *
 * @module
 */

import { FormatError } from "../../core/errors.ts";
import { sha256Hex } from "../../core/hash.ts";
import type { CalibrationSet } from "./set.ts";

/** Token windows read from a file, before they are checked against a model. */
export interface CalibrationTokens {
  /** The file's name (no directory: rows hold no path of the machine). */
  readonly name: string;
  /** sha256 of the file's bytes. */
  readonly sha256: string;
  readonly bytes: number;
  /** `"json"` or `"npy"`. */
  readonly format: "json" | "npy";
  readonly windows: readonly Int32Array[];
}

/** Reads `path` (`.npy` by its magic string, else JSON); throws a `FormatError` naming it. */
export async function readCalibrationTokens(path: string): Promise<CalibrationTokens> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new FormatError(path, `cannot read the calibration token file (${(e as Error).message})`);
  }
  const npy = isNpy(bytes);
  const windows = npy ? parseNpyTokens(bytes, path) : parseJsonTokens(bytes, path);
  return {
    name: path.split(/[\\/]/).pop()!,
    sha256: await sha256Hex(bytes),
    bytes: bytes.length,
    format: npy ? "npy" : "json",
    windows,
  };
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

function isNpy(bytes: Uint8Array): boolean {
  return MAGIC.every((b, i) => bytes[i] === b);
}

/** Checks the windows' shape and turns them into int32 rows. */
function rows(file: string, values: ArrayLike<number>, samples: number, seqLen: number) {
  if (samples < 1 || seqLen < 2) {
    throw new FormatError(
      file,
      `calibration tokens have shape [${samples}, ${seqLen}], expected [samples ≥ 1, seqLen ≥ 2]`,
    );
  }
  const out: Int32Array[] = [];
  for (let s = 0; s < samples; s++) {
    const w = new Int32Array(seqLen);
    for (let t = 0; t < seqLen; t++) {
      const v = values[s * seqLen + t]!;
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
        throw new FormatError(
          file,
          `calibration token [${s}][${t}] is ${v}, expected a non-negative integer id`,
        );
      }
      w[t] = v;
    }
    out.push(w);
  }
  return out;
}

/** Windows from JSON: an array of equally long arrays of integers. */
export function parseJsonTokens(bytes: Uint8Array, file: string): Int32Array[] {
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new FormatError(
      file,
      `is neither an NPY file nor JSON (${(e as Error).message}); expected [[id, …], …]`,
    );
  }
  if (!Array.isArray(data) || data.length === 0 || !data.every(Array.isArray)) {
    throw new FormatError(file, "expected a non-empty JSON array of token-id arrays [[id, …], …]");
  }
  const seqLen = (data[0] as unknown[]).length;
  const bad = data.findIndex((w) => (w as unknown[]).length !== seqLen);
  if (bad >= 0) {
    throw new FormatError(
      file,
      `window ${bad} has ${(data[bad] as unknown[]).length} tokens, window 0 has ${seqLen}: ` +
        `every window must have the same length`,
    );
  }
  const flat = (data as unknown[][]).flat().map((v) => typeof v === "number" ? v : NaN);
  return rows(file, flat, data.length, seqLen);
}

const NPY_TYPES: Record<string, { bytes: number; read: (v: DataView, at: number) => number }> = {
  "<i4": { bytes: 4, read: (v, at) => v.getInt32(at, true) },
  "<u2": { bytes: 2, read: (v, at) => v.getUint16(at, true) },
  "<u4": { bytes: 4, read: (v, at) => v.getUint32(at, true) },
  "<i8": { bytes: 8, read: (v, at) => Number(v.getBigInt64(at, true)) },
  "<u8": { bytes: 8, read: (v, at) => Number(v.getBigUint64(at, true)) },
};

/** Windows from an NPY file: a C-order 2-D integer array (see the module documentation). */
export function parseNpyTokens(bytes: Uint8Array, file: string): Int32Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 10) throw new FormatError(file, "NPY header is truncated");
  const major = bytes[6]!;
  if (major < 1 || major > 3) {
    throw new FormatError(file, `NPY version ${major}.${bytes[7]} is not 1.0, 2.0 or 3.0`);
  }
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = (major === 1 ? 10 : 12) + headerLen;
  if (start > bytes.length) throw new FormatError(file, "NPY header is truncated");
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(major === 1 ? 10 : 12, start),
  );
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shape === undefined) {
    throw new FormatError(
      file,
      `NPY header ${JSON.stringify(header.trim())} lacks descr, fortran_order or shape`,
    );
  }
  const type = NPY_TYPES[descr === "|u2" ? "<u2" : descr];
  if (!type) {
    throw new FormatError(
      file,
      `NPY dtype ${descr} is not a token-id type: expected one of ${
        Object.keys(NPY_TYPES).join(", ")
      }`,
    );
  }
  if (fortran === "True") {
    throw new FormatError(file, "NPY array is in Fortran order, expected C order");
  }
  const dims = shape.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (dims.length !== 2 || !dims.every(Number.isSafeInteger)) {
    throw new FormatError(file, `NPY shape (${shape}) is not 2-D [samples, seqLen]`);
  }
  const [samples, seqLen] = dims as [number, number];
  const need = samples * seqLen * type.bytes;
  if (bytes.length - start !== need) {
    throw new FormatError(
      file,
      `NPY data holds ${
        bytes.length - start
      } bytes, expected ${need} for shape (${samples}, ${seqLen}) of ${descr}`,
    );
  }
  const values = new Float64Array(samples * seqLen);
  for (let i = 0; i < values.length; i++) values[i] = type.read(view, start + i * type.bytes);
  return rows(file, values, samples, seqLen);
}

/**
 * The calibration set of `tokens` for a model with `vocabSize` ids and a context of `maxSeqLen`:
 * throws a `FormatError` naming the file, window and position of the first id outside the
 * vocabulary, or a `RangeError` when the windows exceed the context.
 */
export async function tokenCalibrationSet(
  tokens: CalibrationTokens,
  vocabSize: number,
  maxSeqLen: number,
): Promise<CalibrationSet> {
  const { windows, name } = tokens;
  const seqLen = windows[0]!.length;
  if (seqLen > maxSeqLen) {
    throw new RangeError(
      `--calib-tokens ${name}: windows of ${seqLen} tokens exceed the model's context of ${maxSeqLen}`,
    );
  }
  for (const [s, w] of windows.entries()) {
    const t = w.findIndex((id) => id >= vocabSize);
    if (t >= 0) {
      throw new FormatError(
        name,
        `calibration token [${s}][${t}] is ${w[t]}, outside the model's vocabulary of ${vocabSize}`,
      );
    }
  }
  const ids = new Uint8Array(windows.length * seqLen * 4);
  const view = new DataView(ids.buffer);
  let p = 0;
  for (const w of windows) for (const id of w) view.setInt32((p++) * 4, id, true);
  return {
    spec: { source: `tokens:${name}`, samples: windows.length, seqLen, seed: 0 },
    dataset: { id: `tokens:${name}`, path: name, sha256: tokens.sha256, bytes: tokens.bytes },
    windows,
    offsets: windows.map(() => 0),
    streamTokens: windows.length * seqLen,
    tokensSha256: await sha256Hex(ids),
    protocol: {
      window: "token ids as given in the file (no BOS added)",
      format: tokens.format,
      file: name,
    },
  };
}

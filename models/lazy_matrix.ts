/**
 * Matrices whose float32 values are materialized on access, within the residency budget
 * (`residency.ts`): a checkpoint tensor kept in its stored dtype (bf16, f16 or f32, read from
 * its file when needed) and a quantized weight kept as packed codes. Both are {@linkcode Matrix}
 * values, so every consumer (forward pass, kernels, methods) reads `data` as before, while only
 * the blocks in use occupy memory in float32.
 *
 * @module
 */

import { dequantizePacked, type PackedWeight } from "../core/quantizer.ts";
import { noteMaterialized, residency } from "./residency.ts";
import { roundToStorage, type StorageDtype } from "../core/storage_dtype.ts";
import { readFloat32, type TensorStore } from "./tensor_store.ts";
import type { Matrix } from "./types.ts";

/** A checkpoint tensor `[rows][cols]` read (and converted to float32) from its store on access. */
export class StoredMatrix implements Matrix {
  /** Stored dtype of the tensor (`BF16`, `F16`, `F32`, …). */
  readonly dtype: string;

  /**
   * Rows `rowStart … rowStart + rows − 1` of the tensor `name` of `store`, whose rows have `cols`
   * elements (the caller checks the shape).
   */
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly store: TensorStore,
    readonly name: string,
    readonly rowStart = 0,
  ) {
    this.dtype = store.tensors.get(name)?.dtype ?? "F32";
  }

  /** Float32 values, materialized from the store when not resident. */
  get data(): Float32Array {
    return residency.get(this, () => this.#load());
  }

  /** Float32 values without making them resident: the cached copy, else a fresh one. */
  values(): Float32Array {
    return residency.peek(this) ?? transient(this.#load());
  }

  #load(): Float32Array {
    const start = this.rowStart * this.cols;
    return readFloat32(this.store, this.name, start, start + this.rows * this.cols);
  }
}

/**
 * A quantized weight kept as packed codes; `data` is its dequantization (rounded to `dtype`
 * when that is a 16-bit storage format), materialized on access.
 */
export class PackedMatrix implements Matrix {
  readonly rows: number;
  readonly cols: number;

  /** Wraps `packed`, whose dequantization (rounded to `dtype`) must be the matrix's values. */
  constructor(readonly packed: PackedWeight, readonly dtype: StorageDtype = "F32") {
    this.rows = packed.rows;
    this.cols = packed.cols;
  }

  /** `scale · (code − zero)` for every element, materialized when not resident. */
  get data(): Float32Array {
    return residency.get(this, () => this.#load());
  }

  /** The values without making them resident: the cached copy, else a fresh one. */
  values(): Float32Array {
    return residency.peek(this) ?? transient(this.#load());
  }

  #load(): Float32Array {
    return roundToStorage(dequantizePacked(this.packed), this.dtype);
  }
}

/** Notes a one-off copy (see `noteMaterialized`) and returns it. */
function transient(a: Float32Array): Float32Array {
  noteMaterialized(a.byteLength);
  return a;
}

/** True when `m` materializes its values on access (not a plain in-memory matrix). */
export function isLazy(m: Matrix): boolean {
  return m instanceof StoredMatrix || m instanceof PackedMatrix;
}

/**
 * `m`'s float32 values for a one-off copy (a kernel's weight panels): a lazy matrix's without
 * making them resident, a plain matrix's `data`.
 */
export function valuesOf(m: Matrix): Float32Array {
  return m instanceof StoredMatrix || m instanceof PackedMatrix ? m.values() : m.data;
}

/**
 * Row `i` of `m` (`cols` values): a streamed checkpoint tensor's read alone from its store when
 * it is not resident (an embedding lookup touches a few thousand of its rows, not all of them),
 * otherwise a view of its values.
 */
export function matrixRow(m: Matrix, i: number): Float32Array {
  if (m instanceof StoredMatrix && !residency.peek(m)) {
    const at = (m.rowStart + i) * m.cols;
    return readFloat32(m.store, m.name, at, at + m.cols);
  }
  return m.data.subarray(i * m.cols, (i + 1) * m.cols);
}

/** A plain matrix with the same shape as `m` and the given values. */
export function withData(m: Matrix, data: Float32Array): Matrix {
  if (data.length !== m.rows * m.cols) {
    throw new RangeError(`withData: ${data.length} values for a ${m.rows}×${m.cols} matrix`);
  }
  return { rows: m.rows, cols: m.cols, data };
}

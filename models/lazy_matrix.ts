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
import { residency } from "./residency.ts";
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
    return residency.get(
      this,
      () =>
        readFloat32(
          this.store,
          this.name,
          this.rowStart * this.cols,
          (this.rowStart + this.rows) * this.cols,
        ),
    );
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
    return residency.get(this, () => roundToStorage(dequantizePacked(this.packed), this.dtype));
  }
}

/** True when `m` materializes its values on access (not a plain in-memory matrix). */
export function isLazy(m: Matrix): boolean {
  return m instanceof StoredMatrix || m instanceof PackedMatrix;
}

/** A plain matrix with the same shape as `m` and the given values. */
export function withData(m: Matrix, data: Float32Array): Matrix {
  if (data.length !== m.rows * m.cols) {
    throw new RangeError(`withData: ${data.length} values for a ${m.rows}×${m.cols} matrix`);
  }
  return { rows: m.rows, cols: m.cols, data };
}

/**
 * Named raw tensors, the currency of the export codecs: a dtype name (safetensors spelling), a
 * shape and the little-endian bytes, plus the float16 / bfloat16 conversions and the scale
 * rounding report the codecs share.
 *
 * Codecs return `Record<string, RawTensor>` keyed by the suffix the checkpoint format uses
 * (`qweight`, `scales`, …); the model-level exporter prefixes the module name and hands them to
 * the safetensors writer or the ONNX initializer builder unchanged. Readers accept
 * {@linkcode TensorLike}, which both those outputs and `parseSafetensors` entries satisfy.
 *
 * @module
 */

/** Safetensors dtype names the writer and the readers know. */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** Bytes per element of each {@linkcode SafetensorsDtype}. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** A tensor ready to be written: its bytes are the little-endian element values, row-major. */
export interface RawTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Exactly `product(shape) × DTYPE_BYTES[dtype]` bytes (any typed array or DataView over them). */
  readonly data: ArrayBufferView;
}

/** What the readers accept: a {@linkcode RawTensor} or a parsed safetensors entry. */
export interface TensorLike {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Throws unless the host is little-endian (typed-array bytes are written as they lie in memory). */
export function assertLittleEndianHost(): void {
  if (!LITTLE_ENDIAN_HOST) {
    throw new Error(
      "lowbit export: writing typed arrays as little-endian needs a little-endian host",
    );
  }
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The bytes of a view (no copy). */
export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * Builds a {@linkcode RawTensor}, checking the shape and the byte length.
 *
 * @throws {RangeError} Naming `name` when a dimension is not a non-negative integer or the data
 *   does not hold exactly `product(shape)` elements of `dtype`.
 */
export function rawTensor(
  name: string,
  dtype: SafetensorsDtype,
  shape: readonly number[],
  data: ArrayBufferView,
): RawTensor {
  checkRawTensor(name, { dtype, shape, data });
  return { dtype, shape: [...shape], data };
}

/** Throws a `RangeError` naming `name` unless `t` is a consistent {@linkcode RawTensor}. */
export function checkRawTensor(name: string, t: RawTensor): void {
  const size = DTYPE_BYTES[t.dtype];
  if (size === undefined) {
    throw new RangeError(
      `tensor "${name}": unknown dtype "${t.dtype}" (known: ${
        Object.keys(DTYPE_BYTES).join(", ")
      })`,
    );
  }
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(
      `tensor "${name}": shape [${t.shape.join(", ")}] must hold non-negative integers`,
    );
  }
  const want = elementCount(t.shape) * size;
  if (t.data.byteLength !== want) {
    throw new RangeError(
      `tensor "${name}": ${t.data.byteLength} bytes, but shape [${
        t.shape.join(", ")
      }] of ${t.dtype} needs ${want}`,
    );
  }
}

/**
 * Reads the bytes of a tensor as the given dtype into a fresh typed array (works on unaligned
 * views, such as entries of a parsed safetensors file).
 */
function view(t: TensorLike): DataView {
  return new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Checks a tensor handed to a reader: its dtype is one of `dtypes` and its shape is `shape`
 * (`-1` matches any length); throws a `RangeError` naming `name` and what was expected.
 */
export function expectTensor(
  name: string,
  t: TensorLike | undefined,
  dtypes: readonly string[],
  shape: readonly number[],
): TensorLike {
  if (t === undefined) throw new RangeError(`tensor "${name}" is missing`);
  if (!dtypes.includes(t.dtype)) {
    throw new RangeError(`tensor "${name}": dtype ${t.dtype}, expected ${dtypes.join(" or ")}`);
  }
  const ok = t.shape.length === shape.length && shape.every((d, i) => d < 0 || t.shape[i] === d);
  if (!ok) {
    throw new RangeError(
      `tensor "${name}": shape [${t.shape.join(", ")}], expected [${
        shape.map((d) => (d < 0 ? "*" : String(d))).join(", ")
      }]`,
    );
  }
  const size = DTYPE_BYTES[t.dtype as SafetensorsDtype];
  const want = elementCount(t.shape) * size;
  if (t.data.byteLength !== want) {
    throw new RangeError(
      `tensor "${name}": ${t.data.byteLength} bytes, but shape [${
        t.shape.join(", ")
      }] of ${t.dtype} needs ${want}`,
    );
  }
  return t;
}

/** The values of an `I32` / `U32` tensor as unsigned 32-bit words (bit patterns kept). */
export function readWords(t: TensorLike): Uint32Array {
  const v = view(t);
  const out = new Uint32Array(t.data.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = v.getUint32(4 * i, true);
  return out;
}

/** The values of an integer tensor (`I64`, `I32`, `U8`, …) as numbers (int64 must be safe). */
export function readIntegers(name: string, t: TensorLike): number[] {
  const v = view(t);
  const n = elementCount(t.shape);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    switch (t.dtype) {
      case "I64": {
        const x = v.getBigInt64(8 * i, true);
        if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw new RangeError(`tensor "${name}": int64 value ${x} at ${i} is not a safe integer`);
        }
        out[i] = Number(x);
        break;
      }
      case "I32":
        out[i] = v.getInt32(4 * i, true);
        break;
      case "U32":
        out[i] = v.getUint32(4 * i, true);
        break;
      case "I16":
        out[i] = v.getInt16(2 * i, true);
        break;
      case "U16":
        out[i] = v.getUint16(2 * i, true);
        break;
      case "I8":
        out[i] = v.getInt8(i);
        break;
      case "U8":
        out[i] = v.getUint8(i);
        break;
      default:
        throw new RangeError(`tensor "${name}": dtype ${t.dtype} is not an integer dtype`);
    }
  }
  return out;
}

/** The values of an `F32`, `F16` or `BF16` tensor as float32. */
export function readFloats(name: string, t: TensorLike): Float32Array {
  const v = view(t);
  const n = elementCount(t.shape);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case "F32":
      for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
      break;
    case "F16":
      for (let i = 0; i < n; i++) out[i] = v.getFloat16(2 * i, true);
      break;
    case "BF16": {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = v.getUint16(2 * i, true) << 16;
      break;
    }
    default:
      throw new RangeError(`tensor "${name}": dtype ${t.dtype}, expected F32, F16 or BF16`);
  }
  return out;
}

/** Float dtypes the codecs can store scales and biases in. */
export type FloatDtype = "F32" | "F16" | "BF16";

/** bfloat16 bits of a float32 value, rounded to nearest-even (NaN kept quiet). */
export function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float32 value of bfloat16 bits. */
export function bf16Value(bits: number): number {
  return new Float32Array(new Uint32Array([(bits & 0xffff) << 16]).buffer)[0]!;
}

/** `x` rounded to the nearest value of `dtype` (ties to even), as a float32-representable number. */
export function roundToDtype(x: number, dtype: FloatDtype): number {
  if (dtype === "F32") return Math.fround(x);
  if (dtype === "F16") return Math.f16round(x);
  return bf16Value(bf16Bits(x));
}

/** A float tensor of `dtype` holding `values` rounded to nearest-even. */
export function floatTensor(
  name: string,
  values: ArrayLike<number>,
  shape: readonly number[],
  dtype: FloatDtype,
): RawTensor {
  let data: ArrayBufferView;
  if (dtype === "F32") data = Float32Array.from(values);
  else if (dtype === "F16") data = Float16Array.from(values);
  else {
    const bits = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) bits[i] = bf16Bits(values[i]!);
    data = bits;
  }
  return rawTensor(name, dtype, shape, data);
}

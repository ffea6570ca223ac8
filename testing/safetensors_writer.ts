/**
 * Test helper: writes safetensors files (F32, F16 or BF16) from float32 tensors, for loader tests
 * that need sharded or reduced-precision variants of the fixtures.
 *
 * @module
 */

/** A tensor to write: its shape and float32 values. */
export interface TensorIn {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** bf16 bits of a float32 value, rounded to nearest-even (NaN kept quiet). */
export function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Serialises tensors (in the given order) as a safetensors file of one dtype. */
export function writeSafetensors(
  tensors: ReadonlyMap<string, TensorIn>,
  dtype: "F32" | "F16" | "BF16" = "F32",
): Uint8Array {
  const size = dtype === "F32" ? 4 : 2;
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    const bytes = t.data.length * size;
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let head = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (head.length % 8)) % 8; // keep the data 8-byte aligned, as writers do
  head = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(pad));
  const out = new Uint8Array(8 + head.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let p = 8 + head.length;
  for (const t of tensors.values()) {
    for (const x of t.data) {
      if (dtype === "F32") view.setFloat32(p, x, true);
      else if (dtype === "F16") view.setFloat16(p, x, true);
      else view.setUint16(p, bf16Bits(x), true);
      p += size;
    }
  }
  return out;
}

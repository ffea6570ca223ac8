/**
 * GGUF / ggml block formats Q4_0 and Q8_0: quantize and dequantize rows exactly as llama.cpp's
 * reference functions (`ggml/src/ggml-quants.c`: `quantize_row_q4_0_ref`, `quantize_row_q8_0_ref`,
 * `dequantize_row_q4_0`, `dequantize_row_q8_0`), with float32 arithmetic emulated step by step
 * (`Math.fround` after every operation the C code does in `float`) and the block scale `d`
 * rounded to float16 (nearest-even, as `GGML_FP32_TO_FP16`).
 *
 * - Q4_0: 32 weights → 18 bytes: `d` (f16, little-endian) then `qs[16]`. `d = max / −8` where
 *   `max` is the signed value of largest magnitude (the first one on ties), `id = 1/d` (0 when
 *   d = 0), `q = min(15, (int8)(x·id + 8.5))` (round half up by truncation, not half-even),
 *   `qs[j] = q[j] | q[j + 16] << 4` (low nibbles hold 0–15, high nibbles 16–31).
 *   Dequant `(q − 8)·d`.
 * - Q8_0: 32 weights → 34 bytes: `d` (f16) then `qs[32]` int8. `d = amax / 127`,
 *   `q = roundf(x·id)` (half away from zero). Dequant `q·d`.
 *
 * Both are symmetric absmax formats without a zero point: exporting our codes into them is a
 * re-quantization of the float weights, not a repack. No GGUF file writer is provided.
 *
 * @module
 */

/** Weights per Q4_0 / Q8_0 block. */
export const GGML_BLOCK = 32;
/** Bytes per Q4_0 block. */
export const Q4_0_BYTES = 18;
/** Bytes per Q8_0 block. */
export const Q8_0_BYTES = 34;

const f = Math.fround;

function blocks(what: string, k: number): number {
  if (!Number.isInteger(k) || k < 0 || k % GGML_BLOCK !== 0) {
    throw new RangeError(`${what}: ${k} values is not a multiple of the block size ${GGML_BLOCK}`);
  }
  return k / GGML_BLOCK;
}

/** C's `(int8_t)` conversion of a float in range: truncation toward zero, wrapped to 8 bits. */
function toInt8(v: number): number {
  return (Math.trunc(v) << 24) >> 24;
}

/** C's `roundf`: half away from zero. */
function roundf(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** `quantize_row_q4_0_ref`: `x.length / 32` blocks of 18 bytes. */
export function quantizeRowQ4_0(x: Float32Array): Uint8Array {
  const nb = blocks("quantizeRowQ4_0", x.length);
  const out = new Uint8Array(nb * Q4_0_BYTES);
  const view = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0, max = 0;
    for (let j = 0; j < GGML_BLOCK; j++) {
      const v = x[i * GGML_BLOCK + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f(max / -8);
    const id = d !== 0 ? f(1 / d) : 0;
    view.setFloat16(i * Q4_0_BYTES, d, true);
    for (let j = 0; j < GGML_BLOCK / 2; j++) {
      const x0 = f(x[i * GGML_BLOCK + j]! * id);
      const x1 = f(x[i * GGML_BLOCK + GGML_BLOCK / 2 + j]! * id);
      const q0 = Math.min(15, toInt8(f(x0 + 8.5))) & 0xff;
      const q1 = Math.min(15, toInt8(f(x1 + 8.5))) & 0xff;
      out[i * Q4_0_BYTES + 2 + j] = (q0 | (q1 << 4)) & 0xff;
    }
  }
  return out;
}

/** `dequantize_row_q4_0`: `k` weights from `k / 32` Q4_0 blocks. */
export function dequantizeRowQ4_0(data: Uint8Array, k: number): Float32Array {
  const nb = blocks("dequantizeRowQ4_0", k);
  if (data.length < nb * Q4_0_BYTES) {
    throw new RangeError(
      `dequantizeRowQ4_0: ${data.length} bytes, ${nb} blocks need ${nb * Q4_0_BYTES}`,
    );
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const y = new Float32Array(k);
  for (let i = 0; i < nb; i++) {
    const d = view.getFloat16(i * Q4_0_BYTES, true);
    for (let j = 0; j < GGML_BLOCK / 2; j++) {
      const b = data[i * Q4_0_BYTES + 2 + j]!;
      y[i * GGML_BLOCK + j] = f(((b & 0x0f) - 8) * d);
      y[i * GGML_BLOCK + GGML_BLOCK / 2 + j] = f(((b >> 4) - 8) * d);
    }
  }
  return y;
}

/** `quantize_row_q8_0_ref`: `x.length / 32` blocks of 34 bytes. */
export function quantizeRowQ8_0(x: Float32Array): Uint8Array {
  const nb = blocks("quantizeRowQ8_0", x.length);
  const out = new Uint8Array(nb * Q8_0_BYTES);
  const view = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < GGML_BLOCK; j++) amax = Math.max(amax, Math.abs(x[i * GGML_BLOCK + j]!));
    const d = f(amax / 127);
    const id = d !== 0 ? f(1 / d) : 0;
    view.setFloat16(i * Q8_0_BYTES, d, true);
    for (let j = 0; j < GGML_BLOCK; j++) {
      view.setInt8(i * Q8_0_BYTES + 2 + j, roundf(f(x[i * GGML_BLOCK + j]! * id)));
    }
  }
  return out;
}

/** `dequantize_row_q8_0`: `k` weights from `k / 32` Q8_0 blocks. */
export function dequantizeRowQ8_0(data: Uint8Array, k: number): Float32Array {
  const nb = blocks("dequantizeRowQ8_0", k);
  if (data.length < nb * Q8_0_BYTES) {
    throw new RangeError(
      `dequantizeRowQ8_0: ${data.length} bytes, ${nb} blocks need ${nb * Q8_0_BYTES}`,
    );
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const y = new Float32Array(k);
  for (let i = 0; i < nb; i++) {
    const d = view.getFloat16(i * Q8_0_BYTES, true);
    for (let j = 0; j < GGML_BLOCK; j++) {
      y[i * GGML_BLOCK + j] = f(view.getInt8(i * Q8_0_BYTES + 2 + j) * d);
    }
  }
  return y;
}

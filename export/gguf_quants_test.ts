import assert from "node:assert/strict";
import { randomMatrix } from "../testing/random.ts";
import {
  dequantizeRowQ4_0,
  dequantizeRowQ8_0,
  quantizeRowQ4_0,
  quantizeRowQ8_0,
} from "./gguf_quants.ts";

Deno.test("quantizeRowQ4_0(): hand case x_j = j − 16: d = 2, round half up by truncation, split nibbles", () => {
  const x = Float32Array.from({ length: 32 }, (_, j) => j - 16);
  const b = quantizeRowQ4_0(x);
  assert.equal(b.length, 18);
  // max = −16 (largest magnitude) → d = −16 / −8 = 2 → float16 0x4000; id = 0.5.
  assert.deepEqual([b[0], b[1]], [0x00, 0x40]);
  // q_j = trunc((j − 16)·0.5 + 8.5): j = 0 → 0, j = 1 → 1 (−7.5 rounds up, not to even −8),
  // j = 16 → 8, j = 17 → 9, j = 15 → 8, j = 31 → 16 → clipped to 15.
  assert.equal(b[2], 0x80); // q0 = 0, q16 = 8
  assert.equal(b[3], 0x91); // q1 = 1, q17 = 9
  assert.equal(b[17], 0xf8); // q15 = 8, q31 = 15
  const y = dequantizeRowQ4_0(b, 32);
  assert.deepEqual(Array.from(y.slice(0, 4)), [-16, -14, -14, -12]); // (q − 8)·2 for q = 0, 1, 1, 2
  assert.equal(y[31], 14); // (15 − 8)·2: the clipped top value
});

Deno.test("quantizeRowQ8_0(): hand case with d = 1: roundf rounds halves away from zero", () => {
  const x = new Float32Array(32);
  x.set([127, 2.5, -2.5, 0.5, -0.5, 1.5, -126.5]);
  const b = quantizeRowQ8_0(x);
  assert.equal(b.length, 34);
  assert.deepEqual([b[0], b[1]], [0x00, 0x3c]); // d = 127/127 = 1 → float16 0x3C00
  const q = Array.from(new Int8Array(b.buffer, 2, 7));
  assert.deepEqual(q, [127, 3, -3, 1, -1, 2, -127]);
  assert.deepEqual(Array.from(dequantizeRowQ8_0(b, 32).slice(0, 7)), [127, 3, -3, 1, -1, 2, -127]);
});

/** A TypeScript port of ggml's `dequantize_row_q4_0` (block by block, as the C code walks it). */
function refDequantQ4_0(bytes: Uint8Array, k: number): Float32Array {
  const y = new Float32Array(k);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < k / 32; i++) {
    const base = i * 18;
    const d = v.getFloat16(base, true);
    for (let j = 0; j < 16; j++) {
      const x0 = (bytes[base + 2 + j]! & 0x0f) - 8;
      const x1 = (bytes[base + 2 + j]! >> 4) - 8;
      y[i * 32 + j] = x0 * d;
      y[i * 32 + j + 16] = x1 * d;
    }
  }
  return y;
}

/** A TypeScript port of ggml's `dequantize_row_q8_0`. */
function refDequantQ8_0(bytes: Uint8Array, k: number): Float32Array {
  const y = new Float32Array(k);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < k / 32; i++) {
    const d = v.getFloat16(i * 34, true);
    for (let j = 0; j < 32; j++) y[i * 32 + j] = v.getInt8(i * 34 + 2 + j) * d;
  }
  return y;
}

Deno.test("GGUF oracle §5.10 (first half): pack → dequant equals ports of dequantize_row_q4_0/q8_0; errors stay near d/2", () => {
  const k = 32 * 40;
  const x = randomMatrix(k, 77, 3);
  x.fill(0, 64, 96); // an all-zero block: d = 0, id = 0
  const q4 = quantizeRowQ4_0(x);
  const y4 = dequantizeRowQ4_0(q4, k);
  assert.deepEqual(y4, refDequantQ4_0(q4, k));
  const q8 = quantizeRowQ8_0(x);
  const y8 = dequantizeRowQ8_0(q8, k);
  assert.deepEqual(y8, refDequantQ8_0(q8, k));
  for (let i = 0; i < k / 32; i++) {
    const d4 = Math.abs(new DataView(q4.buffer).getFloat16(i * 18, true));
    const d8 = new DataView(q8.buffer).getFloat16(i * 34, true);
    for (let j = 0; j < 32; j++) {
      const t = i * 32 + j;
      // Q4_0's grid is [−8, 7]·d with the extreme at −8·d = max: values within d/2 of a level,
      // except the clipped side (+8·d → 7·d), up to d (plus float16 rounding of d).
      assert.ok(Math.abs(y4[t]! - x[t]!) <= d4 * 1.01 + 1e-6, `q4 block ${i} j ${j}`);
      // Q8_0: d/2, plus |q|·|d − f16(d)| ≤ 127·2^−11·d since codes use the float32 d.
      assert.ok(Math.abs(y8[t]! - x[t]!) <= d8 * 0.57 + 1e-6, `q8 block ${i} j ${j}`);
    }
  }
  // An all-zero block: C computes d = 0.0f / −8 = −0.0f, stored as float16 0x8000; values ±0.
  assert.deepEqual([q4[2 * 18], q4[2 * 18 + 1]], [0x00, 0x80]);
  assert.ok(y4.slice(64, 96).every((v) => v === 0));
  assert.throws(
    () => quantizeRowQ4_0(new Float32Array(33)),
    /33 values is not a multiple of the block size 32/,
  );
  assert.throws(() => dequantizeRowQ8_0(new Uint8Array(10), 32), /10 bytes, 1 blocks need 34/);
});

import assert from "node:assert/strict";
import { dequantizePacked, type PackedWeight, quantizeMatrix } from "../core/quantizer.ts";
import { randomMatrix } from "../testing/random.ts";
import { exportMatMulNBits, importMatMulNBits, matMulNBitsBlockSize } from "./matmulnbits.ts";

/** A hand-built 1-row packed weight from codes (our layout, built independently of the codec). */
function oneRow(
  bits: number,
  codes: number[],
  groupSize: number,
  scales: number[],
  zeros: number[],
): PackedWeight {
  const per = Math.floor(32 / bits);
  const words = new Uint32Array(Math.ceil(codes.length / per));
  codes.forEach((
    q,
    c,
  ) => (words[Math.floor(c / per)] = (words[Math.floor(c / per)]! + q * 2 ** ((c % per) * bits)) >>>
    0)
  );
  return {
    bits,
    rows: 1,
    cols: codes.length,
    groupSize,
    groupsPerRow: scales.length,
    wordsPerRow: words.length,
    words,
    scales: Float32Array.from(scales),
    zeros: Uint8Array.from(zeros),
  };
}

Deno.test("exportMatMulNBits(): 4-bit hand case, even k in the low nibble; odd k_blocks leaves a pad nibble in zero_points", () => {
  // K = 48 in blocks of 16 → k_blocks 3, blob 8 bytes. Codes k mod 16; zeros 1, 2, 3.
  const codes = Array.from({ length: 48 }, (_, k) => k % 16);
  const p = oneRow(4, codes, 16, [0.5, 0.25, 2], [1, 2, 3]);
  const w = exportMatMulNBits(p);
  assert.deepEqual(w.attributes, { K: 48, N: 1, bits: 4, block_size: 16 });
  assert.deepEqual(w.tensors.B.shape, [1, 3, 8]);
  const block = [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe];
  assert.deepEqual(Array.from(w.tensors.B.data as Uint8Array), [...block, ...block, ...block]);
  assert.deepEqual(w.tensors.scales.shape, [3]);
  assert.deepEqual(Array.from(w.tensors.scales.data as Float32Array), [0.5, 0.25, 2]);
  // ⌈3·4/8⌉ = 2 bytes per row: 0x21 (blocks 0, 1), 0x03 (block 2 and the pad nibble).
  assert.deepEqual(w.tensors.zero_points!.shape, [2]);
  assert.deepEqual(Array.from(w.tensors.zero_points!.data as Uint8Array), [0x21, 0x03]);
});

Deno.test("exportMatMulNBits(): per-channel pads K to a power of two with each row's zero code; 2- and 8-bit layouts", () => {
  // K = 20, one group: block 32, 12 padded positions take the zero code 5.
  const codes = Array.from({ length: 20 }, (_, k) => k % 16);
  const p = oneRow(4, codes, 20, [1], [5]);
  assert.equal(matMulNBitsBlockSize(p), 32);
  const w = exportMatMulNBits(p);
  const b = Array.from(w.tensors.B.data as Uint8Array);
  assert.deepEqual(b.slice(0, 10), [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x10, 0x32]);
  assert.deepEqual(b.slice(10), [0x55, 0x55, 0x55, 0x55, 0x55, 0x55]);
  // 2 bits: k & 3 selects the bit pair. Codes 0,1,2,3 → 0b11100100 = 0xE4.
  const two = exportMatMulNBits(
    oneRow(2, Array.from({ length: 16 }, (_, k) => k % 4), 16, [1], [2]),
  );
  assert.deepEqual(Array.from(two.tensors.B.data as Uint8Array), [0xe4, 0xe4, 0xe4, 0xe4]);
  assert.equal(two.tensors.zero_points, undefined, "zero 2 = 2^(2−1) is the default");
  // 8 bits: one byte per code.
  const eight = exportMatMulNBits(
    oneRow(8, Array.from({ length: 16 }, (_, k) => 200 + k), 16, [1], [7]),
  );
  assert.deepEqual(
    Array.from(eight.tensors.B.data as Uint8Array),
    Array.from({ length: 16 }, (_, k) => 200 + k),
  );
  assert.deepEqual(Array.from(eight.tensors.zero_points!.data as Uint8Array), [7]);
});

Deno.test("importMatMulNBits(): export → import is the same dequantized weight (2/4/8 bits, blocks 16/32/128, per-channel)", () => {
  for (const bits of [2, 4, 8]) {
    for (const [N, K, g] of [[5, 96, 32], [3, 256, 128], [4, 40, 16], [6, 100, 0]] as const) {
      for (const sym of [false, true]) {
        const spec = g === 0
          ? { bits, granularity: "channel" as const, symmetric: sym }
          : { bits, granularity: "group" as const, groupSize: g, symmetric: sym };
        const p = quantizeMatrix(randomMatrix(N * K, bits + K + g), N, K, spec).packed;
        const w = exportMatMulNBits(p);
        assert.equal(w.tensors.zero_points === undefined, sym);
        const back = importMatMulNBits({ ...w.tensors }, w.attributes);
        assert.deepEqual(
          dequantizePacked(back),
          dequantizePacked(p),
          `b${bits} K${K} g${g} sym${sym}`,
        );
      }
    }
  }
});

Deno.test("MatMulNBits: clear refusals", () => {
  const g24 = quantizeMatrix(randomMatrix(2 * 48, 1), 2, 48, {
    bits: 4,
    granularity: "group",
    groupSize: 24,
    symmetric: false,
  })
    .packed;
  assert.throws(
    () => exportMatMulNBits(g24, { name: "up_proj" }),
    /up_proj: MatMulNBits block_size must be a power of two ≥ 16 and equal the group size; group size 24 is not/,
  );
  const g32 = quantizeMatrix(randomMatrix(2 * 64, 1), 2, 64, {
    bits: 4,
    granularity: "group",
    groupSize: 32,
    symmetric: false,
  })
    .packed;
  assert.throws(
    () =>
      exportMatMulNBits({ ...g32, groupIndex: Uint32Array.from({ length: 64 }, (_, c) => c % 2) }),
    /act-order groups need MatMulNBits' deprecated g_idx input/,
  );
  assert.throws(
    () => exportMatMulNBits(g32, { zeroPoints: "never" }),
    /zero points are needed \(not all 8\)/,
  );
  const b3 = quantizeMatrix(randomMatrix(2 * 64, 1), 2, 64, {
    bits: 3,
    granularity: "channel",
    symmetric: false,
  }).packed;
  assert.throws(() => exportMatMulNBits(b3), /MatMulNBits packs 2, 4 or 8 bits, got 3/);
  const w = exportMatMulNBits(g32);
  assert.throws(
    () => importMatMulNBits({ ...w.tensors, scales: undefined }, w.attributes, "q"),
    /tensor "q\.scales" is missing/,
  );
  assert.throws(
    () => importMatMulNBits({ ...w.tensors }, { ...w.attributes, block_size: 16 }, "q"),
    /tensor "q\.scales": 4 elements \(shape \[4\]\), expected 8/,
  );
  assert.throws(
    () => importMatMulNBits({ ...w.tensors }, { ...w.attributes, block_size: 48 }),
    /block_size 48 is not a power of two/,
  );
});

import assert from "node:assert/strict";
import { randomMatrix } from "../testing/random.ts";
import {
  bitsPerWeight,
  codesPerWord,
  dequantizePacked,
  groupParams,
  packCodes,
  quantizeMatrix,
  type QuantizerSpec,
  roundHalfEven,
  unpackCodes,
} from "./quantizer.ts";

Deno.test("roundHalfEven() rounds ties to the even neighbour like torch.round", () => {
  const cases: [number, number][] = [
    [0.5, 0],
    [1.5, 2],
    [2.5, 2],
    [-0.5, -0],
    [-1.5, -2],
    [
      -2.5,
      -2,
    ],
    [2.4999, 2],
    [2.5001, 3],
    [-2.5001, -3],
    [7, 7],
  ];
  for (const [x, want] of cases) assert.equal(roundHalfEven(x) + 0, want + 0, `round(${x})`);
});

Deno.test("groupParams() asymmetric: hand-computed 2-bit case with zero forced into range", () => {
  // values in [0.5, 2]: range becomes [0, 2], scale = 2/3, zero = round(0) = 0
  const p = groupParams([0.5, 1, 2], 0, 3, 2, false);
  assert.equal(p.scale, Math.fround(2 / 3));
  assert.equal(p.zero, 0);
  // values in [-1, 2]: scale = 3/3 = 1, zero = round(1/1) = 1
  const p2 = groupParams([-1, 0.2, 2], 0, 3, 2, false);
  assert.equal(p2.scale, 1);
  assert.equal(p2.zero, 1);
});

Deno.test("groupParams() all-zero group: asymmetric uses range (-1, 1), symmetric scale 1", () => {
  const a = groupParams([0, 0, 0, 0], 0, 4, 4, false);
  assert.equal(a.scale, Math.fround(2 / 15));
  // zero = round(1 / scale) with the float32 scale 0.13333334: 7.4999996 rounds to 7 (as in
  // torch's float32 arithmetic), not to 8 as exact 7.5 would.
  assert.equal(a.zero, 7);
  const s = groupParams([0, 0], 0, 2, 4, true);
  assert.equal(s.scale, 1);
  assert.equal(s.zero, 8);
});

Deno.test("groupParams() symmetric absmax: scale = max|x| / (2^(b-1) - 1)", () => {
  const p = groupParams([-3, 1, 2], 0, 3, 3, true);
  assert.equal(p.scale, 1); // 3 / (4 - 1)
  assert.equal(p.zero, 4);
});

const SPECS: QuantizerSpec[] = [];
for (const bits of [2, 3, 4, 5, 6, 7, 8]) {
  SPECS.push({ bits, granularity: "channel", symmetric: false });
  SPECS.push({ bits, granularity: "group", groupSize: 16, symmetric: false });
  SPECS.push({ bits, granularity: "tensor", symmetric: true });
  SPECS.push({ bits, granularity: "group", groupSize: 8, symmetric: true });
}

Deno.test("quantizeMatrix(): error ≤ scale/2 inside the range, codes in [0, 2^b − 1]", () => {
  const rows = 12, cols = 48;
  const w = randomMatrix(rows * cols, 7, 2);
  for (const spec of SPECS) {
    const { packed, dequantized } = quantizeMatrix(w, rows, cols, spec);
    const codes = unpackCodes(packed);
    const g = packed.groupSize;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const gi = r * packed.groupsPerRow + Math.floor(c / g);
        const s = packed.scales[gi]!;
        assert.ok(codes[i]! <= 2 ** spec.bits - 1);
        // Every value lies inside its group's range here (absmax / min-max ranges cover the group).
        assert.ok(
          Math.abs(w[i]! - dequantized[i]!) <= s / 2 + 1e-6 * s,
          `${JSON.stringify(spec)} (${r},${c}): |${w[i]} - ${dequantized[i]}| > ${s}/2`,
        );
      }
    }
  }
});

Deno.test("quantizeMatrix(): more bits never increase the squared error (per-channel)", () => {
  const w = randomMatrix(16 * 64, 3);
  let prev = Infinity;
  for (let bits = 2; bits <= 8; bits++) {
    const { dequantized } = quantizeMatrix(w, 16, 64, {
      bits,
      granularity: "channel",
      symmetric: false,
    });
    let e = 0;
    for (let i = 0; i < w.length; i++) e += (w[i]! - dequantized[i]!) ** 2;
    assert.ok(e < prev, `bits ${bits}: error ${e} not below ${prev}`);
    prev = e;
  }
});

Deno.test("quantizeMatrix(): groups are contiguous input columns with their own scales", () => {
  // Row 0: first group tiny values, second group large values. Per-group scales must differ by the
  // ratio of the ranges; per-channel would give both groups one scale.
  const cols = 8;
  const w = new Float32Array([0.1, 0.2, 0.3, 0.4, 10, 20, 30, 40]);
  const { packed, dequantized } = quantizeMatrix(w, 1, cols, {
    bits: 4,
    granularity: "group",
    groupSize: 4,
    symmetric: false,
  });
  assert.equal(packed.groupsPerRow, 2);
  assert.equal(packed.scales[0], Math.fround(0.4 / 15));
  assert.equal(packed.scales[1], Math.fround(40 / 15));
  // The small group is reproduced to within its own small step.
  for (let c = 0; c < 4; c++) assert.ok(Math.abs(dequantized[c]! - w[c]!) <= 0.4 / 30 + 1e-7);
});

Deno.test("quantizeMatrix(): an all-zero row dequantizes to exact zeros", () => {
  const w = new Float32Array(2 * 8);
  w.set([1, -2, 3, -4, 5, -6, 7, -8], 8);
  for (const symmetric of [false, true]) {
    const { dequantized } = quantizeMatrix(w, 2, 8, { bits: 3, granularity: "channel", symmetric });
    for (let c = 0; c < 8; c++) assert.equal(dequantized[c], 0);
  }
});

Deno.test("quantizeMatrix(): rejects impossible bits and non-finite weights", () => {
  const w = new Float32Array(2 * 12);
  for (const bits of [1, 9, 16, 2.5, NaN]) {
    assert.throws(
      () => quantizeMatrix(w, 2, 12, { bits, granularity: "channel", symmetric: false }),
      (e: unknown) =>
        e instanceof RangeError && /bits must be an integer in \[2, 8\]/.test(e.message),
    );
  }
  w[13] = NaN;
  assert.throws(
    () => quantizeMatrix(w, 2, 12, { bits: 4, granularity: "channel", symmetric: false }),
    /value NaN at row 1, column 1/,
  );
});

Deno.test("quantizeMatrix(): a group size that does not divide the row leaves a shorter last group", () => {
  // 12 columns, g = 5: groups [0, 5), [5, 10), [10, 12). Each group's own max sets its scale.
  const w = new Float32Array([1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 0.5, 0.75]);
  const { packed, dequantized } = quantizeMatrix(w, 1, 12, {
    bits: 8,
    granularity: "group",
    groupSize: 5,
    symmetric: false,
  });
  assert.equal(packed.groupsPerRow, 3);
  assert.deepEqual([...packed.scales], [5 / 255, 50 / 255, 0.75 / 255].map(Math.fround));
  // 0.75 is the top of the last group's range: reproduced to float32 precision.
  assert.ok(Math.abs(dequantized[11]! - 0.75) < 1e-6);
  assert.deepEqual(dequantizePacked(packed), dequantized);
});

Deno.test("packCodes()/unpackCodes(): pack∘unpack is the identity for every bit-width", () => {
  for (let bits = 2; bits <= 8; bits++) {
    const rows = 5, cols = 37; // 37 is not a multiple of any codes-per-word
    const codes = new Uint8Array(rows * cols);
    let s = 12345;
    for (let i = 0; i < codes.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      codes[i] = (s >>> 16) % 2 ** bits;
    }
    codes[0] = 2 ** bits - 1; // extremes present
    codes[1] = 0;
    const p = packCodes(codes, rows, cols, bits, {
      groupSize: cols,
      scales: new Float32Array(rows).fill(1),
      zeros: new Uint8Array(rows),
    });
    assert.equal(p.wordsPerRow, Math.ceil(cols / codesPerWord(bits)));
    assert.deepEqual(unpackCodes(p), codes);
  }
});

Deno.test("packCodes(): 4-bit codes sit little-endian, 8 per word", () => {
  const codes = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const p = packCodes(codes, 1, 8, 4, {
    groupSize: 8,
    scales: new Float32Array([1]),
    zeros: new Uint8Array([0]),
  });
  assert.equal(p.words[0], 0x87654321);
  // 3-bit: 10 codes per 32-bit word, none straddling.
  assert.equal(codesPerWord(3), 10);
});

Deno.test("dequantizePacked() reproduces the dequantized matrix; bpw counts codes and params", () => {
  const w = randomMatrix(8 * 64, 11);
  const { packed, dequantized } = quantizeMatrix(w, 8, 64, {
    bits: 4,
    granularity: "group",
    groupSize: 32,
    symmetric: false,
  });
  assert.deepEqual(dequantizePacked(packed), dequantized);
  // 4 bits of codes + (32-bit scale + 8-bit zero) per 32 weights = 4 + 40/32
  assert.equal(bitsPerWeight(packed), 4 + 40 / 32);
});

import assert from "node:assert/strict";
import { groupParams, quantizeMatrix } from "../core/quantizer.ts";
import { UnsupportedConfigError } from "../core/errors.ts";
import { AWQ_RANGE_FLOOR, awqGroupParams, awqQuantizeMatrix, awqSpec } from "./awq_quantizer.ts";

const f = Math.fround;

function dequant(values: number[], bits: number, symmetric = false): number[] {
  const data = Float32Array.from(values);
  const spec = { bits, granularity: "channel" as const, symmetric };
  return [...awqQuantizeMatrix(data, 1, values.length, spec).dequantized];
}

Deno.test("AWQ quantizer by hand: 4-bit group in [−1, 2.75], ties to even", () => {
  // range 3.75 → scale 3.75/15 = 0.25; zero = −round(−1/0.25) = 4.
  assert.deepEqual(awqGroupParams([-1, 0.25, 2.75], 0, 3, 4, false), { scale: 0.25, zero: 4 });
  // 0.125/0.25 = 0.5 and 0.375/0.25 = 1.5 are ties: round half to even → 0 and 2.
  assert.deepEqual(dequant([-1, 0.125, 0.375, 2.75], 4), [-1, 0, 0.5, 2.75]);
});

Deno.test("AWQ quantizer keeps a positive group's own range: zero is not forced in, the far end saturates", () => {
  // [0.5, 2] at 2 bits: scale (2 − 0.5)/3 = 0.5, zero clamp(−round(1), 0, 3) = 0, so 2 → code
  // clamp(4, 0, 3) = 3 → 1.5. The shared (GPTQ) quantizer widens the range to [0, 2] instead.
  assert.deepEqual(awqGroupParams([0.5, 1, 2], 0, 3, 2, false), { scale: 0.5, zero: 0 });
  assert.deepEqual(dequant([0.5, 1, 2], 2), [0.5, 1, 1.5]);
  assert.equal(groupParams([0.5, 1, 2], 0, 3, 2, false).scale, f(2 / 3));
  // A negative group: zero clamps to maxq.
  const p = awqGroupParams([-2, -1, -0.5], 0, 3, 2, false);
  assert.deepEqual(p, { scale: 0.5, zero: 3 });
  assert.deepEqual(dequant([-2, -1, -0.5], 2), [-1.5, -1, -0.5]);
});

Deno.test("AWQ quantizer floors a constant group's range at 1e-5, as the references", () => {
  // max − min = 0 → scale = 1e-5/15; zero = −round(0.3/scale) clamps to 0 and every value
  // saturates at code 15: the group reads back as 15 · scale ≈ 1e-5.
  const p = awqGroupParams([0.3, 0.3], 0, 2, 4, false);
  assert.equal(p.scale, f(AWQ_RANGE_FLOOR / 15));
  assert.equal(p.zero, 0);
  assert.deepEqual(dequant([0.3, 0.3], 4), [f(15 * p.scale), f(15 * p.scale)]);
});

Deno.test("AWQ quantizer symmetric branch (zero_point=False): scale absmax / (2^(b−1) − 1)", () => {
  assert.deepEqual(awqGroupParams([-3, 1, 2], 0, 3, 3, true), { scale: 1, zero: 4 });
  assert.deepEqual(dequant([-3, 1, 2.6], 3, true), [-3, 1, 3]);
  // An all-zero group: absmax floored at 1e-5, zeros stay zero.
  assert.deepEqual(awqGroupParams([0, 0], 0, 2, 4, true), {
    scale: f(AWQ_RANGE_FLOOR / 7),
    zero: 8,
  });
  assert.deepEqual(dequant([0, 0], 4, true), [0, 0]);
});

Deno.test("AWQ quantizer per group: each group of a row has its own range; a short last group when g does not divide", () => {
  const row = [0, 1, 2, 3, -8, 8, 0.5, 0.5, 1];
  const spec = { bits: 4, granularity: "group" as const, groupSize: 4, symmetric: false };
  const r = awqQuantizeMatrix(Float32Array.from(row), 1, row.length, spec);
  assert.equal(r.packed.groupsPerRow, 3);
  assert.deepEqual([...r.packed.scales], [f(3 / 15), f(16 / 15), f(AWQ_RANGE_FLOOR / 15)]);
  const parts = [[0, 1, 2, 3], [-8, 8, 0.5, 0.5], [1]];
  const want = parts.flatMap((p) => [
    ...quantizeMatrix(Float32Array.from(p), 1, p.length, {
      bits: 4,
      granularity: "channel",
      symmetric: false,
    }, awqGroupParams).dequantized,
  ]);
  assert.deepEqual([...r.dequantized], want);
});

Deno.test("awqSpec: groups and channels; per-tensor is unsupported", () => {
  assert.deepEqual(
    awqSpec({ wBits: 4, granularity: "group", groupSize: 128, symmetric: false }),
    { bits: 4, granularity: "group", groupSize: 128, symmetric: false },
  );
  assert.throws(
    () => awqSpec({ wBits: 4, granularity: "tensor", symmetric: false }),
    UnsupportedConfigError,
  );
});

import assert from "node:assert/strict";
import { dequantizePacked, quantizeMatrix } from "../../core/quantizer.ts";
import { randomMatrix } from "../../testing/random.ts";
import { exportGptq, importGptq } from "./gptq.ts";
import {
  fp16ScaleChooser,
  roundScales,
  scaleRoundingReport,
  withRoundedScales,
} from "./scale_rounding.ts";

Deno.test("scaleRoundingReport(): exact, changed, overflow and flushed scales counted", () => {
  // 1 and 2^-24 are float16 values; 0.1 → 0.0999755859375; 70000 → Infinity; 1e-9 → 0.
  const r = scaleRoundingReport([1, 2 ** -24, 0.1, 70000, 1e-9]);
  assert.equal(r.count, 5);
  assert.equal(r.exact, false);
  assert.equal(r.changed, 3);
  assert.equal(r.overflow, 1);
  assert.equal(r.flushedToZero, 1);
  assert.equal(r.maxRelativeChange, Infinity);
  const small = scaleRoundingReport([1, 0.1]);
  assert.ok(
    Math.abs(small.maxRelativeChange - 0.000244140625) < 1e-15,
    `${small.maxRelativeChange}`,
  );
  assert.deepEqual(scaleRoundingReport([0.5, 0.25, 3]), {
    dtype: "F16",
    count: 3,
    exact: true,
    changed: 0,
    maxRelativeChange: 0,
    overflow: 0,
    flushedToZero: 0,
  });
  // bfloat16 keeps 8 bits of mantissa: 1 + 2^-8 rounds (ties to even) to 1.
  assert.equal(scaleRoundingReport([1 + 2 ** -8], "BF16").changed, 1);
  assert.throws(
    () => roundScales("l.scales", [1, 1e6], "F16"),
    /l\.scales: scale 1000000 at index 1 is not finite in F16/,
  );
});

Deno.test("fp16ScaleChooser(): scales come out float16-exact, so a GPTQ export is lossless without rounding", () => {
  const x = randomMatrix(16 * 64, 21, 0.05);
  const spec = { bits: 4, granularity: "group" as const, groupSize: 32, symmetric: false };
  const plain = quantizeMatrix(x, 16, 64, spec).packed;
  assert.equal(
    scaleRoundingReport(plain.scales).exact,
    false,
    "plain min-max scales are not fp16 values",
  );
  const p = quantizeMatrix(x, 16, 64, spec, fp16ScaleChooser()).packed;
  assert.ok(scaleRoundingReport(p.scales).exact);
  assert.deepEqual(withRoundedScales(p).scales, p.scales);
  const t = exportGptq(p, { checkpointFormat: "gptq_v2" });
  const back = importGptq({ ...t }, { bits: 4, groupSize: 32, checkpointFormat: "gptq_v2" });
  assert.deepEqual(dequantizePacked(back.packed), dequantizePacked(p));
  // A zero-range group keeps a positive scale (at least the smallest float16 subnormal).
  const tiny = quantizeMatrix(new Float32Array(32).fill(1e-12), 1, 32, spec, fp16ScaleChooser());
  assert.ok(tiny.packed.scales[0]! >= 2 ** -24);
});

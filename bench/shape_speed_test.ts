import assert from "node:assert/strict";
import { randomDecoder, smallConfig } from "../testing/random_model.ts";
import { shapeSpeed } from "./shape_speed.ts";

Deno.test("shape_speed: a smoke run reports the GEMM bound and both paths' speed", async () => {
  const config = smallConfig({ vocabSize: 97, maxSeqLen: 48 });
  const lines: string[] = [];
  const r = await shapeSpeed({ id: "random", config, weights: randomDecoder(config, 3) }, {
    context: 64, // cut to the model's 48
    threads: 2,
    repeats: 1,
    log: (l) => lines.push(l),
  });
  assert.equal(r.context, 48);
  // q (32×32), k and v (16×32), o, gate and up (48×32), down (32×48), the classifier (97×32).
  const macs = 48 * 2 * (32 * 32 + 2 * 16 * 32 + 32 * 32 + 2 * 48 * 32 + 32 * 48) + 48 * 97 * 32;
  assert.equal(r.gemmMacs, macs);
  for (const s of [r.gemmSeconds, r.attnSeconds, r.windowSeconds, r.opByOpSeconds]) {
    assert.ok(s > 0);
  }
  // 2 layers × 4 heads × head size 8 × 2 products × 48·49/2 pairs, at the GEMM rate.
  assert.ok(Math.abs(r.attnSeconds - (2 * 4 * 8 * 2 * 1176) * r.gemmSeconds / macs) < 1e-12);
  assert.ok(Math.abs(r.tokensPerS - 47 / r.windowSeconds) < 1e-9);
  assert.ok(
    lines.some((l) => /whole-window path: .* tokens\/s, bound \/ time .* \(with attention/.test(l)),
  );
});

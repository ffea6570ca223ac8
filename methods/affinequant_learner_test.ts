import assert from "node:assert/strict";
import { type BlockConfig, blockForward } from "./autodiff/block.ts";
import { BlockDivergedError, denseBlockWeights } from "./calibration/reconstruct.ts";
import { dequantizePacked } from "../core/quantizer.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import type { LlamaLayer, Matrix } from "../models/types.ts";
import { assertClose, directionalGrad, dot } from "../testing/gradcheck.ts";
import { random64 } from "../testing/random.ts";
import {
  affineQuantLearner,
  type AffineQuantSpec,
  gradualMask,
  truncateSmall,
  unmaskedBands,
} from "./affinequant_learner.ts";

const config: BlockConfig = {
  dim: 16,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 4,
  normEps: 1e-5,
  ropeTheta: 10000,
  ropeStyle: "interleaved",
};

function layerOf(seed: number): LlamaLayer {
  let s = seed;
  const m = (rows: number, cols: number): Matrix => ({
    rows,
    cols,
    data: Float32Array.from(random64(rows * cols, s++, 0.5)),
  });
  return {
    attnNorm: Float32Array.from(random64(16, s++, 0.3)).map((v) => 1 + v),
    mlpNorm: Float32Array.from(random64(16, s++, 0.3)).map((v) => 1 + v),
    q: m(16, 16),
    k: m(8, 16),
    v: m(8, 16),
    o: m(16, 16),
    mlp: { kind: "dense", gate: m(24, 16), up: m(24, 16), down: m(16, 24) },
  };
}

const scales = (n: number, seed: number) =>
  Float32Array.from(random64(n, seed, 0.5)).map((v) => 1 + v);
const init = { qkv: scales(16, 1), fc1: scales(16, 2), out: scales(8, 3) };

const spec = (o: Partial<AffineQuantSpec>): AffineQuantSpec => ({
  bits: 16,
  symmetric: false,
  lnMatrix: true,
  qkMatrix: false,
  sf: 0.5,
  epochs: 3,
  letLrScale: 0.5,
  ...o,
});

/** Off-diagonal entries random with |a| ≥ 0.05 (clear of the truncation threshold). */
function perturb(p: Float64Array, seed: number): void {
  const r = random64(p.length, seed, 0.3);
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) p[i] = Math.sign(r[i]!) * (0.05 + Math.abs(r[i]!));
    else p[i] = p[i]! * (1 + 0.2 * r[i]!);
  }
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

Deno.test("gradualMask, unmaskedBands and truncateSmall: hand-computed cases", () => {
  // d = 4, 2 bands, sf 0.1: diagonal 1, first off-diagonals 0.1, the rest 0.
  assert.deepEqual(Array.from(gradualMask(4, 2, 0.1)), [
    1,
    0.1,
    0,
    0,
    0.1,
    1,
    0.1,
    0,
    0,
    0.1,
    1,
    0.1,
    0,
    0,
    0.1,
    1,
  ]);
  assert.deepEqual(Array.from(gradualMask(2, 2, 1)), [1, 1, 1, 1]);
  // d = 64 over 20 epochs: 1 band at epoch 0, ⌊63/19 · 10⌋ + 1 = 34 at epoch 10, 64 at the end.
  assert.equal(unmaskedBands(64, 0, 20), 1);
  assert.equal(unmaskedBands(64, 10, 20), 34);
  assert.equal(unmaskedBands(64, 19, 20), 64);
  assert.equal(unmaskedBands(8, 1, 2), 8);
  assert.equal(unmaskedBands(8, 0, 1), 1);
  const a = Float64Array.of(0.005, -0.003, 0, 0.5, -0.02);
  truncateSmall(a);
  assert.deepEqual(Array.from(a), [0.01, -0.01, 0, 0.5, -0.02]);
});

Deno.test("affineQuantLearner without weight quantization preserves the block's function for any invertible LN and v→o matrices (GQA)", () => {
  const layer = layerOf(10);
  const T = 6;
  const x = Float32Array.from(random64(T * 16, 11, 1));
  const fp = blockForward(denseBlockWeights(layer), config, x, T, refKernels).out;
  for (const lnMatrix of [true, false]) {
    const lrn = affineQuantLearner(layer, config, spec({ lnMatrix }), init, refKernels);
    // At initialisation (diagonal SmoothQuant scales).
    let out = blockForward(lrn.weights(0), config, x, T, refKernels).out;
    assert.ok(relDiff(out, fp) < 1e-5, `init ${lnMatrix}: ${relDiff(out, fp)}`);
    // Dense transforms (last epoch: full band).
    perturb(lrn.params[0] as Float64Array, 12);
    perturb(lrn.params[1] as Float64Array, 13);
    perturb(lrn.params[2] as Float64Array, 14);
    out = blockForward(lrn.weights(2), config, x, T, refKernels).out;
    assert.ok(relDiff(out, fp) < 1e-5, `dense ${lnMatrix}: ${relDiff(out, fp)}`);
    // The transforms did change the weights.
    assert.ok(relDiff(lrn.weights(2).v.data, layer.v.data) > 1e-2);
  }
});

Deno.test("affineQuantLearner.backward matches finite-difference directional derivatives of Σ R ⊙ weights for every transform (LN matrix or vector, q·k matrix or vector, partial mask)", async (t) => {
  const layer = layerOf(20);
  for (const lnMatrix of [true, false]) {
    for (const qkMatrix of [true, false]) {
      await t.step(`lnMatrix ${lnMatrix}, qkMatrix ${qkMatrix}`, () => {
        const lrn = affineQuantLearner(
          layer,
          config,
          spec({ lnMatrix, qkMatrix }),
          init,
          refKernels,
        );
        for (let i = 0; i < 4; i++) perturb(lrn.params[i] as Float64Array, 30 + i);
        const epoch = 1; // partial band: ⌊15/2⌋ + 1 = 8 of 16, ⌊3/2⌋ + 1 = 2 of 4
        const w0 = lrn.weights(epoch);
        let seed = 40;
        const kinds = ["q", "k", "v", "o", "gate", "up", "down"] as const;
        const r = Object.fromEntries(kinds.map((k) => [k, random64(w0[k].data.length, seed++, 1)]));
        const rn = { attn: random64(16, seed++, 1), mlp: random64(16, seed++, 1) };
        const loss = () => {
          const w = lrn.weights(epoch);
          let s = dot(rn.attn, w.attnNorm) + dot(rn.mlp, w.mlpNorm);
          for (const k of kinds) s += dot(r[k]!, w[k].data);
          return s;
        };
        lrn.weights(epoch);
        const grads = lrn.params.map((p) => new Float64Array(p.length));
        const dW = Object.fromEntries(kinds.map((k) => [k, Float32Array.from(r[k]!)])) as never;
        lrn.backward(dW, grads, rn);
        for (let i = 0; i < 4; i++) {
          const p = lrn.params[i] as Float64Array;
          const d = random64(p.length, seed++, 1);
          const fd = directionalGrad(loss, p, d, 1e-4);
          const an = dot(grads[i]!, d);
          assert.ok(
            Math.abs(fd - an) <= 2e-3 * Math.abs(an) + 2e-3,
            `param ${i}: analytic ${an}, finite differences ${fd}`,
          );
        }
        // Masked entries get no gradient: with 8 bands of 16, entry (0, 15) of qkv is masked.
        if (lnMatrix) assert.equal(grads[0]![15], 0);
      });
    }
  }
});

Deno.test("affineQuantLearner: a singular affine matrix stops the block with BlockDivergedError naming it; reset restores the initial transforms", () => {
  const layer = layerOf(50);
  const lrn = affineQuantLearner(layer, config, spec({ bits: 3 }), init, refKernels);
  const qkv = lrn.params[0] as Float64Array;
  const before = Float64Array.from(qkv);
  qkv.fill(0, 3 * 16, 4 * 16); // row 3 of the q/k/v matrix
  assert.throws(() => lrn.weights(0), BlockDivergedError);
  assert.throws(() => lrn.weights(0), /singular affine matrix qkv/);
  lrn.reset();
  assert.deepEqual(Array.from(qkv), Array.from(before));
  assert.doesNotThrow(() => lrn.weights(0));
});

Deno.test("affineQuantLearner rejects sf outside (0, 1], non-positive epochs and letLrScale", () => {
  const layer = layerOf(60);
  for (const sf of [0, -0.1, 1.5, NaN]) {
    assert.throws(
      () => affineQuantLearner(layer, config, spec({ sf }), init, refKernels),
      /sf must be in \(0, 1\]/,
    );
  }
  assert.throws(
    () => affineQuantLearner(layer, config, spec({ epochs: 0 }), init, refKernels),
    /epochs/,
  );
  assert.throws(
    () => affineQuantLearner(layer, config, spec({ letLrScale: 0 }), init, refKernels),
    /letLrScale/,
  );
});

Deno.test("affineQuantLearner.fold: weights on the LWC grid (≤ 2^b levels per row before the runtime matrix) and packed codes that dequantize to them", () => {
  const layer = layerOf(70);
  const lrn = affineQuantLearner(
    layer,
    config,
    spec({ bits: 3, lnMatrix: false }),
    init,
    refKernels,
  );
  const f = lrn.fold();
  for (const k of ["q", "o", "down"] as const) {
    const m = f[k].matrix;
    for (let r = 0; r < m.rows; r++) {
      const levels = new Set(Array.from(m.data.subarray(r * m.cols, (r + 1) * m.cols)));
      assert.ok(levels.size <= 8, `${k} row ${r}: ${levels.size} levels`);
    }
    const p = f[k].packed;
    assert.ok(p, `${k} packed`);
    assertClose(dequantizePacked(p), m.data, 0, 0, `${k} packed`);
  }
});

import assert from "node:assert/strict";
import { refKernels } from "../../kernels/ref/mod.ts";
import { wasmKernels } from "../../kernels/wasm/mod.ts";
import { createKvCache, layerForward } from "../../runners/forward.ts";
import type { LlamaConfig, LlamaLayer, Matrix, RopeStyle } from "../../models/types.ts";
import { assertClose, directionalGrad, dot } from "../../testing/gradcheck.ts";
import { random64 } from "../../testing/random.ts";
import { needs } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";
import {
  blockBackward,
  blockForward,
  blockForwardBackward,
  type BlockWeights,
  zeroLinearGrads,
} from "./block.ts";

const stories = await needs("hf-mirror");

function synthetic(style: RopeStyle, seed: number) {
  const config: LlamaConfig = {
    dim: 16,
    hiddenDim: 24,
    nLayers: 1,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 4,
    vocabSize: 8,
    maxSeqLen: 16,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeStyle: style,
    tiedEmbeddings: true,
  };
  let s = seed;
  const m = (rows: number, cols: number): Matrix => ({
    rows,
    cols,
    data: Float32Array.from(random64(rows * cols, s++, 0.5)),
  });
  const layer: LlamaLayer = {
    attnNorm: Float32Array.from(random64(16, s++, 0.5)).map((v) => 1 + v),
    mlpNorm: Float32Array.from(random64(16, s++, 0.5)).map((v) => 1 + v),
    q: m(16, 16),
    k: m(8, 16),
    v: m(8, 16),
    o: m(16, 16),
    mlp: { kind: "dense", gate: m(24, 16), up: m(24, 16), down: m(16, 24) },
  };
  return { config, layer };
}

function blockWeights(layer: LlamaLayer): BlockWeights {
  if (layer.mlp.kind !== "dense") throw new Error("dense only");
  const { attnNorm, mlpNorm, q, k, v, o } = layer;
  return { attnNorm, mlpNorm, q, k, v, o, ...layer.mlp, gate: layer.mlp.gate! };
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

stories.test("blockForward equals runners/forward.ts layerForward: stories260K blocks (interleaved RoPE, WASM and reference kernels) and a synthetic half-RoPE GQA block", async () => {
  const model = await stories260K();
  const wasm = await wasmKernels();
  const T = 40;
  const x = Float32Array.from(random64(T * model.config.dim, 5, 1));
  for (const kernels of [refKernels, wasm]) {
    for (const l of [0, 4]) {
      const expected = x.slice();
      layerForward(model, l, expected, T, createKvCache(model.config, T), kernels);
      const act = blockForward(blockWeights(model.weights.layers[l]!), model.config, x, T, kernels);
      const d = relDiff(act.out, expected);
      assert.ok(d < 1e-5, `${kernels.id} layer ${l}: relative difference ${d}`);
    }
  }
  const { config, layer } = synthetic("half", 90);
  const xs = Float32Array.from(random64(9 * 16, 91, 1));
  const expected = xs.slice();
  const model1 = {
    config,
    weights: {
      embed: { rows: 8, cols: 16, data: new Float32Array(128) },
      layers: [layer],
      norm: new Float32Array(16),
      lmHead: { rows: 8, cols: 16, data: new Float32Array(128) },
    },
  };
  layerForward(model1, 0, expected, 9, createKvCache(config, 9), refKernels);
  const act = blockForward(blockWeights(layer), config, xs, 9, refKernels);
  assert.ok(relDiff(act.out, expected) < 1e-5);
});

Deno.test("blockBackward: weight and input gradients match finite-difference directional derivatives (both RoPE styles)", async (t) => {
  for (const style of ["interleaved", "half"] as const) {
    await t.step(style, () => {
      const { config, layer } = synthetic(style, 100);
      const w = blockWeights(layer);
      const T = 7;
      const x = Float32Array.from(random64(T * 16, 7, 1));
      const r = random64(T * 16, 8, 1);
      const loss = () => dot(r, blockForward(w, config, x, T, refKernels).out);
      const act = blockForward(w, config, x, T, refKernels);
      const grads = zeroLinearGrads(w);
      const dx = new Float32Array(T * 16);
      blockBackward(w, config, act, Float32Array.from(r), refKernels, grads, { dx });
      let seed = 200;
      for (const kind of ["q", "k", "v", "o", "gate", "up", "down"] as const) {
        const p = w[kind].data;
        const d = random64(p.length, seed++, 1);
        const fd = directionalGrad(loss, p, d, 1e-3);
        const an = dot(grads[kind], d);
        assert.ok(
          Math.abs(fd - an) <= 2e-3 * Math.abs(an) + 1e-3,
          `${style} ${kind}: analytic ${an}, finite differences ${fd}`,
        );
      }
      const d = random64(x.length, seed++, 1);
      const fd = directionalGrad(loss, x, d, 1e-3);
      const an = dot(dx, d);
      assert.ok(Math.abs(fd - an) <= 2e-3 * Math.abs(an) + 1e-3, `dx: ${an} vs ${fd}`);
    });
  }
});

Deno.test("blockForwardBackward: zero loss and zero gradient when the target is the block's own output; mean squared error by hand otherwise", () => {
  const { config, layer } = synthetic("interleaved", 300);
  const w = blockWeights(layer);
  const T = 5;
  const x = Float32Array.from(random64(T * 16, 9, 1));
  const out = blockForward(w, config, x, T, refKernels).out;
  const grads = zeroLinearGrads(w);
  assert.equal(blockForwardBackward(w, config, { x, target: out, T }, refKernels, grads), 0);
  assert.ok(Object.values(grads).every((g) => g.every((v) => v === 0)));
  const shifted = out.map((v) => v + 0.5);
  const loss = blockForwardBackward(w, config, { x, target: shifted, T }, refKernels, grads);
  assertClose([loss], [0.25], 1e-6, 0, "mse of a constant 0.5 offset");
});

Deno.test("blockBackward: RMSNorm weight gradients (dNorms) match finite-difference directional derivatives", () => {
  const { config, layer } = synthetic("interleaved", 400);
  const w = blockWeights(layer);
  const T = 6;
  const x = Float32Array.from(random64(T * 16, 17, 1));
  const r = random64(T * 16, 18, 1);
  const loss = () => dot(r, blockForward(w, config, x, T, refKernels).out);
  const act = blockForward(w, config, x, T, refKernels);
  const dNorms = { attn: new Float64Array(16), mlp: new Float64Array(16) };
  blockBackward(w, config, act, Float32Array.from(r), refKernels, zeroLinearGrads(w), { dNorms });
  for (
    const [name, p, g] of [["attn", w.attnNorm, dNorms.attn], [
      "mlp",
      w.mlpNorm,
      dNorms.mlp,
    ]] as const
  ) {
    const d = random64(16, name === "attn" ? 19 : 20, 1);
    const fd = directionalGrad(loss, p, d, 1e-3);
    const an = dot(g, d);
    assert.ok(Math.abs(fd - an) <= 2e-3 * Math.abs(an) + 1e-3, `${name}: ${an} vs ${fd}`);
  }
});

Deno.test("blockForward with an activation quantizer equals layerForward of a model carrying it (per-token, sym and asym)", () => {
  const { config, layer } = synthetic("half", 500);
  const T = 9;
  const x = Float32Array.from(random64(T * 16, 21, 1));
  for (const symmetric of [true, false]) {
    const activations = {
      bits: 4,
      kernel: "uniform" as const,
      options: { granularity: "token" as const, static: false, symmetric, clip: 1, bmm: false },
    };
    const expected = x.slice();
    const model = {
      config,
      weights: {
        embed: { rows: 8, cols: 16, data: new Float32Array(128) },
        layers: [layer],
        norm: new Float32Array(16),
        lmHead: { rows: 8, cols: 16, data: new Float32Array(128) },
        activations,
      },
    };
    layerForward(model, 0, expected, T, createKvCache(config, T), refKernels);
    const act = blockForward(blockWeights(layer), config, x, T, refKernels, activations);
    assert.ok(relDiff(act.out, expected) < 1e-6, `${symmetric}: ${relDiff(act.out, expected)}`);
    // Quantization changed the output (the test would pass vacuously otherwise).
    const float = blockForward(blockWeights(layer), config, x, T, refKernels);
    assert.ok(relDiff(act.out, float.out) > 1e-3);
  }
});

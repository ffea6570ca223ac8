import assert from "node:assert/strict";
import {
  type ActivationQuantization,
  DEFAULT_ACT_OPTIONS,
  fakeQuantActivations,
} from "../../core/act_quantizer.ts";
import { forward, type ForwardModel } from "../../runners/forward.ts";
import type { LlamaConfig, LlamaLayer, Matrix } from "../../models/types.ts";
import { logSoftmaxRows, windowLogProbs } from "../../runners/window_score.ts";
import { bundledDataDir, needs, sharedPath } from "../../testing/fixtures.ts";
import { randomMatrix } from "../../testing/random.ts";
import { stories260K } from "../../testing/stories.ts";
import { loadModel } from "../../models/load.ts";
import { refKernels } from "../ref/mod.ts";
import { wasmKernels } from "./mod.ts";
import { WasmHeap } from "./heap.ts";
import { loadWasm } from "./load.ts";
import { ACT_WORD, activationWords, quantizesInWasm, windowUnsupported } from "./window_forward.ts";

const stories = await needs("hf-mirror");
const moe = await needs("models/stories260K-moe");

const kernels = await wasmKernels();
/** Block-by-block runs of the windows `maxError` checked, awaited at the end of each test. */
const blockChecks: Promise<void>[] = [];
Deno.test.afterEach?.(async () => {
  await Promise.all(blockChecks.splice(0));
});
const reference = (m: ForwardModel, w: readonly number[]) =>
  logSoftmaxRows(forward(m, w, { kernels: refKernels }), m.config.vocabSize);

/** Bytes of a matrix's WASM panels: rows rounded up to 8 (NR) × cols × 4. */
const panelBytes = (m: Matrix) => Math.ceil(m.rows / 8) * 8 * m.cols * 4;

/** Bytes of one block's panels. */
function blockBytes(l: LlamaLayer): number {
  const experts = l.mlp.kind === "dense" ? [l.mlp] : l.mlp.experts;
  const mlp = experts.flatMap((e) => [e.gate, e.up, e.down]).filter((m) => m !== undefined);
  const router = l.mlp.kind === "moe" ? [l.mlp.router] : [];
  return [l.q, l.k, l.v, l.o, ...mlp, ...router].reduce((n, m) => n + panelBytes(m), 0);
}

/**
 * Log-probabilities of the whole-window path run one block per call (a panel budget of the
 * largest block's panels, below the model's), which must equal one call over every block.
 */
async function blockwise(m: ForwardModel, window: readonly number[]): Promise<Float32Array> {
  const budget = Math.max(...m.weights.layers.map(blockBytes));
  const all = m.weights.layers.reduce((n, l) => n + blockBytes(l), panelBytes(m.weights.lmHead));
  assert.ok(budget < all);
  const k = await wasmKernels({ panelBudget: budget });
  try {
    const got = k.windowLogProbs!(m, window);
    assert.ok(got, "block by block: refused");
    return got;
  } finally {
    k.close?.();
  }
}

/** Max |Δ| between the whole-window log-probabilities and the op-by-op reference's. */
function maxError(m: ForwardModel, window: readonly number[]): number {
  const got = kernels.windowLogProbs!(m, window);
  assert.ok(got, `whole-window path refused: ${windowUnsupported(m)}`);
  blockChecks.push(blockwise(m, window).then((b) => assert.deepEqual(b, got, "block by block")));
  const want = reference(m, window);
  assert.equal(got.length, want.length);
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
  return err;
}

const matrix = (rows: number, cols: number, seed: number, a = 0.3): Matrix => ({
  rows,
  cols,
  data: randomMatrix(rows * cols, seed, a),
});

/** A random dense model of `config` (norm weights around 1). */
function randomModel(config: LlamaConfig, seed: number): ForwardModel {
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize } = config;
  const norm = (s: number) => randomMatrix(dim, s, 0.2).map((x) => 1 + x);
  const layers: LlamaLayer[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const s = seed + 100 * l;
    layers.push({
      attnNorm: norm(s),
      q: matrix(nHeads * headDim, dim, s + 1),
      k: matrix(nKvHeads * headDim, dim, s + 2),
      v: matrix(nKvHeads * headDim, dim, s + 3),
      o: matrix(dim, nHeads * headDim, s + 4),
      mlpNorm: norm(s + 5),
      mlp: {
        kind: "dense",
        gate: matrix(hiddenDim, dim, s + 6),
        up: matrix(hiddenDim, dim, s + 7),
        down: matrix(dim, hiddenDim, s + 8),
      },
    });
  }
  const embed = matrix(vocabSize, dim, seed + 9, 1);
  return {
    config,
    weights: { embed, layers, norm: norm(seed + 10), lmHead: matrix(vocabSize, dim, seed + 11) },
  };
}

const base: LlamaConfig = {
  dim: 48,
  hiddenDim: 100,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 12,
  vocabSize: 37,
  maxSeqLen: 80,
  normEps: 1e-5,
  ropeTheta: 10000,
  ropeStyle: "half",
  tiedEmbeddings: false,
};

stories.test("whole-window log-probabilities of stories260K equal the op-by-op reference's", async () => {
  const model = await stories260K();
  const text = await Deno.readTextFile(
    `${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`,
  );
  const stream = [model.tokenizer.bosId, ...model.tokenizer.encode(text.slice(0, 4000))];
  // Window lengths around the kernels' blocks of 4 keys and 8 rows, and the full context.
  for (const T of [2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 512]) {
    const err = maxError(model, stream.slice(0, T));
    // The budget of the op-by-op WASM kernels (forward_test.ts): float32 rounding of sums taken
    // in another order, far below a formula error (a wrong mask or RoPE pair moves them by O(1)).
    assert.ok(err <= 1e-4, `T=${T}: max |Δ log p| = ${err}`);
  }
  // The task's seam takes it: windowLogProbs gives the same array as the direct call.
  const w = stream.slice(0, 33);
  assert.deepEqual(windowLogProbs(model, w, kernels), kernels.windowLogProbs!(model, w));
});

Deno.test("whole-window path: head sizes, GQA groups and both RoPE styles", () => {
  const cases: Partial<LlamaConfig>[] = [
    {}, // head 12 (a vector and a half per 8 columns), halves RoPE, 2 query heads per KV head
    { ropeStyle: "interleaved", headDim: 8, nHeads: 6, nKvHeads: 6 }, // multi-head
    { headDim: 16, nHeads: 4, nKvHeads: 1 }, // multi-query
    { headDim: 4, nHeads: 8, nKvHeads: 4, hiddenDim: 7 },
    { headDim: 20, dim: 40, vocabSize: 8 },
  ];
  for (const [i, c] of cases.entries()) {
    const config = { ...base, ...c };
    const model = randomModel(config, 17 + i);
    // A single token, windows shorter than a block of four keys, one block and a half, and more.
    for (const T of [1, 2, 3, 6, 37]) {
      const window = Array.from({ length: T }, (_, t) => (t * 7 + i) % config.vocabSize);
      const err = maxError(model, window);
      assert.ok(err <= 1e-4, `${JSON.stringify(c)}, T=${T}: max |Δ log p| = ${err}`);
    }
  }
});

Deno.test("whole-window path refuses what it does not compute, and the seam falls back", async () => {
  const model = randomModel(base, 5);
  const window = [1, 2, 3, 4, 5];
  const odd = randomModel({ ...base, headDim: 6, nHeads: 2, nKvHeads: 1 }, 6);
  assert.match(windowUnsupported(odd)!, /head size 6 is not a multiple of 4/);
  assert.equal(kernels.windowLogProbs!(odd, window), undefined);
  // Through the task seam the op-by-op path runs instead, with the same numbers.
  const lp = windowLogProbs(odd, window, kernels);
  const want = reference(odd, window);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(lp[i]! - want[i]!) <= 1e-4);
  assert.throws(() => kernels.windowLogProbs!(model, [1, 37]), /token id 37 at 1 is outside/);
  // A weight of the wrong shape is named before any WASM code reads it.
  const l0 = model.weights.layers[0]!;
  const badLayer = { ...l0, o: matrix(48, 40, 1) };
  const bad = {
    ...model,
    weights: { ...model.weights, layers: [badLayer, model.weights.layers[1]!] },
  };
  assert.throws(
    () => kernels.windowLogProbs!(bad, window),
    /layer 0 o is 48×40 \(1920 values\), expected 48×48 from the config/,
  );
  const shortNorm = {
    ...model,
    weights: { ...model.weights, norm: new Float32Array(47) },
  };
  assert.throws(() => kernels.windowLogProbs!(shortNorm, window), /final norm holds 47 values/);
  // A weight changed and forgotten is read again.
  const before = kernels.windowLogProbs!(model, window)!;
  model.weights.lmHead.data[0] = model.weights.lmHead.data[0]! + 1;
  kernels.forget(model.weights.lmHead);
  const after = kernels.windowLogProbs!(model, window)!;
  assert.notDeepEqual(after, before);
  assert.ok(maxError(model, window) <= 1e-4);
  await Promise.resolve();
});

stories.test("whole-window path quantizes activations at every site, as the op-by-op path", async () => {
  const model = await stories260K();
  const text = await Deno.readTextFile(
    `${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`,
  );
  const w = [model.tokenizer.bosId, ...model.tokenizer.encode(text.slice(0, 8000))].slice(0, 512);
  const withActs = (activations: ActivationQuantization): ForwardModel => ({
    ...model,
    weights: { ...model.weights, activations },
  });
  const float = kernels.windowLogProbs!(model, w)!;
  const opByOp = { ...kernels, windowLogProbs: undefined };
  // Settings under which no activation of this window lies within float32 rounding of a
  // rounding boundary (checked op by op against the TS reference too): there the two paths agree
  // to float rounding. Elsewhere a code may round the other way (A8 on this window: token 11),
  // moving later positions by up to ~1 — inherent to fake quantization, op by op as well.
  const cases: [string, ActivationQuantization][] = [
    ["A4 per token", { bits: 4, kernel: "uniform", options: DEFAULT_ACT_OPTIONS }],
    ["A4 CrossQuant", { bits: 4, kernel: "crossquant", alpha: 0.55, options: DEFAULT_ACT_OPTIONS }],
    ["A5 with q/k/v", {
      bits: 5,
      kernel: "uniform",
      options: { ...DEFAULT_ACT_OPTIONS, bmm: true },
    }],
  ];
  for (const [name, aq] of cases) {
    const m = withActs(aq);
    const got = kernels.windowLogProbs!(m, w);
    assert.ok(got, `${name}: refused (${windowUnsupported(m)})`);
    const want = logSoftmaxRows(forward(m, w, { kernels: opByOp }), model.config.vocabSize);
    let err = 0, fromFloat = 0;
    for (let i = 0; i < want.length; i++) {
      err = Math.max(err, Math.abs(got[i]! - want[i]!));
      fromFloat = Math.max(fromFloat, Math.abs(got[i]! - float[i]!));
    }
    assert.ok(err <= 1e-4, `${name}: max |Δ log p| = ${err}`);
    // The quantizer did run: 4–5-bit activations move log-probabilities by whole nats.
    assert.ok(fromFloat > 1, `${name}: within ${fromFloat} of the float model`);
  }
  // The quantizer's errors come through the WASM call, naming the site; the instance still works.
  const noRange = withActs({
    bits: 8,
    kernel: "uniform",
    options: { ...DEFAULT_ACT_OPTIONS, granularity: "tensor", static: true },
  });
  assert.throws(() => kernels.windowLogProbs!(noRange, w), /Static .* of qkv has no range/);
  assert.deepEqual(kernels.windowLogProbs!(model, w), float);
});

stories.test("whole-window path: its own activation quantizer equals core/act_quantizer.ts bit for bit", async () => {
  const model = await stories260K();
  const w = Array.from({ length: 77 }, (_, t) => (t * 37 + 11) % model.config.vocabSize);
  // Factors of 1 folded out of a site change no number but send every site to the host's
  // quantizer (fakeQuantActivations): the two must give the same bits.
  const ones = (n: number) => new Float32Array(n).fill(1);
  const qDim = model.config.nHeads * model.config.headDim; // the width of o's input
  const folded = model.weights.layers.map(() => ({ o: { folded: ones(qDim) } }));
  const float = kernels.windowLogProbs!(model, w)!;
  const options = [
    DEFAULT_ACT_OPTIONS,
    { ...DEFAULT_ACT_OPTIONS, symmetric: false },
    { ...DEFAULT_ACT_OPTIONS, granularity: "tensor" as const, clip: 0.9 },
    { ...DEFAULT_ACT_OPTIONS, granularity: "tensor" as const, symmetric: false, bmm: true },
    { ...DEFAULT_ACT_OPTIONS, clip: 0.85, bmm: true },
  ];
  for (const o of options) {
    for (const bits of [3, 4, 8]) {
      const aq: ActivationQuantization = { bits, kernel: "uniform", options: o };
      const here: ForwardModel = { ...model, weights: { ...model.weights, activations: aq } };
      const host: ForwardModel = {
        ...model,
        weights: { ...model.weights, activations: { ...aq, layers: folded } },
      };
      assert.ok(quantizesInWasm(here) && !quantizesInWasm(host));
      const a = kernels.windowLogProbs!(here, w)!, b = kernels.windowLogProbs!(host, w)!;
      const same = a.every((x, i) => Object.is(x, b[i]));
      assert.ok(same, `A${bits} ${JSON.stringify(o)}: the two quantizers differ`);
      // …and both quantized: 3–8-bit activations move some log-probability by 1e-3 at least.
      assert.ok(a.some((x, i) => Math.abs(x - float[i]!) > 1e-3), `A${bits}: no quantization`);
    }
  }
  // Widths that are not multiples of 4, CrossQuant and static ranges stay with the host.
  const odd = randomModel({ ...base, hiddenDim: 7 }, 3);
  const aq: ActivationQuantization = { bits: 8, kernel: "uniform", options: DEFAULT_ACT_OPTIONS };
  assert.equal(quantizesInWasm({ ...odd, weights: { ...odd.weights, activations: aq } }), false);
  const cross = { ...aq, kernel: "crossquant" as const };
  assert.equal(
    quantizesInWasm({ ...model, weights: { ...model.weights, activations: cross } }),
    false,
  );
});

Deno.test("act_quant_rows equals fakeQuantActivations bit for bit: ties, zeros, NaN, clipping", async () => {
  const wasm = await loadWasm();
  const heap = new WasmHeap(wasm.memory, Number(wasm.__heap_base.value));
  const n = 8;
  // Row 0: absmax 21 at A4 gives the step 21 / 7 = 3, so 10.5 / 3 = 3.5 and −10.5 / 3 = −3.5 are
  // exact ties (to 4 and −4), 7.5 / 3 = 2.5 (to 2); 10.5 · fl(1/3) would round to 3, so the
  // division must be the quantizer's. Row 1: tiny values under the 1e-5 floor and −0. Row 2: a
  // NaN, skipped by the range and kept. Row 3: at A5 the step is 735 / 15 = 49, and ±367.5 / 49 =
  // ±7.5 are ties (to ±8) that ±367.5 · fl(1/49) = ±7.4999999999999991 would round to ±7. Rows 4–:
  // random.
  const rows = [
    [21, 10.5, -10.5, 7.5, -7.5, 1.5, -4.5, 0],
    [1e-7, -3e-6, -0, 0, 2e-6, -1e-7, 5e-6, 0],
    [NaN, 1, -2, 3, -0.5, 0.25, 2.5, -3],
    [735, -367.5, 367.5, 122.5, 0, 0, 0, 0],
  ];
  const random = randomMatrix(40 * n, 9, 4);
  const x = new Float32Array([...rows.flat(), ...random]);
  const T = x.length / n;
  for (const bits of [2, 4, 5, 8]) {
    for (const symmetric of [true, false]) {
      for (const granularity of ["token", "tensor"] as const) {
        for (const clip of [1, 0.8]) {
          const aq: ActivationQuantization = {
            bits,
            kernel: "uniform",
            options: { ...DEFAULT_ACT_OPTIONS, symmetric, granularity, clip },
          };
          const want = fakeQuantActivations(aq, x, T, n, undefined);
          const d = new Int32Array(ACT_WORD + 5);
          d.set(activationWords(aq, true), ACT_WORD);
          const dp = heap.alloc(d.byteLength), xp = heap.alloc(x.byteLength);
          heap.u32(dp, d.length).set(new Uint32Array(d.buffer));
          heap.f32(xp, x.length).set(x);
          wasm.act_quant_rows(dp, xp, T, n);
          const got = heap.f32(xp, x.length).slice();
          heap.free(dp);
          heap.free(xp);
          const what = `A${bits} ${symmetric ? "sym" : "asym"} ${granularity} clip ${clip}`;
          for (let i = 0; i < x.length; i++) {
            assert.ok(Object.is(got[i], want[i]), `${what}: [${i}] ${got[i]} ≠ ${want[i]}`);
          }
        }
      }
    }
  }
  // The hand-worked ties of rows 0 (A4) and 3 (A5), symmetric, per token, no clipping.
  const aq: ActivationQuantization = { bits: 4, kernel: "uniform", options: DEFAULT_ACT_OPTIONS };
  assert.deepEqual(
    [...fakeQuantActivations(aq, x, T, n, undefined).subarray(0, n)],
    [21, 12, -12, 6, -6, 0, -6, 0],
  );
  const a5 = fakeQuantActivations({ ...aq, bits: 5 }, x, T, n, undefined);
  assert.deepEqual([...a5.subarray(3 * n, 4 * n)], [735, -392, 392, 98, 0, 0, 0, 0]);
});

moe.test("whole-window path runs Mixtral-layout MoE blocks as the op-by-op path", async () => {
  const model = await loadModel(sharedPath("models", "stories260K-moe"));
  const moe = model.config.moe!;
  const text = await Deno.readTextFile(
    `${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`,
  );
  const stream = [model.tokenizer.bosId, ...model.tokenizer.encode(text.slice(0, 8000))];
  const asym = { ...DEFAULT_ACT_OPTIONS, symmetric: false, clip: 0.9 };
  const cases: [string, ForwardModel, number[]][] = [
    ["top-2, renormalised", model, [1, 5, 64, 512]],
    ["not renormalised", {
      ...model,
      config: { ...model.config, moe: { ...moe, normTopK: false } },
    }, [
      64,
    ]],
    // Activations at 4 bits (through the host: the experts' 43 hidden units are not a multiple of
    // 4), the router reading its input at 8 bits (EAQuant) or in float; windows checked free of
    // codes within rounding of a boundary.
    ...[undefined, 8, 16].map((routerBits): [string, ForwardModel, number[]] => [
      `A4, router ${routerBits ?? "as the experts"}`,
      {
        ...model,
        weights: {
          ...model.weights,
          activations: {
            bits: 4,
            kernel: "uniform",
            options: asym,
            ...(routerBits ? { routerBits } : {}),
          },
        },
      },
      [64],
    ]),
  ];
  const float = kernels.windowLogProbs!(model, stream.slice(0, 64))!;
  for (const [name, m, lengths] of cases) {
    for (const T of lengths) {
      const err = maxError(m, stream.slice(0, T));
      assert.ok(err <= 1e-4, `${name}, T=${T}: max |Δ log p| = ${err}`);
    }
    if (m !== model) {
      const lp = kernels.windowLogProbs!(m, stream.slice(0, 64))!;
      assert.ok(
        lp.some((x, i) => Math.abs(x - float[i]!) > 1e-3),
        `${name}: same as the float model`,
      );
    }
  }
  // Shared experts stay op by op; a block's expert count and router shape are checked by name.
  const l0 = model.weights.layers[0]!;
  if (l0.mlp.kind !== "moe") throw new Error("the fixture's first block is not MoE");
  const withShared = {
    ...model,
    weights: {
      ...model.weights,
      layers: [
        { ...l0, mlp: { ...l0.mlp, shared: l0.mlp.experts[0]! } },
        ...model.weights.layers.slice(1),
      ],
    },
  };
  assert.match(windowUnsupported(withShared)!, /shared experts/);
  const fewer = {
    ...model,
    weights: {
      ...model.weights,
      layers: [
        { ...l0, mlp: { ...l0.mlp, experts: l0.mlp.experts.slice(1) } },
        ...model.weights.layers.slice(1),
      ],
    },
  };
  assert.throws(
    () => kernels.windowLogProbs!(fewer, [1, 2, 3]),
    /layer 0 has 3 experts and the config 4/,
  );
  const badRouter = {
    ...model,
    weights: {
      ...model.weights,
      layers: [
        { ...l0, mlp: { ...l0.mlp, router: matrix(3, model.config.dim, 1) } },
        ...model.weights.layers.slice(1),
      ],
    },
  };
  assert.throws(() => kernels.windowLogProbs!(badRouter, [1, 2, 3]), /layer 0 router is 3×64/);
});

Deno.test("whole-window MoE: mixed dense and MoE blocks, the WASM quantizer with a router's own bits", () => {
  const config: LlamaConfig = {
    ...base,
    moe: { nExperts: 5, topK: 2, normTopK: true, expertHiddenDim: 44, denseLayers: [0] },
  };
  const dense = randomModel(config, 41);
  // Block 0 dense (hidden 100), block 1 routed over five experts of 44 hidden units.
  const l1 = dense.weights.layers[1]!;
  const expert = (e: number) => ({
    kind: "dense" as const,
    gate: matrix(44, config.dim, 300 + 3 * e),
    up: matrix(44, config.dim, 301 + 3 * e),
    down: matrix(config.dim, 44, 302 + 3 * e),
  });
  const model: ForwardModel = {
    ...dense,
    weights: {
      ...dense.weights,
      layers: [dense.weights.layers[0]!, {
        ...l1,
        mlp: {
          kind: "moe",
          router: matrix(5, config.dim, 299, 1),
          experts: [0, 1, 2, 3, 4].map(expert),
        },
      }],
    },
  };
  const window = Array.from({ length: 37 }, (_, t) => (t * 11 + 3) % config.vocabSize);
  assert.ok(maxError(model, window) <= 1e-4);
  const tensor = { ...DEFAULT_ACT_OPTIONS, granularity: "tensor" as const, symmetric: false };
  // 6-bit activations, per window and asymmetric: no code of this window on a rounding boundary
  // (at 4 and 8 bits one is, and later positions then move by up to ~1, op by op as well).
  const outs: Float32Array[] = [];
  for (const routerBits of [undefined, 8, 16]) {
    const aq: ActivationQuantization = {
      bits: 6,
      kernel: "uniform",
      options: tensor,
      ...(routerBits ? { routerBits } : {}),
    };
    const m = { ...model, weights: { ...model.weights, activations: aq } };
    assert.ok(quantizesInWasm(m), "every width is a multiple of 4: forward.c quantizes");
    const err = maxError(m, window);
    assert.ok(err <= 1e-4, `router bits ${routerBits}: max |Δ log p| = ${err}`);
    outs.push(kernels.windowLogProbs!(m, window)!);
  }
  // The router's own bits reach it: 8-bit and float router inputs route differently weighted.
  assert.ok(outs[1]!.some((x, i) => Math.abs(x - outs[2]![i]!) > 1e-5));
});

Deno.test("whole-window path: q/k/v biases (Qwen2), q/k norms (OLMoE, Qwen3) and clip_qkv (OLMoE)", () => {
  const qDim = base.nHeads * base.headDim, kvDim = base.nKvHeads * base.headDim;
  const plain = randomModel(base, 61);
  const vec = (n: number, seed: number, around = 0) =>
    randomMatrix(n, seed, 0.5).map((x) => around + x);
  const withExtras = (
    clipQkv: number | undefined,
    extra: (i: number) => Partial<LlamaLayer>,
  ): ForwardModel => ({
    config: { ...base, qkvBias: true, qkNorm: "projection", ...(clipQkv ? { clipQkv } : {}) },
    weights: {
      ...plain.weights,
      layers: plain.weights.layers.map((l, i) => ({ ...l, ...extra(i) })),
    },
  });
  const window = Array.from({ length: 37 }, (_, t) => (t * 5 + 2) % base.vocabSize);
  const cases: [string, ForwardModel][] = [
    [
      "biases",
      withExtras(undefined, (i) => ({
        qBias: vec(qDim, 70 + i),
        kBias: vec(kvDim, 72 + i),
        vBias: vec(kvDim, 74 + i),
      })),
    ],
    [
      "q/k norms, clip 0.3",
      withExtras(0.3, (i) => ({
        qNorm: vec(qDim, 80 + i, 1),
        kNorm: vec(kvDim, 82 + i, 1),
      })),
    ],
    [
      "everything, clip 2",
      withExtras(2, (i) => ({
        qBias: vec(qDim, 90 + i),
        kBias: vec(kvDim, 92 + i),
        vBias: vec(kvDim, 94 + i),
        qNorm: vec(qDim, 96 + i, 1),
        kNorm: vec(kvDim, 98 + i, 1),
      })),
    ],
    [
      "q/k norms per head (Qwen3)",
      {
        config: { ...base, qkNorm: "head" },
        weights: {
          ...plain.weights,
          layers: plain.weights.layers.map((l, i) => ({
            ...l,
            qNorm: vec(base.headDim, 84 + i, 1),
            kNorm: vec(base.headDim, 86 + i, 1),
          })),
        },
      },
    ],
  ];
  const float = kernels.windowLogProbs!(plain, window)!;
  for (const [name, m] of cases) {
    assert.equal(windowUnsupported(m), undefined);
    const err = maxError(m, window);
    assert.ok(err <= 1e-4, `${name}: max |Δ log p| = ${err}`);
    const lp = kernels.windowLogProbs!(m, window)!;
    assert.ok(lp.some((x, i) => Math.abs(x - float[i]!) > 1e-2), `${name}: no effect`);
  }
  const short = withExtras(undefined, () => ({ kBias: vec(kvDim - 1, 1) }));
  assert.throws(
    () => kernels.windowLogProbs!(short, window),
    /layer 0 k bias holds 23 values, expected 24/,
  );
});

Deno.test("whole-window path: online rotations (QuaRot) before o and down, with float and quantized activations, equal op by op", () => {
  // 4 heads × 12 (a cross-head Hadamard of order 4), hidden 96 = 12·8 (a Hadamard with K = 12),
  // and a dense orthogonal stand-in: the transforms need not preserve the function here, both
  // paths must compute the same one.
  const config = { ...base, hiddenDim: 96 };
  const plain = randomModel(config, 91);
  const q = new Float32Array(48 * 48);
  for (let i = 0; i < 48; i++) q[i * 48 + ((i * 5) % 48)] = i % 2 ? -1 : 1; // a signed permutation
  const variants: [string, ForwardModel["weights"]["online"]][] = [
    ["hadamards", {
      o: { kind: "cross-head", heads: 4, headDim: 12 },
      down: { kind: "hadamard", n: 96 },
    }],
    ["matrix before o only", { o: { kind: "matrix", n: 48, matrix: q } }],
  ];
  const aq: ActivationQuantization = {
    kernel: "uniform",
    bits: 6,
    options: DEFAULT_ACT_OPTIONS,
  };
  for (const [name, online] of variants) {
    // Quantized activations only where no code flips: the whole-window attention rounds in
    // another order than the reference's, and a flipped 6-bit code moves log p by O(0.1) (the
    // other whole-window tests pick flip-free settings the same way).
    for (const activations of name === "hadamards" ? [undefined, aq] : [undefined]) {
      const m: ForwardModel = {
        config,
        weights: { ...plain.weights, online, ...(activations ? { activations } : {}) },
      };
      assert.equal(windowUnsupported(m), undefined);
      const window = Array.from({ length: 29 }, (_, t) => (t * 5 + 3) % config.vocabSize);
      const err = maxError(m, window);
      assert.ok(err <= 1e-4, `${name}, A${activations ? 6 : 16}: max |Δ log p| = ${err}`);
      // And the rotations matter: without them the log-probabilities move.
      const without = reference({ config, weights: { ...m.weights, online: undefined } }, window);
      const got = kernels.windowLogProbs!(m, window)!;
      assert.ok(got.some((x, i) => Math.abs(x - without[i]!) > 1e-2), `${name}: rotations applied`);
    }
  }
});

Deno.test("panel budget: evicted panels are copied again with the same results; a model over budget runs block by block", async () => {
  const model = randomModel(base, 41);
  const window = [3, 1, 4, 1, 5, 9, 2, 6];
  const want = kernels.windowLogProbs!(model, window)!;
  // Panels are rows rounded up to 8 (NR) × cols × 4 bytes; base's largest is lm_head's.
  const NR = 8;
  const bytes = (m: Matrix) => Math.ceil(m.rows / NR) * NR * m.cols * 4;
  const w = model.weights;
  const all = bytes(w.lmHead) +
    w.layers.reduce((n, l) => {
      const mlp = l.mlp.kind === "dense" ? [l.mlp.gate!, l.mlp.up, l.mlp.down] : [];
      return n + [l.q, l.k, l.v, l.o, ...mlp].reduce((s, m) => s + bytes(m), 0);
    }, 0);
  // Exactly the model's panels: whole windows still run, and again after eviction by matmuls.
  const tight = await wasmKernels({ panelBudget: all });
  assert.deepEqual(tight.windowLogProbs!(model, window), want);
  const x = new Float32Array(2 * base.dim).fill(0.5);
  const other = matrix(200, base.dim, 77);
  const out1 = new Float32Array(2 * 200);
  tight.matmul(x, 2, other, out1); // evicts least recently used panels of the model
  assert.deepEqual(tight.windowLogProbs!(model, window), want);
  const out2 = new Float32Array(2 * 200);
  tight.matmul(x, 2, other, out2);
  assert.deepEqual(out2, out1);
  // One byte less: the model runs block by block, one block's panels at a time, with the same
  // numbers; below a block's panels the path declines and the caller falls back to op by op.
  const small = await wasmKernels({ panelBudget: all - 1 });
  assert.deepEqual(small.windowLogProbs!(model, window), want);
  const block = Math.max(...w.layers.map(blockBytes));
  const tiny = await wasmKernels({ panelBudget: block - 1 });
  assert.equal(tiny.windowHidden!(model, window), undefined);
  // Matmuls alternating over weights larger together than the budget agree with the reference.
  const a = matrix(64, base.dim, 78), b = matrix(64, base.dim, 79);
  const one = await wasmKernels({ panelBudget: bytes(a) });
  for (const m of [a, b, a, b]) {
    const got = new Float32Array(2 * 64), ref = new Float32Array(2 * 64);
    one.matmul(x, 2, m, got);
    kernels.matmul(x, 2, m, ref);
    assert.deepEqual(got, ref);
  }
});

Deno.test("block by block: static ranges of each block reach its own sites (the host sees absolute block numbers)", async () => {
  const model = randomModel(base, 43);
  const window = Array.from({ length: 23 }, (_, t) => (t * 7 + 2) % base.vocabSize);
  // Block 0's ranges wide, block 1's narrow: swapping them would move the log-probabilities.
  const site = (lo: number, hi: number) => ({ range: { lo, hi } });
  const ranges = (s: number) => ({
    qkv: site(-4 * s, 4 * s),
    o: site(-2 * s, 2 * s),
    gateup: site(-4 * s, 4 * s),
    down: site(-3 * s, 3 * s),
  });
  const aq: ActivationQuantization = {
    bits: 6,
    kernel: "uniform",
    options: { ...DEFAULT_ACT_OPTIONS, granularity: "tensor", static: true },
    layers: [ranges(1), ranges(0.25)],
  };
  const m = { ...model, weights: { ...model.weights, activations: aq } };
  const swapped = {
    ...model,
    weights: { ...model.weights, activations: { ...aq, layers: [ranges(0.25), ranges(1)] } },
  };
  const whole = kernels.windowLogProbs!(m, window)!;
  assert.deepEqual(await blockwise(m, window), whole);
  const other = kernels.windowLogProbs!(swapped, window)!;
  assert.ok(other.some((x, i) => Math.abs(x - whole[i]!) > 1e-3), "the ranges matter");
});

Deno.test("whole windows on kernel threads (GEMMs split by lowbit_gemm) equal one thread bit for bit", async () => {
  const mt = await wasmKernels({ threads: 2, minSplit: 0 });
  try {
    assert.equal(mt.id, "wasm-simd-mt2");
    const model = randomModel(base, 45);
    const moeConfig: LlamaConfig = {
      ...base,
      moe: { nExperts: 3, topK: 2, normTopK: true, expertHiddenDim: 40, denseLayers: [] },
    };
    const dense = randomModel(moeConfig, 46);
    const moeModel: ForwardModel = {
      ...dense,
      weights: {
        ...dense.weights,
        layers: dense.weights.layers.map((l, i) => ({
          ...l,
          mlp: {
            kind: "moe" as const,
            router: matrix(3, base.dim, 500 + i, 1),
            experts: [0, 1, 2].map((e) => ({
              kind: "dense" as const,
              gate: matrix(40, base.dim, 510 + 10 * i + 3 * e),
              up: matrix(40, base.dim, 511 + 10 * i + 3 * e),
              down: matrix(base.dim, 40, 512 + 10 * i + 3 * e),
            })),
          },
        })),
      },
    };
    const a6: ActivationQuantization = { bits: 6, kernel: "uniform", options: DEFAULT_ACT_OPTIONS };
    const quantized = { ...model, weights: { ...model.weights, activations: a6 } };
    for (const [name, m] of [["dense", model], ["MoE", moeModel], ["A6", quantized]] as const) {
      for (const T of [2, 5, 33]) {
        const w = Array.from({ length: T }, (_, t) => (t * 13 + 1) % base.vocabSize);
        const one = kernels.windowLogProbs!(m, w);
        assert.ok(one, `${name}: refused (${windowUnsupported(m)})`);
        assert.deepEqual(mt.windowLogProbs!(m, w), one, `${name}, T=${T}`);
      }
    }
  } finally {
    mt.close?.();
  }
});

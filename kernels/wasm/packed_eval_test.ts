/**
 * Packed evaluation (`wasmKernels({ packed: true })`, `--packed`): `matmul` of a float32-storage
 * `PackedMatrix` runs the fused dequant kernel on its codes; everything else, bf16/f16-storage
 * packed weights included, runs the float32 way.
 *
 * Error budget against the float32 path (the same values as float32 panels through `gemv_f32` /
 * `gemm_f32`): the fused kernel's products of int16 activations and codes are exact integers, so
 * the two differ by (a) the rounding of each activation to int16 within its segment (≤ 256
 * columns of one group; half a step, step = max|x_seg| / 32767, i.e. ≤ 2^−16 ≈ 1.5e-5 of the
 * segment's largest value) and (b) float32 reassociation (the f32 GEMV sums in 8 interleaved
 * accumulators, the fused kernel per segment, `s·(step·Σxq·q − z·step·Σxq)`, then over segments).
 * Per linear that is README.md's budget `Σ_c (1e-5·|x_c| + 2^−15·max|x|)·|s|·2^bits` (checked
 * below on every linear of stories260K). Through the model these per-linear perturbations of
 * ~1.5e-5 add up over 5 blocks of serial linears (q/k/v → o, gate/up → down), with norms in
 * between: on stories260K at W2–W8 (1280 positions) the logits moved by at most 1.2e-4 of their
 * row's largest |logit| at W4 (6.3e-4 at W2). The budget is 5e-4 of the row's largest |logit|.
 * A per-logit relative bound is not usable: logits near zero move by relative amounts of order 1.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dequantizePacked, type PackedWeight, quantizeMatrix } from "../../core/quantizer.ts";
import { roundToStorage } from "../../core/storage_dtype.ts";
import { quantizeLinears } from "../../methods/rtn.ts";
import { createKvCache, forward, type ForwardModel } from "../../runners/forward.ts";
import { PackedMatrix } from "../../models/lazy_matrix.ts";
import { listLinears, mapLinears } from "../../models/linears.ts";
import type { LlamaWeights, Matrix } from "../../models/types.ts";
import { logSoftmaxRows, windowLogProbs } from "../../runners/window_score.ts";
import { needs } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";
import { kernelsById, selectKernels } from "../../runners/backend.ts";
import { fusedDispatch, wasmKernels, withPackedLinears } from "./mod.ts";
import { randomFloats } from "./test_util.ts";

const stories = await needs("hf-mirror");

/** Budget of |packed − f32| per logit, relative to the largest |logit| of its row (see above). */
const LOGIT_REL = 5e-4;

/** Records every packed `matmul` of a kernel set: per weight, fused and fallback calls. */
function spy() {
  const calls = new Map<PackedMatrix, { fused: number; fallback: number }>();
  const onPackedMatmul = (w: PackedMatrix, fused: boolean) => {
    const c = calls.get(w) ?? { fused: 0, fallback: 0 };
    if (fused) c.fused++;
    else c.fallback++;
    calls.set(w, c);
  };
  return { calls, onPackedMatmul };
}

/** stories260K with every linear RTN W4 g32: plain dequantized weights and the packed codes. */
async function quantized(): Promise<{
  f32: ForwardModel;
  packed: ReadonlyMap<string, PackedWeight>;
  packedModel: (dtype?: "F32" | "BF16") => ForwardModel;
}> {
  const m = await stories260K();
  const { weights, packed } = quantizeLinears(m.weights, {
    wBits: 4,
    aBits: 16,
    granularity: "group",
    groupSize: 32,
    symmetric: false,
  });
  return {
    f32: { config: m.config, weights },
    packed,
    packedModel: (dtype = "F32") => ({
      config: m.config,
      weights: mapLinears(weights, (s) => new PackedMatrix(packed.get(s.name)!, dtype)),
    }),
  };
}

/** A fixed window of stories260K token ids (BOS first). */
const WINDOW = [1, ...Array.from({ length: 127 }, (_, i) => (i * 37 + 5) % 512)];

/** Asserts the per-row budget and returns the largest |Δ| relative to its row's max |logit|. */
function assertLogitsClose(got: Float32Array, want: Float32Array, vocab: number): number {
  assert.equal(got.length, want.length);
  let worst = 0;
  for (let t = 0; t < want.length / vocab; t++) {
    let rowMax = 0, err = 0, iErr = 0;
    for (let i = t * vocab; i < (t + 1) * vocab; i++) {
      rowMax = Math.max(rowMax, Math.abs(want[i]!));
      const d = Math.abs(got[i]! - want[i]!);
      if (!(d <= err)) [err, iErr] = [d, i];
    }
    assert.ok(
      err <= LOGIT_REL * rowMax,
      `position ${t}: logit ${iErr % vocab} is ${got[iErr]} packed, ${want[iErr]} f32 ` +
        `(|Δ| ${err}, budget ${LOGIT_REL} × ${rowMax})`,
    );
    worst = Math.max(worst, err / rowMax);
  }
  return worst;
}

function argmaxRows(a: Float32Array, vocab: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < a.length; o += vocab) {
    let b = o;
    for (let i = o + 1; i < o + vocab; i++) if (a[i]! > a[b]!) b = i;
    out.push(b - o);
  }
  return out;
}

stories.test("packed evaluation runs every quantized linear of stories260K through matmulPacked, logits within budget of the f32 path", async () => {
  const { f32, packedModel } = await quantized();
  const model = packedModel();
  const { calls, onPackedMatmul } = spy();
  const k = await wasmKernels({ packed: true, onPackedMatmul });
  assert.equal(k.id, "wasm-simd+packed");
  const V = f32.config.vocabSize;

  const want = forward(f32, WINDOW, { kernels: k });
  assert.equal(calls.size, 0, "plain float32 weights never reach the packed dispatch");
  const got = forward(model, WINDOW, { kernels: k });

  // The spy: every quantized linear ran fused exactly once in the pass (one prefill call per
  // linear), none fell back.
  const linears = listLinears(model.weights).map(({ matrix }) => matrix as PackedMatrix);
  assert.equal(linears.length, 35);
  for (const [i, w] of linears.entries()) {
    assert.deepEqual(calls.get(w), { fused: 1, fallback: 0 }, `linear ${i}`);
  }
  assert.equal(calls.size, 35);

  const worst = assertLogitsClose(got, want, V);
  // Another kernel ran: the int16 rounding of the activations leaves a trace (float32 panels of
  // the same values would give the f32 path's logits bit for bit).
  assert.ok(worst > 0, "packed logits are bit-identical to the f32 path's: nothing ran fused");
  assert.deepEqual(argmaxRows(got, V), argmaxRows(want, V));

  // Decoding through the KV cache: each step's single-token matmuls dispatch too.
  calls.clear();
  const cacheA = createKvCache(f32.config, 40), cacheB = createKvCache(f32.config, 40);
  forward(f32, WINDOW.slice(0, 32), { kernels: k, cache: cacheA });
  forward(model, WINDOW.slice(0, 32), { kernels: k, cache: cacheB });
  for (const t of WINDOW.slice(32, 40)) {
    const a = forward(f32, [t], { kernels: k, cache: cacheA, logits: "last" });
    const b = forward(model, [t], { kernels: k, cache: cacheB, logits: "last" });
    assertLogitsClose(b, a, V);
  }
  for (const w of linears) assert.deepEqual(calls.get(w), { fused: 9, fallback: 0 });
});

stories.test("packed evaluation: whole windows decline a model with packed linears and run op by op", async () => {
  const { f32, packedModel } = await quantized();
  const model = packedModel();
  const { calls, onPackedMatmul } = spy();
  const k = await wasmKernels({ packed: true, onPackedMatmul });
  assert.equal(k.windowLogProbs!(model, WINDOW), undefined);
  assert.ok(k.windowLogProbs!(f32, WINDOW), "float32 weights still run as whole windows");
  // The task's entry point then goes op by op, through the dispatch.
  const lp = windowLogProbs(model, WINDOW, k);
  assert.equal(calls.size, 35);
  assert.deepEqual(
    lp,
    logSoftmaxRows(forward(model, WINDOW, { kernels: k }), model.config.vocabSize),
  );
});

stories.test("each fused linear is within the per-linear budget of the f32 GEMV/GEMM of the same values", async () => {
  const { packedModel } = await quantized();
  const k = await wasmKernels({ packed: true });
  const plain = await wasmKernels();
  let seed = 1;
  for (const { site, matrix } of listLinears(packedModel().weights)) {
    const w = matrix as PackedMatrix;
    const p = w.packed;
    const codesMax = 2 ** p.bits;
    for (const tokens of [1, 5]) {
      const x = randomFloats(tokens * p.cols, seed++);
      const fused = new Float32Array(tokens * p.rows);
      const f32 = new Float32Array(tokens * p.rows);
      k.matmul(x, tokens, w, fused);
      plain.matmul(x, tokens, w, f32); // no packed dispatch: float32 panels of w.data
      for (let t = 0; t < tokens; t++) {
        let xmax = 0;
        for (let c = 0; c < p.cols; c++) xmax = Math.max(xmax, Math.abs(x[t * p.cols + c]!));
        for (let o = 0; o < p.rows; o++) {
          let budget = 0;
          for (let c = 0; c < p.cols; c++) {
            const s = p.scales[o * p.groupsPerRow + Math.floor(c / p.groupSize)]!;
            budget += (1e-5 * Math.abs(x[t * p.cols + c]!) + 2 ** -15 * xmax) * Math.abs(s) *
              codesMax;
          }
          const i = t * p.rows + o;
          assert.ok(
            Math.abs(fused[i]! - f32[i]!) <= 2 * budget,
            `${site.name} token ${t} row ${o}: ${fused[i]} vs ${f32[i]} (budget ${2 * budget})`,
          );
        }
      }
    }
  }
});

stories.test("packed evaluation on kernel threads (wasm-simd-mt2+packed) is bit-identical to one thread", async () => {
  const { packedModel } = await quantized();
  const model = packedModel();
  const one = await wasmKernels({ packed: true });
  const { calls, onPackedMatmul } = spy();
  // minSplit 1: even stories260K's small matmuls are split over both threads.
  const mt = await wasmKernels({ packed: true, threads: 2, minSplit: 1, onPackedMatmul });
  try {
    assert.equal(mt.id, "wasm-simd-mt2+packed");
    const a = forward(model, WINDOW, { kernels: one });
    const b = forward(model, WINDOW, { kernels: mt });
    assert.deepEqual(b, a);
    assert.equal(calls.size, 35);
    for (const c of calls.values()) assert.deepEqual(c, { fused: 1, fallback: 0 });
  } finally {
    mt.close();
  }
});

stories.test("a bf16-storage PackedMatrix falls back to float32 panels of its rounded values", async () => {
  const { f32, packedModel } = await quantized();
  const model = packedModel("BF16");
  const { calls, onPackedMatmul } = spy();
  const k = await wasmKernels({ packed: true, onPackedMatmul });
  const rounded: ForwardModel = {
    config: f32.config,
    weights: mapLinears(f32.weights, (_s, m) => ({
      rows: m.rows,
      cols: m.cols,
      data: roundToStorage(m.data.slice(), "BF16"),
    })),
  };
  const got = forward(model, WINDOW, { kernels: k });
  assert.equal(calls.size, 35);
  for (const c of calls.values()) assert.deepEqual(c, { fused: 0, fallback: 1 });
  // Exactly the float32 path on the bf16-rounded values, which the fused kernel would not give.
  assert.deepEqual(got, forward(rounded, WINDOW, { kernels: k }));
  assert.ok(
    !listLinears(model.weights).some(({ matrix }) => fusedDispatch(matrix)),
    "no bf16 linear is dispatched",
  );
  // A kernel set without `packed` never dispatches, whatever the storage.
  const { calls: none, onPackedMatmul: hook } = spy();
  const plain = await wasmKernels({ onPackedMatmul: hook });
  assert.equal(plain.id, "wasm-simd");
  assert.deepEqual(
    forward(packedModel(), WINDOW, { kernels: plain }),
    forward(f32, WINDOW, {
      kernels: plain,
    }),
  );
  assert.equal(none.size, 0);
});

stories.test("withPackedLinears wraps exactly the float32 linears its codes reproduce", async () => {
  const { f32, packed } = await quantized();
  const all = withPackedLinears(f32.weights, packed);
  assert.deepEqual([all.packed, all.linears], [35, 35]);
  for (const { site, matrix } of listLinears(all.weights)) {
    assert.ok(fusedDispatch(matrix), site.name);
    assert.equal((matrix as PackedMatrix).packed, packed.get(site.name));
  }
  // One linear with other values, one in bf16 storage, one without codes: kept as they are.
  const changed: Matrix = { rows: 64, cols: 64, data: new Float32Array(64 * 64) };
  const l0 = f32.weights.layers[0]!;
  const bf16: Matrix = { ...l0.k, data: roundToStorage(l0.k.data.slice(), "BF16"), dtype: "BF16" };
  const weights: LlamaWeights = {
    ...f32.weights,
    layers: [{ ...l0, q: changed, k: bf16 }, ...f32.weights.layers.slice(1)],
  };
  const someCodes = new Map([...packed].filter(([name]) => name !== "layers.0.v"));
  const r = withPackedLinears(weights, someCodes);
  assert.deepEqual([r.packed, r.linears], [32, 35]);
  const layer0 = r.weights.layers[0]!;
  assert.equal(layer0.q, changed);
  assert.equal(layer0.k, bf16);
  assert.equal(layer0.v, l0.v);
  assert.ok(fusedDispatch(layer0.o));
  // The codes the kernel reads are the weights' values, bit for bit.
  const o = layer0.o as PackedMatrix;
  assert.deepEqual(dequantizePacked(o.packed), l0.o.data);
});

Deno.test("--packed selects the fused dispatch on wasm, wasm-fma and wasm-mt only; ids round-trip", async () => {
  assert.equal((await selectKernels("wasm", { packed: true })).kernels.id, "wasm-simd+packed");
  assert.equal((await selectKernels("wasm")).kernels.id, "wasm-simd");
  assert.match((await selectKernels("wasm-fma", { packed: true })).kernels.id, /\+packed$/);
  const one = await selectKernels("wasm-mt", { packed: true, kernelThreads: 1 });
  assert.equal(one.kernels.id, "wasm-simd+packed");
  const mt = await selectKernels("wasm-mt", { packed: true, kernelThreads: 2 });
  try {
    assert.equal(mt.kernels.id, "wasm-simd-mt2+packed");
  } finally {
    mt.kernels.close?.();
  }
  for (const backend of ["ts", "webgpu", "auto"]) {
    await assert.rejects(selectKernels(backend, { packed: true }), /--packed needs --backend wasm/);
  }
  // Evaluation workers rebuild the same kernels from a row's id.
  for (const id of ["wasm-simd+packed", "wasm-simd-mt2+packed"]) {
    const k = await kernelsById(id);
    assert.equal(k.id, id);
    const spec = { bits: 4, granularity: "group", groupSize: 32, symmetric: false } as const;
    const p = new PackedMatrix(quantizeMatrix(randomFloats(8 * 32, 3), 8, 32, spec).packed);
    const out = new Float32Array(8), want = new Float32Array(8);
    const x = randomFloats(32, 4);
    k.matmul(x, 1, p, out);
    k.matmulPacked!(x, 1, p.packed, want);
    assert.deepEqual(out, want, `${id} dispatches packed weights to matmulPacked`);
  }
  await assert.rejects(kernelsById("js-ref+packed"), /Unknown kernel id/);
});

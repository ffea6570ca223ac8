/**
 * Oracle §5.9 on onnxruntime-web's WASM execution provider: the plain-op ONNX decoder of tiny
 * random checkpoints (2 layers; GQA, q/k/v/o and MLP biases, Qwen2's sliding window, Mistral,
 * Llama 3 RoPE scaling) gives our forward pass's logits within 1e-4, unquantized (float MatMul)
 * and RTN W4 g16 (MatMulNBits); the stories260K W4 g32 RTN cell exported by `exportModel` gives
 * our quantized model's perplexity; unsupported features and widths are refused by name.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-web";
import { cellParams, quantizeCell } from "../bench/cell.ts";
import { drawCalibrationSet, methodCalibration } from "../methods/calibration/set.ts";
import { gptq } from "../methods/gptq.ts";
import { UnsupportedConfigError } from "../core/errors.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { quantizeLinears, rtn } from "../methods/rtn.ts";
import type { QuantConfig } from "../methods/types.ts";
import { forward } from "../runners/forward.ts";
import { loadLlama2c, loadModel } from "../models/load.ts";
import { bundledDataDir, hfMirrorRoot, needs, sharedPath } from "../testing/fixtures.ts";

const storiesHf = await needs("models/stories260K-hf");
const stories = await needs("hf-mirror");
import { directoryReader, exportModel } from "./export_model.ts";
import { onnxDecoder } from "./onnx_decoder.ts";

const golden = (name: string) => new URL(`../testing/golden/${name}`, import.meta.url).pathname;
const W4G16: QuantConfig = {
  wBits: 4,
  aBits: 16,
  granularity: "group",
  groupSize: 16,
  symmetric: false,
};

async function runOnnx(model: Uint8Array, ids: readonly number[][]): Promise<Float32Array[]> {
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
  const out: Float32Array[] = [];
  for (const seq of ids) {
    const input = new ort.Tensor("int64", BigInt64Array.from(seq.map(BigInt)), [1, seq.length]);
    const r = await session.run({ input_ids: input });
    out.push(r.logits!.data as Float32Array);
  }
  await session.release();
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

Deno.test({
  name:
    "ONNX decoder §5.9 (WASM EP): tiny Llama / Qwen2 / Mistral / Llama 3 give our logits within 1e-4, float and W4 MatMulNBits (g16, per-channel), at two lengths",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    for (const family of ["llama_bias", "qwen2", "mistral", "llama3"]) {
      const m = await loadModel(golden(family));
      const v = m.config.vocabSize;
      const ids = [[1, 5, 9, 13, 2, 7, 30, 11, 4, 17, 23, 3], [3, 8, 1, 2, 9, 14, 21]]
        .map((s) => s.map((t) => t % v));
      const q = quantizeLinears(m.weights, W4G16);
      const pc = quantizeLinears(m.weights, { ...W4G16, granularity: "channel", symmetric: true });
      const variants = [
        { label: "float", weights: m.weights, packed: new Map() },
        { label: "W4g16", weights: q.weights, packed: q.packed },
        // Per-channel symmetric: one block of the next power of two, no zero_points input.
        { label: "W4-channel-sym", weights: pc.weights, packed: pc.packed },
      ];
      for (const { label, weights, packed } of variants) {
        const { model, report } = onnxDecoder(m.config, weights, packed);
        assert.equal(report.matMulNBits, label === "float" ? 0 : 7 * m.config.nLayers);
        const theirs = await runOnnx(model, ids);
        ids.forEach((seq, i) => {
          const ours = forward({ config: m.config, weights }, seq);
          const d = maxAbsDiff(ours, theirs[i]!);
          console.log(`${family} ${label} T=${seq.length}: max |Δlogit| ${d.toExponential(2)}`);
          assert.ok(d <= 1e-4, `${family} ${label}: max |Δlogit| ${d}`);
        });
      }
    }
  },
});

storiesHf.test({
  name:
    "ONNX decoder: the stories260K W4 g32 RTN and GPTQ cells, exported, give our quantized model's perplexity on 4 windows",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-onnx-" });
    try {
      const src = sharedPath("models", "stories260K-hf");
      const model = await loadModel(src);
      const q: QuantConfig = { ...W4G16, groupSize: 32 };
      const calibration = await drawCalibrationSet(
        methodCalibration(gptq, { samples: 16 }),
        model.tokenizer,
        model.config.maxSeqLen,
        bundledDataDir(),
      );
      for (const method of [rtn, gptq]) {
        const params = cellParams(method, model.id, {});
        const quantized = await quantizeCell(model, method, params, q, {
          kernels: refKernels,
          calibration,
        });
        const { manifest } = await exportModel(
          { model, readFile: directoryReader(src) },
          quantized,
          `${dir}/${method.id}`,
          {
            format: "onnx",
            provenance: {
              method: { id: method.id, version: method.version, params },
              quant: q,
              lowbit: { version: "test", commit: null, dirty: null },
            },
          },
        );
        assert.equal(manifest.lossless, true, manifest.deviations.join("; "));
        const text = await Deno.readTextFile(
          `${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`,
        );
        const body = model.tokenizer.encode(text.slice(0, 20000), { bos: false });
        const L = 128;
        const windows = [0, 1, 2, 3].map((w) => [
          model.tokenizer.bosId,
          ...body.slice(w * (L - 1), (w + 1) * (L - 1)),
        ]);
        const theirs = await runOnnx(
          await Deno.readFile(`${dir}/${method.id}/model.onnx`),
          windows,
        );
        const V = model.config.vocabSize;
        let nllOurs = 0, nllTheirs = 0, n = 0, dMax = 0;
        const nll = (z: Float32Array, t: number, y: number) => {
          let mx = -Infinity;
          for (let i = 0; i < V; i++) mx = Math.max(mx, z[t * V + i]!);
          let s = 0;
          for (let i = 0; i < V; i++) s += Math.exp(z[t * V + i]! - mx);
          return mx + Math.log(s) - z[t * V + y]!;
        };
        windows.forEach((w, i) => {
          const ours = forward(quantized, w);
          dMax = Math.max(dMax, maxAbsDiff(ours, theirs[i]!));
          for (let t = 0; t + 1 < w.length; t++) {
            nllOurs += nll(ours, t, w[t + 1]!);
            nllTheirs += nll(theirs[i]!, t, w[t + 1]!);
            n++;
          }
        });
        const pplOurs = Math.exp(nllOurs / n), pplTheirs = Math.exp(nllTheirs / n);
        console.log(
          `stories260K W4g32 ${method.id}, ${n} tokens: perplexity ours ${pplOurs}, ONNX ${pplTheirs} ` +
            `(rel. Δ ${(Math.abs(pplTheirs - pplOurs) / pplOurs).toExponential(2)}), ` +
            `max |Δlogit| ${dMax.toExponential(2)}`,
        );
        // Each token's NLL, logsumexp(z) − z_y, moves by at most 2·max|Δz|, so the mean NLL does
        // too and perplexity by a factor within exp(±2·max|Δz|): with max|Δz| ≤ 1e-4 (float32 sums
        // in another order), the relative perplexity change is below 2.0002e-4.
        assert.ok(dMax <= 1e-4, `max |Δlogit| ${dMax}`);
        assert.ok(Math.abs(pplTheirs - pplOurs) / pplOurs <= Math.expm1(2 * dMax) + 1e-12);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

stories.test("ONNX decoder: refuses unsupported features by name, non-4-bit linears and groups that are no block size", async () => {
  const gemma = await loadModel(golden("gemma2"));
  assert.throws(
    () => onnxDecoder(gemma.config, gemma.weights),
    (e: Error) =>
      e instanceof UnsupportedConfigError &&
      /^the ONNX exporter does not implement .*attnSoftcap \(attention score soft-capping/
        .test(e.message) &&
      /sandwichNorms/.test(e.message) && /geluTanh/.test(e.message),
  );
  const phi3 = await loadModel(golden("phi3"));
  assert.throws(() => onnxDecoder(phi3.config, phi3.weights), /partialRotary/);
  const tiny = `${await hfMirrorRoot()}/karpathy/tinyllamas/resolve/main/stories260K`;
  const llama2c = await loadLlama2c(`${tiny}/stories260K.bin`, `${tiny}/tok512.bin`);
  assert.throws(
    () => onnxDecoder(llama2c.config, llama2c.weights),
    /does not implement interleavedRope \(RoPE on interleaved pairs \(llama2\.c\)\)/,
  );
  const m = await loadModel(golden("llama_bias"));
  const w8 = quantizeLinears(m.weights, { ...W4G16, wBits: 8 });
  assert.throws(
    () => onnxDecoder(m.config, w8.weights, w8.packed),
    /layers\.0\.q: onnxruntime-web 1\.20\.1 runs MatMulNBits at 4 bits only/,
  );
  const g12 = quantizeLinears(m.weights, { ...W4G16, groupSize: 12 });
  assert.throws(
    () => onnxDecoder(m.config, g12.weights, g12.packed),
    /block_size must be a power of two ≥ 16/,
  );
});

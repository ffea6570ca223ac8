/**
 * Export → import round trips (oracles §5.6–5.7 at model level): a model quantized with
 * float16-exact scales, exported as GPTQ (v1 and v2) or compressed-tensors and loaded back by
 * the ordinary loader, has bit-identical dequantized linears and identical logits through
 * `runners/forward.ts`; with float16 float tensors, it equals our model with every float tensor
 * and dequantized weight rounded to float16 (computed here, independently of the importer).
 */
import assert from "node:assert/strict";
import { quantizeCell } from "../bench/cell.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { forward } from "../runners/forward.ts";
import { PackedMatrix } from "../models/lazy_matrix.ts";
import { listLinears, mapLinears } from "../models/linears.ts";
import { loadModel } from "../models/load.ts";
import type { LlamaWeights, LoadedModel } from "../models/types.ts";
import type { QuantConfig, QuantizedModel } from "../methods/types.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { directoryReader, exportModel, type ExportOptions } from "./export_model.ts";
import { rtnFp16Scales } from "./fp16_rtn.ts";

const STORIES = sharedPath("models", "stories260K-hf");
const storiesHf = await needs("models/stories260K-hf");
const golden = (name: string) => new URL(`../testing/golden/${name}`, import.meta.url).pathname;

function quant(bits: number, group: number | "channel", symmetric: boolean): QuantConfig {
  return group === "channel"
    ? { wBits: bits, aBits: 16, granularity: "channel", symmetric }
    : { wBits: bits, aBits: 16, granularity: "group", groupSize: group, symmetric };
}

async function quantize(model: LoadedModel, q: QuantConfig): Promise<QuantizedModel> {
  return await quantizeCell(model, rtnFp16Scales, {}, q, { kernels: refKernels });
}

async function exportTo(
  model: LoadedModel,
  srcDir: string,
  quantized: QuantizedModel,
  out: string,
  options: Omit<ExportOptions, "provenance">,
) {
  return await exportModel({ model, readFile: directoryReader(srcDir) }, quantized, out, {
    ...options,
    provenance: {
      method: { id: "rtn", version: 1, params: {} },
      quant: quant(4, 32, false),
      lowbit: { version: "test", commit: null, dirty: null },
    },
  });
}

const TOKENS = [1, 5, 9, 13, 2, 7, 30, 11, 4, 17, 23, 3];

function logits(w: { config: LoadedModel["config"]; weights: LlamaWeights }, vocab: number) {
  return forward(w, TOKENS.map((t) => t % vocab));
}

/** Our weights with float tensors and dequantized linears rounded as a float16 checkpoint holds them. */
function asFloat16(w: LlamaWeights): LlamaWeights {
  const r = (v: Float32Array) => v.map((x) => Math.f16round(x));
  const m = (x: { rows: number; cols: number; data: Float32Array }) => ({
    rows: x.rows,
    cols: x.cols,
    data: r(x.data),
  });
  const lin = mapLinears(w, (_s, x) => m(x));
  const embed = m(w.embed);
  return {
    ...lin,
    embed,
    norm: r(w.norm),
    lmHead: w.lmHead === w.embed ? embed : m(w.lmHead),
    layers: lin.layers.map((l) => ({
      ...l,
      attnNorm: r(l.attnNorm),
      mlpNorm: r(l.mlpNorm),
      ...(l.qBias ? { qBias: r(l.qBias) } : {}),
      ...(l.kBias ? { kBias: r(l.kBias) } : {}),
      ...(l.vBias ? { vBias: r(l.vBias) } : {}),
    })),
  };
}

function assertSameLinears(ours: LlamaWeights, theirs: LlamaWeights, what: string): void {
  const a = listLinears(ours), b = listLinears(theirs);
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(b[i]!.matrix instanceof PackedMatrix, `${what}: ${b[i]!.site.name} is packed`);
    assert.deepEqual(b[i]!.matrix.data, a[i]!.matrix.data, `${what}: ${a[i]!.site.name}`);
  }
}

storiesHf.test({
  name:
    "stories260K-hf: GPTQ v1 / v2 and compressed-tensors exports load back bit-identical, same logits",
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-export-" });
    try {
      const model = await loadModel(STORIES);
      const cases: [string, QuantConfig, Omit<ExportOptions, "provenance">, string?][] = [
        ["gptq-v1", quant(8, 32, true), { format: "gptq", floatDtype: "source" }, "gptq"],
        ["gptq-v2", quant(8, 32, false), {
          format: "gptq",
          floatDtype: "source",
          gptqFormat: "gptq_v2",
        }, "gptq_v2"],
        ["gptq-channel", quant(8, "channel", false), { format: "gptq", floatDtype: "source" }],
        ["ct-w4g32", quant(4, 32, false), {
          format: "compressed-tensors",
          floatDtype: "source",
          maxShardBytes: 100_000, // sharded: model-0000i-of-0000N + index
        }],
        ["ct-w8-sym", quant(8, 64, true), { format: "compressed-tensors", floatDtype: "source" }],
      ];
      for (const [name, q, options, ckFormat] of cases) {
        const quantized = await quantize(model, q);
        const { manifest } = await exportTo(model, STORIES, quantized, `${dir}/${name}`, options);
        assert.equal(manifest.lossless, true, `${name}: ${manifest.deviations.join("; ")}`);
        if (ckFormat) {
          assert.equal(
            (manifest.export as { checkpointFormat?: string }).checkpointFormat,
            ckFormat,
          );
        }
        const back = await loadModel(`${dir}/${name}`);
        if (options.maxShardBytes) {
          assert.ok(manifest.files.some((f) => f.path === "model.safetensors.index.json"));
          assert.ok(back.files.filter((f) => /^model-\d{5}-of-\d{5}/.test(f.path)).length > 1);
        }
        assertSameLinears(quantized.weights, back.weights, name);
        assert.deepEqual(back.weights.embed.data, model.weights.embed.data, `${name}: embedding`);
        assert.deepEqual(
          logits(back, model.config.vocabSize),
          logits(quantized, model.config.vocabSize),
          `${name}: logits`,
        );
      }
      // Float16 float tensors (the default): the loader's model is ours rounded to float16.
      const quantized = await quantize(model, quant(8, 32, false));
      const { manifest } = await exportTo(model, STORIES, quantized, `${dir}/f16`, {
        format: "gptq",
      });
      assert.equal(manifest.lossless, false);
      assert.match(manifest.deviations.join("\n"), /stored as F16, the source holds F32/);
      const back = await loadModel(`${dir}/f16`);
      const expected = asFloat16(quantized.weights);
      assertSameLinears(expected, back.weights, "f16");
      assert.deepEqual(
        logits(back, model.config.vocabSize),
        logits({ config: model.config, weights: expected }, model.config.vocabSize),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "families: GPTQ and compressed-tensors round trips of tiny random checkpoints (biases, GQA, fused Phi-3, Gemma 2 norms, OPT, MoE)",
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-export-fam-" });
    try {
      const cases: [string, "gptq" | "compressed-tensors"][] = [
        ["llama_bias", "gptq"],
        ["llama_bias", "compressed-tensors"],
        ["qwen2", "gptq"],
        ["qwen2", "compressed-tensors"],
        ["mistral", "gptq"],
        ["qwen3", "gptq"],
        ["phi3", "gptq"],
        ["gemma2", "gptq"],
        ["gemma2", "compressed-tensors"],
        ["opt", "gptq"],
        ["qwen2_moe", "compressed-tensors"],
        ["mixtral", "gptq"],
      ];
      for (const [family, format] of cases) {
        const model = await loadModel(golden(family));
        const quantized = await quantize(model, quant(4, 16, false));
        const out = `${dir}/${family}-${format}`;
        const { manifest } = await exportTo(model, golden(family), quantized, out, {
          format,
          floatDtype: "source",
        });
        const what = `${family} ${format}`;
        assert.equal(manifest.lossless, true, `${what}: ${manifest.deviations.join("; ")}`);
        const back = await loadModel(out);
        assertSameLinears(quantized.weights, back.weights, what);
        const v = model.config.vocabSize;
        assert.deepEqual(logits(back, v), logits(quantized, v), `${what}: logits`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

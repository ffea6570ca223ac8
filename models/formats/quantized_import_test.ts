/**
 * Import of published quantized checkpoint formats through the ordinary loader: an AutoAWQ
 * GEMM checkpoint and an act-order GPTQ checkpoint (built here with the per-tensor codecs) load
 * as packed matrices equal to the weights written; 2-bit GPTQ; the refusals name what they
 * refuse; the bench evaluates an imported directory with `fp`.
 */
import assert from "node:assert/strict";
import { runMatrix } from "../../bench/runner.ts";
import { UnsupportedConfigError } from "../../core/errors.ts";
import { dequantizePacked, type PackedWeight } from "../../core/quantizer.ts";
import type { QuantizedModel } from "../../methods/types.ts";
import { quantizeLinears } from "../../methods/rtn.ts";
import { forward } from "../../runners/forward.ts";
import { PackedMatrix } from "../lazy_matrix.ts";
import { listLinears, mapLinears } from "../linears.ts";
import { loadModel } from "../load.ts";
import { bundledDataDir, needs, sharedPath } from "../../testing/fixtures.ts";

const storiesHf = await needs("models/stories260K-hf");
import { awqQuantizationConfig, exportAwqGemm } from "./awq.ts";
import { checkpointLayout } from "../../export/checkpoint_layout.ts";
import { directoryReader, exportModel } from "../../export/export_model.ts";
import { parseQuantizationConfig } from "./quantized_import.ts";
import { namedEntries, writeShardedSafetensors } from "./safetensors_write.ts";
import { fp16ScaleChooser } from "./scale_rounding.ts";
import { floatTensor } from "./tensor.ts";

const golden = (name: string) => new URL(`../../testing/golden/${name}`, import.meta.url).pathname;
const PROVENANCE = {
  method: { id: "rtn", version: 1, params: {} },
  quant: { wBits: 4, aBits: 16, granularity: "group" as const, groupSize: 16, symmetric: false },
  lowbit: { version: "test", commit: null, dirty: null },
};

async function copyTokenizer(from: string, to: string): Promise<void> {
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(`${from}/${f}`, `${to}/${f}`);
  }
}

function assertLinearsEqual(
  ours: ReturnType<typeof listLinears>,
  theirs: ReturnType<typeof listLinears>,
  what: string,
): void {
  assert.equal(theirs.length, ours.length);
  ours.forEach(({ site, matrix }, i) => {
    assert.ok(theirs[i]!.matrix instanceof PackedMatrix, `${what}: ${site.name} packed`);
    assert.deepEqual(theirs[i]!.matrix.data, matrix.data, `${what}: ${site.name}`);
  });
}

Deno.test("AutoAWQ GEMM checkpoint loads as packed matrices: the weights written, the same logits", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-awq-" });
  try {
    const src = golden("qwen2");
    const m = await loadModel(src);
    const q = quantizeLinears(m.weights, {
      wBits: 4,
      aBits: 16,
      granularity: "group",
      groupSize: 16,
      symmetric: false,
    }, fp16ScaleChooser());
    const tensors = checkpointLayout(m.config, q.weights, q.packed).flatMap((e) =>
      e.kind === "float"
        ? [{ name: e.name, ...floatTensor(e.name, e.values, e.shape, "F32") }]
        : namedEntries(e.module, { ...exportAwqGemm(e.packed, { name: e.module }) })
    );
    await writeShardedSafetensors(dir, tensors);
    const config = JSON.parse(await Deno.readTextFile(`${src}/config.json`));
    config.quantization_config = awqQuantizationConfig(16);
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    await copyTokenizer(src, dir);
    const back = await loadModel(dir);
    assertLinearsEqual(listLinears(q.weights), listLinears(back.weights), "awq");
    const ids = [1, 4, 9, 16, 25, 36, 49, 64];
    assert.deepEqual(
      forward(back, ids),
      forward({ config: m.config, weights: q.weights }, ids),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A column → group map in act-order form: groups formed over a permutation of the columns. */
function actOrder(p: PackedWeight, seed: number): PackedWeight {
  const perm = Array.from({ length: p.cols }, (_, c) => c).sort((a, b) =>
    ((a * 7919 + seed) % 101) - ((b * 7919 + seed) % 101) || a - b
  );
  const groupIndex = new Uint32Array(p.cols);
  perm.forEach((c, rank) => (groupIndex[c] = Math.floor(rank / p.groupSize)));
  return { ...p, groupIndex };
}

Deno.test("GPTQ desc_act (g_idx) and 2-bit checkpoints: export → import keeps every value; fused Phi-3 parts with different g_idx are refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-gptq-act-" });
  try {
    for (const [family, bits] of [["qwen2", 4], ["qwen2", 2], ["llama_bias", 8]] as const) {
      const src = golden(family);
      const m = await loadModel(src);
      const q = quantizeLinears(m.weights, {
        wBits: bits,
        aBits: 16,
        granularity: "group",
        groupSize: 16,
        symmetric: true,
      }, fp16ScaleChooser());
      const packed = new Map([...q.packed].map(([k, p], i) => [k, actOrder(p, i)]));
      const weights = mapLinears(m.weights, (s) => new PackedMatrix(packed.get(s.name)!));
      const quantized: QuantizedModel = { config: m.config, weights, packed, notes: [] };
      const out = `${dir}/${family}-${bits}`;
      const { manifest } = await exportModel(
        { model: m, readFile: directoryReader(src) },
        quantized,
        out,
        { format: "gptq", floatDtype: "source", provenance: PROVENANCE },
      );
      assert.equal(manifest.lossless, true, manifest.deviations.join("; "));
      const config = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
      assert.equal(config.quantization_config.desc_act, true);
      assert.equal(config.quantization_config.bits, bits);
      assert.equal(config.quantization_config.checkpoint_format, "gptq");
      const back = await loadModel(out);
      const theirs = listLinears(back.weights);
      listLinears(weights).forEach(({ site, matrix }, i) => {
        const p = (theirs[i]!.matrix as PackedMatrix).packed;
        assert.deepEqual(p.groupIndex, packed.get(site.name)!.groupIndex, site.name);
        assert.deepEqual(dequantizePacked(p), matrix.data, site.name);
      });
    }
    const phi3 = await loadModel(golden("phi3"));
    const q = quantizeLinears(phi3.weights, {
      wBits: 4,
      aBits: 16,
      granularity: "group",
      groupSize: 16,
      symmetric: true,
    });
    const packed = new Map([...q.packed].map(([k, p], i) => [k, actOrder(p, i)]));
    assert.throws(
      () => checkpointLayout(phi3.config, q.weights, packed),
      /model\.layers\.0\.self_attn\.qkv_proj: the fused parts have different act-order group indices/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("quantization_config: unknown methods and unread variants are refused by name", async () => {
  const refuse = (qc: unknown, re: RegExp) =>
    assert.throws(
      () => parseQuantizationConfig(qc, "config.json"),
      (e: Error) => e instanceof UnsupportedConfigError && re.test(e.message),
    );
  refuse({ quant_method: "bitsandbytes" }, /quant_method "bitsandbytes"\) is not supported/);
  refuse({ quant_method: "awq", bits: 4, group_size: 128, version: "gemv" }, /version "gemv"/);
  refuse(
    { quant_method: "gptq", bits: 4, group_size: 128, checkpoint_format: "marlin" },
    /checkpoint_format "marlin"/,
  );
  refuse({ quant_method: "gptq", bits: 5, group_size: 128 }, /bits 5/);
  refuse(
    { quant_method: "compressed-tensors", format: "float-quantized", config_groups: {} },
    /format "float-quantized"/,
  );
  refuse(
    {
      quant_method: "compressed-tensors",
      format: "pack-quantized",
      config_groups: {
        group_0: {
          targets: ["Linear"],
          weights: { num_bits: 4, strategy: "tensor", symmetric: true },
        },
      },
    },
    /strategy "tensor"/,
  );
  // Through the loader: the config names the method before any tensor is read.
  const dir = await Deno.makeTempDir({ prefix: "lowbit-bnb-" });
  try {
    const src = golden("qwen2");
    for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${src}/${f}`, `${dir}/${f}`);
    }
    const config = JSON.parse(await Deno.readTextFile(`${src}/config.json`));
    config.quantization_config = { quant_method: "hqq" };
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    await assert.rejects(loadModel(dir), /quant_method "hqq"\) is not supported/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

storiesHf.test({
  name: "bench: an imported GPTQ export evaluates with --methods fp",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-bench-import-" });
    try {
      const src = sharedPath("models", "stories260K-hf");
      const m = await loadModel(src);
      const q = quantizeLinears(m.weights, {
        wBits: 8,
        aBits: 16,
        granularity: "group",
        groupSize: 32,
        symmetric: true,
      }, fp16ScaleChooser());
      await exportModel(
        { model: m, readFile: directoryReader(src) },
        { config: m.config, weights: q.weights, packed: q.packed, notes: [] },
        `${dir}/gptq`,
        { format: "gptq", floatDtype: "source", provenance: PROVENANCE },
      );
      const rows = await runMatrix({
        id: "import",
        models: [`${dir}/gptq`],
        methods: ["fp"],
        bits: [4],
        groups: ["channel"],
        tasks: ["tinystories"],
        symmetric: false,
        limit: 2,
        context: 64,
      }, { outDir: `${dir}/runs`, dataDir: bundledDataDir() });
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.status, "ok", JSON.stringify(rows[0]!.error ?? rows[0]));
      const ppl = rows[0]!.metrics.find((x) => x.metric === "ppl")!.value;
      assert.ok(Number.isFinite(ppl) && ppl > 1 && ppl < 20, `ppl ${ppl}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

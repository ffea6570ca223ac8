/**
 * Golden tests of every supported family against an independent reference: the checkpoints
 * under `testing/golden/<case>/` and their expected logits come from
 * `testing/golden/generate.py`, a numpy implementation of the transformers float32 eager
 * forward pass written from the architecture notes (not from this code). Each case is loaded
 * with {@linkcode loadModel} exactly as a transformers-layout directory (config.json,
 * safetensors — one file or sharded —, tokenizer.json), run with {@linkcode forward}, and
 * compared with the reference's float32 logits — in one prefill and decoded in chunks through a
 * KV cache; lazily resident and in-memory (`buildHfModel`) loads must give the same logits
 * exactly.
 *
 * Tolerance. The generator runs the same forward in float64 and records the largest
 * |float32 − float64| logit difference per case: at most 3.7e-7 × max|logit| over all cases
 * (`rel_f32_vs_f64` in expected.json). Our forward stores float32 between operations but sums
 * in float64; measured against the numpy float32 logits it is off by at most 3.7e-7 × max|logit|
 * too (2.2e-7 against float64). {@linkcode REL_TOL} = 1.5e-6 × max|logit| is 4× that, and below
 * the smallest semantic slips measured on these models: an RMSNorm epsilon of 1e-6 instead of
 * 1e-5 moves the logits by 4.5e-6 × max|logit|, a Llama 3 RoPE factor of 8.001 instead of 8 by
 * 3.9e-6, a RoPE base of 10001 instead of 10000 by 2.1e-6; a sliding window one key too wide,
 * by 0.3 to 0.6.
 *
 * RTN: our `quantizeLinears` must reproduce the reference's dequantized weights bit for bit
 * (sha256 of every quantized linear), and the logits of the quantized model within the same
 * tolerance.
 *
 * Ignored tests name known discrepancies with transformers / GPTQ (see each comment): the
 * quantizer's arithmetic ({@linkcode QUANTIZER_ARITHMETIC}), Qwen's `bos_token: null`, Phi-3's
 * default `original_max_position_embeddings`, Gemma 2's `hidden_activation`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { FormatError, UnsupportedConfigError } from "../core/errors.ts";
import { sha256Hex } from "../core/hash.ts";
import { quantizeLinears } from "../methods/rtn.ts";
import { writeSafetensors } from "../testing/safetensors_writer.ts";
import { createKvCache, forward } from "../runners/forward.ts";
import { parseHfConfig } from "./hf_config.ts";
import { buildHfModel } from "./hf_model.ts";
import { isLazy, StoredMatrix } from "./lazy_matrix.ts";
import { listLinears } from "./linears.ts";
import { loadModel } from "./load.ts";
import { residency } from "./residency.ts";
import { parseSafetensors, toFloat32 } from "./safetensors.ts";
import type { Granularity } from "../core/quantizer.ts";
import type { LoadedModel } from "./types.ts";

const GOLDEN = decodeURIComponent(new URL("../testing/golden", import.meta.url).pathname);

/** Largest allowed max|Δlogit| relative to the reference's max|logit| (see the module doc). */
const REL_TOL = 1.5e-6;

/** Every golden case (a directory under testing/golden). */
const CASES = [
  "llama_bias",
  "llama3",
  "mistral",
  "qwen2",
  "qwen3",
  "phi3",
  "gemma2",
  "opt",
  "mixtral",
  "qwen2_moe",
  "qwen3_moe",
  "olmoe",
] as const;

interface RtnReference {
  logits_f32: string;
  max_abs_logit: number;
  raw?: { site: string; tensor: string; file: string; shape: [number, number] };
  sha256: Record<string, string>;
}

interface RtnExpected {
  spec: {
    wBits: number;
    aBits: number;
    granularity: Granularity;
    groupSize?: number;
    symmetric: boolean;
  };
  float32: RtnReference;
  exact: RtnReference;
  linears_differing_float32_vs_exact: string[];
}

interface Expected {
  case: string;
  family: string;
  dtype: string;
  tokens: number[];
  text: string;
  shape: [number, number];
  logits_f32: string;
  logits_f64: string;
  max_abs_logit: number;
  max_abs_f32_vs_f64: number;
  rel_f32_vs_f64: number;
  rtn?: Record<string, RtnExpected>;
}

function caseDir(name: string): string {
  return `${GOLDEN}/${name}`;
}

async function expectedOf(name: string): Promise<Expected> {
  return JSON.parse(await Deno.readTextFile(`${caseDir(name)}/expected.json`)) as Expected;
}

/** A raw little-endian float32 (or, with `f64`, float64) file. */
async function readRaw(path: string, f64 = false): Promise<Float64Array> {
  const bytes = await Deno.readFile(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = f64 ? 8 : 4;
  const out = new Float64Array(bytes.length / size);
  for (let i = 0; i < out.length; i++) {
    out[i] = f64 ? view.getFloat64(i * size, true) : view.getFloat32(i * size, true);
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Closes the files a lazily loaded model keeps open. */
function closeLazy(model: LoadedModel): void {
  const stores = new Set<{ close(): void }>();
  const visit = (m: unknown) => {
    if (m instanceof StoredMatrix) stores.add(m.store);
  };
  visit(model.weights.embed);
  visit(model.weights.lmHead);
  for (const { matrix } of listLinears(model.weights)) visit(matrix);
  for (const s of stores) s.close();
}

/** Asserts `logits` match the reference within the tolerance; returns max|Δ| for messages. */
function assertClose(
  what: string,
  logits: Float32Array,
  ref: Float64Array,
  refMaxAbs: number,
): number {
  const d = maxAbsDiff(logits, ref);
  const tol = REL_TOL * refMaxAbs;
  assert.ok(
    d <= tol,
    `${what}: max |Δlogit| ${d.toExponential(3)} > ${tol.toExponential(3)} ` +
      `(${REL_TOL} × max|logit| ${refMaxAbs.toFixed(3)})`,
  );
  return d;
}

for (const name of CASES) {
  Deno.test(`golden ${name}: logits match the numpy float32 reference`, async () => {
    const e = await expectedOf(name);
    const model = await loadModel(caseDir(name), { residence: "eager" });
    assert.equal(model.config.family, e.family);
    assert.equal(model.config.vocabSize, e.shape[1]);
    assert.deepEqual(model.tokenizer.encode(e.text), e.tokens, "tokenizer.json encodes the text");
    const logits = forward(model, e.tokens);
    assert.equal(logits.length, e.shape[0] * e.shape[1]);
    const ref = await readRaw(`${caseDir(name)}/${e.logits_f32}`);
    const ref64 = await readRaw(`${caseDir(name)}/${e.logits_f64}`, true);
    assertClose(`${name} vs numpy float32`, logits, ref, e.max_abs_logit);
    // The float64 reference is as close (our rounding is float32 storage, float64 sums).
    assertClose(`${name} vs numpy float64`, logits, ref64, e.max_abs_logit);
  });

  Deno.test(`golden ${name}: token-by-token decoding with a KV cache matches too`, async () => {
    const e = await expectedOf(name);
    const model = await loadModel(caseDir(name), { residence: "eager" });
    const cache = createKvCache(model.config, e.tokens.length);
    const V = e.shape[1];
    const logits = new Float32Array(e.tokens.length * V);
    // Chunks of 5, 1 and 5 tokens, then one at a time: prefill chunks and single tokens both
    // read earlier keys from the cache (and every window slides across a chunk boundary).
    const cuts = [0, 5, 6, 11, 12, 13, 14, 15, 16];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const [from, to] = [cuts[i]!, cuts[i + 1]!];
      logits.set(forward(model, e.tokens.slice(from, to), { cache }), from * V);
    }
    assert.equal(cache.pos, e.tokens.length);
    const ref = await readRaw(`${caseDir(name)}/${e.logits_f32}`);
    assertClose(`${name} decoding vs numpy float32`, logits, ref, e.max_abs_logit);
  });

  Deno.test(`golden ${name}: lazy residence gives the eager logits exactly`, async () => {
    const e = await expectedOf(name);
    const eager = await loadModel(caseDir(name), { residence: "eager" });
    const lazy = await loadModel(caseDir(name), { residence: "lazy" });
    const saved = residency.budget;
    try {
      assert.ok(isLazy(lazy.weights.layers[0]!.q), "lazy weights are read on access");
      assert.ok(!isLazy(eager.weights.layers[0]!.q));
      // A budget below one layer's weights: tensors are read from disk again and again.
      residency.clear();
      residency.budget = 4096;
      const loadsBefore = residency.loads;
      const got = forward(lazy, e.tokens);
      assert.ok(residency.loads > loadsBefore);
      assert.equal(maxAbsDiff(got, forward(eager, e.tokens)), 0);
    } finally {
      residency.budget = saved;
      residency.clear();
      closeLazy(lazy);
    }
  });
}

Deno.test("golden: buildHfModel (files read into memory) gives the loadModel logits", async () => {
  for (const name of CASES) {
    const e = await expectedOf(name);
    const fromDisk = await loadModel(caseDir(name), { residence: "eager" });
    const inMemory = await buildHfModel(async (file, optional) => {
      const path = `${caseDir(name)}/${file}`;
      try {
        return { bytes: await Deno.readFile(path), path };
      } catch (err) {
        if (optional && err instanceof Deno.errors.NotFound) return undefined;
        throw err;
      }
    }, name);
    assert.equal(
      maxAbsDiff(forward(inMemory, e.tokens), forward(fromDisk, e.tokens)),
      0,
      name,
    );
  }
});

// --- RTN ------------------------------------------------------------------------------------

/**
 * The arithmetic of `core/quantizer.ts`: `float32` (GPTQ's `Quantizer` on float32 tensors:
 * xmax − xmin, both quotients rounded to float32 first), not `exact` (the scale from the exact
 * difference, codes from the exact quotients). The two differ by one ulp of about a quarter of
 * the scales of float32 checkpoints and by one code where a float32 quotient is an exact .5 tie
 * (frequent with bf16 weights). The generator records both; the tests against the other one run
 * only where both agree.
 */
const QUANTIZER_ARITHMETIC: "exact" | "float32" = "float32";

const RTN_CASES = ["llama_bias", "mixtral", "qwen2_moe"] as const;

/** Checks our RTN weights and logits against one arithmetic's reference. */
async function checkRtn(name: string, variant: string, arith: "exact" | "float32") {
  const e = await expectedOf(name);
  const info = e.rtn![variant]!;
  const r = info[arith];
  const model = await loadModel(caseDir(name), { residence: "eager" });
  const { weights } = quantizeLinears(model.weights, info.spec);
  const linears = listLinears(weights);
  assert.deepEqual(
    linears.map((l) => l.site.name).sort(),
    Object.keys(r.sha256).sort(),
    "the quantized linears (every q/k/v/o/gate/up/down, experts and shared expert included)",
  );
  const mismatched: string[] = [];
  for (const { site, matrix } of linears) {
    const data = matrix.data;
    const hash = await sha256Hex(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (hash !== r.sha256[site.name]) mismatched.push(site.name);
  }
  if (r.raw) {
    // One dequantized weight is stored raw: count the values that differ, for the message.
    const raw = await readRaw(`${caseDir(name)}/${r.raw.file}`);
    const ours = linears.find((l) => l.site.name === r.raw!.site)!.matrix.data;
    let differing = 0;
    for (let i = 0; i < ours.length; i++) if (ours[i] !== raw[i]) differing++;
    assert.equal(differing, 0, `${r.raw.site}: ${differing} of ${ours.length} values differ`);
  }
  assert.deepEqual(mismatched, [], "dequantized weights that differ from the reference");
  const logits = forward({ config: model.config, weights }, e.tokens);
  const ref = await readRaw(`${caseDir(name)}/${r.logits_f32}`);
  assertClose(`${name} RTN ${variant} (${arith})`, logits, ref, r.max_abs_logit);
}

for (const name of RTN_CASES) {
  const e = JSON.parse(Deno.readTextFileSync(`${caseDir(name)}/expected.json`)) as Expected;
  for (const [variant, info] of Object.entries(e.rtn ?? {})) {
    const differs = info.linears_differing_float32_vs_exact.length > 0;
    for (const arith of ["float32", "exact"] as const) {
      Deno.test({
        name: `golden ${name}: RTN W4 ${variant} equals the ${arith}-arithmetic reference ` +
          `bit for bit`,
        // The arithmetic our quantizer does not use is checked only where both agree.
        ignore: arith !== QUANTIZER_ARITHMETIC && differs,
        fn: () => checkRtn(name, variant, arith),
      });
    }
  }
}

// --- What the loader refuses ------------------------------------------------------------------

/** A copy of a golden case in a temporary directory. */
async function copyCase(name: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: `lowbit-golden-${name}-` });
  for await (const f of Deno.readDir(caseDir(name))) {
    await Deno.copyFile(`${caseDir(name)}/${f.name}`, `${dir}/${f.name}`);
  }
  return dir;
}

/** Rewrites `dir/model.safetensors` (float32) through `edit` of its tensors. */
async function editTensors(
  dir: string,
  edit: (t: Map<string, { shape: number[]; data: Float32Array }>) => void,
): Promise<void> {
  const bytes = await Deno.readFile(`${dir}/model.safetensors`);
  const tensors = new Map(
    [...parseSafetensors(bytes, "golden")].map((
      [n, t],
    ) => [n, { shape: t.shape, data: toFloat32(t, n, "golden").slice() }]),
  );
  edit(tensors);
  await Deno.writeFile(`${dir}/model.safetensors`, writeSafetensors(tensors));
}

Deno.test("golden: the loader refuses a tensor the config does not declare, by name", async () => {
  // Qwen2 has q/k/v biases but no o_proj bias.
  const dir = await copyCase("qwen2");
  try {
    await editTensors(dir, (t) => {
      t.set("model.layers.0.self_attn.o_proj.bias", { shape: [32], data: new Float32Array(32) });
    });
    await assert.rejects(
      () => loadModel(dir),
      (e: unknown) =>
        e instanceof FormatError && e.message.includes("model.layers.0.self_attn.o_proj.bias"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("golden: the loader refuses a missing tensor, by name", async () => {
  const dir = await copyCase("qwen2");
  try {
    await editTensors(dir, (t) => t.delete("model.layers.1.self_attn.k_proj.bias"));
    await assert.rejects(
      () => loadModel(dir),
      (e: unknown) =>
        e instanceof FormatError && e.message.includes("model.layers.1.self_attn.k_proj.bias"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("golden: the loader refuses yarn RoPE scaling, by name", async () => {
  const dir = await copyCase("llama3");
  try {
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    config.rope_scaling = { rope_type: "yarn", factor: 4.0, original_max_position_embeddings: 128 };
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    await assert.rejects(
      () => loadModel(dir),
      (e: unknown) => e instanceof UnsupportedConfigError && /yarn/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("golden: the sharded checkpoint is read through its index", async () => {
  const model = await loadModel(caseDir("mixtral"));
  assert.deepEqual(
    model.files.map((f) => f.path).filter((p) => p.endsWith(".safetensors")).sort(),
    ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
  );
});

Deno.test({
  // Qwen2/2.5 and Qwen3 tokenizer_config.json files say "bos_token": null (the models have no
  // BOS): the tokenizer loads and starts sequences with its EOS token.
  name: "golden: a Qwen tokenizer_config.json with bos_token null loads",
  fn: async () => {
    const dir = await copyCase("qwen2");
    try {
      const tc = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
      tc.bos_token = null;
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(tc));
      const model = await loadModel(dir);
      const e = await expectedOf("qwen2");
      assert.deepEqual(model.tokenizer.encode(e.text), e.tokens);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The golden config of a case, edited. */
async function editedConfig(
  name: string,
  edit: (c: Record<string, unknown>) => void,
): Promise<Record<string, unknown>> {
  const c = JSON.parse(await Deno.readTextFile(`${caseDir(name)}/config.json`));
  edit(c);
  return c;
}

Deno.test({
  // Phi3Config declares original_max_position_embeddings = 4096, so transformers'
  // _compute_longrope_parameters always takes factor = max_position_embeddings / 4096.
  name: "golden: a phi3 config without original_max_position_embeddings uses Phi3Config's 4096",
  fn: async () => {
    const json = await editedConfig("phi3", (c) => {
      delete c.original_max_position_embeddings;
      c.max_position_embeddings = 8192;
    });
    const s = parseHfConfig(json, "config.json").ropeScaling;
    assert.ok(s?.type === "longrope");
    assert.equal(s.originalMaxPositions, 4096);
    assert.ok(Math.abs(s.attentionFactor - Math.sqrt(1 + Math.log(2) / Math.log(4096))) < 1e-12);
  },
});

Deno.test({
  // Gemma2Config has only `hidden_activation` (default gelu_pytorch_tanh); `hidden_act` is
  // an unused extra attribute.
  name: "golden: a gemma2 config without hidden_activation uses gelu_pytorch_tanh",
  fn: async () => {
    const json = await editedConfig("gemma2", (c) => {
      delete c.hidden_activation;
      c.hidden_act = "gelu";
    });
    assert.equal(parseHfConfig(json, "config.json").mlpAct, "gelu_tanh");
  },
});

Deno.test("golden: every case's reference is far from float32 noise (bite checks recorded)", async () => {
  for (const name of CASES) {
    const e = await expectedOf(name);
    const ref = await readRaw(`${caseDir(name)}/${e.logits_f32}`);
    assert.equal(maxAbs(ref) > 1, true, `${name}: logits of a usable scale`);
    assert.ok(
      e.rel_f32_vs_f64 < REL_TOL / 3,
      `${name}: the float32-vs-float64 gap is well under the tolerance`,
    );
  }
});

/**
 * The malformed-input suite: hundreds of generated bad inputs (every config.json field deleted or
 * ill-typed, every tensor of the stories260K-hf fixture dropped, reshaped, retyped, poisoned or
 * misplaced, broken safetensors headers, tokenizers, shard indexes, llama2.c files, dataset
 * files, and a sample of CLI lines), each of which must fail loudly: an error of the bad-input
 * classes whose message names the file (or flag) and the problem, within a timeout, nothing
 * written (no HF cache, no results), no file handle left open; the CLI exits 2 without a stack
 * trace or a results directory. See `testing/malformed.ts` for the check.
 *
 * Families that need the fixture are ignored without it (`needs("models/stories260K-hf")`); the
 * llama2.c files are synthetic and always run.
 */
import assert from "node:assert/strict";
import { bundledDataDir, needs, sharedPath } from "./fixtures.ts";
import {
  gzip,
  type HeaderEntry,
  listing,
  LLAMA2C_FIELDS,
  LLAMA2C_HEADER,
  LLAMA2C_PIECES,
  llama2cCheckpoint,
  llama2cRegions,
  llama2cTokenizer,
  type MalformedCase,
  type RawTensor,
  re,
  refusal,
  safetensorsFile,
  withFloat,
  writeFiles,
} from "./malformed.ts";
import { startMirror } from "./mirror_server.ts";
import { loadLlama2c, loadModel } from "../models/load.ts";
import { parseSafetensors } from "../models/safetensors.ts";
import { getTask } from "../tasks/mod.ts";
import { readDocuments } from "../tasks/corpora/text.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import type { LoadedModel } from "../models/types.ts";

const hf = await needs("models/stories260K-hf");
const HF = sharedPath("models", "stories260K-hf");
const cli = new URL("../cli.ts", import.meta.url).pathname;

/** The fixture's files and tensors. */
interface Fixture {
  readonly files: Readonly<Record<string, string | Uint8Array>>;
  readonly config: Readonly<Record<string, unknown>>;
  readonly tokenizer: Readonly<Record<string, unknown>>;
  readonly tensors: readonly RawTensor[];
}

async function readFixture(): Promise<Fixture> {
  const files: Record<string, string | Uint8Array> = {};
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) {
    files[f] = await Deno.readTextFile(`${HF}/${f}`);
  }
  const weights = await Deno.readFile(`${HF}/model.safetensors`);
  files["model.safetensors"] = weights;
  const tensors = [...parseSafetensors(weights, "model.safetensors")].map(([name, t]) => ({
    name,
    dtype: t.dtype,
    shape: t.shape,
    data: t.data.slice(),
  }));
  return {
    files,
    config: JSON.parse(files["config.json"] as string),
    tokenizer: JSON.parse(files["tokenizer.json"] as string),
    tensors,
  };
}

const fixture = hf.ignore ? undefined : await readFixture();

/** A deep copy of a JSON value. */
function copy<T>(v: T): T {
  return structuredClone(v);
}

const json = (v: unknown) => JSON.stringify(v);
const DELETE = Symbol("delete");

/** A transformers-layout directory: the fixture's files, with `edits` (null: the file is absent). */
function modelFiles(edits: Record<string, string | Uint8Array | null> = {}) {
  return async (dir: string) => {
    const files: Record<string, string | Uint8Array> = {};
    for (const [name, body] of Object.entries({ ...fixture!.files, ...edits })) {
      if (body !== null) files[name] = body;
    }
    await writeFiles(dir, files);
  };
}

const load = (dir: string, env: (n: string) => string | undefined) => loadModel(dir, { env });

function modelCase(
  family: string,
  name: string,
  edits: Record<string, string | Uint8Array | null>,
  expect: RegExp,
): MalformedCase {
  return { family, name, setup: modelFiles(edits), run: load, expect };
}

/** A list of cases, and an `add` that appends the case `make` returns for its arguments. */
function collector<A extends unknown[], C>(make: (...args: A) => C): [C[], (...args: A) => void] {
  const cases: C[] = [];
  return [cases, (...args) => void cases.push(make(...args))];
}

/** A config.json with `field` set to `value` (or deleted). */
function configWith(field: string, value: unknown): string {
  const c: Record<string, unknown> = copy(fixture!.config);
  if (value === DELETE) delete c[field];
  else c[field] = value;
  return json(c);
}

// ---------------------------------------------------------------------------------------------
// config.json

/** The fixture with `edit` as its config.json. */
function configCase(name: string, edit: string | Uint8Array | null, expect: RegExp): MalformedCase {
  return modelCase("config.json", name, { "config.json": edit }, expect);
}

/** The fixture with config.json's `f` set to `value` (or deleted). */
function configFieldCase(f: string, value: unknown, expect: RegExp): MalformedCase {
  return configCase(
    `${f} = ${value === DELETE ? "(deleted)" : json(value)}`,
    configWith(f, value),
    expect,
  );
}

/** The messages of a config.json field the tensors disagree with, or of an ill-typed one. */
const shapeError =
  /model\.safetensors: tensor "[^"]+" (has shape \[[\d, ]+\], expected \[[\d, ]+\]|is missing \(expected shape)/;
const positiveInt = (f: string) =>
  new RegExp(`config\\.json: config field "${f}" must be a positive integer, got`);
const positiveNumber = (f: string) =>
  new RegExp(`config\\.json: config field "${f}" must be a positive number, got`);
const boolean = (f: string) =>
  new RegExp(`config\\.json: config field "${f}" must be a boolean, got`);

/** Every config.json case, by theme. */
function configCases(): MalformedCase[] {
  return [
    ...configDimensionCases(),
    ...configOptionalFieldCases(),
    ...configActivationAndRopeCases(),
    ...configFileCases(),
  ];
}

/** The required dimensions: deleted, null, ill-typed, too large for the tensors. */
function configDimensionCases(): MalformedCase[] {
  const [cases, field] = collector(configFieldCase);
  for (
    const f of [
      "hidden_size",
      "intermediate_size",
      "num_hidden_layers",
      "num_attention_heads",
      "vocab_size",
    ]
  ) {
    const missing = new RegExp(
      `config\\.json: config field "${f}" is missing \\(expected a positive integer\\)`,
    );
    const wrong = new RegExp(`config\\.json: config field "${f}" must be a positive integer, got`);
    field(f, DELETE, missing);
    field(f, null, missing);
    for (const v of ["64", -1, 0, 1.5, true, [64], {}]) field(f, v, wrong);
    field(f, 1e9, shapeError);
  }
  return cases;
}

/** The optional integer, number and boolean fields, and what they imply for the tensors. */
function configOptionalFieldCases(): MalformedCase[] {
  const [cases, field] = collector(configFieldCase);
  for (const f of ["num_key_value_heads", "head_dim", "max_position_embeddings"]) {
    for (const v of ["8", -1, 0, 1.5, false]) field(f, v, positiveInt(f));
  }
  for (const v of [3, 1e9]) {
    field(
      "num_key_value_heads",
      v,
      new RegExp(
        `config\\.json: config: num_attention_heads 8 is not divisible by num_key_value_heads ${v}`,
      ),
    );
  }
  field("head_dim", 1e9, shapeError);
  field(
    "head_dim",
    3,
    /config\.json: config: head_dim 3 .* rotary dimensions, expected a positive even/,
  );
  for (const f of ["rms_norm_eps", "rope_theta"]) {
    for (const v of ["1e-5", -1, 0]) field(f, v, positiveNumber(f));
  }
  for (const f of ["tie_word_embeddings", "attention_bias", "mlp_bias"]) {
    for (const v of ["true", 1]) field(f, v, boolean(f));
  }
  field(
    "tie_word_embeddings",
    false,
    /model\.safetensors: tensor "lm_head\.weight" is missing \(expected shape \[512, 64\]\)/,
  );
  field(
    "attention_bias",
    true,
    /model\.safetensors: tensor "model\.layers\.0\.self_attn\.q_proj\.bias" is missing/,
  );
  field(
    "mlp_bias",
    true,
    /model\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.bias" is missing/,
  );
  return cases;
}

/** hidden_act, the RoPE variants, sliding_window and model_type. */
function configActivationAndRopeCases(): MalformedCase[] {
  const [cases, field] = collector(configFieldCase);
  field("hidden_act", "gelu", /config\.json: hidden_act "gelu" \(supported: .*\) is not supported/);
  field("hidden_act", 42, /config\.json: config field "hidden_act" must be a string, got 42/);
  field(
    "rope_scaling",
    "linear",
    /config\.json: config field "rope_scaling" must be an object or null, got "linear"/,
  );
  field(
    "rope_scaling",
    { rope_type: "yarn", factor: 4 },
    /config\.json: rope_scaling type "yarn" .*is not supported/,
  );
  field(
    "rope_scaling",
    { rope_type: "linear" },
    /config\.json rope_scaling: config field "factor" is missing/,
  );
  field(
    "rope_scaling",
    { rope_type: "llama3", factor: 8 },
    /config\.json rope_scaling: config field "low_freq_factor" is missing/,
  );
  field(
    "rope_parameters",
    5,
    /config\.json: config field "rope_parameters" must be an object, got 5/,
  );
  field("partial_rotary_factor", 2, /config\.json: config: partial_rotary_factor 2 is above 1/);
  field("partial_rotary_factor", "half", positiveNumber("partial_rotary_factor"));
  field(
    "sliding_window",
    4096,
    /config\.json: sliding_window for model_type "llama" is not supported/,
  );
  for (const v of [DELETE, null, 42, "gpt2", "", "LLAMA"]) {
    field("model_type", v, /config\.json: config field "model_type" is .*; supported: "llama"/);
  }
  return cases;
}

/** The file as a whole: not JSON, not an object, absent. */
function configFileCases(): MalformedCase[] {
  const [cases, add] = collector(configCase);
  const text = fixture!.files["config.json"] as string;
  const notJson = /config\.json: not valid JSON/;
  add("empty", "", notJson);
  add("truncated in half", text.slice(0, text.length >> 1), notJson);
  add("truncated by one byte", text.slice(0, text.lastIndexOf("}")), notJson);
  add("an HTML page", "<!DOCTYPE html><html><body>Not found</body></html>", notJson);
  add("binary garbage", new Uint8Array([0xff, 0xfe, 0, 1, 2, 0x80]), notJson);
  for (const v of ["[]", "42", "null", '"llama"']) {
    add(`the JSON ${v}`, v, /config\.json: config must be a JSON object, got/);
  }
  add(
    "absent",
    null,
    /config\.json: file not found \(expected in a transformers-layout directory\)/,
  );
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Tensors of model.safetensors

/** The kind of a tensor: its name without the layer prefix. */
function kindOf(name: string): string {
  return name.replace(/^model\.layers\.\d+\./, "").replace(/^model\./, "");
}

/** The fixture with `bytes` as its model.safetensors. */
function tensorCase(name: string, bytes: Uint8Array, expect: RegExp): MalformedCase {
  return modelCase("tensor", name, { "model.safetensors": bytes }, expect);
}

/** The fixture's tensors (or `list`) as a safetensors file, its header edited by `edit`. */
function stWith(
  edit?: (h: Record<string, HeaderEntry>) => void,
  list = fixture!.tensors,
): Uint8Array {
  return safetensorsFile(list, edit);
}

/** Every tensor case, by theme. */
function tensorCases(): MalformedCase[] {
  return [...tensorEachCases(), ...tensorKindCases(), ...tensorExtraCases()];
}

/** Every tensor dropped, reshaped, retyped to an unknown dtype. */
function tensorEachCases(): MalformedCase[] {
  const [cases, add] = collector(tensorCase);
  const tensors = fixture!.tensors;
  for (const t of tensors) {
    const n = re(t.name);
    add(
      `${t.name} dropped`,
      stWith(undefined, tensors.filter((x) => x !== t)),
      new RegExp(
        `model\\.safetensors: tensor "${n}" is missing \\(expected shape \\[${
          t.shape.join(", ")
        }\\]\\)`,
      ),
    );
    const [a, b] = t.shape as [number, number | undefined];
    const shape = b === undefined ? [a / 8, 8] : a !== b ? [b, a] : [a / 2, b * 2];
    add(
      `${t.name} reshaped to [${shape.join(", ")}]`,
      stWith((h) => (h[t.name]!.shape = shape)),
      new RegExp(
        `model\\.safetensors: tensor "${n}" has shape \\[${shape.join(", ")}\\], expected \\[${
          t.shape.join(", ")
        }\\]`,
      ),
    );
    add(
      `${t.name} retyped to Q4_K`,
      stWith((h) => (h[t.name]!.dtype = "Q4_K")),
      new RegExp(`model\\.safetensors: tensor "${n}": unknown dtype "Q4_K"`),
    );
  }
  return cases;
}

/** Per tensor kind (each in a different layer): poisoned values, other dtypes, bad offsets. */
function tensorKindCases(): MalformedCase[] {
  const [cases, add] = collector(tensorCase);
  const tensors = fixture!.tensors;
  const byKind = new Map<string, RawTensor[]>();
  for (const t of tensors) byKind.set(kindOf(t.name), [...byKind.get(kindOf(t.name)) ?? [], t]);
  let k = 0;
  const dataLen = tensors.reduce((s, t) => s + t.data.length, 0);
  for (const [kind, list] of byKind) {
    const t = list[k++ % list.length]!;
    const i = tensors.indexOf(t);
    const n = re(t.name);
    const count = t.data.length / 4;
    for (const [value, at] of [[NaN, 3], [Infinity, 7], [-Infinity, count - 1]] as const) {
      add(
        `${value} in ${t.name} (${kind}) at ${at}`,
        stWith(undefined, tensors.map((x) => x === t ? withFloat(x, at, value) : x)),
        new RegExp(
          `model\\.safetensors: tensor "${n}" holds ${value} at element ${at} \\(expected finite values\\)`,
        ),
      );
    }
    add(
      `${t.name} retyped to I32`,
      stWith((h) => (h[t.name]!.dtype = "I32")),
      new RegExp(`model\\.safetensors: tensor "${n}": cannot convert dtype I32 to float32`),
    );
    add(
      `${t.name} retyped to F16 (bytes of F32)`,
      stWith((h) => (h[t.name]!.dtype = "F16")),
      new RegExp(
        `model\\.safetensors: tensor "${n}": holds ${t.data.length} bytes but shape \\[${
          t.shape.join(", ")
        }\\] of F16 needs ${t.data.length / 2} bytes`,
      ),
    );
    const [begin, end] = [0, 0].map((_, j) =>
      tensors.slice(0, i).reduce((s, x) => s + x.data.length, 0) + j * t.data.length
    ) as [number, number];
    // Moved 4 bytes back onto the tensor before it (the first tensor: the next one onto it).
    const moved = i === 0 ? tensors[1]! : t;
    const at = i === 0 ? [end, end + moved.data.length] : [begin, end];
    add(
      `${moved.name} offsets moved back by 4 (overlap)`,
      stWith((h) => (h[moved.name]!.data_offsets = [at[0]! - 4, at[1]! - 4])),
      /model\.safetensors: tensor "[^"]+" \[\d+, \d+\] overlaps tensor "[^"]+" \[\d+, \d+\]/,
    );
    add(
      `${t.name} offsets past the data`,
      stWith((h) => (h[t.name]!.data_offsets = [dataLen, dataLen + t.data.length])),
      new RegExp(
        `model\\.safetensors: tensor "${n}": data_offsets \\[\\d+, \\d+\\] go past the end of the data \\(${dataLen} bytes\\)`,
      ),
    );
    add(
      `${t.name} offsets reversed`,
      stWith((h) => (h[t.name]!.data_offsets = [end, begin])),
      new RegExp(
        `model\\.safetensors: tensor "${n}": data_offsets begin ${end} is after end ${begin}`,
      ),
    );
    add(
      `${t.name} offsets fractional`,
      stWith((h) => (h[t.name]!.data_offsets = [begin + 0.5, end])),
      new RegExp(`model\\.safetensors: tensor "${n}": missing or invalid "data_offsets"`),
    );
    add(
      `${t.name} shape with a negative dimension`,
      stWith((h) => (h[t.name]!.shape = [-1, ...t.shape.slice(1)])),
      new RegExp(`model\\.safetensors: tensor "${n}": missing or invalid "shape"`),
    );
    add(
      `${t.name} without dtype`,
      stWith((h) => delete (h[t.name] as Partial<HeaderEntry>).dtype),
      new RegExp(`model\\.safetensors: tensor "${n}": missing or non-string "dtype"`),
    );
  }
  return cases;
}

/** A tensor the architecture does not use. */
function tensorExtraCases(): MalformedCase[] {
  const [cases, add] = collector(tensorCase);
  const tensors = fixture!.tensors;
  const extra = (name: string, shape: number[]): RawTensor => ({
    name,
    dtype: "F32",
    shape,
    data: new Uint8Array(4 * shape.reduce((a, b) => a * b, 1)),
  });
  for (
    const t of [
      extra("model.layers.5.self_attn.q_proj.weight", [64, 64]),
      extra("model.layers.0.self_attn.q_proj.bias", [64]),
      extra("model.layers.0.mlp.experts.0.gate_proj.weight", [172, 64]),
      extra("stray", [1]),
    ]
  ) {
    add(
      `an extra tensor ${t.name}`,
      stWith(undefined, [...tensors, t]),
      new RegExp(
        `model\\.safetensors: 1 tensor\\(s\\) are not used by the llama architecture the config describes \\("${
          re(t.name)
        }"\\)`,
      ),
    );
  }
  return cases;
}

/** The whole file: header length, header text, data length. */
function safetensorsFileCases(): MalformedCase[] {
  const cases: MalformedCase[] = [];
  const tensors = fixture!.tensors;
  const good = safetensorsFile(tensors);
  const headerLen = Number(new DataView(good.buffer).getBigUint64(0, true));
  const add = (name: string, bytes: Uint8Array | null, expect: RegExp) =>
    cases.push(modelCase("safetensors file", name, { "model.safetensors": bytes }, expect));
  const withLength = (n: bigint) => {
    const b = good.slice();
    new DataView(b.buffer).setBigUint64(0, n, true);
    return b;
  };
  const tooShort =
    /model\.safetensors: safetensors file too short: \d+ bytes, expected an 8-byte header length/;
  add("empty", new Uint8Array(0), tooShort);
  add("7 bytes", good.slice(0, 7), tooShort);
  const pastEnd = /model\.safetensors: safetensors header length \d+ goes past the end of the file/;
  add("header length = file size", withLength(BigInt(good.length)), pastEnd);
  add("header length 2^64 - 1", withLength(2n ** 64n - 1n), pastEnd);
  add("header length 2^53 + 1", withLength(2n ** 53n + 1n), pastEnd);
  add(
    "only the header, no data",
    good.slice(0, 8 + headerLen),
    /model\.safetensors: tensor "[^"]+": data_offsets \[\d+, \d+\] go past the end of the data \(0 bytes\)/,
  );
  add(
    "an HTML page",
    new TextEncoder().encode("<!DOCTYPE html><html><body>Not found</body></html>"),
    pastEnd,
  );
  const notJson = /model\.safetensors: safetensors header is not valid JSON/;
  const garbage = new Uint8Array(headerLen).fill(0x7a);
  add("header not JSON", safetensorsFile(tensors, undefined, garbage), notJson);
  add(
    "header not UTF-8",
    safetensorsFile(tensors, undefined, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])),
    notJson,
  );
  add(
    "header truncated JSON",
    safetensorsFile(
      tensors,
      undefined,
      new TextDecoder().decode(good.subarray(8, 8 + headerLen - 2)),
    ),
    notJson,
  );
  for (const h of ["[]", "null", '"x"', "42"]) {
    add(
      `header ${h}`,
      safetensorsFile(tensors, undefined, h),
      /model\.safetensors: safetensors header is not a JSON object/,
    );
  }
  add(
    "a header entry that is a number",
    safetensorsFile(tensors, (h) => ((h as Record<string, unknown>)["model.norm.weight"] = 42)),
    /model\.safetensors: tensor "model\.norm\.weight": header entry must be an object \{dtype, shape, data_offsets\}, got 42/,
  );
  const pastData =
    /model\.safetensors: tensor "[^"]+": data_offsets \[\d+, \d+\] go past the end of the data/;
  add("data truncated by 1 byte", good.slice(0, good.length - 1), pastData);
  add(
    "data truncated in half",
    good.slice(0, 8 + headerLen + ((good.length - 8 - headerLen) >> 1)),
    pastData,
  );
  const junk = new Uint8Array(good.length + 16);
  junk.set(good);
  add(
    "16 bytes of junk after the last tensor",
    junk,
    /model\.safetensors: the data holds 16 bytes after the last tensor \(\d+ bytes of data, the tensors end at \d+\)/,
  );
  // A hole: every tensor from the norm on moved 4 bytes later, 4 zero bytes before it.
  const last = tensors[tensors.length - 1]!;
  const holed = safetensorsFile(
    [...tensors.slice(0, -1), { ...last, data: new Uint8Array([0, 0, 0, 0, ...last.data]) }],
    (h) => {
      const [b, e] = h[last.name]!.data_offsets as [number, number];
      h[last.name]!.data_offsets = [b + 4, e];
    },
  );
  add(
    "4 bytes between two tensors",
    holed,
    /model\.safetensors: bytes \[\d+, \d+\) of the data belong to no tensor \(between "[^"]+" and "model\.norm\.weight"\)/,
  );
  add("absent", null, /model\.safetensors: file not found/);
  return cases;
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json, tokenizer_config.json and the special tokens of config.json

/** The parts of a tokenizer.json the cases edit. */
interface TokenizerJson {
  model: { type: unknown; vocab: Record<string, unknown>; merges: unknown[] | string };
  added_tokens: unknown[] | number;
  [part: string]: unknown;
}

/** The fixture with `edits` to its files. */
function tokenizerCase(
  name: string,
  edits: Record<string, string | Uint8Array | null>,
  expect: RegExp,
): MalformedCase {
  return modelCase("tokenizer", name, edits, expect);
}

/** The edits that replace tokenizer.json by the fixture's, edited by `edit`. */
function tokenizer(edit: (t: TokenizerJson) => void): Record<string, string> {
  const t = copy(fixture!.tokenizer) as TokenizerJson;
  edit(t);
  return { "tokenizer.json": json(t) };
}

/** Every tokenizer case, by theme. */
function tokenizerCases(): MalformedCase[] {
  return [
    ...tokenizerJsonCases(),
    ...tokenizerModelCases(),
    ...tokenizerSizeAndConfigCases(),
    ...specialTokenCases(),
  ];
}

/** tokenizer.json not JSON, or not a tokenizer. */
function tokenizerJsonCases(): MalformedCase[] {
  const [cases, add] = collector(tokenizerCase);
  const text = fixture!.files["tokenizer.json"] as string;
  const notJson = /tokenizer\.json: not valid JSON/;
  for (const n of [0, 1, text.length >> 2, text.length >> 1, text.lastIndexOf("}")]) {
    add(`tokenizer.json truncated to ${n} bytes`, { "tokenizer.json": text.slice(0, n) }, notJson);
  }
  add(
    "tokenizer.json an HTML page",
    { "tokenizer.json": "<html><body>502</body></html>" },
    notJson,
  );
  for (const v of ["[]", "{}", '{"model": 5}', "null", "42"]) {
    add(
      `tokenizer.json ${v}`,
      { "tokenizer.json": v },
      /tokenizer\.json: not a tokenizer\.json: expected an object with a "model" object/,
    );
  }
  return cases;
}

/** The vocabulary, merges, added tokens and pipeline parts of tokenizer.json. */
function tokenizerModelCases(): MalformedCase[] {
  const [cases, add] = collector(tokenizerCase);
  const vocab = /tokenizer\.json: model\.vocab\["zzz"\] is .*, expected a non-negative integer id/;
  for (const id of [-1, 1.5, "7", null]) {
    add(`vocab id ${json(id)}`, tokenizer((t) => (t.model.vocab.zzz = id)), vocab);
  }
  add(
    "vocab id given twice",
    tokenizer((t) => (t.model.vocab.zzz = 5)),
    /tokenizer\.json: model\.vocab gives id 5 to both "[^"]+" and "zzz"/,
  );
  add(
    "vocab empty",
    tokenizer((t) => (t.model.vocab = {})),
    /tokenizer\.json: model\.vocab is empty/,
  );
  add(
    "model type unknown",
    tokenizer((t) => (t.model.type = "Foo")),
    /tokenizer\.json: model type "Foo" is not one of BPE, WordPiece, Unigram, WordLevel/,
  );
  for (const m of [42, null, ["a"], "a b c"]) {
    add(
      `merge ${json(m)}`,
      tokenizer((t) => (t.model.merges = [...(t.model.merges as unknown[]).slice(0, 3), m])),
      /tokenizer\.json: model\.merges\[3\] must be "a b" or \["a", "b"\], got/,
    );
  }
  add(
    "merges not a list",
    tokenizer((t) => (t.model.merges = "▁ t")),
    /tokenizer\.json: model\.merges must be a list, got/,
  );
  add(
    "a merge of tokens not in the vocabulary",
    tokenizer((t) => (t.model.merges as unknown[]).push("qq zz")),
    /tokenizer\.json: model\.merges\[\d+\] "qq zz" merges tokens not in the vocabulary/,
  );
  add(
    "added_tokens not a list",
    tokenizer((t) => (t.added_tokens = 42)),
    /tokenizer\.json: added_tokens must be a list of \{id, content\}, got 42/,
  );
  add(
    "an added token without an id",
    tokenizer((t) => (t.added_tokens as unknown[]).push({ content: "<x>", special: true })),
    /tokenizer\.json: added_tokens\[3\] must be \{id, content\} with a non-negative integer id and a string content/,
  );
  for (const part of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) {
    add(
      `${part} of an unknown type`,
      tokenizer((t) => (t[part] = { type: "Nope" })),
      /tokenizer\.json: cannot build the tokenizer: Unknown \w+ type: Nope/,
    );
  }
  return cases;
}

/** A vocabulary larger than the embedding; tokenizer_config.json; no tokenizer at all. */
function tokenizerSizeAndConfigCases(): MalformedCase[] {
  const [cases, add] = collector(tokenizerCase);
  // Vocabulary larger than the embedding.
  add(
    "8 tokens past the embedding",
    tokenizer((t) => {
      for (let i = 0; i < 8; i++) t.model.vocab[`extra${i}`] = 512 + i;
    }),
    /tokenizer\.json: the tokenizer has 520 tokens but config\.json's vocab_size is 512/,
  );
  add(
    "an added token past the embedding",
    tokenizer((t) =>
      (t.added_tokens as unknown[]).push({ id: 600, content: "<x>", special: true })
    ),
    /tokenizer\.json: the tokenizer has 601 tokens but config\.json's vocab_size is 512/,
  );
  add(
    "config.json vocab_size smaller than the tokenizer",
    { "config.json": configWith("vocab_size", 300) },
    /tokenizer\.json: the tokenizer has 512 tokens but config\.json's vocab_size is 300/,
  );
  // tokenizer_config.json
  add(
    "tokenizer_config.json not JSON",
    { "tokenizer_config.json": "{bos_token: <s>}" },
    /tokenizer_config\.json: not valid JSON/,
  );
  add(
    "tokenizer_config.json a list",
    { "tokenizer_config.json": "[]" },
    /tokenizer\.json: tokenizer_config\.json must be a JSON object/,
  );
  const tokConfig = JSON.parse(fixture!.files["tokenizer_config.json"] as string);
  for (
    const [f, v] of [["bos_token", "<nope>"], ["eos_token", "<nope>"], ["eos_token", {
      content: "<nope>",
    }]]
  ) {
    add(
      `tokenizer_config.json ${f} ${json(v)}`,
      { "tokenizer_config.json": json({ ...tokConfig, [f as string]: v }) },
      new RegExp(`tokenizer\\.json: ${f} "<nope>" is not in the tokenizer's vocabulary`),
    );
  }
  add(
    "tokenizer_config.json bos_token </s>",
    { "tokenizer_config.json": json({ ...tokConfig, bos_token: "</s>" }) },
    /config\.json: bos_token_id 1 but the tokenizer's BOS token is 2: the tokenizer does not belong to this model/,
  );
  add(
    "no tokenizer.json, no vocab.json",
    { "tokenizer.json": null },
    /tokenizer\.json: no tokenizer: the model has no tokenizer\.json, and no vocab\.json \+ merges\.txt/,
  );
  return cases;
}

/** BOS/EOS of config.json against the tokenizer's. */
function specialTokenCases(): MalformedCase[] {
  const [cases, add] = collector(tokenizerCase);
  for (const v of [2, 0, 511, -1, 1.5, 1e9]) {
    add(
      `config.json bos_token_id ${v}`,
      { "config.json": configWith("bos_token_id", v) },
      new RegExp(`config\\.json: bos_token_id ${v} but the tokenizer's BOS token is 1`),
    );
  }
  for (const v of [1, 511, [0, 3]]) {
    add(
      `config.json eos_token_id ${json(v)}`,
      { "config.json": configWith("eos_token_id", v) },
      new RegExp(
        `config\\.json: eos_token_id ${re(json(v))} does not include the tokenizer's EOS token 2`,
      ),
    );
  }
  add(
    "config.json bos_token_id [5, 6]",
    { "config.json": configWith("bos_token_id", [5, 6]) },
    /config\.json: bos_token_id \[5,6\] does not include the tokenizer's BOS token 1/,
  );
  for (const f of ["bos_token_id", "eos_token_id"]) {
    for (const v of ["1", true, { id: 1 }, ["1"]]) {
      add(
        `config.json ${f} ${json(v)}`,
        { "config.json": configWith(f, v) },
        new RegExp(
          `config\\.json: config field "${f}" must be a token id or a list of token ids, got`,
        ),
      );
    }
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// model.safetensors.index.json and its shards

const SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
const INDEX = "model.safetensors.index.json";

/** The fixture split into two shards and an index; `edit` changes the weight map or the files. */
function sharded(
  edit: (
    map: Record<string, unknown>,
    files: Record<string, string | Uint8Array | null>,
    halves: RawTensor[][],
  ) => void = () => {},
): Record<string, string | Uint8Array | null> {
  const tensors = fixture!.tensors;
  const half = tensors.length >> 1;
  const halves = [tensors.slice(0, half), tensors.slice(half)];
  const map: Record<string, unknown> = {};
  halves.forEach((list, i) => list.forEach((t) => (map[t.name] = SHARDS[i])));
  const files: Record<string, string | Uint8Array | null> = { "model.safetensors": null };
  edit(map, files, halves);
  for (const [i, list] of halves.entries()) files[SHARDS[i]!] ??= safetensorsFile(list);
  files[INDEX] ??= json({ metadata: {}, weight_map: map });
  return files;
}

function indexCases(): MalformedCase[] {
  const cases: MalformedCase[] = [];
  const add = (name: string, edits: Record<string, string | Uint8Array | null>, expect: RegExp) =>
    cases.push(modelCase("shard index", name, edits, expect));
  const norm = "model.norm.weight";
  add(
    "a tensor in a missing shard",
    sharded((m) => (m[norm] = "model-00003-of-00003.safetensors")),
    /model-00003-of-00003\.safetensors: file not found/,
  );
  for (
    const path of [
      "../x.safetensors",
      "sub/../../x.safetensors",
      "/etc/passwd",
      "a\\b.safetensors",
      "sub//x.safetensors",
      "./../x",
    ]
  ) {
    add(
      `a shard path ${path}`,
      sharded((m) => (m[norm] = path)),
      new RegExp(
        `model\\.safetensors\\.index\\.json: weight_map entry "model\\.norm\\.weight" names an unsafe path "${
          re(path)
        }"`,
      ),
    );
  }
  for (const v of ["", 42, null, ["x"]]) {
    add(
      `a shard name ${json(v)}`,
      sharded((m) => (m[norm] = v)),
      /model\.safetensors\.index\.json: weight_map entry "model\.norm\.weight" must be a file name, got/,
    );
  }
  add(
    "a tensor in two shards",
    sharded((_m, _f, halves) => halves[1]!.unshift(fixture!.tensors[0]!)),
    /model-0000[12]-of-00002\.safetensors: tensor "model\.embed_tokens\.weight" is also in .*model-0000[12]-of-00002\.safetensors/,
  );
  add(
    "a shard truncated",
    sharded((_m, f, halves) => {
      const b = safetensorsFile(halves[1]!);
      f[SHARDS[1]!] = b.slice(0, b.length - 10);
    }),
    /model-00002-of-00002\.safetensors: tensor "[^"]+": data_offsets \[\d+, \d+\] go past the end of the data/,
  );
  add(
    "a shard that is config.json",
    sharded((m) => (m[norm] = "config.json")),
    /config\.json: safetensors header length \d+ goes past the end of the file/,
  );
  const text = json({ metadata: {}, weight_map: { [norm]: SHARDS[0] } });
  const notJson = /model\.safetensors\.index\.json: not valid JSON/;
  add("index empty", { ...sharded(), [INDEX]: "" }, notJson);
  add("index truncated", { ...sharded(), [INDEX]: text.slice(0, text.length - 3) }, notJson);
  add(
    "index a list",
    { ...sharded(), [INDEX]: "[]" },
    /model\.safetensors\.index\.json: shard index must be a JSON object, got \[\]/,
  );
  for (const v of [undefined, [], "model.safetensors"]) {
    add(
      `index weight_map ${json(v) ?? "absent"}`,
      { ...sharded(), [INDEX]: json({ metadata: {}, weight_map: v }) },
      /model\.safetensors\.index\.json: shard index field "weight_map" must be an object \{tensor: file\}, got/,
    );
  }
  add(
    "index weight_map empty",
    { ...sharded(), [INDEX]: json({ weight_map: {} }) },
    /model\.safetensors\.index\.json: shard index "weight_map" is empty/,
  );
  return cases;
}

/** A shard that is a symlink out of the model directory (set up outside the edits). */
function symlinkShardCase(): MalformedCase {
  return {
    family: "shard index",
    name: "a shard that is a symlink out of the model directory",
    async setup(dir) {
      await modelFiles(sharded())(dir);
      await Deno.mkdir(`${dir}/model`);
      for await (const e of Deno.readDir(dir)) {
        if (e.isFile) await Deno.rename(`${dir}/${e.name}`, `${dir}/model/${e.name}`);
      }
      await Deno.rename(`${dir}/model/${SHARDS[1]}`, `${dir}/${SHARDS[1]}`);
      await Deno.symlink(`${dir}/${SHARDS[1]}`, `${dir}/model/${SHARDS[1]}`);
    },
    run: (dir, env) => loadModel(`${dir}/model`, { env }),
    expect: /model-00002-of-00002\.safetensors: resolves to .*, outside the model directory/,
  };
}

// ---------------------------------------------------------------------------------------------
// llama2.c checkpoint and tokenizer (synthetic: always run)

/** The files m.bin (`ckpt`) and tok.bin (`tokenizer`, by default the good one). */
function llama2cCase(
  name: string,
  ckpt: Uint8Array,
  expect: RegExp,
  tokenizer = llama2cTokenizer(LLAMA2C_PIECES),
): MalformedCase {
  return {
    family: "llama2.c",
    name,
    setup: (dir) => writeFiles(dir, { "m.bin": ckpt, "tok.bin": tokenizer }),
    run: (dir) => loadLlama2c(`${dir}/m.bin`, `${dir}/tok.bin`),
    expect,
  };
}

/** A checkpoint whose header says `edit` but whose body is the default one's. */
function lying(edit: Partial<Record<keyof typeof LLAMA2C_HEADER, number>>): Uint8Array {
  const bytes = llama2cCheckpoint();
  const view = new DataView(bytes.buffer);
  const h = { ...LLAMA2C_HEADER, ...edit };
  LLAMA2C_FIELDS.forEach((f, i) => view.setInt32(4 * i, h[f], true));
  return bytes;
}

/** Every llama2.c case, by theme. */
function llama2cCases(): MalformedCase[] {
  return [...llama2cHeaderCases(), ...llama2cBodyCases(), ...llama2cTokenizerCases()];
}

/** Header fields out of range or inconsistent with each other or the body. */
function llama2cHeaderCases(): MalformedCase[] {
  const [cases, add] = collector(llama2cCase);
  for (const f of LLAMA2C_FIELDS) {
    const values = f === "vocab_size" ? [0] : [0, -1, -(2 ** 31)];
    for (const v of values) {
      add(
        `header ${f} = ${v}`,
        lying({ [f]: v }),
        new RegExp(
          `m\\.bin: llama2\\.c checkpoint header field ${f} must be (positive|non-zero), got ${v}`,
        ),
      );
    }
    add(
      `header ${f} = 2^31 - 1`,
      lying({ [f]: 2 ** 31 - 1 }),
      /m\.bin: llama2\.c checkpoint (has the wrong size: expected \d+ bytes|header: \w+ \d+ is not divisible by \w+ \d+)/,
    );
  }
  add(
    "dim not divisible by n_heads",
    lying({ n_heads: 3 }),
    /m\.bin: llama2\.c checkpoint header: dim 8 is not divisible by n_heads 3/,
  );
  add(
    "odd head size",
    lying({ dim: 6 }),
    /m\.bin: llama2\.c checkpoint header: head size dim\/n_heads = 3 must be even for RoPE/,
  );
  add(
    "n_heads not divisible by n_kv_heads",
    lying({ n_kv_heads: 3 }),
    /m\.bin: llama2\.c checkpoint header: n_heads 2 is not divisible by n_kv_heads 3/,
  );
  add(
    "an untied header on a tied body",
    lying({ vocab_size: -16 }),
    /m\.bin: llama2\.c checkpoint has the wrong size: .*\(untied classifier\), got \d+ bytes: truncated/,
  );
  return cases;
}

/** The body truncated, too long, poisoned. */
function llama2cBodyCases(): MalformedCase[] {
  const [cases, add] = collector(llama2cCase);
  const good = llama2cCheckpoint();
  for (
    const [name, n] of [["by 1 byte", good.length - 1], ["by 4 bytes", good.length - 4], [
      "in half",
      good.length >> 1,
    ], ["to the header", 28]] as const
  ) {
    add(
      `body truncated ${name}`,
      good.slice(0, n),
      /m\.bin: llama2\.c checkpoint has the wrong size: expected \d+ bytes .* truncated \(\d+ bytes missing\)/,
    );
  }
  for (const extra of [1, 4]) {
    const long = new Uint8Array(good.length + extra);
    long.set(good);
    add(
      `${extra} bytes too long`,
      long,
      new RegExp(`m\\.bin: llama2\\.c checkpoint has the wrong size: .*: ${extra} bytes too long`),
    );
  }
  for (const n of [0, 27]) {
    add(
      `${n} bytes`,
      good.slice(0, n),
      new RegExp(
        `m\\.bin: llama2\\.c checkpoint too short: expected at least 28 bytes for the header \\(7 int32\\), got ${n} bytes`,
      ),
    );
  }
  // NaN and infinities, in every tensor (not the unused RoPE tables).
  const regions = llama2cRegions();
  let k = 0;
  for (const r of regions) {
    if (r.name.startsWith("freq_cis")) continue;
    const value = [NaN, Infinity, -Infinity][k++ % 3]!;
    const at = (k * 5) % r.count;
    add(
      `${value} in ${r.name}`,
      llama2cCheckpoint(undefined, (floats) => (floats[r.start + at] = value)),
      new RegExp(
        `m\\.bin: llama2\\.c checkpoint tensor ${
          re(r.name)
        } holds ${value} at element ${at} \\(byte \\d+; expected finite values\\)`,
      ),
    );
  }
  return cases;
}

/** The tokenizer. */
function llama2cTokenizerCases(): MalformedCase[] {
  const [cases, add] = collector(llama2cCase);
  const good = llama2cCheckpoint();
  const tok = llama2cTokenizer(LLAMA2C_PIECES);
  const tokCase = (name: string, bytes: Uint8Array, expect: RegExp) =>
    add(`tokenizer ${name}`, good, expect, bytes);
  tokCase(
    "empty",
    new Uint8Array(0),
    /tok\.bin: llama2\.c tokenizer truncated: 0 bytes, expected an int32 max_token_length/,
  );
  tokCase(
    "truncated mid-piece",
    tok.slice(0, tok.length - 1),
    /tok\.bin: llama2\.c tokenizer truncated at token 15 of 16: needs 1 bytes at byte \d+/,
  );
  tokCase(
    "truncated before a score",
    tok.slice(0, 4 + 8 + 5 + 2),
    /tok\.bin: llama2\.c tokenizer truncated at token 1 of 16: needs 8 bytes/,
  );
  tokCase(
    "one piece short",
    llama2cTokenizer(LLAMA2C_PIECES.slice(0, 15)),
    /tok\.bin: llama2\.c tokenizer truncated at token 15 of 16/,
  );
  tokCase(
    "one piece too many",
    llama2cTokenizer([...LLAMA2C_PIECES, "m"]),
    /tok\.bin: llama2\.c tokenizer has 9 bytes after the 16 tokens .*is the vocabulary size right\?/,
  );
  for (const m of [0, -5]) {
    tokCase(
      `max_token_length ${m}`,
      llama2cTokenizer(LLAMA2C_PIECES, { maxTokenLength: m }),
      new RegExp(`tok\\.bin: llama2\\.c tokenizer: max_token_length must be positive, got ${m}`),
    );
  }
  for (const len of [-1, 6]) {
    tokCase(
      `a piece length ${len}`,
      llama2cTokenizer(LLAMA2C_PIECES, { lengths: { 4: len } }),
      new RegExp(
        `tok\\.bin: llama2\\.c tokenizer: token 4 has length ${len}, expected 0\\.\\.5 \\(max_token_length\\)`,
      ),
    );
  }
  tokCase(
    "no space piece and no byte fallback",
    llama2cTokenizer(LLAMA2C_PIECES.map((p) => (p === " " ? "mm" : p))),
    /tok\.bin: llama2\.c tokenizer has no " " piece and no byte-fallback piece for it/,
  );
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Dataset files of the tasks

/** Valid rows of each JSON-lines task file, its path below the data root, and its fields. */
const JSONL_TASKS = [
  {
    task: "arc_easy",
    file: "tasks/llm-foundry/arc_easy.jsonl",
    row: { query: "Question: Which is a fruit?", choices: ["apple", "chair"], gold: 0 },
    fields: { query: "string", choices: "list of strings", gold: "integer" },
  },
  {
    task: "arc_challenge",
    file: "tasks/llm-foundry/arc_challenge.jsonl",
    row: { query: "Question: Which is a fruit?", choices: ["apple", "chair"], gold: 0 },
    fields: { query: "string", choices: "list of strings", gold: "integer" },
  },
  {
    task: "piqa",
    file: "tasks/piqa/valid.jsonl",
    labels: "tasks/piqa/valid-labels.lst",
    label: "0",
    row: { goal: "Open a jar.", sol1: "Twist the lid.", sol2: "Eat the lid." },
    fields: { goal: "string", sol1: "string", sol2: "string" },
  },
  {
    task: "winogrande",
    file: "tasks/winogrande/dev.jsonl",
    labels: "tasks/winogrande/dev-labels.lst",
    label: "1",
    row: { sentence: "The cup is on _ table.", option1: "the", option2: "a", answer: "1" },
    fields: { sentence: "string", option1: "string", option2: "string", answer: "string" },
  },
  {
    task: "boolq",
    file: "tasks/boolq/v6_test.json",
    row: { title: "Sky", passage: "The sky is blue.", question: "is the sky blue", answer: true },
    fields: { title: "string", passage: "string", question: "string" },
  },
  {
    task: "lambada_openai",
    file: "tasks/llm-foundry/lambada_openai.jsonl",
    row: { context: "The cat sat on the", continuation: "mat" },
    fields: { context: "string", continuation: "string" },
  },
  {
    task: "gsm8k",
    file: "tasks/gsm8k/test.jsonl",
    row: { question: "What is 2 + 2?", answer: "2 + 2 = 4\n#### 4" },
    fields: { question: "string", answer: "string" },
  },
] as const;

let evalModel: LoadedModel | undefined;

/** Runs a task on the fixture model with `dir` as the data root. */
async function runTask(id: string, dir: string, env: (n: string) => string | undefined) {
  evalModel ??= await loadModel(HF);
  return await getTask(id).run(evalModel, { kernels: refKernels, dataDir: dir, limit: 2, env });
}

/** `task` run with `files` in the data root. */
function datasetCase(
  name: string,
  task: string,
  files: Record<string, string | Uint8Array>,
  expect: RegExp,
): MalformedCase {
  return {
    family: "dataset",
    name: `${task}: ${name}`,
    setup: (dir) => writeFiles(dir, files),
    run: (dir, env) => runTask(task, dir, env),
    expect,
  };
}

/** One of {@linkcode JSONL_TASKS}. */
type JsonlTask = typeof JSONL_TASKS[number];

/** The file name of `path`, escaped for a RegExp. */
function baseRe(path: string): string {
  return re(path.slice(path.lastIndexOf("/") + 1));
}

/** Every dataset case, by task and theme. */
function datasetCases(): MalformedCase[] {
  return [
    ...JSONL_TASKS.flatMap((t) => [
      ...jsonlRowCases(t),
      ...jsonlLabelCases(t),
      jsonlMissingCase(t),
    ]),
    ...taskRowCases(),
    ...hellaswagCases(),
    ...localFileCases(),
    ...textFileCases(),
    ...c4Cases(),
  ];
}

/** A JSON-lines task's file: bad lines, bad fields, empty, not UTF-8. */
function jsonlRowCases(t: JsonlTask): MalformedCase[] {
  const [cases, add] = collector(datasetCase);
  const f = baseRe(t.file);
  const good = json(t.row);
  const withRow = (bad: string, labels = 2): Record<string, string | Uint8Array> => ({
    [t.file]: `${good}\n${bad}\n`,
    ...("labels" in t ? { [t.labels]: `${t.label}\n`.repeat(labels) } : {}),
  });
  add(
    "a line that is not JSON",
    t.task,
    withRow("{not json"),
    new RegExp(`${f}:2: not valid JSON`),
  );
  for (const v of ["[1, 2]", "null", "42", '"text"']) {
    add(`a line ${v}`, t.task, withRow(v), new RegExp(`${f}:2: expected a JSON object`));
  }
  for (const [field, type] of Object.entries(t.fields)) {
    const expect = new RegExp(
      `${f}:2: expected ${
        type === "string"
          ? "a string field"
          : type === "integer"
          ? "an integer field"
          : "a list of strings"
      } "${field}"`,
    );
    const row: Record<string, unknown> = { ...t.row };
    delete row[field];
    add(`a line without "${field}"`, t.task, withRow(json(row)), expect);
    add(
      `a line with "${field}": 42.5`,
      t.task,
      withRow(json({ ...t.row, [field]: 42.5 })),
      expect,
    );
  }
  const none = t.task === "gsm8k" ? "no GSM8K problems" : "no docs to score";
  add(
    "an empty file",
    t.task,
    { [t.file]: "", ...("labels" in t ? { [t.labels]: "" } : {}) },
    new RegExp(`${f}: ${none}`),
  );
  add("blank lines only", t.task, {
    [t.file]: "\n\n  \n",
    ...("labels" in t ? { [t.labels]: "" } : {}),
  }, new RegExp(`${f}: ${none}`));
  add(
    "binary garbage",
    t.task,
    {
      [t.file]: new Uint8Array([0x7b, 0xff, 0xfe, 0x00, 0xc3, 0x28]),
      ...("labels" in t ? { [t.labels]: "0\n" } : {}),
    },
    new RegExp(`${f} is not valid UTF-8 text`),
  );
  return cases;
}

/** A JSON-lines task's labels file (piqa, winogrande): bad labels, too few, too many. */
function jsonlLabelCases(t: JsonlTask): MalformedCase[] {
  const [cases, add] = collector(datasetCase);
  const f = baseRe(t.file);
  const good = json(t.row);
  if ("labels" in t) {
    const l = baseRe(t.labels);
    const withLabels = (labels: string) => ({
      [t.file]: `${good}\n${good}\n`,
      [t.labels]: labels,
    });
    add(
      "a label that is not an integer",
      t.task,
      withLabels(`${t.label}\nx\n`),
      t.task === "piqa"
        ? new RegExp(`${l}:2: expected an integer label, got "x"`)
        : new RegExp(`${l}:2: label "x" disagrees with answer "1"`),
    );
    add(
      "one label for two items",
      t.task,
      withLabels(`${t.label}\n`),
      new RegExp(`${l}: 1 labels for 2 items in .*${f}`),
    );
    add(
      "three labels for two items",
      t.task,
      withLabels(`${t.label}\n`.repeat(3)),
      new RegExp(`${l}: 3 labels for 2 items in .*${f}`),
    );
  }
  return cases;
}

/** The file is missing: the task's fingerprint (before any compute) names it and the data root. */
function jsonlMissingCase(t: JsonlTask): MalformedCase {
  return {
    family: "dataset",
    name: `${t.task}: the file is missing`,
    setup: () => Promise.resolve(),
    run: (dir) => getTask(t.task).dataset({ dataDir: dir }),
    expect: new RegExp(
      `Dataset file ${re(t.file)} not found at .*: .*set --data DIR or LOWBIT_DATA=DIR`,
    ),
  };
}

/** Task-specific rows. */
function taskRowCases(): MalformedCase[] {
  const [cases, add] = collector(datasetCase);
  const arc = JSONL_TASKS[0];
  const arcRow = (row: Record<string, unknown>) => ({
    [arc.file]: `${json(arc.row)}\n${json(row)}\n`,
  });
  add(
    "an empty choice list",
    "arc_easy",
    arcRow({ ...arc.row, choices: [] }),
    /arc_easy\.jsonl:2: the choice list "choices" is empty/,
  );
  add(
    'a query without "Question: "',
    "arc_easy",
    arcRow({ ...arc.row, query: "Which?" }),
    /arc_easy\.jsonl:2: expected "query" to start with "Question: "/,
  );
  const wino = JSONL_TASKS[3];
  add("a sentence without a blank", "winogrande", {
    [wino.file]: `${json(wino.row)}\n${json({ ...wino.row, sentence: "No blank." })}\n`,
    [wino.labels]: "1\n1\n",
  }, /dev\.jsonl:2: the sentence has no blank "_"/);
  add("a continuation without a last word", "lambada_openai", {
    [JSONL_TASKS[5].file]: json({ context: "The cat", continuation: "" }),
  }, /lambada_openai\.jsonl:1: the text has no last word/);
  add("an answer without ####", "gsm8k", {
    [JSONL_TASKS[6].file]: json({ question: "q", answer: "4" }),
  }, /test\.jsonl:1: GSM8K answer has no "#### " final-answer marker/);
  const boolq = "tasks/boolq/v6_test.json";
  add(
    "a JSON array cut short",
    "boolq",
    { [boolq]: `[${json(JSONL_TASKS[4].row)},\n{"title": ` },
    /v6_test\.json(:\d+(:\d+)?)?: not valid JSON/,
  );
  add("a JSON array item that is a string", "boolq", {
    [boolq]: `[${json(JSONL_TASKS[4].row)}, "x"]`,
  }, /v6_test\.json: item 2 is not a JSON object/);
  add('a JSON array item without "passage"', "boolq", {
    [boolq]: `[${json({ ...JSONL_TASKS[4].row, passage: undefined })}]`,
  }, /v6_test\.json:item 1: expected a string field "passage"/);
  return cases;
}

/** HellaSwag: gzip of 6 lines per item. */
function hellaswagCases(): MalformedCase[] {
  const cases: MalformedCase[] = [];
  const hs = "tasks/hellaswag/hellaswag_val_full.txt.gz";
  const item = [
    "Cooking: A man cracks an egg.",
    "0",
    "He fries it.",
    "He eats a shoe.",
    "He flies.",
    "He sings.",
  ];
  const hsCase = (name: string, lines: string[] | Uint8Array, expect: RegExp) =>
    cases.push({
      family: "dataset",
      name: `hellaswag: ${name}`,
      setup: async (dir) =>
        writeFiles(dir, {
          [hs]: lines instanceof Uint8Array
            ? lines
            : await gzip(new TextEncoder().encode(lines.map((l) => `${l}\n`).join(""))),
        }),
      run: (dir, env) => runTask("hellaswag", dir, env),
      expect,
    });
  hsCase(
    "not gzip",
    new TextEncoder().encode(item.join("\n")),
    /hellaswag_val_full\.txt\.gz is not a valid gzip file/,
  );
  hsCase(
    "7 lines",
    [...item, "extra"],
    /hellaswag_val_full\.txt\.gz:7: 7 lines is not a multiple of 6/,
  );
  hsCase(
    "an empty context line",
    [...item, "", ...item.slice(1)],
    /hellaswag_val_full\.txt\.gz:7: empty context line/,
  );
  hsCase(
    "a label that is not an integer",
    [...item, item[0]!, "two", ...item.slice(2)],
    /hellaswag_val_full\.txt\.gz:8: expected an integer label, got "two"/,
  );
  hsCase("an empty file", [], /hellaswag_val_full\.txt\.gz: no docs to score/);
  hsCase("binary text", new Uint8Array(0), /hellaswag_val_full\.txt\.gz is not a valid gzip file/);
  return cases;
}

/** Rows in a Hugging Face dataset's columns, from a local file (TASK=PATH). */
function localFileCases(): MalformedCase[] {
  const cases: MalformedCase[] = [];
  const local = (
    name: string,
    task: string,
    file: string,
    body: string | Uint8Array,
    expect: RegExp,
  ) =>
    cases.push({
      family: "dataset",
      name: `${task}=${file}: ${name}`,
      setup: (dir) => writeFiles(dir, { [file]: body }),
      run: (dir, env) => runTask(`${task}=${dir}/${file}`, dir, env),
      expect,
    });
  const arcHf = {
    question: "Which?",
    choices: { text: ["a", "b"], label: ["A", "B"] },
    answerKey: "A",
  };
  local(
    'a row without "question"',
    "arc_easy",
    "arc.jsonl",
    `${json(arcHf)}\n${json({ ...arcHf, question: undefined })}\n`,
    /arc\.jsonl:2: expected a string column "question", got no such column/,
  );
  local(
    '"choices" a string',
    "arc_easy",
    "arc.jsonl",
    json({ ...arcHf, choices: "a b" }),
    /arc\.jsonl:1: expected a struct column "choices" \{text, label\}, got string/,
  );
  local(
    "labels shorter than texts",
    "arc_easy",
    "arc.jsonl",
    json({ ...arcHf, choices: { text: ["a", "b"], label: ["A"] } }),
    /arc\.jsonl:1: expected "choices\.label" to be a list as long as "choices\.text"/,
  );
  local(
    "not parquet",
    "piqa",
    "piqa.parquet",
    "PAR1 this is not parquet PAR1",
    /Cannot read parquet file .*piqa\.parquet/,
  );
  local(
    "an unknown file type",
    "piqa",
    "piqa.csv",
    "goal,sol1,sol2,label\n",
    /Cannot read dataset file .*piqa\.csv: unknown type; expected \.parquet, \.jsonl, \.ndjson or \.json/,
  );
  local(
    "a JSON array that does not parse",
    "gsm8k",
    "gsm.json",
    '[{"question": ',
    /gsm\.json: not valid JSON/,
  );
  local(
    "a JSON array item that is a number",
    "gsm8k",
    "gsm.json",
    "[1]",
    /gsm\.json: item 1: expected a JSON object/,
  );
  local(
    "a gzip file that is not gzip",
    "gsm8k",
    "gsm.jsonl.gz",
    "not gzip",
    /gsm\.jsonl\.gz is not a valid gzip file/,
  );
  local("an empty file", "boolq", "empty.jsonl", "", /empty\.jsonl: no docs to score/);
  return cases;
}

/** Perplexity on a local text file. */
function textFileCases(): MalformedCase[] {
  const cases: MalformedCase[] = [];
  const text = (name: string, body: string | Uint8Array | undefined, expect: RegExp) =>
    cases.push({
      family: "dataset",
      name: `file:text.txt: ${name}`,
      setup: (dir) =>
        body === undefined ? Promise.resolve() : writeFiles(dir, { "text.txt": body }),
      run: (dir, env) => runTask(`file:${dir}/text.txt`, dir, env),
      expect,
    });
  text("empty", "", /file:.*text\.txt: 0 tokens do not fill one window of \d+ tokens/);
  text("one word", "Once", /file:.*text\.txt: \d tokens do not fill one window of \d+ tokens/);
  text(
    "binary garbage",
    new Uint8Array([0xc3, 0x28, 0xff, 0, 1]),
    /Dataset "file:.*text\.txt" at .*text\.txt is not valid UTF-8 text/,
  );
  text(
    "missing",
    undefined,
    /Dataset "file:.*text\.txt" not found at .*text\.txt: expected a readable text file/,
  );
  return cases;
}

/** C4 documents (calibration). */
function c4Cases(): MalformedCase[] {
  const cases: MalformedCase[] = [];
  const c4 = (name: string, body: string, expect: RegExp) =>
    cases.push({
      family: "dataset",
      name: `c4: ${name}`,
      setup: (dir) => writeFiles(dir, { "text/c4/c4_validation_2k.jsonl": body }),
      run: (dir) => readDocuments("c4", dir),
      expect,
    });
  c4("empty", "", /c4_validation_2k\.jsonl: no documents/);
  c4(
    "a line that is not JSON",
    `${json({ text: "a" })}\n{oops\n`,
    /c4_validation_2k\.jsonl:2: not valid JSON/,
  );
  c4(
    "a line without text",
    `${json({ text: "a" })}\n${json({ url: "x" })}\n`,
    /c4_validation_2k\.jsonl:2: expected an object with a string field "text"/,
  );
  c4(
    "a line that is null",
    `null\n`,
    /c4_validation_2k\.jsonl:1: expected an object with a string field "text"/,
  );
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Models served from a Hub mirror: refused downloads leave nothing in the cache

function mirrorCases(root: string, endpoint: string): MalformedCase[] {
  const cases: MalformedCase[] = [];
  let n = 0;
  const add = (name: string, file: string, body: string | Uint8Array, expect: RegExp) => {
    const repo = `lowbit-test/bad-${n++}`;
    const cache = `${root}/cache-${repo.split("/")[1]}`;
    const files: Record<string, string | Uint8Array> = { ...fixture!.files, [file]: body };
    cases.push({
      family: "hub download",
      name,
      setup: () => writeFiles(`${root}/${repo}/resolve/main`, files),
      async run() {
        const vars: Record<string, string> = { HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache };
        try {
          return await loadModel(`hf:${repo}`, { env: (v) => vars[v] });
        } catch (e) {
          // The refused file must not be in the cache: no blob, no snapshot link, no partial file.
          const dir = `${cache}/models--${repo.replace("/", "--")}`;
          const held = (await listing(dir).catch(() => [])).filter((f) =>
            f.includes(file) || f.includes(".incomplete")
          );
          const blobs = (await listing(`${dir}/blobs`).catch(() => [])).length;
          const links = (await listing(`${dir}/snapshots`).catch(() => [])).length;
          if (held.length > 0 || blobs !== links) {
            throw new Error(
              `the cache holds the refused ${file}: ${
                held.join(", ")
              } (${blobs} blobs, ${links} links)`,
            );
          }
          throw e;
        }
      },
      expect,
      // fetch keeps connections to the mirror open: descriptors are not counted here.
      countFds: false,
    });
  };
  const refused = (file: string) =>
    new RegExp(`${re(file)}.*refused, nothing was written to the Hugging Face cache`);
  const text = fixture!.files["config.json"] as string;
  add("config.json not JSON", "config.json", text.slice(0, 40), refused("config.json"));
  add(
    "config.json an HTML page",
    "config.json",
    "<!DOCTYPE html><html>rate limited</html>",
    refused("config.json"),
  );
  add(
    "tokenizer.json truncated",
    "tokenizer.json",
    (fixture!.files["tokenizer.json"] as string).slice(0, 500),
    refused("tokenizer.json"),
  );
  const st = fixture!.files["model.safetensors"] as Uint8Array;
  add(
    "model.safetensors truncated",
    "model.safetensors",
    st.slice(0, st.length >> 1),
    refused("model.safetensors"),
  );
  const past = st.slice();
  new DataView(past.buffer).setBigUint64(0, BigInt(st.length), true);
  add(
    "model.safetensors header length past EOF",
    "model.safetensors",
    past,
    refused("model.safetensors"),
  );
  const garbled = st.slice();
  garbled.fill(0x7a, 8, 40);
  add(
    "model.safetensors header not JSON",
    "model.safetensors",
    garbled,
    refused("model.safetensors"),
  );
  add(
    "model.safetensors an HTML page",
    "model.safetensors",
    "<html><body>Bad gateway</body></html>",
    refused("model.safetensors"),
  );
  return cases;
}

// ---------------------------------------------------------------------------------------------
// The CLI, end to end

interface CliCase {
  readonly name: string;
  /** Flags replacing the defaults' (a flag given here wins). */
  readonly args: readonly string[];
  /** Files of a broken model directory (the fixture's, edited), passed as --model. */
  readonly model?: Record<string, string | Uint8Array | null>;
  readonly expect: RegExp;
}

/** Every CLI case: bad flags, then broken models. */
function cliCases(): CliCase[] {
  return [...cliFlagCases(), ...cliModelCases()];
}

/** Flags with bad values, unknown flags and names, a task without its file. */
function cliFlagCases(): CliCase[] {
  return [
    {
      name: "--bits abc",
      args: ["--bits", "abc"],
      expect:
        /error: --bits: Cannot parse bits "abc": expected N, N-M or a comma list, each in 2–8/,
    },
    {
      name: "--backend nope",
      args: ["--backend", "nope"],
      expect: /error: Unknown backend "nope"; valid: ts, wasm/,
    },
    {
      name: "--model nosuch",
      args: ["--model", "nosuch"],
      expect:
        /error: Cannot find model "nosuch"\. Available: stories260K; a model may also be named/,
    },
    {
      name: "--limit 1.5",
      args: ["--limit", "1.5"],
      expect: /error: --limit must be a positive integer, got "1\.5"/,
    },
    {
      name: "--context abc",
      args: ["--context", "abc"],
      expect: /error: --context must be an integer ≥ 2, got "abc"/,
    },
    {
      name: "--threads x",
      args: ["--threads", "x"],
      expect: /error: --threads must be a positive integer, got "x"/,
    },
    {
      name: "--shard 1/x",
      args: ["--shard", "1/x"],
      expect: /error: --shard must be I\/N with 0 ≤ I < N \(e\.g\. 0\/4\), got "1\/x"/,
    },
    { name: "--act fast", args: ["--act", "fast"], expect: /error: --act: unknown option "fast"/ },
    {
      name: "--calib-recipe nope",
      args: ["--calib-recipe", "nope"],
      expect: /error: --calib-recipe must be one of .*, got "nope"/,
    },
    {
      name: "--calib-samples 0",
      args: ["--calib-samples", "0"],
      expect: /error: --calib-samples must be an integer ≥ 1, got "0"/,
    },
    {
      name: "--alpha 2",
      args: ["--alpha", "2"],
      expect: /error: --alpha values must be in \[0, 1\], got "2"/,
    },
    {
      name: "--frobnicate",
      args: ["--frobnicate"],
      expect: /error: Unknown option '--frobnicate'\nRun with --help for the flags\./,
    },
    {
      name: "--methods nosuch",
      args: ["--methods", "nosuch"],
      expect: /error: Cannot find method "nosuch"\. Available: .*rtn/,
    },
    {
      name: "--tasks nosuch",
      args: ["--tasks", "nosuch"],
      expect: /error: Cannot find task "nosuch"\. Available: .*file:PATH/,
    },
    {
      name: "--matrix nosuch",
      args: ["--matrix", "nosuch"],
      expect: /error: Cannot find matrix preset "nosuch"\. Available: .*w2-w8/,
    },
    {
      name: "--tasks arc_easy without its file",
      args: ["--tasks", "arc_easy", "--data", "EMPTY"],
      expect: /error: Dataset file tasks\/llm-foundry\/arc_easy\.jsonl not found at .*--data DIR/,
    },
  ];
}

/** A broken model directory passed as --model. */
function cliModelCases(): CliCase[] {
  const st = fixture!.files["model.safetensors"] as Uint8Array;
  const tensors = fixture!.tensors;
  return [
    {
      name: 'config.json hidden_size "64"',
      args: [],
      model: { "config.json": configWith("hidden_size", "64") },
      expect:
        /error: .*config\.json: config field "hidden_size" must be a positive integer, got "64"/,
    },
    {
      name: "model.safetensors header not JSON",
      args: [],
      model: {
        "model.safetensors": (() => {
          const b = st.slice();
          b.fill(0x7a, 8, 40);
          return b;
        })(),
      },
      expect: /error: .*model\.safetensors: safetensors header is not valid JSON/,
    },
    {
      name: "Infinity in a weight",
      args: [],
      model: {
        "model.safetensors": safetensorsFile(
          tensors.map((t, i) => i === 9 ? withFloat(t, 11, Infinity) : t),
        ),
      },
      expect: new RegExp(
        `error: .*model\\.safetensors: tensor "${
          re(tensors[9]!.name)
        }" holds Infinity at element 11`,
      ),
    },
    {
      name: "tokenizer.json truncated",
      args: [],
      model: { "tokenizer.json": (fixture!.files["tokenizer.json"] as string).slice(0, 100) },
      expect: /error: .*tokenizer\.json: not valid JSON/,
    },
    {
      name: "a shard path ../x",
      args: [],
      model: sharded((m) => (m["model.norm.weight"] = "../x.safetensors")),
      expect:
        /error: model\.safetensors\.index\.json: weight_map entry "model\.norm\.weight" names an unsafe path "\.\.\/x\.safetensors"/,
    },
  ];
}

/** Runs one CLI case in `dir`: exit 2, the message, no stack frames, no results, no cache. */
async function cliRefusal(c: CliCase, dir: string): Promise<string | undefined> {
  const out = `${dir}/out`;
  const cache = `${dir}/hf`;
  let model = HF;
  if (c.model) {
    model = `${dir}/model`;
    await modelFiles(c.model)(model);
  }
  await Deno.mkdir(`${dir}/empty-data`);
  const args = c.args.map((a) => (a === "EMPTY" ? `${dir}/empty-data` : a));
  const defaults: Record<string, string> = {
    "--model": model,
    "--methods": "rtn",
    "--bits": "4",
    "--group": "channel",
    "--tasks": "tinystories:eval",
    "--limit": "1",
    "--backend": "ts",
    "--threads": "1",
    "--kernel-threads": "1",
    "--data": bundledDataDir(),
  };
  const given = new Set(args.filter((a) => a.startsWith("--")));
  const base = Object.entries(defaults).filter(([k]) => !given.has(k)).flat();
  let o: Deno.CommandOutput;
  try {
    o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, ...base, ...args, "--out", out, "--quiet"],
      env: { HF_HUB_OFFLINE: "1", HF_HUB_CACHE: cache, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
  } catch (e) {
    return `did not finish: ${(e as Error).message}`;
  }
  const err = new TextDecoder().decode(o.stderr);
  if (o.code !== 2) return `exit ${o.code} (expected 2): ${err.slice(0, 300)}`;
  if (/^ {4}at /m.test(err)) return `a stack trace on stderr: ${err.slice(0, 300)}`;
  if (!c.expect.test(err)) return `unclear message (expected ${c.expect}): ${err.slice(0, 300)}`;
  const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
  if (await exists(out)) return `made the results directory ${out}`;
  if (await exists(cache)) return `made the HF cache ${cache}`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------

/** Runs cases one after the other; returns `family / name: problem` for each that was not loud. */
async function check(cases: readonly MalformedCase[]): Promise<string[]> {
  const problems: string[] = [];
  for (const c of cases) {
    const p = await refusal(c);
    if (p !== undefined) problems.push(`${c.family} / ${c.name}: ${p}`);
  }
  return problems;
}

function assertNone(problems: string[], total: number): void {
  const shown = problems.slice(0, 60).map((p) => (p.length > 400 ? `${p.slice(0, 400)}…` : p));
  if (problems.length > shown.length) shown.push(`… and ${problems.length - shown.length} more`);
  assert.equal(
    problems.length,
    0,
    `${problems.length} of ${total} malformed inputs did not fail loudly:\n${shown.join("\n")}`,
  );
}

/** Every generated case (counted below), by family. */
function generated(): Record<string, number> {
  const count: Record<string, number> = {};
  const all = [
    ...configCases(),
    ...tensorCases(),
    ...safetensorsFileCases(),
    ...tokenizerCases(),
    ...indexCases(),
    symlinkShardCase(),
    ...llama2cCases(),
    ...datasetCases(),
    ...mirrorCases("/nonexistent", "http://127.0.0.1:9"),
  ];
  for (const c of all) count[c.family] = (count[c.family] ?? 0) + 1;
  count.cli = cliCases().length;
  return count;
}

hf.test("malformed inputs: at least 150 are generated, across every family", () => {
  const count = generated();
  const total = Object.values(count).reduce((a, b) => a + b, 0);
  assert.ok(total >= 150, `only ${total} cases: ${json(count)}`);
  for (
    const family of [
      "config.json",
      "tensor",
      "safetensors file",
      "tokenizer",
      "shard index",
      "llama2.c",
      "dataset",
      "hub download",
      "cli",
    ]
  ) {
    assert.ok((count[family] ?? 0) > 0, `no case of ${family}`);
  }
});

hf.test("malformed inputs: the unedited inputs load (the cases fail for their edit alone)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-malformed-control-" });
  try {
    await modelFiles()(`${dir}/plain`);
    await modelFiles(sharded())(`${dir}/sharded`);
    await writeFiles(`${dir}/l2c`, {
      "m.bin": llama2cCheckpoint(),
      "tok.bin": llama2cTokenizer(LLAMA2C_PIECES),
    });
    assert.equal((await loadModel(`${dir}/plain`)).config.dim, 64);
    assert.equal((await loadModel(`${dir}/sharded`)).config.dim, 64);
    assert.equal((await loadLlama2c(`${dir}/l2c/m.bin`, `${dir}/l2c/tok.bin`)).config.dim, 8);
    for (const t of JSONL_TASKS) {
      const files: Record<string, string> = { [t.file]: `${json(t.row)}\n${json(t.row)}\n` };
      if ("labels" in t) files[t.labels] = `${t.label}\n${t.label}\n`;
      await writeFiles(`${dir}/data-${t.task}`, files);
      const r = await runTask(t.task, `${dir}/data-${t.task}`, () => undefined);
      assert.ok(r.metrics.length > 0, t.task);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

hf.test("malformed config.json: every field deleted, null, ill-typed, out of range", async () => {
  const cases = configCases();
  assertNone(await check(cases), cases.length);
});

hf.test("malformed tensors: each dropped, reshaped, retyped; NaN/Inf, bad dtypes and offsets per kind", async () => {
  const cases = [...tensorCases(), ...safetensorsFileCases()];
  assertNone(await check(cases), cases.length);
});

hf.test("malformed tokenizers and special tokens", async () => {
  const cases = tokenizerCases();
  assertNone(await check(cases), cases.length);
});

hf.test("malformed shard indexes: missing shards, unsafe paths, a tensor in two shards", async () => {
  const cases = [...indexCases(), symlinkShardCase()];
  assertNone(await check(cases), cases.length);
});

Deno.test("malformed llama2.c checkpoints and tokenizers", async () => {
  const cases = llama2cCases();
  assertNone(await check(cases), cases.length);
});

hf.test("malformed dataset files fail their task naming file and line", async () => {
  const cases = datasetCases();
  assertNone(await check(cases), cases.length);
});

hf.test("malformed downloads are refused and leave nothing in the Hugging Face cache", async () => {
  const root = await Deno.makeTempDir({ prefix: "lowbit-malformed-hub-" });
  const mirror = await startMirror(root);
  try {
    const cases = mirrorCases(root, mirror.endpoint);
    assertNone(await check(cases), cases.length);
  } finally {
    await mirror.close();
    await Deno.remove(root, { recursive: true });
  }
});

hf.test("malformed CLI lines exit 2 naming the flag or file, without a stack trace or results", async () => {
  const cases = cliCases();
  const problems: string[] = [];
  // Two at a time: each is a separate process.
  for (let i = 0; i < cases.length; i += 2) {
    await Promise.all(
      cases.slice(i, i + 2).map(async (c) => {
        const dir = await Deno.makeTempDir({ prefix: "lowbit-malformed-cli-" });
        try {
          const p = await cliRefusal(c, dir);
          if (p !== undefined) problems.push(`cli / ${c.name}: ${p}`);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }),
    );
  }
  assertNone(problems, cases.length);
});

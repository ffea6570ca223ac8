import assert from "node:assert/strict";
import { FormatError } from "../core/errors.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { parseSafetensors, parseShardIndex, toFloat32 } from "./safetensors.ts";

const hf = await needs("models/stories260K-hf");

/**
 * Builds a safetensors file from a header (object, or raw text for malformed headers) and the
 * data bytes. `pad` spaces are appended to the header (legal JSON whitespace), to move the data.
 */
function build(header: unknown, data: Uint8Array | number[] = [], pad = 0): Uint8Array {
  const text = (typeof header === "string" ? header : JSON.stringify(header)) + " ".repeat(pad);
  const head = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

function u16Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(values).buffer);
}

function assertBad(bytes: Uint8Array, ...needles: string[]): void {
  assert.throws(
    () => parseSafetensors(bytes, "bad.safetensors"),
    (e: unknown) => {
      assert.ok(e instanceof FormatError, `expected FormatError, got ${e}`);
      assert.equal(e.file, "bad.safetensors");
      assert.ok(e.message.startsWith("bad.safetensors: "), e.message);
      for (const n of needles) assert.ok(e.message.includes(n), `${n} not in: ${e.message}`);
      return true;
    },
  );
}

Deno.test("parseSafetensors() reads a hand-built file", () => {
  const bytes = build({
    __metadata__: { format: "pt" },
    "b": { dtype: "F32", shape: [3], data_offsets: [8, 20] },
    "a": { dtype: "F32", shape: [2, 1], data_offsets: [0, 8] },
    "empty": { dtype: "F32", shape: [0, 4], data_offsets: [20, 20] },
  }, f32Bytes([1, 2, 3, 4, 5]));
  const t = parseSafetensors(bytes, "ok.safetensors");
  assert.deepEqual([...t.keys()], ["b", "a", "empty"]);
  assert.deepEqual(t.get("a")!.shape, [2, 1]);
  assert.deepEqual([...toFloat32(t.get("a")!, "a", "ok")], [1, 2]);
  assert.deepEqual([...toFloat32(t.get("b")!, "b", "ok")], [3, 4, 5]);
  assert.equal(toFloat32(t.get("empty")!, "empty", "ok").length, 0);
});

Deno.test("parseSafetensors() rejects malformed files naming file and tensor", () => {
  const data = f32Bytes([1, 2, 3, 4]);
  // header length past the end
  const long = build({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data);
  new DataView(long.buffer).setBigUint64(0, BigInt(long.length), true);
  assertBad(long, "header length");
  assertBad(new Uint8Array(5), "too short");
  // non-JSON and non-object headers
  assertBad(build("{not json", data), "not valid JSON");
  assertBad(build("[1, 2]", data), "not a JSON object");
  // missing fields
  assertBad(build({ a: { shape: [4], data_offsets: [0, 16] } }, data), `"a"`, "dtype");
  assertBad(build({ a: { dtype: "F32", data_offsets: [0, 16] } }, data), `"a"`, "shape");
  assertBad(build({ a: { dtype: "F32", shape: [4] } }, data), `"a"`, "data_offsets");
  assertBad(build({ a: { dtype: "F32", shape: [-4], data_offsets: [0, 16] } }, data), "shape");
  assertBad(build({ a: 7 }, data), `"a"`);
  // unknown dtype
  assertBad(build({ a: { dtype: "F33", shape: [4], data_offsets: [0, 16] } }, data), "F33");
  // offsets past the end of the data, begin after end
  assertBad(build({ a: { dtype: "F32", shape: [5], data_offsets: [0, 20] } }, data), "past");
  assertBad(build({ a: { dtype: "F32", shape: [1], data_offsets: [8, 4] } }, data), "after end");
  // overlapping tensors (also through an empty tensor in between)
  assertBad(
    build({
      a: { dtype: "F32", shape: [3], data_offsets: [0, 12] },
      b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
    }, data),
    "overlaps",
    `"a"`,
    `"b"`,
  );
  assertBad(
    build({
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      e: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
      c: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    }, data),
    "overlaps",
    `"c"`,
  );
  // byte length does not match shape x dtype size
  assertBad(build({ a: { dtype: "F32", shape: [3], data_offsets: [0, 16] } }, data), `"a"`, "12");
  assertBad(build({ a: { dtype: "BF16", shape: [4], data_offsets: [0, 16] } }, data), "BF16");
});

Deno.test("toFloat32() converts F16 and BF16 bit patterns exactly", () => {
  const f16 = build(
    { h: { dtype: "F16", shape: [5], data_offsets: [0, 10] } },
    u16Bytes([0x3c00, 0xc000, 0x7c00, 0x0001, 0x3555]),
  );
  const h = toFloat32(parseSafetensors(f16, "f16").get("h")!, "h", "f16");
  assert.deepEqual([...h], [1, -2, Infinity, 2 ** -24, 0.333251953125]);
  const bf16 = build(
    { b: { dtype: "BF16", shape: [4], data_offsets: [0, 8] } },
    u16Bytes([0x3f80, 0x4049, 0xc000, 0x0000]),
  );
  const b = toFloat32(parseSafetensors(bf16, "bf16").get("b")!, "b", "bf16");
  assert.deepEqual([...b], [1, 3.140625, -2, 0]);
});

Deno.test("toFloat32() handles unaligned data", () => {
  for (let pad = 0; pad < 4; pad++) {
    const f32 = parseSafetensors(
      build({ x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, f32Bytes([1.5, -7]), pad),
      "f",
    ).get("x")!;
    assert.deepEqual([...toFloat32(f32, "x", "f")], [1.5, -7]);
    const f16 = parseSafetensors(
      build(
        { x: { dtype: "F16", shape: [2], data_offsets: [0, 4] } },
        u16Bytes([0x3c00, 0xc000]),
        pad,
      ),
      "f",
    ).get("x")!;
    assert.deepEqual([...toFloat32(f16, "x", "f")], [1, -2]);
    const bf16 = parseSafetensors(
      build(
        { x: { dtype: "BF16", shape: [2], data_offsets: [0, 4] } },
        u16Bytes([0x3f80, 0x4049]),
        pad,
      ),
      "f",
    ).get("x")!;
    assert.deepEqual([...toFloat32(bf16, "x", "f")], [1, 3.140625]);
  }
  assert.throws(
    () => toFloat32({ dtype: "I32", data: new Uint8Array(4) }, "ints", "w.safetensors"),
    (e: unknown) => e instanceof FormatError && /w\.safetensors.*"ints".*I32/.test(e.message),
  );
});

hf.test("parseSafetensors() reads the stories260K-hf fixture", async () => {
  const path = sharedPath("models/stories260K-hf/model.safetensors");
  const t = parseSafetensors(await Deno.readFile(path), path);
  assert.equal(t.size, 1 + 5 * 9 + 1);
  assert.ok(!t.has("__metadata__"));
  assert.ok(!t.has("lm_head.weight"));
  for (const v of t.values()) assert.equal(v.dtype, "F32");
  assert.deepEqual(t.get("model.embed_tokens.weight")!.shape, [512, 64]);
  assert.deepEqual(t.get("model.layers.4.self_attn.k_proj.weight")!.shape, [32, 64]);
  assert.deepEqual(t.get("model.layers.0.mlp.down_proj.weight")!.shape, [64, 172]);
});

Deno.test("parseShardIndex() lists the shards and rejects bad maps", () => {
  const { weightMap, files } = parseShardIndex({
    metadata: { total_size: 10 },
    weight_map: {
      "b": "model-00002-of-00002.safetensors",
      "a": "model-00001-of-00002.safetensors",
      "c": "model-00002-of-00002.safetensors",
    },
  }, "index.json");
  assert.deepEqual(files, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
  assert.equal(weightMap.get("c"), "model-00002-of-00002.safetensors");
  for (const bad of [null, [], {}, { weight_map: {} }, { weight_map: { a: 3 } }]) {
    assert.throws(() => parseShardIndex(bad, "index.json"), FormatError);
  }
  for (const path of ["../x.safetensors", "/etc/x", "a//b"]) {
    assert.throws(
      () => parseShardIndex({ weight_map: { a: path } }, "index.json"),
      /index\.json: .*unsafe path/,
    );
  }
});

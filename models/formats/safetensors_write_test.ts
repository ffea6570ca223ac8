import assert from "node:assert/strict";
import { parseSafetensors, parseShardIndex } from "../safetensors.ts";
import {
  type EagerTensorEntry,
  namedEntries,
  planShards,
  serializeSafetensors,
  shardFileName,
  type ShardIndex,
  type TensorEntry,
  writeSafetensorsFile,
  writeShardedSafetensors,
} from "./safetensors_write.ts";
import { floatTensor, rawTensor } from "./tensor.ts";

Deno.test("serializeSafetensors(): byte for byte the hand-made fixture (header padded to 8 with spaces)", () => {
  // Written by hand from the format description: 8-byte LE length, JSON, spaces, data.
  const json =
    '{"__metadata__":{"format":"pt"},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},' +
    '"b":{"dtype":"F16","shape":[1,2],"data_offsets":[3,7]}}';
  assert.equal(json.length, 139);
  const head = json + "     "; // 139 + 5 = 144, a multiple of 8
  const want = new Uint8Array(8 + 144 + 7);
  want[0] = 144; // length 144, little-endian, upper bytes zero
  want.set(new TextEncoder().encode(head), 8);
  // a = [1, 2, 3]; b = [1.0, -2.0] in float16: 0x3C00, 0xC000, little-endian.
  want.set([1, 2, 3, 0x00, 0x3c, 0x00, 0xc0], 152);
  const got = serializeSafetensors([
    { name: "a", dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) },
    { name: "b", dtype: "F16", shape: [1, 2], data: new Float16Array([1, -2]) },
  ]);
  assert.deepEqual(got, want);
});

function sampleTensors(): EagerTensorEntry[] {
  return [
    { name: "f32", dtype: "F32", shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-8, 7]) },
    { name: "f16", dtype: "F16", shape: [3], data: new Float16Array([0.5, -65504, 6e-8]) },
    { name: "bf16", dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0xc040]) },
    { name: "i32", dtype: "I32", shape: [2], data: new Int32Array([-1, 0x7fffffff]) },
    { name: "i64", dtype: "I64", shape: [2], data: new BigInt64Array([-5n, 1n << 40n]) },
    { name: "u8", dtype: "U8", shape: [1, 1, 5], data: new Uint8Array([0, 1, 2, 254, 255]) },
    { name: "f64", dtype: "F64", shape: [1], data: new Float64Array([Math.PI]) },
    { name: "scalar", dtype: "I16", shape: [], data: new Int16Array([-300]) },
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  ];
}

function bytesOfView(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

Deno.test("serializeSafetensors(): every dtype round-trips through parseSafetensors; data 8-byte aligned", () => {
  const tensors = sampleTensors();
  const file = serializeSafetensors(tensors);
  const headerLen = Number(new DataView(file.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLen)));
  assert.deepEqual(header.__metadata__, { format: "pt" });
  const parsed = parseSafetensors(file, "mem.safetensors");
  assert.deepEqual([...parsed.keys()], tensors.map((t) => t.name));
  for (const t of tensors) {
    const p = parsed.get(t.name)!;
    assert.equal(p.dtype, t.dtype);
    assert.deepEqual(p.shape, t.shape);
    assert.deepEqual(p.data, bytesOfView(t.data as ArrayBufferView), t.name);
  }
});

Deno.test("serializeSafetensors(): clear errors for wrong byte length, duplicates, bad names", () => {
  assert.throws(
    () =>
      serializeSafetensors([{ name: "w", dtype: "F32", shape: [2, 2], data: new Float32Array(3) }]),
    /tensor "w": 12 bytes, but shape \[2, 2\] of F32 needs 16/,
  );
  const one = { name: "w", dtype: "U8" as const, shape: [1], data: new Uint8Array(1) };
  assert.throws(() => serializeSafetensors([one, one]), /tensor "w" appears twice/);
  assert.throws(
    () => serializeSafetensors([{ ...one, name: "__metadata__" }]),
    /tensor name "__metadata__" is not allowed/,
  );
  assert.throws(
    () => serializeSafetensors([{ ...one, shape: [1.5] }]),
    /tensor "w": shape \[1.5\] must hold non-negative integers/,
  );
  assert.throws(() => rawTensor("x", "I32", [3], new Int32Array(2)), /tensor "x": 8 bytes/);
});

Deno.test("writeSafetensorsFile(): calls each producer once, in order, and writes what serializeSafetensors does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors = sampleTensors();
    const calls: string[] = [];
    const lazy: TensorEntry[] = tensors.map((t) => ({
      ...t,
      data: () => {
        calls.push(t.name);
        return t.data as ArrayBufferView;
      },
    }));
    const path = `${dir}/x.safetensors`;
    const size = await writeSafetensorsFile(path, lazy, { format: "pt", note: "lowbit" });
    assert.deepEqual(calls, tensors.map((t) => t.name));
    const bytes = await Deno.readFile(path);
    assert.equal(bytes.length, size);
    assert.deepEqual(bytes, serializeSafetensors(tensors, { format: "pt", note: "lowbit" }));
    // A producer returning the wrong size fails, names the tensor and leaves no file behind.
    const bad: TensorEntry[] = [{
      name: "late",
      dtype: "F32",
      shape: [4],
      data: () => new Float32Array(2),
    }];
    await assert.rejects(
      () => writeSafetensorsFile(`${dir}/bad.safetensors`, bad),
      /tensor "late": 8 bytes/,
    );
    await assert.rejects(() => Deno.stat(`${dir}/bad.safetensors`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("planShards(): greedy in order; an oversized tensor gets its own shard", () => {
  const t = (name: string, n: number) => ({ name, dtype: "U8" as const, shape: [n] });
  const plan = planShards([t("a", 4), t("b", 5), t("c", 20), t("d", 1), t("e", 9)], 10);
  assert.deepEqual(plan.map((s) => s.map((x) => x.name)), [["a", "b"], ["c"], ["d", "e"]]);
  assert.equal(shardFileName(0, 3), "model-00001-of-00003.safetensors");
  assert.equal(shardFileName(11, 12, "x"), "x-00012-of-00012.safetensors");
});

Deno.test("writeShardedSafetensors(): shards + index parse back with parseShardIndex/parseSafetensors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors = [
      ...namedEntries("layer.0", {
        w: floatTensor("w", [1, 2, 3, 4, 5, 6], [2, 3], "F32"), // 24 bytes
        b: floatTensor("b", [0.5, 0.25], [2], "F16"), // 4 bytes
      }),
      ...namedEntries("layer.1", {
        q: rawTensor("q", "I32", [8], new Int32Array([1, 2, 3, 4, 5, 6, 7, 8])), // 32 bytes
      }),
      { name: "head", dtype: "BF16" as const, shape: [3], data: new Uint16Array([1, 2, 3]) }, // 6
    ];
    const { files, index } = await writeShardedSafetensors(dir, tensors, { maxShardBytes: 30 });
    assert.deepEqual(files, [
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
      "model.safetensors.index.json",
    ]);
    const json: ShardIndex = JSON.parse(
      await Deno.readTextFile(`${dir}/model.safetensors.index.json`),
    );
    assert.deepEqual(json, index);
    assert.equal(json.metadata.total_size, 24 + 4 + 32 + 6);
    const { weightMap, files: shardFiles } = parseShardIndex(json, "index");
    assert.deepEqual(shardFiles, files.slice(0, 3));
    assert.deepEqual(Object.fromEntries(weightMap), {
      "layer.0.w": "model-00001-of-00003.safetensors",
      "layer.0.b": "model-00001-of-00003.safetensors",
      "layer.1.q": "model-00002-of-00003.safetensors",
      "head": "model-00003-of-00003.safetensors",
    });
    for (const t of tensors) {
      const shard = parseSafetensors(
        await Deno.readFile(`${dir}/${weightMap.get(t.name)}`),
        t.name,
      );
      assert.deepEqual(shard.get(t.name)!.data, bytesOfView(t.data as ArrayBufferView));
    }
    // Everything in one shard: a single model.safetensors and no index, as save_pretrained does.
    const one = await writeShardedSafetensors(`${dir}/one`, tensors);
    assert.deepEqual(one.files, ["model.safetensors"]);
    assert.equal(one.index, undefined);
    assert.equal(
      parseSafetensors(await Deno.readFile(`${dir}/one/model.safetensors`), "one").size,
      4,
    );
    await assert.rejects(
      () => writeShardedSafetensors(`${dir}/dup`, [...tensors, tensors[0]!]),
      /tensor "layer.0.w" appears twice/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

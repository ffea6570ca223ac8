import assert from "node:assert/strict";
import { join } from "node:path";
import { randomDecoder, smallConfig } from "../../testing/random_model.ts";
import { ggufUnsupported, interleaveRopeRows, llamaGguf, writeGguf } from "./gguf.ts";

/** A GGUF v3 reader written from ggml's docs/gguf.md, independent of the writer. */
function readGguf(bytes: Uint8Array) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const u32 = () => (at += 4, v.getUint32(at - 4, true));
  const u64 = () => (at += 8, Number(v.getBigUint64(at - 8, true)));
  const str = () => {
    const n = u64();
    at += n;
    return new TextDecoder().decode(bytes.subarray(at - n, at));
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 4:
        return u32();
      case 5:
        return (at += 4, v.getInt32(at - 4, true));
      case 6:
        return (at += 4, v.getFloat32(at - 4, true));
      case 8:
        return str();
      case 9: {
        const t = u32(), n = u64();
        return Array.from({ length: n }, () => value(t));
      }
      default:
        throw new Error(`type ${type} not expected here`);
    }
  };
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  at = 4;
  const version = u32(), nTensors = u64(), nMeta = u64();
  const meta = new Map<string, unknown>();
  for (let i = 0; i < nMeta; i++) {
    const k = str();
    meta.set(k, value(u32()));
  }
  const infos = Array.from({ length: nTensors }, () => {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    return { name, dims, type: u32(), offset: u64() };
  });
  const alignment = (meta.get("general.alignment") as number | undefined) ?? 32;
  const dataStart = Math.ceil(at / alignment) * alignment;
  const tensor = (name: string) => {
    const t = infos.find((x) => x.name === name)!;
    const n = t.dims.reduce((a, b) => a * b, 1);
    return new Float32Array(bytes.slice(dataStart + t.offset, dataStart + t.offset + 4 * n).buffer);
  };
  return { magic, version, meta, infos, dataStart, alignment, tensor };
}

Deno.test("interleaveRopeRows: rotate-half pairs (i, i + hd/2) become adjacent rows (2i, 2i + 1)", () => {
  // Two heads of head size 4, one column: head h's rows a0 a1 b0 b1 pair a_i with b_i.
  const rows = Float32Array.from([10, 11, 20, 21, 30, 31, 40, 41]);
  assert.deepEqual([...interleaveRopeRows(rows, 2, 4, 1)], [10, 20, 11, 21, 30, 40, 31, 41]);
  // Two columns move with their row.
  const wide = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual([...interleaveRopeRows(wide, 1, 4, 2)], [1, 2, 5, 6, 3, 4, 7, 8]);
});

Deno.test("writeGguf/llamaGguf: header, metadata, tensor table and data read back by the spec", async () => {
  const config = smallConfig({ vocabSize: 300, dim: 32, hiddenDim: 48, headDim: 8 });
  const weights = randomDecoder(config, 9);
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "m.gguf");
    const { meta, tensors } = llamaGguf(config, weights, { bos: 1, eos: 2 });
    const written = await writeGguf(path, meta, tensors);
    const bytes = await Deno.readFile(path);
    assert.equal(written, bytes.length);
    const g = readGguf(bytes);
    assert.equal(g.magic, "GGUF");
    assert.equal(g.version, 3);
    assert.equal(g.meta.get("general.architecture"), "llama");
    assert.equal(g.meta.get("llama.block_count"), config.nLayers);
    assert.equal(g.meta.get("llama.embedding_length"), config.dim);
    assert.equal(g.meta.get("llama.feed_forward_length"), config.hiddenDim);
    assert.equal(g.meta.get("llama.attention.head_count"), config.nHeads);
    assert.equal(g.meta.get("llama.attention.head_count_kv"), config.nKvHeads);
    assert.equal(g.meta.get("llama.rope.freq_base"), config.ropeTheta);
    assert.equal(g.meta.get("llama.attention.layer_norm_rms_epsilon"), Math.fround(config.normEps));
    const pieces = g.meta.get("tokenizer.ggml.tokens") as string[];
    const types = g.meta.get("tokenizer.ggml.token_type") as number[];
    assert.equal(pieces.length, 300);
    assert.equal(new Set(pieces).size, 300, "pieces are unique");
    assert.deepEqual([pieces[0], pieces[1], pieces[2]], ["<unk>", "<s>", "</s>"]);
    assert.equal(pieces.filter((p) => /^<0x[0-9A-F]{2}>$/.test(p)).length, 256);
    assert.equal(types[pieces.indexOf("<0x0A>")], 6);
    // 2 layers × 9 tensors + embedding + final norm (+ a separate classifier when untied).
    const untied = weights.lmHead !== weights.embed;
    assert.equal(g.infos.length, 2 * 9 + 2 + (untied ? 1 : 0));
    for (const t of g.infos) {
      assert.equal(t.type, 0, `${t.name} is F32`);
      assert.equal(t.offset % g.alignment, 0, `${t.name} is aligned`);
    }
    assert.equal(g.dataStart % 32, 0);
    const q = g.infos.find((t) => t.name === "blk.1.attn_q.weight")!;
    assert.deepEqual(q.dims, [config.dim, config.nHeads * config.headDim], "ne[0] is the columns");
    assert.deepEqual(g.tensor("token_embd.weight"), weights.embed.data);
    assert.deepEqual(
      g.tensor("blk.0.ffn_down.weight"),
      weights.layers[0]!.mlp.kind === "dense" ? weights.layers[0]!.mlp.down.data : undefined,
    );
    assert.deepEqual(g.tensor("blk.0.attn_norm.weight"), weights.layers[0]!.attnNorm);
    assert.deepEqual(g.tensor("output_norm.weight"), weights.norm);
    // q's first head: its row hd/2 (pair partner of row 0 in rotate-half) is now row 1.
    const qw = weights.layers[1]!.q, hd = config.headDim, got = g.tensor("blk.1.attn_q.weight");
    assert.deepEqual(
      got.subarray(config.dim, 2 * config.dim),
      qw.data.subarray((hd / 2) * config.dim, (hd / 2 + 1) * config.dim),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("llamaGguf refuses what llama.cpp's llama architecture would compute differently", () => {
  const withBias = smallConfig({ vocabSize: 300, qkvBias: true });
  assert.match(ggufUnsupported(withBias, randomDecoder(withBias, 1)) ?? "", /qkvBias/);
  const tiny = smallConfig();
  assert.match(ggufUnsupported(tiny, randomDecoder(tiny, 1)) ?? "", /vocabulary of 41/);
  assert.throws(
    () => llamaGguf(withBias, randomDecoder(withBias, 1), { bos: 1, eos: 2 }),
    TypeError,
  );
});

Deno.test("writeGguf: a tensor that does not fit its shape fails naming it, and leaves no file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "bad.gguf");
    const tensors = [
      { name: "ok", rows: 1, cols: 4, values: () => new Float32Array(4) },
      { name: "blk.0.attn_q.weight", rows: 2, cols: 4, values: () => new Float32Array(7) },
    ];
    await assert.rejects(
      writeGguf(path, new Map(), tensors),
      /blk\.0\.attn_q\.weight has 7 values/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

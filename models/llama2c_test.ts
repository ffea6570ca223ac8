import assert from "node:assert/strict";
import { FormatError } from "../core/errors.ts";
import { hfMirrorRoot, needs } from "../testing/fixtures.ts";
import { parseLlama2cCheckpoint } from "./llama2c.ts";

const stories = await needs("hf-mirror");

const CKPT = `${await hfMirrorRoot()}/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin`;

/** A llama2.c checkpoint whose i-th float is `i` (so every tensor's position is visible). */
function syntheticCheckpoint(header: number[], floats: number): Uint8Array {
  const bytes = new Uint8Array(28 + 4 * floats);
  const view = new DataView(bytes.buffer);
  header.forEach((v, i) => view.setInt32(4 * i, v, true));
  for (let i = 0; i < floats; i++) view.setFloat32(28 + 4 * i, i, true);
  return bytes;
}

function assertFormatError(fn: () => unknown, ...needles: (string | RegExp)[]): FormatError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof FormatError, `expected a FormatError, got ${caught}`);
  for (const n of needles) {
    if (typeof n === "string") assert.ok(caught.message.includes(n), caught.message);
    else assert.match(caught.message, n);
  }
  return caught;
}

stories.test("parseLlama2cCheckpoint() reads stories260K's published hyper-parameters", async () => {
  const bytes = await Deno.readFile(CKPT);
  const { config, weights } = parseLlama2cCheckpoint(bytes, CKPT);
  assert.deepEqual(
    [config.dim, config.hiddenDim, config.nLayers, config.nHeads, config.nKvHeads],
    [64, 172, 5, 8, 4],
  );
  assert.equal(config.vocabSize, 512);
  assert.equal(config.maxSeqLen, 512);
  assert.equal(config.headDim, 8);
  assert.equal(config.tiedEmbeddings, true);
  assert.equal(config.ropeStyle, "interleaved");
  assert.equal(config.normEps, 1e-5);
  assert.equal(config.ropeTheta, 10000);
  assert.equal(config.moe, undefined);
  // Tied: the classifier is the embedding object itself.
  assert.equal(weights.lmHead, weights.embed);
  assert.equal(weights.layers.length, 5);
  const l0 = weights.layers[0]!;
  assert.deepEqual([l0.q.rows, l0.q.cols, l0.k.rows, l0.v.rows, l0.o.cols], [64, 64, 32, 32, 64]);
  assert.equal(l0.mlp.kind, "dense");
  if (l0.mlp.kind === "dense") {
    assert.deepEqual([l0.mlp.gate!.rows, l0.mlp.gate!.cols], [172, 64]);
    assert.deepEqual([l0.mlp.down.rows, l0.mlp.down.cols], [64, 172]);
  }
  // Independent reads of the raw bytes: the embedding starts right after the 28-byte header,
  // and the file ends with freq_cis_real/imag (512 * 4 floats each) whose row 0 is cos 0 = 1
  // and sin 0 = 0, preceded by rms_final.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.equal(weights.embed.data[0], view.getFloat32(28, true));
  assert.equal(weights.embed.data[64 * 511 + 63], view.getFloat32(28 + 4 * (64 * 512 - 1), true));
  const freqStart = bytes.length - 2 * 2048 * 4;
  for (let i = 0; i < 4; i++) {
    assert.equal(view.getFloat32(freqStart + 4 * i, true), 1);
    assert.equal(view.getFloat32(freqStart + 2048 * 4 + 4 * i, true), 0);
  }
  for (let i = 0; i < 64; i++) {
    assert.equal(weights.norm[i], view.getFloat32(freqStart - 256 + 4 * i, true));
  }
  // RMSNorm weights of a trained model are positive-ish and far from zero on average.
  const meanNorm = weights.norm.reduce((a, b) => a + b, 0) / 64;
  assert.ok(meanNorm > 0.1, `mean final norm weight ${meanNorm}`);
});

stories.test("parseLlama2cCheckpoint() copies into aligned arrays from an unaligned buffer", async () => {
  const bytes = await Deno.readFile(CKPT);
  const shifted = new Uint8Array(bytes.length + 1).subarray(1);
  shifted.set(bytes);
  const a = parseLlama2cCheckpoint(bytes, CKPT).weights;
  const b = parseLlama2cCheckpoint(shifted, CKPT).weights;
  assert.deepEqual(b.layers[4]!.mlp, a.layers[4]!.mlp);
  assert.deepEqual(b.norm, a.norm);
  // Fresh arrays: changing the weights does not touch the file bytes.
  const before = shifted[28];
  b.embed.data.fill(0);
  assert.equal(shifted[28], before);
});

stories.test("parseLlama2cCheckpoint() rejects truncated and over-long files with byte counts", async () => {
  const bytes = await Deno.readFile(CKPT);
  const err = assertFormatError(
    () => parseLlama2cCheckpoint(bytes.subarray(0, bytes.length - 4), "stories260K.bin"),
    "stories260K.bin",
    "1056540",
    "1056536",
  );
  assert.equal(err.file, "stories260K.bin");
  const longer = new Uint8Array(bytes.length + 4);
  longer.set(bytes);
  assertFormatError(() => parseLlama2cCheckpoint(longer, "x.bin"), "x.bin", "1056540", "1056544");
  assertFormatError(() => parseLlama2cCheckpoint(bytes.subarray(0, 20), "h.bin"), "h.bin", "28");
});

Deno.test("parseLlama2cCheckpoint() validates the header before reading", () => {
  // dim 64 with 7 heads
  assertFormatError(
    () => parseLlama2cCheckpoint(syntheticCheckpoint([64, 172, 5, 7, 7, 512, 512], 0), "a.bin"),
    "a.bin",
    "n_heads 7",
  );
  // 8 heads, 3 kv heads
  assertFormatError(
    () => parseLlama2cCheckpoint(syntheticCheckpoint([64, 172, 5, 8, 3, 512, 512], 0), "b.bin"),
    "n_kv_heads 3",
  );
  assertFormatError(
    () => parseLlama2cCheckpoint(syntheticCheckpoint([64, 0, 5, 8, 4, 512, 512], 0), "c.bin"),
    "hidden_dim",
  );
  assertFormatError(
    () => parseLlama2cCheckpoint(syntheticCheckpoint([-64, 172, 5, 8, 4, 512, 512], 0), "d.bin"),
    "dim",
  );
  assertFormatError(
    () => parseLlama2cCheckpoint(syntheticCheckpoint([64, 172, 5, 8, 4, 0, 512], 0), "e.bin"),
    "vocab_size",
  );
  // odd head size (dim 6, 2 heads)
  assertFormatError(
    () => parseLlama2cCheckpoint(syntheticCheckpoint([6, 4, 1, 2, 2, 3, 2], 0), "f.bin"),
    "even",
  );
});

Deno.test("parseLlama2cCheckpoint() reads an untied GQA checkpoint in file order", () => {
  const [dim, hidden, L, heads, kv, vocab, seq] = [4, 6, 2, 2, 1, 5, 3];
  const kvDim = 2;
  const sizes = {
    embed: vocab * dim,
    rmsAtt: L * dim,
    wq: L * dim * dim,
    wk: L * kvDim * dim,
    wv: L * kvDim * dim,
    wo: L * dim * dim,
    rmsFfn: L * dim,
    w1: L * hidden * dim,
    w2: L * dim * hidden,
    w3: L * hidden * dim,
    rmsFinal: dim,
    freq: 2 * seq * (dim / heads) / 2,
    wcls: vocab * dim,
  };
  const start: Record<string, number> = {};
  let total = 0;
  for (const [k, n] of Object.entries(sizes)) {
    start[k] = total;
    total += n;
  }
  const bytes = syntheticCheckpoint([dim, hidden, L, heads, kv, -vocab, seq], total);
  const { config, weights } = parseLlama2cCheckpoint(bytes, "untied.bin");
  assert.equal(config.tiedEmbeddings, false);
  assert.equal(config.vocabSize, 5);
  assert.equal(config.nKvHeads, 1);
  assert.notEqual(weights.lmHead, weights.embed);
  const first = (a: Float32Array) => a[0];
  assert.equal(first(weights.embed.data), start.embed);
  assert.equal(first(weights.lmHead.data), start.wcls);
  assert.equal(weights.lmHead.data.length, vocab * dim);
  const l1 = weights.layers[1]!;
  assert.equal(first(l1.attnNorm), start.rmsAtt! + dim);
  assert.equal(first(l1.q.data), start.wq! + dim * dim);
  assert.equal(first(l1.k.data), start.wk! + kvDim * dim);
  assert.equal(l1.k.rows, kvDim);
  assert.equal(first(l1.v.data), start.wv! + kvDim * dim);
  assert.equal(first(l1.o.data), start.wo! + dim * dim);
  assert.equal(first(l1.mlpNorm), start.rmsFfn! + dim);
  assert.ok(l1.mlp.kind === "dense");
  assert.equal(first(l1.mlp.gate!.data), start.w1! + hidden * dim);
  assert.equal(first(l1.mlp.down.data), start.w2! + dim * hidden);
  assert.equal(first(l1.mlp.up.data), start.w3! + hidden * dim);
  assert.equal(first(weights.norm), start.rmsFinal);
  // One float missing or extra at the end (the classifier) is detected.
  assertFormatError(
    () => parseLlama2cCheckpoint(bytes.subarray(0, bytes.length - 4), "untied.bin"),
    "untied",
  );
});

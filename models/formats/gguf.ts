/**
 * A GGUF (version 3) writer for llama.cpp: a dense Llama-architecture model as F32 tensors, with
 * the metadata llama.cpp's `llama` architecture reads. Used to run llama.cpp on exactly the
 * weights lowbit runs (`bench/llama_cpp.ts`); the ggml block formats are in `export/gguf_quants.ts`.
 *
 * Layout (ggml's `gguf.cpp`, spec in ggml's `docs/gguf.md`): magic `GGUF`, version 3, tensor
 * count and metadata count (u64); metadata as (string key, u32 type, value); tensor infos as
 * (name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset into the data);
 * the data section aligned to `general.alignment` (32), each tensor at an aligned offset. Strings
 * are a u64 byte length then UTF-8; everything little-endian.
 *
 * Tensor names and the q/k row order follow llama.cpp's `convert_hf_to_gguf.py` for `llama`:
 * `token_embd`, `blk.N.attn_{norm,q,k,v,output}`, `blk.N.ffn_{norm,gate,up,down}`, `output_norm`,
 * `output` (left out when tied). llama.cpp's `llama` RoPE rotates interleaved pairs, so a model
 * whose RoPE rotates halves (transformers' `rotate_half`) has its q and k rows permuted per head
 * (row `j·hd/2 + i` → `2i + j`), as the converter's `LlamaModel.permute` does.
 *
 * The vocabulary is written as llama.cpp's SentencePiece kind (`tokenizer.ggml.model = llama`)
 * with placeholder pieces: `<unk>`, the BOS and EOS ids as control tokens, the 256 byte pieces
 * `<0x00>`…`<0xFF>` llama.cpp looks up, and `tok<i>` for the rest. Text cannot be tokenized
 * with it; token ids go in directly. Architectures other than plain dense Llama are refused by
 * name.
 *
 * @module
 */

import { open, rename, rm } from "node:fs/promises";
import { unsupportedFeatures } from "../arch.ts";
import { valuesOf } from "../lazy_matrix.ts";
import type { LlamaConfig, LlamaWeights, Matrix } from "../types.ts";

/** Data alignment of the files written (GGUF's default). */
export const GGUF_ALIGNMENT = 32;
const GGML_TYPE_F32 = 0;
/** GGUF metadata value types used here. */
const T = { u32: 4, i32: 5, f32: 6, string: 8, array: 9 } as const;

type MetaValue =
  | { readonly type: "u32" | "i32" | "f32"; readonly value: number }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "strings"; readonly value: readonly string[] }
  | { readonly type: "f32s" | "i32s"; readonly value: ArrayLike<number> };

/** One tensor to write: its GGUF name, shape `[rows][cols]` and its float32 values on demand. */
export interface GgufTensor {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  /** The values, row-major; called once, when the tensor is written. */
  values(): Float32Array;
}

/** Little-endian byte buffer that grows as it is written. */
class Bytes {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;
  #room(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.length + n));
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.#room(4);
    this.#view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.#room(4);
    this.#view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.#room(4);
    this.#view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.#room(8);
    this.#view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.#room(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.#room(n);
    this.#buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }
}

function writeMeta(b: Bytes, key: string, m: MetaValue): void {
  b.string(key);
  switch (m.type) {
    case "u32":
      b.u32(T.u32), b.u32(m.value);
      break;
    case "i32":
      b.u32(T.i32), b.i32(m.value);
      break;
    case "f32":
      b.u32(T.f32), b.f32(m.value);
      break;
    case "string":
      b.u32(T.string), b.string(m.value);
      break;
    case "strings":
      b.u32(T.array), b.u32(T.string), b.u64(m.value.length);
      for (const s of m.value) b.string(s);
      break;
    case "f32s":
      b.u32(T.array), b.u32(T.f32), b.u64(m.value.length);
      for (let i = 0; i < m.value.length; i++) b.f32(m.value[i]!);
      break;
    case "i32s":
      b.u32(T.array), b.u32(T.i32), b.u64(m.value.length);
      for (let i = 0; i < m.value.length; i++) b.i32(m.value[i]!);
      break;
  }
}

/**
 * Writes a GGUF v3 file of `tensors` (F32) and `meta` to `path`, a tensor at a time (a model
 * larger than memory as float32 is never whole in memory), renamed into place only when complete.
 * Returns the bytes written; throws a `RangeError` naming a tensor whose values do not fit its shape.
 */
export async function writeGguf(
  path: string,
  meta: ReadonlyMap<string, MetaValue>,
  tensors: readonly GgufTensor[],
): Promise<number> {
  const head = new Bytes();
  head.u32(0x46554747); // "GGUF"
  head.u32(3);
  head.u64(tensors.length);
  head.u64(meta.size);
  for (const [k, v] of meta) writeMeta(head, k, v);
  let offset = 0;
  for (const t of tensors) {
    head.string(t.name);
    // A vector is 1-D; a matrix's ne[0] is its columns.
    if (t.rows === 1) head.u32(1), head.u64(t.cols);
    else head.u32(2), head.u64(t.cols), head.u64(t.rows);
    head.u32(GGML_TYPE_F32);
    head.u64(offset);
    offset += Math.ceil((t.rows * t.cols * 4) / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }
  head.pad(GGUF_ALIGNMENT);
  // Written under a temporary name and renamed when complete: a failure never leaves a
  // half-written file at `path` (which `bench/llama_cpp.ts --gguf` would then reuse).
  const partial = `${path}.partial`;
  const file = await open(partial, "w");
  let complete = false;
  try {
    let written = 0;
    const put = async (bytes: Uint8Array) => {
      for (let at = 0; at < bytes.length;) {
        const { bytesWritten } = await file.write(bytes, at, bytes.length - at);
        at += bytesWritten;
      }
      written += bytes.length;
    };
    await put(head.bytes());
    for (const t of tensors) {
      const v = t.values();
      if (v.length !== t.rows * t.cols) {
        throw new RangeError(
          `gguf: tensor ${t.name} has ${v.length} values, not ${t.rows}×${t.cols}`,
        );
      }
      await put(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      const pad = (GGUF_ALIGNMENT - (v.byteLength % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
      if (pad) await put(new Uint8Array(pad));
    }
    complete = true;
    return written;
  } finally {
    await file.close();
    if (complete) await rename(partial, path);
    else await rm(partial, { force: true });
  }
}

/**
 * q or k rows of `heads` heads reordered from rotate-half RoPE order to llama.cpp's interleaved
 * pairs: within each head, row `j·hd/2 + i` moves to `2i + j`.
 */
export function interleaveRopeRows(
  data: Float32Array,
  heads: number,
  headDim: number,
  cols: number,
): Float32Array {
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const from = (h * headDim + j * half + i) * cols;
        out.set(data.subarray(from, from + cols), (h * headDim + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

/** The placeholder SentencePiece vocabulary described in the module doc. */
function placeholderVocab(c: LlamaConfig, bos: number, eos: number) {
  const tokens: string[] = [];
  const types = new Int32Array(c.vocabSize);
  const taken = new Set<number>([0, bos, eos]);
  let nextByte = 0;
  for (let i = 0; i < c.vocabSize; i++) {
    if (i === 0) tokens.push("<unk>"), types[i] = 2;
    else if (i === bos) tokens.push("<s>"), types[i] = 3;
    else if (i === eos) tokens.push("</s>"), types[i] = 3;
    else if (nextByte < 256 && !taken.has(i)) {
      tokens.push(`<0x${nextByte.toString(16).toUpperCase().padStart(2, "0")}>`);
      types[i] = 6;
      nextByte++;
    } else tokens.push(`tok${i}`), types[i] = 1;
  }
  return { tokens, types, scores: new Float32Array(c.vocabSize) };
}

/** Why `model` cannot be written by {@linkcode llamaGguf}, or undefined. */
export function ggufUnsupported(c: LlamaConfig, w: LlamaWeights): string | undefined {
  if (c.vocabSize < 259) return `gguf: a vocabulary of ${c.vocabSize} has no room for byte pieces`;
  if (w.activations || w.online) return "gguf: activation quantization is not written";
  return unsupportedFeatures("gguf (llama.cpp llama)", c, ["interleavedRope"]);
}

/**
 * The metadata and tensors of `model` as llama.cpp's `llama` architecture (see the module doc);
 * `bos`/`eos` are the tokenizer's ids. Throws a `TypeError` naming what it cannot write.
 */
export function llamaGguf(
  c: LlamaConfig,
  w: LlamaWeights,
  ids: { readonly bos: number; readonly eos: number },
): { meta: Map<string, MetaValue>; tensors: GgufTensor[] } {
  const why = ggufUnsupported(c, w);
  if (why) throw new TypeError(why);
  const u32 = (value: number) => ({ type: "u32" as const, value });
  const vocab = placeholderVocab(c, ids.bos, ids.eos);
  const meta = new Map<string, MetaValue>([
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: "lowbit export" }],
    ["general.alignment", u32(GGUF_ALIGNMENT)],
    ["llama.context_length", u32(c.maxSeqLen)],
    ["llama.embedding_length", u32(c.dim)],
    ["llama.block_count", u32(c.nLayers)],
    ["llama.feed_forward_length", u32(c.hiddenDim)],
    ["llama.attention.head_count", u32(c.nHeads)],
    ["llama.attention.head_count_kv", u32(c.nKvHeads)],
    ["llama.attention.key_length", u32(c.headDim)],
    ["llama.attention.value_length", u32(c.headDim)],
    ["llama.rope.dimension_count", u32(c.headDim)],
    ["llama.rope.freq_base", { type: "f32", value: c.ropeTheta }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: c.normEps }],
    ["llama.vocab_size", u32(c.vocabSize)],
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "strings", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "f32s", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "i32s", value: vocab.types }],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
    ["tokenizer.ggml.bos_token_id", u32(ids.bos)],
    ["tokenizer.ggml.eos_token_id", u32(ids.eos)],
  ]);
  const halves = c.ropeStyle !== "interleaved";
  const mat = (name: string, m: Matrix, heads?: number): GgufTensor => ({
    name,
    rows: m.rows,
    cols: m.cols,
    values: () =>
      heads !== undefined && halves
        ? interleaveRopeRows(valuesOf(m), heads, c.headDim, m.cols)
        : valuesOf(m),
  });
  const vec = (name: string, v: Float32Array): GgufTensor => ({
    name,
    rows: 1,
    cols: v.length,
    values: () => v,
  });
  const tensors: GgufTensor[] = [mat("token_embd.weight", w.embed)];
  w.layers.forEach((l, i) => {
    if (l.mlp.kind !== "dense" || !l.mlp.gate) {
      throw new TypeError(`gguf: layer ${i} is not SwiGLU`);
    }
    tensors.push(
      vec(`blk.${i}.attn_norm.weight`, l.attnNorm),
      mat(`blk.${i}.attn_q.weight`, l.q, c.nHeads),
      mat(`blk.${i}.attn_k.weight`, l.k, c.nKvHeads),
      mat(`blk.${i}.attn_v.weight`, l.v),
      mat(`blk.${i}.attn_output.weight`, l.o),
      vec(`blk.${i}.ffn_norm.weight`, l.mlpNorm),
      mat(`blk.${i}.ffn_gate.weight`, l.mlp.gate),
      mat(`blk.${i}.ffn_up.weight`, l.mlp.up),
      mat(`blk.${i}.ffn_down.weight`, l.mlp.down),
    );
  });
  tensors.push(vec("output_norm.weight", w.norm));
  if (w.lmHead !== w.embed) tensors.push(mat("output.weight", w.lmHead));
  return { meta, tensors };
}

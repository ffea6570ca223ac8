/**
 * Karpathy's llama2.c files: the legacy float32 checkpoint (`*.bin`) and the tokenizer
 * (`tok*.bin`, `tokenizer.bin`), parsed from bytes into the in-memory model form.
 *
 * Checkpoint layout (little-endian): a header of 7 int32 `dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len` (a negative `vocab_size` means the classifier is stored at
 * the end instead of being tied to the embedding), then float32 `token_embedding [vocab][dim]`,
 * `rms_att [L][dim]`, `wq [L][dim][dim]`, `wk [L][kv_dim][dim]`, `wv [L][kv_dim][dim]`,
 * `wo [L][dim][dim]`, `rms_ffn [L][dim]`, `w1 [L][hidden][dim]`, `w2 [L][dim][hidden]`,
 * `w3 [L][hidden][dim]`, `rms_final [dim]`, the unused `freq_cis_real`/`freq_cis_imag`
 * (`seq_len * head_size / 2` each) and, when untied, `wcls [vocab][dim]`.
 *
 * Tokenizer layout: int32 `max_token_length`, then per token float32 `score`, int32 `len` and
 * `len` bytes of the piece (SentencePiece pieces with `▁` written as a space).
 *
 * @module
 */

import { FormatError } from "../core/errors.ts";
import { sha256Parts } from "../core/hash.ts";
import type {
  DenseMlp,
  LlamaConfig,
  LlamaLayer,
  LlamaWeights,
  Matrix,
  Tokenizer,
} from "./types.ts";

const HEADER_FIELDS = [
  "dim",
  "hidden_dim",
  "n_layers",
  "n_heads",
  "n_kv_heads",
  "vocab_size",
  "seq_len",
] as const;
const HEADER_BYTES = HEADER_FIELDS.length * 4;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Parses a llama2.c legacy float32 checkpoint.
 *
 * The header is validated (positive sizes, `dim` divisible by `n_heads`, `n_heads` divisible by
 * `n_kv_heads`, even head size) and the file must have exactly the byte length the header
 * implies. Every tensor is copied into its own `Float32Array`; a tied classifier is the same
 * {@linkcode Matrix} object as the embedding.
 *
 * @param bytes The whole file.
 * @param file The file's name or path, for error messages.
 * @returns The config (interleaved RoPE, eps 1e-5, theta 10000) and the weights.
 * @throws {FormatError} When the header or the length is wrong, or a weight is NaN or infinite
 *   (naming the tensor, as `wq[0]`, and the element).
 */
export function parseLlama2cCheckpoint(
  bytes: Uint8Array,
  file: string,
): { config: LlamaConfig; weights: LlamaWeights } {
  const header = parseLlama2cHeader(bytes, file);
  const freqFloats = checkLlama2cSize(bytes, file, header);
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize, tied } = header;
  const kvDim = headDim * nKvHeads;
  const r = new FiniteFloatReader(bytes, file);
  const perLayer = <T>(read: (l: number) => T): T[] =>
    Array.from({ length: nLayers }, (_, l) => read(l));

  const embed = r.matrix(vocabSize, dim, "token_embedding");
  const attnNorm = perLayer((l) => r.take(dim, `rms_att[${l}]`));
  const wq = perLayer((l) => r.matrix(dim, dim, `wq[${l}]`));
  const wk = perLayer((l) => r.matrix(kvDim, dim, `wk[${l}]`));
  const wv = perLayer((l) => r.matrix(kvDim, dim, `wv[${l}]`));
  const wo = perLayer((l) => r.matrix(dim, dim, `wo[${l}]`));
  const mlpNorm = perLayer((l) => r.take(dim, `rms_ffn[${l}]`));
  const w1 = perLayer((l) => r.matrix(hiddenDim, dim, `w1[${l}]`));
  const w2 = perLayer((l) => r.matrix(dim, hiddenDim, `w2[${l}]`));
  const w3 = perLayer((l) => r.matrix(hiddenDim, dim, `w3[${l}]`));
  const norm = r.take(dim, "rms_final");
  r.offset += 4 * freqFloats; // freq_cis_real/imag: unused (RoPE is computed), not checked
  const lmHead = tied ? embed : r.matrix(vocabSize, dim, "wcls");

  const layers: LlamaLayer[] = [];
  for (let l = 0; l < nLayers; l++) {
    const mlp: DenseMlp = { kind: "dense", gate: w1[l]!, up: w3[l]!, down: w2[l]! };
    layers.push({
      attnNorm: attnNorm[l]!,
      q: wq[l]!,
      k: wk[l]!,
      v: wv[l]!,
      o: wo[l]!,
      mlpNorm: mlpNorm[l]!,
      mlp,
    });
  }
  const config: LlamaConfig = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    maxSeqLen: header.seqLen,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeStyle: "interleaved",
    tiedEmbeddings: tied,
    family: "llama2c",
  };
  return { config, weights: { embed, layers, norm, lmHead } };
}

/** A validated llama2.c checkpoint header. */
interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** `dim / nHeads`. */
  headDim: number;
  /** `|vocab_size|`. */
  vocabSize: number;
  /** Whether the classifier is the embedding (`vocab_size > 0`). */
  tied: boolean;
  seqLen: number;
  /** The raw header as `name=value, …`, for error messages. */
  text: string;
}

/** Reads the 7-int32 header and validates it (positive sizes, divisible heads, even head size). */
function parseLlama2cHeader(bytes: Uint8Array, file: string): Llama2cHeader {
  if (bytes.length < HEADER_BYTES) {
    throw new FormatError(
      file,
      `llama2.c checkpoint too short: expected at least ${HEADER_BYTES} bytes for the header ` +
        `(7 int32), got ${bytes.length} bytes`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = HEADER_FIELDS.map((_, i) => view.getInt32(i * 4, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = header as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const text = HEADER_FIELDS.map((name, i) => `${name}=${header[i]}`).join(", ");
  HEADER_FIELDS.forEach((name, i) => {
    const v = header[i]!;
    if (name === "vocab_size" ? v === 0 : v <= 0) {
      throw new FormatError(
        file,
        `llama2.c checkpoint header field ${name} must be ${
          name === "vocab_size" ? "non-zero" : "positive"
        }, got ${v} (header: ${text})`,
      );
    }
  });
  if (dim % nHeads !== 0) {
    throw new FormatError(
      file,
      `llama2.c checkpoint header: dim ${dim} is not divisible by n_heads ${nHeads}`,
    );
  }
  if (nHeads % nKvHeads !== 0) {
    throw new FormatError(
      file,
      `llama2.c checkpoint header: n_heads ${nHeads} is not divisible by n_kv_heads ${nKvHeads}`,
    );
  }
  const headDim = dim / nHeads;
  if (headDim % 2 !== 0) {
    throw new FormatError(
      file,
      `llama2.c checkpoint header: head size dim/n_heads = ${headDim} must be even for RoPE`,
    );
  }
  const tied = rawVocab > 0;
  const vocabSize = Math.abs(rawVocab);
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize, tied, seqLen, text };
}

/**
 * Checks that the file has exactly the byte length `header` implies; returns the number of
 * `freq_cis_real`/`freq_cis_imag` floats (both together) to skip.
 */
function checkLlama2cSize(bytes: Uint8Array, file: string, header: Llama2cHeader): number {
  const { dim, hiddenDim, nLayers, headDim, vocabSize, tied } = header;
  const kvDim = headDim * header.nKvHeads;
  // run.c: ptr += p->seq_len * head_size / 2 (integer arithmetic), twice.
  const freqFloats = 2 * Math.floor((header.seqLen * headDim) / 2);
  const floats = vocabSize * dim +
    nLayers * (2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * dim * hiddenDim) +
    dim + freqFloats + (tied ? 0 : vocabSize * dim);
  const expected = HEADER_BYTES + 4 * floats;
  if (bytes.length !== expected) {
    const what = bytes.length < expected
      ? `truncated (${expected - bytes.length} bytes missing)`
      : `${bytes.length - expected} bytes too long`;
    throw new FormatError(
      file,
      `llama2.c checkpoint has the wrong size: expected ${expected} bytes for ${header.text} ` +
        `(${tied ? "tied" : "untied"} classifier), got ${bytes.length} bytes: ${what}`,
    );
  }
  return freqFloats;
}

/** Reads consecutive float32 tensors after the header, refusing NaN and infinite values. */
class FiniteFloatReader {
  /** Byte offset of the next tensor. */
  offset = HEADER_BYTES;

  constructor(readonly bytes: Uint8Array, readonly file: string) {}

  /** The next `n` floats, which must be finite (a NaN or ±Infinity is a corrupt checkpoint). */
  take(n: number, name: string): Float32Array {
    const out = readFloat32(this.bytes, this.offset, n);
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(out[i]!)) {
        throw new FormatError(
          this.file,
          `llama2.c checkpoint tensor ${name} holds ${out[i]} at element ${i} (byte ` +
            `${this.offset + 4 * i}; expected finite values)`,
        );
      }
    }
    this.offset += 4 * n;
    return out;
  }

  /** The next `rows × cols` floats as a matrix. */
  matrix(rows: number, cols: number, name: string): Matrix {
    return { rows, cols, data: this.take(rows * cols, name) };
  }
}

/** Copies `n` little-endian float32 values starting at byte `offset` into a fresh array. */
function readFloat32(bytes: Uint8Array, offset: number, n: number): Float32Array {
  if (LITTLE_ENDIAN_HOST) {
    // slice() copies into a new, aligned buffer.
    return new Float32Array(bytes.slice(offset, offset + 4 * n).buffer);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 4 * n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

const BOS_ID = 1;
const EOS_ID = 2;
/** run.c starts the merge search from `float best_score = -1e10`. */
const MIN_MERGE_SCORE = Math.fround(-1e10);
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** Bytes as a "binary string" (one UTF-16 unit per byte), a Map key that concatenates like bytes. */
function binaryString(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

/**
 * A llama2.c tokenizer: SentencePiece BPE pieces with scores, encoded exactly like llama2.c's
 * `run.c` `encode()` (dummy prefix, code point lookup with byte fallback, greedy best-score
 * merges with the leftmost pair winning ties), using a priority queue so long texts take
 * O(n log n) instead of run.c's O(n²).
 *
 * One deliberate difference: run.c works on C strings and stops at a NUL character; here a NUL
 * is encoded like any other character (byte fallback `<0x00>`).
 */
export class Llama2cTokenizer implements Tokenizer {
  /** Always `"llama2c"`. */
  readonly kind = "llama2c" as const;
  readonly vocabSize: number;
  readonly bosId: number = BOS_ID;
  readonly eosId: number = EOS_ID;
  /** The `max_token_length` of the file. */
  readonly maxTokenLength: number;
  readonly #pieces: readonly Uint8Array[];
  readonly #scores: Float32Array;
  /** Pieces as binary strings. */
  readonly #keys: readonly string[];
  /** Piece (binary string) → first id with that piece. */
  readonly #lookup = new Map<string, number>();
  /** Byte value of `<0xXX>` pieces, -1 for the others. */
  readonly #byteOf: Int16Array;
  /** `a * vocabSize + b` → merged id, or -1 when the pair cannot merge. */
  readonly #pairs = new Map<number, number>();
  /** Id of the dummy-prefix piece `" "`. */
  readonly #space: number;

  /**
   * Creates a tokenizer from its pieces (raw bytes) and scores; see
   * {@linkcode parseLlama2cTokenizer} to read a file.
   */
  constructor(
    pieces: readonly Uint8Array[],
    scores: Float32Array,
    maxTokenLength: number,
    /** See {@linkcode Tokenizer.fingerprint}. */
    readonly fingerprint?: string,
  ) {
    if (pieces.length !== scores.length) {
      throw new RangeError(
        `Cannot create tokenizer: ${pieces.length} pieces but ${scores.length} scores`,
      );
    }
    this.vocabSize = pieces.length;
    this.maxTokenLength = maxTokenLength;
    this.#pieces = pieces;
    this.#scores = scores;
    this.#keys = pieces.map((p) => binaryString(p));
    this.#byteOf = new Int16Array(pieces.length).fill(-1);
    this.#keys.forEach((key, id) => {
      if (!this.#lookup.has(key)) this.#lookup.set(key, id);
      const m = BYTE_PIECE.exec(key);
      if (m) this.#byteOf[id] = parseInt(m[1]!, 16);
    });
    this.#space = this.#lookup.get(" ") ?? this.#byteToken(0x20);
  }

  /** The raw bytes of a piece (a space stands for SentencePiece's `▁`). */
  pieceBytes(id: number): Uint8Array {
    return this.#pieces[this.#checkId(id)]!;
  }

  /** A piece as text (UTF-8 decoded, invalid bytes replaced). */
  piece(id: number): string {
    return new TextDecoder().decode(this.pieceBytes(id));
  }

  /** The merge score of a piece. */
  score(id: number): number {
    return this.#scores[this.#checkId(id)]!;
  }

  /** The first id whose piece is exactly `text` (UTF-8), or `undefined`. */
  lookup(text: string): number | undefined {
    return this.#lookup.get(binaryString(new TextEncoder().encode(text)));
  }

  /**
   * Encodes like run.c `encode(t, text, bos, eos=0)`: optional BOS, the dummy-prefix piece `" "`
   * when the text is not empty, each UTF-8 code point as its piece or as byte-fallback tokens
   * (`byte + 3`), then repeated merging of the adjacent pair whose merged piece has the best
   * score (leftmost pair on ties).
   */
  encode(text: string, options: { bos?: boolean } = {}): number[] {
    const tokens: number[] = [];
    if (options.bos) tokens.push(BOS_ID);
    if (text.length === 0) return tokens;
    tokens.push(this.#space);
    const bytes = new TextEncoder().encode(text);
    // Code points, grouped the way run.c does it on raw bytes.
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      if ((bytes[i]! & 0xc0) !== 0x80) start = i;
      const len = i - start + 1;
      const next = bytes[i + 1];
      if (next !== undefined && (next & 0xc0) === 0x80 && len < 4) continue;
      const id = this.#lookup.get(binaryString(bytes, start, i + 1));
      if (id !== undefined) {
        tokens.push(id);
      } else {
        for (let j = start; j <= i; j++) tokens.push(this.#byteToken(bytes[j]!));
      }
      start = i + 1;
    }
    return this.#merge(tokens);
  }

  /**
   * Decodes like run.c `decode()` applied token after token: a leading space is dropped from the
   * piece after BOS (and from the first piece, which carries the dummy prefix), `<0xXX>` pieces
   * are raw bytes; special tokens (ids 0, 1, 2) are dropped and the bytes are UTF-8 decoded.
   */
  decode(ids: readonly number[]): string {
    const out: number[] = [];
    let prev = -1;
    for (let i = 0; i < ids.length; i++) {
      const id = this.#checkId(ids[i]!);
      const p = prev;
      prev = id;
      if (id <= EOS_ID) continue;
      const byte = this.#byteOf[id]!;
      if (byte >= 0) {
        out.push(byte);
        continue;
      }
      const piece = this.#pieces[id]!;
      const skip = (i === 0 || p === BOS_ID) && piece[0] === 0x20 ? 1 : 0;
      for (let j = skip; j < piece.length; j++) out.push(piece[j]!);
    }
    return new TextDecoder().decode(new Uint8Array(out));
  }

  #checkId(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(
        `Cannot use token id ${id}: outside the vocabulary [0, ${this.vocabSize})`,
      );
    }
    return id;
  }

  #byteToken(byte: number): number {
    const id = byte + 3;
    if (id >= this.vocabSize) {
      throw new RangeError(
        `Cannot encode byte 0x${byte.toString(16)}: the vocabulary of ${this.vocabSize} ` +
          `pieces has no byte-fallback token for it`,
      );
    }
    return id;
  }

  /** Merged id of the pair (a, b), or -1 if the concatenated piece is not in the vocabulary. */
  #pair(a: number, b: number): number {
    const key = a * this.vocabSize + b;
    let id = this.#pairs.get(key);
    if (id === undefined) {
      id = this.#lookup.get(this.#keys[a]! + this.#keys[b]!) ?? -1;
      if (id >= 0 && !(this.#scores[id]! > MIN_MERGE_SCORE)) id = -1;
      this.#pairs.set(key, id);
    }
    return id;
  }

  /**
   * run.c's merge loop (each step: merge the adjacent pair with the best merged score, leftmost
   * on ties), implemented with a doubly linked list and a max-heap ordered by (score, position)
   * with lazy deletion. Node indices keep the original order, so "leftmost" is "smallest left
   * node index"; a heap entry is stale unless both nodes are unchanged and still adjacent.
   */
  #merge(initial: number[]): number[] {
    const n = initial.length;
    if (n < 2) return initial;
    const tok = Int32Array.from(initial);
    const version = new Int32Array(n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap();
    const push = (left: number, right: number) => {
      const merged = this.#pair(tok[left]!, tok[right]!);
      if (merged < 0) return;
      heap.push(this.#scores[merged]!, left, right, version[left]!, version[right]!, merged);
    };
    for (let i = 0; i + 1 < n; i++) push(i, i + 1);
    while (heap.size > 0) {
      const e = heap.pop();
      const left = heap.left[e]!;
      const right = heap.right[e]!;
      if (
        tok[left]! < 0 || tok[right]! < 0 || next[left] !== right ||
        version[left] !== heap.leftVersion[e] || version[right] !== heap.rightVersion[e]
      ) {
        continue;
      }
      tok[left] = heap.merged[e]!;
      version[left]!++;
      tok[right] = -1;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      if (prev[left]! >= 0) push(prev[left]!, left);
      if (after >= 0) push(left, after);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }
}

/** A binary max-heap of merge candidates ordered by score, then by smaller left position. */
class PairHeap {
  score: number[] = [];
  left: number[] = [];
  right: number[] = [];
  leftVersion: number[] = [];
  rightVersion: number[] = [];
  merged: number[] = [];
  #heap: number[] = [];
  #free: number[] = [];

  get size(): number {
    return this.#heap.length;
  }

  push(
    score: number,
    left: number,
    right: number,
    leftVersion: number,
    rightVersion: number,
    merged: number,
  ): void {
    const e = this.#free.pop() ?? this.score.length;
    this.score[e] = score;
    this.left[e] = left;
    this.right[e] = right;
    this.leftVersion[e] = leftVersion;
    this.rightVersion[e] = rightVersion;
    this.merged[e] = merged;
    const h = this.#heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(e, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  /** Removes the best entry and returns its slot (valid until the next push). */
  pop(): number {
    const h = this.#heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const len = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= len) break;
        const r = l + 1;
        const c = r < len && this.#before(h[r]!, h[l]!) ? r : l;
        if (!this.#before(h[c]!, last)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    this.#free.push(top);
    return top;
  }

  #before(a: number, b: number): boolean {
    const sa = this.score[a]!;
    const sb = this.score[b]!;
    return sa > sb || (sa === sb && this.left[a]! < this.left[b]!);
  }
}

/**
 * Parses a llama2.c tokenizer file (`tok512.bin`, `tokenizer.bin`).
 *
 * @param bytes The whole file.
 * @param vocabSize Number of pieces (the model's vocabulary size); the file must hold exactly
 *   that many.
 * @param file The file's name or path, for error messages.
 * @returns The tokenizer (BOS 1, EOS 2).
 * @throws {FormatError} When the file is truncated, too long or has impossible lengths.
 */
export function parseLlama2cTokenizer(
  bytes: Uint8Array,
  vocabSize: number,
  file: string,
): Llama2cTokenizer {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) {
    throw new RangeError(`Cannot parse ${file}: vocabulary size ${vocabSize} is not positive`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) {
    throw new FormatError(
      file,
      `llama2.c tokenizer truncated: ${bytes.length} bytes, expected an int32 max_token_length`,
    );
  }
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0) {
    throw new FormatError(
      file,
      `llama2.c tokenizer: max_token_length must be positive, got ${maxTokenLength}`,
    );
  }
  const pieces: Uint8Array[] = [];
  const scores = new Float32Array(vocabSize);
  let offset = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (offset + 8 > bytes.length) {
      throw new FormatError(
        file,
        `llama2.c tokenizer truncated at token ${i} of ${vocabSize}: needs 8 bytes ` +
          `(score, length) at byte ${offset}, file has ${bytes.length} bytes`,
      );
    }
    scores[i] = view.getFloat32(offset, true);
    const len = view.getInt32(offset + 4, true);
    offset += 8;
    if (len < 0 || len > maxTokenLength) {
      throw new FormatError(
        file,
        `llama2.c tokenizer: token ${i} has length ${len}, expected 0..${maxTokenLength} ` +
          `(max_token_length)`,
      );
    }
    if (offset + len > bytes.length) {
      throw new FormatError(
        file,
        `llama2.c tokenizer truncated at token ${i} of ${vocabSize}: needs ${len} bytes at ` +
          `byte ${offset}, file has ${bytes.length} bytes`,
      );
    }
    pieces.push(bytes.slice(offset, offset + len));
    offset += len;
  }
  if (offset !== bytes.length) {
    throw new FormatError(
      file,
      `llama2.c tokenizer has ${bytes.length - offset} bytes after the ${vocabSize} tokens ` +
        `(expected ${offset} bytes, got ${bytes.length}); is the vocabulary size right?`,
    );
  }
  // Every text starts with the dummy-prefix piece " " (or its byte-fallback token <0x20>).
  const space = pieces.findIndex((p) => p.length === 1 && p[0] === 0x20);
  if (space < 0 && 0x20 + 3 >= vocabSize) {
    throw new FormatError(
      file,
      `llama2.c tokenizer has no " " piece and no byte-fallback piece for it (id ${0x20 + 3} ` +
        `in a vocabulary of ${vocabSize}): it cannot encode the dummy prefix`,
    );
  }
  return new Llama2cTokenizer(
    pieces,
    scores,
    maxTokenLength,
    sha256Parts("llama2c-tokenizer/1", String(vocabSize), bytes),
  );
}

/**
 * Dense little-endian bitstreams of `bits`-bit fields in 32-bit words, the packing GPTQ and
 * compressed-tensors share: field `k` occupies bits `[k·bits, k·bits + bits)` of the stream
 * `w0 | w1 << 32 | w2 << 64 | …`, so fields straddle a word boundary when `bits` does not divide
 * 32. For 2, 4 and 8 bits this is the plain "32/b fields per word, LSB first" layout; for 3 bits,
 * 32 fields fill exactly 3 words (AutoGPTQ `qlinear_cuda_old.py` `pack()`); compressed-tensors
 * ≥ 0.18 `pack_to_int32` writes the same stream for every width.
 *
 * The words of one stream may be strided (GPTQ packs down the input dimension of an
 * `[in·b/32, out]` matrix, so consecutive words of one output column are `out` apart).
 *
 * @module
 */

/** Number of 32-bit words holding `count` fields of `bits` bits. */
export function streamWords(count: number, bits: number): number {
  return Math.ceil((count * bits) / 32);
}

/**
 * ORs `count` fields (field `k` is `get(k)`, which must be below `2^bits`) as a dense stream into
 * `out[offset + w·stride]` for `w < streamWords(count, bits)`; those words should start at zero.
 */
export function packStream(
  count: number,
  bits: number,
  get: (k: number) => number,
  out: Uint32Array,
  offset: number,
  stride: number,
): void {
  for (let k = 0; k < count; k++) {
    const v = get(k);
    const bit = k * bits;
    const w = bit >>> 5;
    const sh = bit & 31;
    const i = offset + w * stride;
    out[i] = (out[i]! | (v << sh)) >>> 0;
    if (sh + bits > 32) {
      const j = i + stride;
      out[j] = (out[j]! | (v >>> (32 - sh))) >>> 0;
    }
  }
}

/** Reads `count` fields of a dense stream laid out as in {@linkcode packStream}; calls `set(k, v)`. */
export function unpackStream(
  count: number,
  bits: number,
  words: Uint32Array,
  offset: number,
  stride: number,
  set: (k: number, v: number) => void,
): void {
  const mask = 2 ** bits - 1;
  for (let k = 0; k < count; k++) {
    const bit = k * bits;
    const w = bit >>> 5;
    const sh = bit & 31;
    const i = offset + w * stride;
    let v = words[i]! >>> sh;
    if (sh + bits > 32) v |= words[i + stride]! << (32 - sh);
    set(k, v & mask);
  }
}

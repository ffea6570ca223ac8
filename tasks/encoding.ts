/**
 * How a task's text became token ids, for the row's protocol: which tokenizer encoded it, whether
 * a dummy-prefix space came first, and which token starts every sequence. A llama2.c tokenizer
 * prepends one dummy-prefix space (SentencePiece's convention); a `tokenizer.json` encodes as its
 * own normalizer and pre-tokenizer say (a SentencePiece-style Llama 2 file prepends `▁`, a
 * byte-level BPE as Llama 3's or Qwen's does not), without its post-processor's special tokens. A
 * tokenizer without a BOS token starts sequences with its EOS token (lm-eval's `prefix_token_id`).
 *
 * @module
 */

import type { Tokenizer } from "../models/types.ts";

/** The encoding fields of a task's protocol. */
export interface EncodingRecord {
  readonly tokenizer: "llama2c" | "hf";
  /** `true` for llama2.c; for a tokenizer.json, what its normalizer does (recorded as such). */
  readonly dummyPrefix: true | "tokenizer.json normalizer";
  /** The token every sequence starts with, and whether it is the BOS token or the EOS stand-in. */
  readonly prefixToken: { readonly id: number; readonly kind: "bos" | "eos" };
}

/** The encoding record of `tokenizer`. */
export function encodingRecord(tokenizer: Tokenizer): EncodingRecord {
  return {
    tokenizer: tokenizer.kind,
    dummyPrefix: tokenizer.kind === "llama2c" ? true : "tokenizer.json normalizer",
    prefixToken: { id: tokenizer.bosId, kind: tokenizer.hasBos === false ? "eos" : "bos" },
  };
}

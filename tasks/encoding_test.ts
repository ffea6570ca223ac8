import assert from "node:assert/strict";
import { encodingRecord } from "./encoding.ts";
import type { Tokenizer } from "../models/types.ts";

const stub = (kind: "llama2c" | "hf", bosId: number, hasBos?: boolean): Tokenizer => ({
  kind,
  vocabSize: 10,
  bosId,
  eosId: 2,
  ...(hasBos === undefined ? {} : { hasBos }),
  encode: () => [],
  decode: () => "",
});

Deno.test("encodingRecord(): the dummy prefix and the token sequences start with, per tokenizer", () => {
  assert.deepEqual(encodingRecord(stub("llama2c", 1)), {
    tokenizer: "llama2c",
    dummyPrefix: true,
    prefixToken: { id: 1, kind: "bos" },
  });
  // A tokenizer.json without BOS (Qwen): sequences start with EOS, and the row says so.
  assert.deepEqual(encodingRecord(stub("hf", 2, false)), {
    tokenizer: "hf",
    dummyPrefix: "tokenizer.json normalizer",
    prefixToken: { id: 2, kind: "eos" },
  });
  assert.equal(encodingRecord(stub("hf", 1, true)).prefixToken.kind, "bos");
});

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Tokenizer } from "../../models/types.ts";
import { parseLlama2cTokenizer } from "../../models/llama2c.ts";
import { encodeCached, forgetTokenStreams, TOKEN_CACHE_VERSION } from "./token_cache.ts";

/** A tokenizer of one id per character code (mod 50), counting its encode calls. */
function counting(fingerprint?: string) {
  const t = {
    kind: "hf" as const,
    vocabSize: 50,
    bosId: 1,
    eosId: 2,
    calls: 0,
    ...(fingerprint ? { fingerprint } : {}),
    encode(text: string) {
      t.calls++;
      return [...text].map((c) => c.charCodeAt(0) % 50);
    },
    decode: () => "",
  };
  return t satisfies Tokenizer;
}

Deno.test("token streams are encoded once: in memory, then from the cache file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fp = crypto.randomUUID();
    const a = counting(fp);
    const want = a.encode("hello world");
    a.calls = 0;
    assert.deepEqual(encodeCached(a, "hello world", dir), want);
    assert.deepEqual(encodeCached(a, "hello world", dir), want);
    assert.equal(a.calls, 1, "the second call hits memory");
    const files = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.equal(files.length, 1);
    assert.ok(files[0]!.startsWith(`v${TOKEN_CACHE_VERSION}-${fp}-`), files[0]!);
    const bytes = Deno.readFileSync(join(dir, files[0]!));
    assert.deepEqual([...new Uint32Array(bytes.buffer)], want, "uint32 little-endian ids");
    // Another process (memory forgotten) with the same tokenizer files reads the file.
    forgetTokenStreams();
    const b = counting(fp);
    assert.deepEqual(encodeCached(b, "hello world", dir), want);
    assert.equal(b.calls, 0);
    // A file that does not fit the tokenizer is ignored and rewritten.
    forgetTokenStreams();
    Deno.writeFileSync(join(dir, files[0]!), new Uint8Array(new Uint32Array([7, 99]).buffer));
    assert.deepEqual(encodeCached(b, "hello world", dir), want);
    assert.equal(b.calls, 1);
    assert.deepEqual([...new Uint32Array(Deno.readFileSync(join(dir, files[0]!)).buffer)], want);
    // Another text, another entry; no fingerprint, no cache at all.
    assert.deepEqual(encodeCached(b, "other", dir), b.encode("other"));
    const anon = counting();
    encodeCached(anon, "hello world", dir);
    encodeCached(anon, "hello world", dir);
    assert.equal(anon.calls, 2);
    assert.equal([...Deno.readDirSync(dir)].length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a llama2.c tokenizer's fingerprint follows its file's bytes", () => {
  // Three pieces: "<unk>", "a", " " (score, length, bytes each), max_token_length 5.
  const file = (score: number) => {
    const pieces = ["<unk>", "a", " "];
    const out: number[] = [];
    const push32 = (v: number, f = false) => {
      const b = new Uint8Array(4);
      const dv = new DataView(b.buffer);
      f ? dv.setFloat32(0, v, true) : dv.setInt32(0, v, true);
      out.push(...b);
    };
    push32(5);
    for (const p of pieces) {
      push32(score, true);
      push32(p.length);
      out.push(...new TextEncoder().encode(p));
    }
    return new Uint8Array(out);
  };
  const a = parseLlama2cTokenizer(file(0), 3, "a.bin");
  const b = parseLlama2cTokenizer(file(0), 3, "b.bin");
  const c = parseLlama2cTokenizer(file(1), 3, "c.bin");
  assert.match(a.fingerprint!, /^[0-9a-f]{64}$/);
  assert.equal(a.fingerprint, b.fingerprint, "the file's name does not matter");
  assert.notEqual(a.fingerprint, c.fingerprint, "its scores do");
});

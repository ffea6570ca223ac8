import assert from "node:assert/strict";
import { FormatError } from "../core/errors.ts";
import { bundledDataDir, hfMirrorRoot, needs, sharedPath } from "../testing/fixtures.ts";
import { hfTokenizer } from "./hf_tokenizer.ts";
import { Llama2cTokenizer, parseLlama2cTokenizer } from "./llama2c.ts";

const stories = await needs("hf-mirror");
const storiesHf = await needs("hf-mirror", "models/stories260K-hf");

const TOK = `${await hfMirrorRoot()}/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin`;
const HF_DIR = sharedPath("models/stories260K-hf");
const TEXT = `${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`;

async function llama2cTok(): Promise<Llama2cTokenizer> {
  return parseLlama2cTokenizer(await Deno.readFile(TOK), 512, TOK);
}

async function hfTok() {
  const json = JSON.parse(await Deno.readTextFile(`${HF_DIR}/tokenizer.json`));
  const config = JSON.parse(await Deno.readTextFile(`${HF_DIR}/tokenizer_config.json`));
  return hfTokenizer(json, config, `${HF_DIR}/tokenizer.json`);
}

/**
 * A literal port of llama2.c run.c `encode()` (linear-scan str_lookup, O(n²) merge loop), as
 * the reference for the fast encoder.
 */
function naiveEncode(t: Llama2cTokenizer, text: string, bos: boolean): number[] {
  const pieces: string[] = [];
  for (let i = 0; i < t.vocabSize; i++) {
    pieces.push(Array.from(t.pieceBytes(i), (b) => String.fromCharCode(b)).join(""));
  }
  const strLookup = (s: string) => pieces.indexOf(s);
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  const bytes = new TextEncoder().encode(text);
  if (bytes.length > 0) tokens.push(strLookup(" "));
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if ((c & 0xc0) !== 0x80) buf = [];
    buf.push(c);
    const next = i + 1 < bytes.length ? bytes[i + 1]! : 0;
    if ((next & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = strLookup(String.fromCharCode(...buf));
    if (id !== -1) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  for (;;) {
    let bestScore = Math.fround(-1e10);
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = strLookup(pieces[tokens[i]!]! + pieces[tokens[i + 1]!]!);
      if (id !== -1 && t.score(id) > bestScore) {
        bestScore = t.score(id);
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

stories.test("parseLlama2cTokenizer() reads tok512.bin's piece table", async () => {
  const t = await llama2cTok();
  assert.equal(t.kind, "llama2c");
  assert.equal(t.vocabSize, 512);
  assert.equal(t.maxTokenLength, 7);
  assert.equal(t.bosId, 1);
  assert.equal(t.eosId, 2);
  assert.equal(t.piece(0), "<unk>");
  assert.equal(t.piece(1).trim(), "<s>");
  assert.equal(t.piece(2).trim(), "</s>");
  for (let b = 0; b < 256; b++) {
    assert.equal(t.piece(b + 3), `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  }
  // The dummy prefix piece exists.
  assert.notEqual(t.lookup(" "), undefined);
});

stories.test("parseLlama2cTokenizer() rejects truncated or over-long files", async () => {
  const bytes = await Deno.readFile(TOK);
  for (const cut of [1, 3, 4, 5, bytes.length - 2]) {
    assert.throws(
      () => parseLlama2cTokenizer(bytes.subarray(0, bytes.length - cut), 512, "tok512.bin"),
      (e: unknown) => e instanceof FormatError && e.message.includes("tok512.bin"),
    );
  }
  // A vocabulary size larger than the file holds is a truncation too; smaller leaves bytes over.
  assert.throws(() => parseLlama2cTokenizer(bytes, 513, "t.bin"), FormatError);
  assert.throws(() => parseLlama2cTokenizer(bytes, 511, "t.bin"), /bytes after/);
});

storiesHf.test("Llama2cTokenizer and the HF tokenizer agree on the whole TinyStories head", async () => {
  const text = await Deno.readTextFile(TEXT);
  const t = await llama2cTok();
  const h = await hfTok();
  const t0 = performance.now();
  const a = t.encode(text);
  const ms = performance.now() - t0;
  assert.ok(ms < 5000, `llama2.c encoder took ${ms.toFixed(0)} ms for ${text.length} chars`);
  const b = h.encode(text);
  assert.equal(a.length, 393018);
  assert.equal(b.length, 393018);
  const first = a.findIndex((id, i) => id !== b[i]);
  assert.equal(first, -1, `first difference at token ${first}`);
  assert.notEqual(a[0], 1, "no BOS unless asked");
  assert.equal(t.decode(a), text);
});

storiesHf.test("encode() adds BOS only when asked, in both tokenizers", async () => {
  const t = await llama2cTok();
  const h = await hfTok();
  for (const tok of [t, h]) {
    const withBos = tok.encode("Once upon a time", { bos: true });
    const without = tok.encode("Once upon a time");
    assert.equal(withBos[0], 1);
    assert.notEqual(without[0], 1);
    assert.deepEqual(withBos.slice(1), without);
    assert.deepEqual(tok.encode(""), []);
    assert.deepEqual(tok.encode("", { bos: true }), [1]);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.vocabSize, 512);
  }
  assert.equal(h.kind, "hf");
  assert.deepEqual(
    t.encode("Once upon a time", { bos: true }),
    h.encode("Once upon a time", { bos: true }),
  );
});

storiesHf.test("decode(encode(x)) round-trips lines in both tokenizers", async () => {
  const lines = (await Deno.readTextFile(TEXT)).split("\n").filter((l) => l.length > 0);
  const t = await llama2cTok();
  const h = await hfTok();
  const samples = [
    ...lines.slice(0, 20),
    ...lines.filter((l) => /[^ -~\t]/.test(l)).slice(0, 10),
    ...lines.filter((l) => l.startsWith(" ")).slice(0, 3),
    "  two leading spaces",
    "trailing space ",
    "émoji 😀 and ™ and tabs\tand\nnewlines",
  ];
  assert.ok(samples.length > 30);
  for (const x of samples) {
    const a = t.encode(x);
    assert.deepEqual(h.encode(x), a, JSON.stringify(x));
    assert.equal(t.decode(a), x, JSON.stringify(x));
    assert.equal(h.decode(a), x, JSON.stringify(x));
    assert.equal(t.decode([1, ...a, 2]), x, "specials dropped, BOS strips the dummy space");
    assert.equal(h.decode([1, ...a, 2]), x);
  }
});

stories.test("Llama2cTokenizer.encode() equals the naive run.c loop on random strings", async () => {
  const t = await llama2cTok();
  const random = rng(1234);
  const alphabet = [
    ..."abcdefghijklmnopqrstuvwxyz",
    ..."    ",
    ..."eeetttaaoo",
    ..."TOS.,!?'\"\n-",
    "é",
    "ü",
    "™",
    "😀",
    "\u200a",
    "ö",
    "—",
  ];
  const words = ["the", " the", "once", "upon", "time", " Lily", "and", " was", "ing", "ed"];
  for (let n = 0; n < 1500; n++) {
    let s = "";
    const len = Math.floor(random() * 30);
    for (let i = 0; i < len; i++) {
      s += random() < 0.3
        ? words[Math.floor(random() * words.length)]
        : alphabet[Math.floor(random() * alphabet.length)];
    }
    const bos = random() < 0.5;
    assert.deepEqual(t.encode(s, { bos }), naiveEncode(t, s, bos), JSON.stringify(s));
  }
});

Deno.test("Llama2cTokenizer merges the leftmost of equally scored pairs", () => {
  const enc = new TextEncoder();
  // No byte fallbacks needed: every character is a piece.
  const pieces = ["<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "aa", "b", "ab", "ba"].map((p) =>
    enc.encode(p)
  );
  const scores = new Float32Array([0, 0, 0, 0, 0, -1, 0, -1, -1]);
  const t = new Llama2cTokenizer(pieces, scores, 5);
  // " aaa": pairs (a,a) at 1 and 2 tie; run.c's strict ">" keeps the leftmost.
  assert.deepEqual(t.encode("aaa"), [3, 5, 4]);
  // "aba": "ab" and "ba" tie; leftmost wins.
  assert.deepEqual(t.encode("aba"), [3, 7, 4]);
  // A better score wins over position.
  const better = new Float32Array([0, 0, 0, 0, 0, -1, 0, -1, -0.5]);
  assert.deepEqual(new Llama2cTokenizer(pieces, better, 5).encode("aba"), [3, 4, 8]);
  assert.equal(t.decode([3, 5, 4]), "aaa");
  assert.equal(t.decode([1, 3, 5, 4, 1, 3, 6]), "aaab", "leading space after every BOS dropped");
});

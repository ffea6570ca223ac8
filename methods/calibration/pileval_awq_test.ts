import assert from "node:assert/strict";
import { readDocuments, readTextDataset } from "../../tasks/corpora/text.ts";
import { bundledDataDir, needs, sharedPath } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";
import {
  PILEVAL_AWQ,
  pythonStrip,
  samplePilevalAwq,
  shuffledOrder,
  textDocuments,
} from "./pileval_awq.ts";
import {
  calibrationRecord,
  type CalibrationSpec,
  DEFAULT_CALIBRATION,
  drawCalibrationSet,
  methodCalibration,
} from "./set.ts";

const dataDir = bundledDataDir();
const stories = await needs("hf-mirror");
const c4 = await needs("hf-mirror", "data/text/c4/c4_validation_2k.jsonl");
const sharedData = sharedPath("data");

/**
 * Python's `str.strip()`, written as a character class (independent of `pythonStrip`); the
 * control characters \x1c–\x1f are Python whitespace.
 */
const PY_SPACE =
  // deno-lint-ignore no-control-regex
  /^[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;
const pyStrip = (s: string) => s.replace(PY_SPACE, "");

/** A word-level tokenizer for hand-worked cases: one id per word (its length), BOS = 1. */
const words = (bos: boolean) => (text: string) => [
  ...(bos ? [1] : []),
  ...text.split(/\s+/).filter(Boolean).map((w) => w.length),
];

/** Six documents; the seeded shuffle visits them in the order 2, 4, 5, 3, 0, 1. */
const CORPUS = [
  "  x yy  ", // 0: stripped "x yy"
  "zzz", // 1
  Array.from({ length: 600 }, () => "w").join(" "), // 2: 600 words, over 512 tokens
  "\t\n", // 3: empty after strip
  "pp qqqq r", // 4
  "ssss tt", // 5
];

Deno.test("pileval-awq by hand: shuffle, strip, skip > 512 tokens, keep `samples`, concatenate, cut into ⌊total/seqLen⌋ blocks", () => {
  // The order pure-rand xoroshiro128plus(42) gives (recorded; not Python's RNG).
  assert.deepEqual(shuffledOrder(6, 42), [2, 4, 5, 3, 0, 1]);
  // With BOS: doc 2 (601 tokens) skipped; 4 → [1,2,4,1], 5 → [1,4,2], 3 → [1] (an empty
  // document is BOS alone, kept as the references' Llama tokenizer does); 3 kept → stop.
  // Stream [1,2,4,1, 1,4,2, 1] = 8 tokens → 2 blocks of 4.
  const a = samplePilevalAwq(CORPUS, words(true), { samples: 3, seqLen: 4, seed: 42 });
  assert.deepEqual(a.windows.map((w) => [...w]), [[1, 2, 4, 1], [1, 4, 2, 1]]);
  assert.deepEqual(a.keptDocuments, [4, 5, 3]);
  assert.deepEqual(a.offsets, [0, 4]);
  assert.deepEqual(a.documents, [4, 5]);
  assert.equal(a.streamTokens, 8);
  assert.equal(a.documentsSeen, 4);
  assert.equal(a.skippedLong, 1);
  assert.equal(a.skippedEmpty, 0);
  assert.equal(a.droppedTokens, 0);
  // Without BOS the empty document has no token and is skipped; doc 0 ("x yy") comes next:
  // stream [2,4,1, 4,2, 1,2] = 7 tokens → 1 block, 3 dropped.
  const b = samplePilevalAwq(CORPUS, words(false), { samples: 3, seqLen: 4, seed: 42 });
  assert.deepEqual(b.windows.map((w) => [...w]), [[2, 4, 1, 4]]);
  assert.deepEqual(b.keptDocuments, [4, 5, 0]);
  assert.equal(b.documentsSeen, 5);
  assert.equal(b.skippedEmpty, 1);
  assert.equal(b.droppedTokens, 3);
  // Documents of exactly 512 tokens are kept (the rule is > 512).
  const edge = [Array.from({ length: 511 }, () => "w").join(" ")];
  assert.equal(
    samplePilevalAwq(edge, words(true), { samples: 1, seqLen: 512, seed: 0 }).windows.length,
    1,
  );
  // Too few tokens for one block.
  assert.throws(
    () => samplePilevalAwq(CORPUS, words(true), { samples: 3, seqLen: 9, seed: 42 }),
    /3 kept documents hold 8 tokens, fewer than one block of 9/,
  );
});

Deno.test("Python's strip() whitespace, and documents of a running text", () => {
  assert.equal(pythonStrip("\x1c\x85 a b\u3000\n"), "a b");
  assert.equal(pythonStrip("\ufeffa"), "\ufeffa"); // a BOM is not whitespace to Python
  assert.deepEqual(textDocuments("A\n\nB b\n \nC\n\n\n\nD\n"), ["A", "B b", "C", "D\n"]);
  const order = shuffledOrder(100, 7);
  assert.deepEqual([...order].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  assert.deepEqual(shuffledOrder(100, 7), order);
  assert.notDeepEqual(shuffledOrder(100, 8), order);
});

stories.test("pileval-awq over TinyStories' calib half: blocks of the kept paragraphs, recipe and sizes in the record", async () => {
  const tok = (await stories260K()).tokenizer;
  const spec: CalibrationSpec = {
    ...DEFAULT_CALIBRATION,
    recipe: PILEVAL_AWQ,
    samples: 32,
    seqLen: 128,
    seed: 42,
  };
  const set = await drawCalibrationSet(spec, tok, 512, dataDir);
  // Independently: the paragraphs in shuffled order, BOS-encoded, concatenated.
  const { text } = await readTextDataset("tinystories:calib", dataDir);
  const docs = text.split(/\n[ \t]*\n/).filter((d) => pyStrip(d) !== "");
  const order = shuffledOrder(docs.length, 42);
  const stream: number[] = [];
  const kept: number[] = [];
  for (const d of order) {
    if (kept.length === 32) break;
    const ids = tok.encode(pyStrip(docs[d]!), { bos: true });
    if (ids.length > 512) continue;
    kept.push(d);
    stream.push(...ids);
  }
  assert.equal(set.windows.length, Math.floor(stream.length / 128));
  set.windows.forEach((w, i) => {
    assert.deepEqual([...w], stream.slice(i * 128, (i + 1) * 128));
  });
  assert.equal(set.windows[0]![0], tok.bosId);
  assert.equal(set.streamTokens, stream.length);
  const rec = calibrationRecord(set);
  assert.equal(rec.recipe, PILEVAL_AWQ);
  assert.equal(rec.samples, 32);
  assert.equal(rec.dataset.split?.name, "calib");
  assert.deepEqual(rec.protocol.keptDocuments, kept);
  assert.equal(rec.protocol.blocks, set.windows.length);
  assert.match(String(rec.protocol.shuffle), /not Hugging Face datasets' shuffle/);
  const again = await drawCalibrationSet(spec, tok, 512, dataDir);
  assert.equal(again.tokensSha256, set.tokensSha256);
});

c4.test("pileval-awq over C4: one document per line; the method's defaults under the matrix's settings", async () => {
  const tok = (await stories260K()).tokenizer;
  const spec = methodCalibration(
    { calibration: { recipe: PILEVAL_AWQ, seqLen: 512, seed: 42 } },
    { source: "c4", samples: 16 },
  );
  assert.deepEqual(spec, { source: "c4", samples: 16, seqLen: 512, seed: 42, recipe: PILEVAL_AWQ });
  const set = await drawCalibrationSet(spec, tok, 512, sharedData);
  const { documents } = await readDocuments("c4", sharedData);
  const kept = set.protocol.keptDocuments as number[];
  assert.equal(kept.length, 16);
  const total = kept.reduce(
    (s, d) => s + tok.encode(pyStrip(documents[d]!), { bos: true }).length,
    0,
  );
  assert.equal(set.streamTokens, total);
  assert.equal(set.windows.length, Math.floor(total / 512));
  assert.ok((set.protocol.skippedLong as number) > 0, "C4 has documents over 512 tokens");
  // Without a method's own settings, the suite's defaults (BOS windows).
  assert.deepEqual(methodCalibration({}, {}), DEFAULT_CALIBRATION);
  await assert.rejects(
    drawCalibrationSet({ ...DEFAULT_CALIBRATION, recipe: "nope" as never }, tok, 512, dataDir),
    /Unknown calibration recipe "nope"/,
  );
});

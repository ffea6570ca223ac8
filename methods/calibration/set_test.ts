import assert from "node:assert/strict";
import { calibrationCorpus, DEFAULT_CALIBRATION, drawCalibrationSet } from "./set.ts";
import { readDocuments, readTextDataset } from "../../tasks/corpora/text.ts";
import { bundledDataDir, needs, sharedPath } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";

const stories = await needs("hf-mirror");
const storiesC4 = await needs("hf-mirror", "data/text/c4/c4_validation_2k.jsonl");

const dataDir = bundledDataDir();

stories.test("the default calibration set: 128 BOS windows of 256 tokens from TinyStories' calib half", async () => {
  const model = await stories260K();
  const tok = model.tokenizer;
  const set = await drawCalibrationSet(DEFAULT_CALIBRATION, tok, 512, dataDir);
  assert.equal(set.windows.length, 128);
  assert.equal(set.dataset.split?.name, "calib");
  // An independent check of every window: it is BOS + the calib stream at the recorded offset.
  const { text } = await readTextDataset("tinystories:calib", dataDir);
  const stream = tok.encode(text, { bos: false });
  assert.equal(set.streamTokens, stream.length);
  set.windows.forEach((w, i) => {
    assert.equal(w.length, 256);
    assert.equal(w[0], tok.bosId);
    const at = set.offsets[i]!;
    assert.ok(at >= 0 && at + 255 <= stream.length);
    assert.deepEqual([...w.subarray(1)], stream.slice(at, at + 255));
  });
  // Offsets spread over the split (a seeded uniform draw, not a constant or a prefix).
  assert.ok(new Set(set.offsets).size > 120);
  assert.ok(Math.max(...set.offsets) > stream.length * 0.8);
  assert.ok(Math.min(...set.offsets) < stream.length * 0.2);
});

stories.test("the same seed draws the same tokens; another seed other offsets", async () => {
  const tok = (await stories260K()).tokenizer;
  const spec = { ...DEFAULT_CALIBRATION, samples: 16, seqLen: 64 };
  const a = await drawCalibrationSet(spec, tok, 512, dataDir);
  const b = await drawCalibrationSet(spec, tok, 512, dataDir);
  const c = await drawCalibrationSet({ ...spec, seed: 1 }, tok, 512, dataDir);
  assert.deepEqual(a.offsets, b.offsets);
  assert.equal(a.tokensSha256, b.tokensSha256);
  assert.notDeepEqual(a.offsets, c.offsets);
  assert.notEqual(a.tokensSha256, c.tokensSha256);
});

storiesC4.test("c4 windows come from documents long enough, at the recorded places", async () => {
  const tok = (await stories260K()).tokenizer;
  const set = await drawCalibrationSet(
    { source: "c4", samples: 8, seqLen: 128, seed: 0 },
    tok,
    512,
    sharedPath("data"),
  );
  const { documents } = await readDocuments("c4", sharedPath("data"));
  assert.equal(set.documents?.length, 8);
  set.windows.forEach((w, i) => {
    const doc = tok.encode(documents[set.documents![i]!]!, { bos: false });
    const at = set.offsets[i]!;
    assert.ok(doc.length >= 127);
    assert.deepEqual([...w.subarray(1)], doc.slice(at, at + 127));
  });
  assert.match(String(set.protocol.caveat), /not GPTQ's c4 protocol/);
});

stories.test("bad calibration specs fail before any compute, naming the limit", async () => {
  const tok = (await stories260K()).tokenizer;
  const spec = DEFAULT_CALIBRATION;
  await assert.rejects(
    drawCalibrationSet({ ...spec, seqLen: 1024 }, tok, 512, dataDir),
    /windows of 1024 tokens exceed the model's context of 512/,
  );
  await assert.rejects(
    drawCalibrationSet({ ...spec, samples: 100_000 }, tok, 512, dataDir),
    /needs 25500000 tokens, more than the \d+ tokens of "tinystories:calib"/,
  );
  await assert.rejects(drawCalibrationSet({ ...spec, samples: 0 }, tok, 512, dataDir), /samples/);
  await assert.rejects(
    drawCalibrationSet({ ...spec, source: "tinystorie" }, tok, 512, dataDir),
    /Did you mean "tinystories"/,
  );
  const empty = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await assert.rejects(
      drawCalibrationSet({ ...spec, source: `file:${empty}` }, tok, 512, dataDir),
      /is empty/,
    );
  } finally {
    await Deno.remove(empty);
  }
});

Deno.test("calibrationCorpus() reads a corpus's calib split when it has one", () => {
  assert.equal(calibrationCorpus("tinystories"), "tinystories:calib");
  assert.equal(calibrationCorpus("wikitext2"), "wikitext2");
  assert.equal(calibrationCorpus("tinystories:eval"), "tinystories:eval");
});

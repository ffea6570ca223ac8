import assert from "node:assert/strict";
import { applySplit, findBlankLine } from "./splits.ts";
import { readTextDataset, resolveCorpus } from "./text.ts";
import { bundledDataDir } from "../../testing/fixtures.ts";

const dataDir = bundledDataDir();
const enc = new TextEncoder();

Deno.test("applySplit() cuts at the first blank line at or after the middle byte", () => {
  // 17 bytes: "aa" 0–1, blank line 2–3, "bbbbbb" 4–9, "\n" 10, "cc" 11–12, blank line 13–14,
  // "dd" 15–16. The middle byte is 8; the first "\n\n" at or after it starts at 13.
  const bytes = enc.encode("aa\n\nbbbbbb\ncc\n\ndd");
  assert.equal(bytes.length, 17);
  assert.equal(findBlankLine(bytes, 8), 13);
  assert.deepEqual(
    [applySplit("x", "calib", bytes).byteStart, applySplit("x", "calib", bytes).byteEnd],
    [0, 13],
  );
  assert.deepEqual(
    [applySplit("x", "eval", bytes).byteStart, applySplit("x", "eval", bytes).byteEnd],
    [15, 17],
  );
  assert.throws(() => applySplit("x", "calib", enc.encode("aa\n\nbbbbbbbb")), /no blank line/);
  assert.throws(() => applySplit("x", "train", bytes), /no split rule "train"/);
});

Deno.test("tinystories calib and eval halves partition the file around one blank line", async () => {
  const whole = await Deno.readFile(`${dataDir}/text/tinystories/tinystories_val_head.txt`);
  const calib = await readTextDataset("tinystories:calib", dataDir);
  const evalHalf = await readTextDataset("tinystories:eval", dataDir);
  const c = calib.info.split!;
  const e = evalHalf.info.split!;
  assert.equal(c.byteStart, 0);
  assert.equal(e.byteEnd, whole.length);
  assert.equal(e.byteStart, c.byteEnd + 2, "exactly the blank line is left out");
  assert.deepEqual([...whole.subarray(c.byteEnd, e.byteStart)], [10, 10]);
  assert.ok(
    c.byteEnd >= whole.length / 2 && c.byteEnd < whole.length * 0.51,
    "cut near the middle",
  );
  // Both halves carry the fingerprint of the whole file; their text is exactly their bytes.
  assert.equal(calib.info.sha256, evalHalf.info.sha256);
  assert.equal(enc.encode(calib.text).length + enc.encode(evalHalf.text).length + 2, whole.length);
  assert.ok(!evalHalf.text.includes(calib.text.slice(-200)), "no calibration text in eval");
});

Deno.test("resolveCorpus() lists valid corpora and splits", () => {
  assert.throws(() => resolveCorpus("tinystory", dataDir), /Did you mean "tinystories"/);
  assert.throws(() => resolveCorpus("tinystories:test", dataDir), /valid: tinystories:calib/);
  assert.throws(() => resolveCorpus("wikitext2:eval", dataDir), /no named splits/);
  assert.equal(resolveCorpus("file:/tmp/x.txt", dataDir).path, "/tmp/x.txt");
});

import assert from "node:assert/strict";
import {
  argmax,
  charLength,
  docRequests,
  encodePair,
  evaluateMultipleChoice,
  ForwardLogProbs,
  type LogProbModel,
  type McDoc,
  moveTrailingWhitespace,
  pyStrip,
  scorePair,
} from "./multiple_choice.ts";
import { evaluateLambada } from "./zero_shot.ts";
import { parseWinogrande } from "./mc_datasets.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { needs } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { windowLogProbs } from "../runners/window_score.ts";
import type { Tokenizer } from "../models/types.ts";

const stories = await needs("hf-mirror");

// A character tokenizer with the SentencePiece convention: a non-empty text gets one dummy-prefix
// space token in front; every character is one token. Ids: 0 unk, 1 BOS, 2 EOS, then characters.
const ALPHABET = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:?.\n_";
const fakeTokenizer: Pick<Tokenizer, "encode" | "bosId"> = {
  bosId: 1,
  encode(text: string, options: { bos?: boolean } = {}) {
    const ids = text.length === 0 ? [] : [...` ${text}`].map((c) => {
      const i = ALPHABET.indexOf(c);
      if (i < 0) throw new RangeError(`fake tokenizer: no token for ${JSON.stringify(c)}`);
      return 3 + i;
    });
    return options.bos ? [1, ...ids] : ids;
  },
};
const id = (c: string) => 3 + ALPHABET.indexOf(c);
const VOCAB = 3 + ALPHABET.length;
const text = (ids: readonly number[]) => ids.map((t) => ALPHABET[t - 3] ?? "").join("");

/**
 * A fake model whose next-token log-probabilities are set by hand: `rule(prefix)` gives a map
 * from characters to log-probabilities (every other token gets `floor`). Records its inputs.
 */
function fakeModel(
  rule: (prefix: readonly number[]) => Record<string, number>,
  maxLength = 64,
  floor = -20,
): LogProbModel & { calls: { tokens: number[]; from: number }[] } {
  const calls: { tokens: number[]; from: number }[] = [];
  return {
    vocabSize: VOCAB,
    maxLength,
    calls,
    nextLogProbs(tokens, from) {
      calls.push({ tokens: [...tokens], from });
      const out = new Float32Array((tokens.length - from) * VOCAB).fill(floor);
      for (let p = from; p < tokens.length; p++) {
        for (const [c, lp] of Object.entries(rule(tokens.slice(0, p + 1)))) {
          out[(p - from) * VOCAB + id(c)] = lp;
        }
      }
      return out;
    },
  };
}

Deno.test("acc and acc_norm from hand-set log-probs, including docs where they disagree", () => {
  // Context-free log-probs: " " −0.5, "x" −4, "y" −1.2. With delimiter " ":
  //   choice "x":    ll = −0.5 − 4       = −4.5, per character −4.5
  //   choice "yyyy": ll = −0.5 − 4 · 1.2 = −5.3, per character −1.325
  // acc picks "x", acc_norm picks "yyyy".
  const lm = fakeModel(() => ({ " ": -0.5, x: -4, y: -1.2 }));
  const docs: McDoc[] = [
    { kind: "choices", context: "Q:", choices: ["x", "yyyy"], gold: 1 },
    { kind: "choices", context: "Q:", choices: ["x", "yyyy"], gold: 0 },
    { kind: "choices", context: "Q:", choices: ["yyyy", "x"], gold: 1 },
  ];
  const r = evaluateMultipleChoice(lm, fakeTokenizer, docs, { accNorm: true });
  const lls = r.perDoc[0]!.lls;
  assert.ok(Math.abs(lls[0]! - -4.5) < 1e-6 && Math.abs(lls[1]! - -5.3) < 1e-6, `${lls}`);
  assert.deepEqual(r.perDoc.map((d) => [d!.acc, d!.accNorm]), [[0, 1], [1, 0], [1, 0]]);
  const acc = r.metrics.find((m) => m.metric === "acc")!;
  const accNorm = r.metrics.find((m) => m.metric === "acc_norm")!;
  assert.ok(Math.abs(acc.value - 2 / 3) < 1e-12);
  assert.ok(Math.abs(accNorm.value - 1 / 3) < 1e-12);
  // lm-eval mean_stderr: sample std / √n; for [0, 1, 1]: sqrt(1/3) / sqrt(3) = 1/3.
  assert.ok(Math.abs(acc.stderr! - 1 / 3) < 1e-12);
  assert.ok(Math.abs(accNorm.stderr! - 1 / 3) < 1e-12);
  assert.equal(acc.n, 3);
  assert.deepEqual(r.metrics.map((m) => m.metric), ["acc", "acc_norm"]);
  assert.equal(r.counts.requests, 6);
  // Each request read [BOS] + " Q:" + continuation minus its last token; the first call scores
  // from the last context token.
  assert.deepEqual(lm.calls[0], {
    tokens: [1, id(" "), id("Q"), id(":"), id(" ")],
    from: 3,
  });
});

Deno.test("acc_norm divides by the choice's length in code points, not UTF-16 units or tokens", () => {
  assert.equal(charLength("héllo"), 5);
  assert.equal(charLength("😀a"), 2);
  assert.equal(argmax([-1, -0.5, -0.5]), 1); // first index on ties, as numpy.argmax
});

Deno.test("out-of-range gold labels are counted and reported, not scored; empty choices throw", () => {
  const lm = fakeModel(() => ({ " ": -0.5, a: -1, b: -2 }));
  const r = evaluateMultipleChoice(lm, fakeTokenizer, [
    { kind: "choices", context: "Q:", choices: ["a", "b"], gold: 0 },
    { kind: "choices", context: "Q:", choices: ["a", "b"], gold: 2 },
    { kind: "choices", context: "Q:", choices: ["a", "b"], gold: -1 },
  ]);
  assert.equal(r.counts.invalidGold, 2);
  assert.deepEqual(r.counts.invalidGoldDocs, [1, 2]);
  assert.equal(r.counts.scored, 1);
  assert.equal(r.metrics[0]!.n, 1);
  assert.equal(r.metrics[0]!.value, 1);
  assert.equal(r.metrics[0]!.stderr, null);
  assert.equal(r.perDoc[1], undefined);
  assert.throws(
    () =>
      evaluateMultipleChoice(lm, fakeTokenizer, [
        { kind: "choices", context: "Q:", choices: [], gold: 0 },
      ]),
    /choice list is empty/,
  );
  assert.throws(
    () =>
      evaluateMultipleChoice(lm, fakeTokenizer, [
        { kind: "choices", context: "Q:", choices: ["a"], gold: 3 },
      ]),
    /No doc could be scored/,
  );
});

Deno.test("WinoGrande partial scoring: options go into the context, the shared rest is scored", () => {
  const line = JSON.stringify({
    sentence: "Tom gave Ann a ball because _ was kind.",
    option1: "Tom",
    option2: "Ann",
    answer: "1",
  });
  const [doc] = parseWinogrande("wino.jsonl", line + "\n");
  assert.deepEqual(doc, {
    kind: "partial",
    contexts: ["Tom gave Ann a ball because Tom", "Tom gave Ann a ball because Ann"],
    continuation: "was kind.",
    gold: 0,
  });
  assert.deepEqual(docRequests(doc!), [
    { context: "Tom gave Ann a ball because Tom", continuation: " was kind." },
    { context: "Tom gave Ann a ball because Ann", continuation: " was kind." },
  ]);
  // The continuation is likely only after "because Tom".
  const lm = fakeModel((prefix) => {
    const lp = text(prefix).includes("because Tom") ? -0.1 : -3;
    return Object.fromEntries([..." waskind."].map((c) => [c, lp]));
  });
  const r = evaluateMultipleChoice(lm, fakeTokenizer, [doc!, { ...doc!, gold: 1 }], {
    accNorm: true,
  });
  assert.ok(r.perDoc[0]!.lls[0]! > r.perDoc[0]!.lls[1]!);
  assert.deepEqual(r.perDoc.map((d) => d!.acc), [1, 0]);
  // Partial scoring has no acc_norm (its choices are contexts).
  assert.deepEqual(r.metrics.map((m) => m.metric), ["acc"]);
  assert.equal(r.perDoc[0]!.accNorm, undefined);
});

Deno.test("LAMBADA: acc is the greedy match of every token of the last word; ppl = exp(−mean ll)", () => {
  // The model's argmax is always "c", "a", "t" in turn after the context "the" + " ".
  const lm = fakeModel((prefix) => {
    const last = prefix[prefix.length - 1]!;
    const next = last === id(" ") ? "c" : last === id("c") ? "a" : last === id("a") ? "t" : " ";
    return { [next]: -0.1, " ": next === " " ? -0.1 : -2, x: -1 };
  });
  const docs = [
    { context: "the", continuation: " cat" },
    { context: "the", continuation: " cax" },
  ];
  const r = evaluateLambada(lm, fakeTokenizer, docs);
  const acc = r.metrics.find((m) => m.metric === "acc")!;
  const ppl = r.metrics.find((m) => m.metric === "ppl")!;
  assert.equal(acc.value, 0.5);
  const p0 = scorePair(lm, 1, encodePair(fakeTokenizer, "the", " cat"));
  const p1 = scorePair(lm, 1, encodePair(fakeTokenizer, "the", " cax"));
  assert.equal(p0.isGreedy, true);
  assert.equal(p1.isGreedy, false);
  // " cat": " " after "the" (−0.1: it is the argmax there), then c, a, t at −0.1 each.
  assert.ok(Math.abs(p0.ll - -0.4) < 1e-6, `${p0.ll}`);
  assert.ok(Math.abs(p1.ll - -1.3) < 1e-6, `${p1.ll}`);
  assert.ok(Math.abs(ppl.value - Math.exp((0.4 + 1.3) / 2)) < 1e-6);
});

Deno.test("left truncation keeps the last maxLength tokens of [BOS] + ctx + cont minus the last", () => {
  const lm = fakeModel(() => ({ " ": -1, a: -1, b: -1 }), 6);
  const s = scorePair(lm, 1, { context: [10, 11, 12, 13, 14], continuation: [id("a"), id("b")] });
  assert.equal(s.truncated, true);
  // [1, 10, 11, 12, 13, 14, a, b] → last 7 → drop the last: BOS is the first token to go.
  assert.deepEqual(lm.calls[0], { tokens: [10, 11, 12, 13, 14, id("a")], from: 4 });
  assert.ok(Math.abs(s.ll - -2) < 1e-6);
  const fits = scorePair(lm, 1, { context: [10, 11, 12], continuation: [id("a"), id("b")] });
  assert.equal(fits.truncated, false);
  assert.deepEqual(lm.calls[1], { tokens: [1, 10, 11, 12, id("a")], from: 3 });
  assert.throws(() => scorePair(lm, 1, { context: [10], continuation: [] }), /no tokens/);
  assert.throws(
    () => scorePair(lm, 1, { context: [], continuation: [3, 3, 3, 3, 3, 3, 3] }),
    /more than the model's context/,
  );
});

Deno.test("trailing whitespace of the context moves into the continuation (Python isspace set)", () => {
  assert.deepEqual(moveTrailingWhitespace("Answer: ", "yes"), {
    context: "Answer:",
    continuation: " yes",
  });
  assert.deepEqual(moveTrailingWhitespace("a\t \n", " b"), {
    context: "a",
    continuation: "\t \n b",
  });
  // U+00A0 and U+3000 are whitespace to Python, U+FEFF and U+200B are not.
  assert.deepEqual(moveTrailingWhitespace("a\u00a0\u3000", "b"), {
    context: "a",
    continuation: "\u00a0\u3000b",
  });
  assert.deepEqual(moveTrailingWhitespace("a\ufeff", "b"), {
    context: "a\ufeff",
    continuation: "b",
  });
  assert.deepEqual(moveTrailingWhitespace("a\u200b", "b"), {
    context: "a\u200b",
    continuation: "b",
  });
  assert.deepEqual(moveTrailingWhitespace("   ", "b"), { context: "", continuation: "   b" });
  assert.equal(pyStrip("\u3000\t a b\n\x1f"), "a b");
  assert.equal(pyStrip("\ufeffa"), "\ufeffa");
});

stories.test("continuation tokens are encode(ctx + cont) minus encode(ctx)'s count (stories260K tokenizer)", async () => {
  const { tokenizer: tok } = await stories260K();
  // Trailing space moved: same split as a context without it.
  assert.deepEqual(
    encodePair(tok, "Question: Is it red?\nAnswer: ", "yes"),
    encodePair(tok, "Question: Is it red?\nAnswer:", " yes"),
  );
  const cases: [string, string][] = [
    ["Question: Is it red?\nAnswer:", " yes"],
    ["Lily said", ' "Hello!"'],
    ["The cat sat.\n\n", "The dog ran."],
    ["once upon a ti", "me"],
    ["in", "side out"],
  ];
  for (const [ctx, cont] of cases) {
    const p = encodePair(tok, ctx, cont);
    const moved = moveTrailingWhitespace(ctx, cont);
    const whole = tok.encode(moved.context + moved.continuation);
    assert.deepEqual(p.context, tok.encode(moved.context), ctx);
    assert.deepEqual(p.continuation, whole.slice(p.context.length), ctx);
    // Dummy prefix on the context, no BOS anywhere.
    assert.ok(!p.context.includes(tok.bosId) && !p.continuation.includes(tok.bosId));
  }
  // A word-initial continuation starts a new piece: ctx + cont re-decodes to the whole text.
  const p = encodePair(tok, "Question: Is it red?\nAnswer:", " yes");
  assert.equal(tok.decode([...p.context, ...p.continuation]), "Question: Is it red?\nAnswer: yes");
  // Empty context: the continuation is encoded alone (BOS plays lm-eval's prefix token).
  assert.deepEqual(encodePair(tok, "", " yes"), { context: [], continuation: tok.encode(" yes") });
});

stories.test("prefix reuse gives bit-identical log-likelihoods to independent full forward passes", async () => {
  const model = await stories260K();
  const tok = model.tokenizer;
  const pairs = [
    encodePair(tok, "Lily went to the park. She saw a", " dog."),
    encodePair(tok, "Lily went to the park. She saw a", " big red ball."),
    encodePair(tok, "Tom was sad.", " He cried."),
    encodePair(tok, "Lily went to the park. She saw a", " cat."),
  ];
  const shared = new ForwardLogProbs(model, refKernels);
  const a = pairs.map((p) => scorePair(shared, tok.bosId, p).ll);
  const b = [...pairs].reverse().map((p) =>
    scorePair(new ForwardLogProbs(model, refKernels), 1, p).ll
  )
    .reverse();
  assert.deepEqual(a, b);
  // And the same as summing a full window's log-probabilities.
  for (const [i, p] of pairs.entries()) {
    const seq = [tok.bosId, ...p.context, ...p.continuation];
    const lp = windowLogProbs(model, seq, refKernels);
    let ll = 0;
    for (let t = p.context.length + 1; t < seq.length; t++) ll += lp[(t - 1) * 512 + seq[t]!]!;
    assert.equal(a[i], ll);
  }
});

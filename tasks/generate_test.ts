import assert from "node:assert/strict";
import { argmax, cutAtStop, generateUntil, greedyUntil, type StepModel } from "./generate.ts";
import { forward } from "../runners/forward.ts";
import { needs } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";

const stories = await needs("hf-mirror");

/** A model that emits a fixed token script, one token per step. */
function scripted(script: readonly number[], vocab = 8): StepModel & { fed: number[] } {
  let i = 0;
  const fed: number[] = [];
  const logits = () => {
    const l = new Float32Array(vocab);
    l[script[i++]!] = 1;
    return l;
  };
  return {
    fed,
    start: (prompt) => (fed.push(...prompt), logits()),
    next: (t) => (fed.push(t), logits()),
  };
}

const letters = (ids: readonly number[]) => ids.map((i) => "abcdefgh"[i]).join("");

Deno.test("cutAtStop cuts before the earliest stop sequence", () => {
  assert.deepEqual(cutAtStop("x = 3\n\nQuestion: y", ["Question:", "\n\n"]), {
    text: "x = 3",
    stopSequence: "\n\n",
  });
  assert.deepEqual(cutAtStop("no stop here", ["Question:"]), { text: "no stop here" });
  assert.equal(argmax(new Float32Array([0, 2, 2, 1])), 1);
});

Deno.test("greedyUntil stops at a stop sequence spanning tokens, at the stop token, at the budget", () => {
  // a b c d e: stop "cd" completes at the 4th token, the text ends before it.
  const m = scripted([0, 1, 2, 3, 4]);
  const g = greedyUntil(m, [7, 7], { maxNewTokens: 10, stop: ["cd"], decode: letters });
  assert.deepEqual(g, {
    tokens: [0, 1, 2, 3],
    text: "ab",
    reason: "stop-sequence",
    stopSequence: "cd",
  });
  assert.deepEqual(m.fed, [7, 7, 0, 1, 2]);

  const e = greedyUntil(scripted([0, 5, 1]), [7], {
    maxNewTokens: 10,
    stop: ["zz"],
    decode: letters,
    stopToken: 5,
  });
  assert.deepEqual(e, { tokens: [0, 5], text: "a", reason: "stop-token" });

  const b = greedyUntil(scripted([0, 1, 2, 3]), [7], {
    maxNewTokens: 3,
    stop: [],
    decode: letters,
  });
  assert.deepEqual(b, { tokens: [0, 1, 2], text: "abc", reason: "budget" });
});

stories.test("stories260K: KV-cache generation equals no-cache recomputation and stops at a stop sequence", async () => {
  const model = await stories260K();
  const tok = model.tokenizer;
  const prompt = tok.encode("Once upon a time", { bos: true });
  const g = generateUntil(model, prompt, {
    maxNewTokens: 40,
    stop: ["Lily"],
    decode: (ids) => tok.decode(ids),
    stopToken: tok.eosId,
  });
  // llama2.c's documented sample: "Once upon a time, there was a little girl named Lily. …"
  assert.equal(g.reason, "stop-sequence");
  assert.equal(g.text, ", there was a little girl named ");
  // Recompute every step from scratch (no cache reuse): same argmax tokens.
  const seq = [...prompt];
  for (let s = 0; s < g.tokens.length; s++) {
    seq.push(argmax(forward(model, seq, { logits: "last" })));
  }
  assert.deepEqual(seq.slice(prompt.length), g.tokens);
  assert.throws(
    () => generateUntil(model, prompt, { maxNewTokens: 600, stop: [], decode: tok.decode }),
    RangeError,
  );
});

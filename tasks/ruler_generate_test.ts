import assert from "node:assert/strict";
import { UnsupportedConfigError } from "../core/errors.ts";
import { readTextDataset } from "./corpora/text.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { buildRulerPrompt, fitUnits, generateRulerSet, type RulerSet } from "./ruler_fit.ts";
import { RULER_TASKS, type RulerResources, type RulerTaskDef, zeta } from "./ruler_generate.ts";
import { cleanWikitext, DEPTHS, NOISE, splitSentences } from "./ruler_haystack.ts";
import { SeededRng } from "../core/rng.ts";
import { rulerResources } from "./ruler.ts";
import { corpusWords } from "./ruler_words.ts";

const storiesWikitext = await needs("hf-mirror", "data/text/wikitext2/wiki.test.raw");

const dataDir = sharedPath("data");
let resources: Promise<RulerResources> | undefined;
function res(): Promise<RulerResources> {
  resources ??= readTextDataset("wikitext2", dataDir).then((d) => rulerResources(d.text));
  return resources;
}
function def(name: string): RulerTaskDef {
  return RULER_TASKS.find((t) => t.name === name)!;
}
/** Tokens as the model reads a prompt: BOS + encoding, counted here independently. */
async function tokens(text: string): Promise<number> {
  return 1 + (await stories260K()).tokenizer.encode(text).length;
}
function occurrences(text: string, s: string): number {
  return text.split(s).length - 1;
}

Deno.test("DEPTHS are numpy.round(linspace(0, 100, 40)) (hand-computed)", () => {
  assert.deepEqual(DEPTHS, [
    0,
    3,
    5,
    8,
    10,
    13,
    15,
    18,
    21,
    23,
    26,
    28,
    31,
    33,
    36,
    38,
    41,
    44,
    46,
    49,
    51,
    54,
    56,
    59,
    62,
    64,
    67,
    69,
    72,
    74,
    77,
    79,
    82,
    85,
    87,
    90,
    92,
    95,
    97,
    100,
  ]);
});

Deno.test("zeta(2) is pi^2/6 and zeta(3) is Apery's constant", () => {
  assert.ok(Math.abs(zeta(2) - Math.PI ** 2 / 6) < 1e-9);
  assert.ok(Math.abs(zeta(3) - 1.2020569031595942) < 1e-9);
});

Deno.test("text helpers: WikiText cleaning, sentence splitting, corpus words", () => {
  assert.equal(
    cleanWikitext(" = Title = \n The 1 @,@ 000 @-@ year plan ( big ) was Bob 's idea . Yes !\n"),
    "The 1,000-year plan (big) was Bob's idea. Yes!",
  );
  assert.deepEqual(splitSentences('It rained. Then 3 cats came! "Why?" he asked. ok. Done'), [
    "It rained.",
    "Then 3 cats came!",
    '"Why?" he asked. ok.',
    "Done",
  ]);
  // "cats" ×3, "dogs" ×3, "bird" ×2, "Cats" capitalised (skipped), "ox" too short.
  const words = corpusWords("cats dogs cats, dogs-cats dogs bird bird Cats ox ox ox ox");
  assert.deepEqual(words, ["cats", "dogs"]);
});

Deno.test("SeededRng: sample() gives distinct items, uuid() is a version-4 UUID", () => {
  const rng = new SeededRng(7);
  const items = Array.from({ length: 50 }, (_, i) => i);
  for (let t = 0; t < 20; t++) {
    const s = rng.sample(items, 10);
    assert.equal(new Set(s).size, 10);
  }
  assert.throws(() => rng.sample(items, 51), RangeError);
  for (let t = 0; t < 20; t++) {
    assert.match(
      rng.uuid(),
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  }
});

Deno.test("fitUnits() finds the largest size within the budget (hand-built token counts)", () => {
  // 10 tokens of overhead + 3 per unit: budget 100 → (100 − 10) / 3 = 30 units exactly.
  const fit = fitUnits((u) => u, (u) => 10 + 3 * u, { min: 1, budget: 100 });
  assert.equal(fit.units, 30);
  assert.equal(fit.tokens, 100);
  assert.equal(fit.capped, false);
  const capped = fitUnits((u) => u, (u) => 10 + 3 * u, { min: 1, max: 12, budget: 100 });
  assert.equal(capped.units, 12);
  assert.equal(capped.capped, true);
  assert.throws(
    () => fitUnits((u) => u, (u) => 10 + 3 * u, { min: 40, budget: 100 }),
    UnsupportedConfigError,
  );
});

storiesWikitext.test("the generator is deterministic for a seed; another seed gives other samples", async () => {
  const tok = (await stories260K()).tokenizer;
  const r = await res();
  const a = await generateRulerSet(def("niah_single_2"), r, tok, { length: 512, samples: 4 });
  const b = await generateRulerSet(def("niah_single_2"), r, tok, { length: 512, samples: 4 });
  assert.deepEqual(a, b);
  assert.match(a.sha256, /^[0-9a-f]{64}$/);
  const other = rulerResources((await readTextDataset("wikitext2", dataDir)).text, 43);
  const c = await generateRulerSet(def("niah_single_2"), other, tok, { length: 512, samples: 4 });
  assert.notEqual(c.sha256, a.sha256);
  for (let i = 0; i < 4; i++) assert.notEqual(c.samples[i]!.input, a.samples[i]!.input);
  // The samples of one set differ from each other.
  assert.equal(new Set(a.samples.map((s) => s.input)).size, 4);
  // A longer set's first samples are the same draws (per-sample seeds), fitted the same way.
  const longer = await generateRulerSet(def("niah_single_2"), r, tok, { length: 512, samples: 6 });
  assert.deepEqual(longer.samples.slice(0, 4), a.samples);
});

/** Every sample fits: BOS + prompt + tokens_to_generate ≤ length, and one more unit overflows. */
async function assertFitted(set: RulerSet, d: RulerTaskDef, r: RulerResources) {
  for (const s of set.samples) {
    const n = await tokens(s.input + s.answerPrefix);
    assert.equal(n, s.promptTokens);
    assert.ok(n + d.tokensToGenerate <= set.length, `${d.name} sample ${s.index}: ${n} tokens`);
    if (s.capped) continue;
    const bigger = buildRulerPrompt(d, r, {
      seed: s.seed,
      units: s.units + 1,
      length: set.length,
      vtExampleNoises: set.vtExampleNoises,
    });
    const m = await tokens(bigger.input + bigger.answerPrefix);
    assert.ok(
      m + d.tokensToGenerate > set.length,
      `${d.name}@${set.length} sample ${s.index}: ${s.units + 1} units still fit (${m})`,
    );
  }
}

storiesWikitext.test("every sample fits its length exactly by RULER's rule (stories260K tokenizer)", async (t) => {
  const tok = (await stories260K()).tokenizer;
  const r = await res();
  const cases: [string, number][] = [
    ["niah_single_1", 512],
    ["niah_single_2", 512],
    ["niah_single_3", 512],
    ["niah_multikey_1", 512],
    ["niah_multikey_2", 512],
    ["niah_multikey_3", 1024],
    ["niah_multivalue", 1024],
    ["niah_multiquery", 1024],
    ["vt", 2048],
    ["cwe", 2048],
    ["fwe", 512],
    ["fwe", 1024],
  ];
  for (const [name, length] of cases) {
    await t.step(`${name}@${length}`, async () => {
      const d = def(name);
      const set = await generateRulerSet(d, r, tok, { length, samples: 3 });
      assert.equal(set.samples.length, 3);
      await assertFitted(set, d, r);
      for (const s of set.samples) {
        // Every reference is in the prompt (NIAH values, vt names, cwe/fwe words).
        for (const o of s.outputs) assert.ok(s.input.includes(o), `${name}: ${o} not in input`);
      }
    });
  }
});

storiesWikitext.test("a length whose smallest prompt cannot fit is unsupported with the token counts", async () => {
  const tok = (await stories260K()).tokenizer;
  const r = await res();
  await assert.rejects(
    () => generateRulerSet(def("niah_single_1"), r, tok, { length: 256, samples: 2 }),
    (e: unknown) =>
      e instanceof UnsupportedConfigError &&
      /niah_single_1@256: sample 0 does not fit: .* needs \d+ tokens, over the budget of 128/
        .test(e.message),
  );
  await assert.rejects(
    () => generateRulerSet(def("qa_1"), r, tok, { length: 512, samples: 2 }),
    (e: unknown) => e instanceof UnsupportedConfigError && /SQuAD/.test(e.message),
  );
  await assert.rejects(
    () => generateRulerSet(def("fwe"), r, tok, { length: 512, samples: 0 }),
    RangeError,
  );
});

storiesWikitext.test("niah noise haystack: the needle is the line it was placed at, the rest is noise", async () => {
  const tok = (await stories260K()).tokenizer;
  const set = await generateRulerSet(def("niah_single_1"), await res(), tok, {
    length: 1024,
    samples: 5,
  });
  for (const s of set.samples) {
    const lines = s.input.split("\n");
    // Line 0 is the instruction; the last line the question.
    const body = lines.slice(1, -1);
    assert.equal(body.length, s.units + 1);
    const p = s.placements![0]!;
    assert.equal(body[p.position], p.text);
    assert.ok(p.text.endsWith(`is: ${s.outputs[0]}.`));
    assert.equal(body.filter((l) => l === NOISE).length, s.units);
    assert.equal(occurrences(s.input, s.outputs[0]!), 1);
    // Singular grammar (one query, one value), the key asked in the question and the prefix.
    const key = /for (\S+) is:/.exec(p.text)![1]!;
    assert.ok(lines[0]!.startsWith("A special magic number is hidden"));
    assert.equal(
      lines.at(-1),
      `What is the special magic number for ${key} mentioned in the provided text?`,
    );
    assert.equal(
      s.answerPrefix,
      ` The special magic number for ${key} mentioned in the provided text is`,
    );
  }
});

storiesWikitext.test("niah essay haystack: each needle sits at its sampled depth", async () => {
  const tok = (await stories260K()).tokenizer;
  const set = await generateRulerSet(def("niah_multikey_1"), await res(), tok, {
    length: 2048,
    samples: 4,
  });
  for (const s of set.samples) {
    const ps = s.placements!;
    assert.equal(ps.length, 4);
    const depths = ps.map((p) => p.depth!);
    assert.equal(new Set(depths).size, 4, "depths are drawn without replacement");
    for (const d of depths) assert.ok(DEPTHS.includes(d));
    const context = s.input.split("\n")[1]!;
    const noNeedles = ps.reduce((c, p) => c.replace(p.text, ""), context);
    const haystackChars = noNeedles.length;
    let last = -1;
    for (const p of ps) {
      // The sentence index is floor(sentences × depth / 100).
      const frac = p.depth! / 100;
      assert.ok(p.position <= s.haystackUnits * frac && s.haystackUnits * frac < p.position + 1);
      // The needle follows a sentence end (or starts the context) and precedes a sentence.
      const at = context.indexOf(p.text);
      assert.ok(at > last, "needles are in depth order");
      last = at;
      assert.ok(at === 0 || /[.!?]["')\]]? $/.test(context.slice(0, at)));
      // The haystack text before the needle is about the depth's share of the haystack.
      const before = ps.filter((q) => context.indexOf(q.text) < at)
        .reduce((c, q) => c.replace(q.text, ""), context.slice(0, at)).length;
      assert.ok(
        Math.abs(before / haystackChars - frac) < 0.2,
        `depth ${p.depth}: ${before}/${haystackChars}`,
      );
    }
    // One key is queried (numQueries 1): its value is the answer.
    assert.equal(s.outputs.length, 1);
    const asked = ps.find((p) => p.text.endsWith(`is: ${s.outputs[0]}.`));
    assert.ok(asked);
  }
});

storiesWikitext.test("multi-value and multi-query NIAH: all values of the queried keys are the answers", async () => {
  const tok = (await stories260K()).tokenizer;
  const r = await res();
  const mv = await generateRulerSet(def("niah_multivalue"), r, tok, { length: 1024, samples: 2 });
  for (const s of mv.samples) {
    assert.equal(s.outputs.length, 4);
    const key = / for (\S+) mentioned/.exec(s.answerPrefix)![1]!;
    for (const v of s.outputs) {
      assert.ok(s.input.includes(`One of the special magic numbers for ${key} is: ${v}.`));
    }
    assert.ok(s.input.startsWith("Some special magic numbers are hidden"));
    assert.ok(s.answerPrefix.endsWith("mentioned in the provided text are"));
  }
  const mq = await generateRulerSet(def("niah_multiquery"), r, tok, { length: 1024, samples: 2 });
  for (const s of mq.samples) {
    assert.equal(s.outputs.length, 4);
    const query = /What are all the special magic numbers for (.+) mentioned/.exec(s.input)![1]!;
    const keys = query.replace(", and ", ", ").split(", ");
    assert.equal(keys.length, 4);
    keys.forEach((k, i) => {
      assert.ok(s.input.includes(`One of the special magic numbers for ${k} is: ${s.outputs[i]}.`));
    });
  }
});

storiesWikitext.test("vt, cwe, fwe: the references are what the text says they are", async () => {
  const tok = (await stories260K()).tokenizer;
  const r = await res();
  const vt = await generateRulerSet(def("vt"), r, tok, { length: 2048, samples: 2 });
  for (const s of vt.samples) {
    const main = s.input.split("\n\n").slice(-2).join("\n\n"); // after the one-shot example
    const [a, b, c, d, e] = s.outputs;
    const value = /VAR [A-Z]{5} = (\d{5})\n/.exec(main)![1]!;
    assert.ok(main.includes(`VAR ${a} = ${value}`));
    for (const [x, y] of [[b, a], [c, b], [d, c], [e, d]]) {
      assert.ok(main.includes(`VAR ${x} = VAR ${y} `));
    }
    assert.ok(s.answerPrefix.includes(`5 variables are assgined the value ${value}, they are: `));
    assert.ok(s.input.includes(`Find all variables that are assigned the value ${value} in`));
    // The example comes first, with its answer (after RULER's " " join, hence two spaces),
    // and uses value 12345.
    assert.ok(s.input.startsWith("Memorize and track the chain(s)"));
    assert.match(
      s.input,
      /the value 12345, they are: {2}[A-Z]{3} [A-Z]{3} [A-Z]{3} [A-Z]{3} [A-Z]{3}\n/,
    );
  }
  const cwe = await generateRulerSet(def("cwe"), r, tok, { length: 2048, samples: 2 });
  for (const s of cwe.samples) {
    const main = s.input.split("\n").at(-2)!; // the numbered list of the task
    const counts = new Map<string, number>();
    for (const m of main.matchAll(/\d+\. ([a-z]+)/g)) {
      counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    }
    assert.equal(counts.size, s.units);
    // Below 4096 tokens: the 10 common words 6 times each, the others once.
    for (const [w, n] of counts) assert.equal(n, s.outputs.includes(w) ? 6 : 1);
    assert.equal(s.outputs.length, 10);
  }
  const fwe = await generateRulerSet(def("fwe"), r, tok, { length: 512, samples: 2 });
  for (const s of fwe.samples) {
    const text = /coded words\. (.*)\nQuestion/.exec(s.input)![1]!;
    const counts = new Map<string, number>();
    for (const w of text.split(" ")) counts.set(w, (counts.get(w) ?? 0) + 1);
    const n = s.units;
    // Zipf α = 2: rank k appears floor(n / (k² ζ(2))) times; rank 1 is "...".
    const expected = (k: number) => Math.floor(n / (k * k * (Math.PI ** 2 / 6)));
    assert.equal(counts.get("...") ?? 0, expected(1));
    s.outputs.forEach((w, i) => assert.equal(counts.get(w), expected(i + 2)));
    assert.equal(new Set(s.outputs).size, 3);
    assert.match(s.outputs.join(" "), /^[a-z]{6} [a-z]{6} [a-z]{6}$/);
  }
});

/**
 * `tinystories_cloze`: a four-way sentence cloze built from the evaluation half of TinyStories
 * (`tinystories:eval`, the part no calibration set draws from), so that a tiny story model has
 * a downstream accuracy quantization can move.
 *
 * Generation (version {@linkcode CLOZE_GENERATOR_VERSION}, deterministic for a seed):
 * 1. Paragraphs: the eval text split at blank lines; whitespace runs collapsed to one space.
 * 2. Sentences: a paragraph is cut after `.`, `!` or `?` (plus any closing quotes) followed by
 *    whitespace and an upper-case letter or an opening quote.
 * 3. Items: every paragraph with at least two sentences, in file order. The context is the
 *    previous paragraph (the story so far; none for the first paragraph), a blank line, and the
 *    paragraph's first sentence; the true continuation is its second sentence. The paragraph is
 *    skipped when that sentence has fewer than 4 or more than 40 words.
 * 4. Distractors: 3 sentences drawn uniformly (pure-rand `xoroshiro128plus(seed)`,
 *    `uniformInt`) from the sentences of 4–40 words of the whole split, redrawn unless they come
 *    from a paragraph at least 20 paragraphs away (another story, almost always), their length in
 *    characters is within ×1.3 of the true sentence's (so raw `acc` is not a length contest), and
 *    their text differs from the true sentence and the other distractors. The true sentence goes
 *    to a uniformly drawn position among the 4 choices.
 * 5. The set's sha256 (canonical JSON of all items) goes in the protocol.
 *
 * Scoring is lm-eval multiple choice (`multiple_choice.ts`): `(context, " " + choice)`, `acc` and
 * `acc_norm`, chance 25 %. `--limit N` keeps the first N items.
 *
 * @module
 */

import { RNG_NAME, SeededRng } from "../core/rng.ts";
import { canonicalJson, sha256Hex } from "../core/hash.ts";
import { readTextDataset } from "./corpora/text.ts";
import type { McDoc } from "./multiple_choice.ts";
import { runMultipleChoice, SEQUENCE_PROTOCOL } from "./zero_shot.ts";
import { encodingRecord } from "./encoding.ts";
import type { Task } from "./types.ts";

/** Bumped whenever generation may produce different items. */
export const CLOZE_GENERATOR_VERSION = 1;
/** Default seed of the generator. */
export const CLOZE_SEED = 1234;
/** The corpus split the items come from. */
export const CLOZE_CORPUS = "tinystories:eval";

const MIN_WORDS = 4;
const MAX_WORDS = 40;
const DISTRACTORS = 3;
const MIN_DISTANCE = 20;
const LENGTH_RATIO = 1.3;
const MAX_TRIES = 100_000;

/** One cloze item (a `choices` multiple-choice doc). */
export interface ClozeItem {
  readonly context: string;
  readonly choices: readonly string[];
  readonly gold: number;
  /** Index of the paragraph it comes from. */
  readonly paragraph: number;
}

/** Paragraphs of a text: split at blank lines, whitespace collapsed, empty ones dropped. */
export function paragraphs(text: string): string[] {
  return text.split(/\n[ \t\r]*\n/).map((p) => p.replace(/\s+/g, " ").trim()).filter((p) => p);
}

/** Sentences of a paragraph (see rule 2 in the module header). */
export function sentences(paragraph: string): string[] {
  return paragraph.split(/(?<=[.!?]["'”’)]*)\s+(?=[A-Z"“'])/u).map((s) => s.trim()).filter((s) =>
    s
  );
}

function words(s: string): number {
  return s.split(" ").filter((w) => w).length;
}

/** Generates the cloze items of a text (rules 3–4 of the module header). */
export function buildClozeItems(text: string, seed = CLOZE_SEED): ClozeItem[] {
  const paras = paragraphs(text).map(sentences);
  const pool: { text: string; paragraph: number }[] = [];
  paras.forEach((ss, p) => {
    for (const s of ss) {
      const n = words(s);
      if (n >= MIN_WORDS && n <= MAX_WORDS) pool.push({ text: s, paragraph: p });
    }
  });
  const rng = new SeededRng(seed);
  const items: ClozeItem[] = [];
  paras.forEach((ss, p) => {
    if (ss.length < 2) return;

    const truth = ss[1]!;
    const n = words(truth);
    if (n < MIN_WORDS || n > MAX_WORDS) return;
    const others = new Set<string>([truth]);
    const distractors: string[] = [];
    for (let tries = 0; distractors.length < DISTRACTORS; tries++) {
      if (tries > MAX_TRIES) throw new RangeError("Not enough distinct sentences for distractors");
      const d = pool[rng.int(0, pool.length - 1)]!;
      if (Math.abs(d.paragraph - p) < MIN_DISTANCE || others.has(d.text)) continue;
      const r = d.text.length / truth.length;
      if (r > LENGTH_RATIO || r < 1 / LENGTH_RATIO) continue;
      others.add(d.text);
      distractors.push(d.text);
    }
    const gold = rng.int(0, DISTRACTORS);
    const choices = [...distractors];
    choices.splice(gold, 0, truth);
    const context = p > 0 ? `${paras[p - 1]!.join(" ")}\n\n${ss[0]!}` : ss[0]!;
    items.push({ context, choices, gold, paragraph: p });
  });
  return items;
}

/** The items as multiple-choice docs. */
export function clozeDocs(items: readonly ClozeItem[]): McDoc[] {
  return items.map((i) => ({
    kind: "choices",
    context: i.context,
    choices: i.choices,
    gold: i.gold,
  }));
}

/** The `tinystories_cloze` task (seeded with {@linkcode CLOZE_SEED}). */
export function tinystoriesClozeTask(seed = CLOZE_SEED): Task {
  return {
    id: "tinystories_cloze",
    title: "TinyStories sentence cloze (eval half), 4 choices",
    family: "zero-shot",
    version: 1,
    async dataset(ctx) {
      return (await readTextDataset(CLOZE_CORPUS, ctx.dataDir)).info;
    },
    async run(model, ctx) {
      const { text, info } = await readTextDataset(CLOZE_CORPUS, ctx.dataDir);
      const all = buildClozeItems(text, seed);
      if (ctx.limit !== undefined && !(Number.isInteger(ctx.limit) && ctx.limit >= 1)) {
        throw new RangeError(`--limit must be a positive integer, got ${ctx.limit}`);
      }
      const items = all.slice(0, ctx.limit ?? all.length);
      const r = await runMultipleChoice(model, ctx, clozeDocs(items), true);
      return {
        metrics: r.metrics,
        dataset: info,
        protocol: {
          name: "tinystories-cloze",
          generatorVersion: CLOZE_GENERATOR_VERSION,
          corpus: CLOZE_CORPUS,
          seed,
          rng: RNG_NAME,
          prompt: "previous paragraph + blank line + the paragraph's first sentence",
          target: "the paragraph's second sentence",
          distractors: `sentences of paragraphs at least ${MIN_DISTANCE} paragraphs away, ` +
            `character length within ×${LENGTH_RATIO} of the target's`,
          choices: DISTRACTORS + 1,
          sentenceWords: [MIN_WORDS, MAX_WORDS],
          chance: 1 / (DISTRACTORS + 1),
          generatedItems: all.length,
          setSha256: await sha256Hex(canonicalJson(all)),
          targetDelimiter: " ",
          ...SEQUENCE_PROTOCOL,
          ...encodingRecord(model.tokenizer),
          context: model.config.maxSeqLen,
          limit: ctx.limit ?? null,
          ...r.counts,
        },
      };
    },
  };
}

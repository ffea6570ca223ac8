/**
 * The RULER synthetic task generators and their configurations, after NVIDIA/RULER
 * `scripts/synthetic.yaml` (the 13 task configurations), `scripts/data/synthetic/constants.py`
 * (templates, answer prefixes, `tokens_to_generate`), `scripts/data/synthetic/niah.py`,
 * `variable_tracking.py`, `common_words_extraction.py` and `freq_words_extraction.py` (the
 * generators).
 *
 * A generator is a pure function of (task configuration, resources, sample seed, haystack
 * units): `ruler_fit.ts` calls it with growing unit counts to fit a length. The prompt is the
 * task template followed by the answer prefix, RULER's `base` model template (identity).
 *
 * | task | generator | configuration |
 * |---|---|---|
 * | niah_single_1 | niah | noise haystack, words → numbers, k = v = q = 1 |
 * | niah_single_2 | niah | essay, words → numbers |
 * | niah_single_3 | niah | essay, words → uuids |
 * | niah_multikey_1 | niah | essay, words → numbers, 4 keys |
 * | niah_multikey_2 | niah | needle haystack, words → numbers |
 * | niah_multikey_3 | niah | needle haystack, uuids → uuids |
 * | niah_multivalue | niah | essay, words → numbers, 4 values |
 * | niah_multiquery | niah | essay, words → numbers, 4 queries |
 * | vt | variable tracking | noise, 1 chain, 4 hops, one-shot example |
 * | cwe | common words | 30× / 3× (6× / 1× below 4096 tokens), 10 common words, one shot |
 * | fwe | frequent words | Zipf α = 2, 6-letter coded words, vocabulary length / 50 |
 * | qa_1, qa_2 | qa | SQuAD / HotpotQA (needs the dataset file: unsupported here) |
 *
 * Deviations (recorded in every RULER row): the random source (`ruler_random.ts`), the word lists
 * (`ruler_words.ts`), the essay text and sentence splitter (`ruler_haystack.ts`); each sample
 * draws from its own seed (derived from the task seed), so fitting one sample never shifts
 * another; the variable-tracking example's names are drawn afresh per sample with the sample's
 * generator (RULER renames the answer names of one cached example); the few-shot lists of cwe and
 * the Zipf text of fwe are shuffled by a generator seeded with the task seed each time, as RULER
 * does with `random.Random(seed)`.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import {
  essayPrefix,
  NOISE,
  placeInEssay,
  placeInLines,
  type Placement,
} from "./ruler_haystack.ts";
import { SeededRng } from "../core/rng.ts";
import type { RulerMetric } from "./ruler_score.ts";

/** Haystack of a NIAH task. */
export type HaystackType = "noise" | "essay" | "needle";
/** Type of a NIAH key or value. */
export type NeedleType = "words" | "numbers" | "uuids";

/** Configuration of a NIAH task (RULER `synthetic.yaml` `niah` arguments). */
export interface NiahConfig {
  readonly kind: "niah";
  readonly haystack: HaystackType;
  readonly keyType: NeedleType;
  readonly valueType: NeedleType;
  /** `num_needle_k` (RULER uses max(k, q)). */
  readonly numKeys: number;
  /** `num_needle_v`. */
  readonly numValues: number;
  /** `num_needle_q`. */
  readonly numQueries: number;
}

/** Configuration of variable tracking. */
export interface VtConfig {
  readonly kind: "vt";
  readonly numChains: number;
  readonly numHops: number;
}

/** Configuration of common words extraction. */
export interface CweConfig {
  readonly kind: "cwe";
  readonly freqCommon: number;
  readonly freqUncommon: number;
  readonly numCommon: number;
}

/** Configuration of frequent words extraction. */
export interface FweConfig {
  readonly kind: "fwe";
  readonly alpha: number;
  readonly codedWordLength: number;
}

/** Configuration of the QA tasks. */
export interface QaConfig {
  readonly kind: "qa";
  readonly dataset: "squad" | "hotpotqa";
}

/** Any RULER task configuration. */
export type RulerConfig = NiahConfig | VtConfig | CweConfig | FweConfig | QaConfig;

/** A RULER task: its configuration, generation budget and metric. */
export interface RulerTaskDef {
  readonly name: string;
  readonly config: RulerConfig;
  /** RULER's `tokens_to_generate` (constants.py). */
  readonly tokensToGenerate: number;
  /** RULER's eval metric (eval/synthetic/constants.py). */
  readonly metric: RulerMetric;
}

const niah = (
  haystack: HaystackType,
  keyType: NeedleType,
  valueType: NeedleType,
  k = 1,
  v = 1,
  q = 1,
): NiahConfig => ({
  kind: "niah",
  haystack,
  keyType,
  valueType,
  numKeys: k,
  numValues: v,
  numQueries: q,
});

/** The 13 RULER tasks (synthetic.yaml), in RULER's order. */
export const RULER_TASKS: readonly RulerTaskDef[] = [
  ["niah_single_1", niah("noise", "words", "numbers")],
  ["niah_single_2", niah("essay", "words", "numbers")],
  ["niah_single_3", niah("essay", "words", "uuids")],
  ["niah_multikey_1", niah("essay", "words", "numbers", 4)],
  ["niah_multikey_2", niah("needle", "words", "numbers")],
  ["niah_multikey_3", niah("needle", "uuids", "uuids")],
  ["niah_multivalue", niah("essay", "words", "numbers", 1, 4)],
  ["niah_multiquery", niah("essay", "words", "numbers", 1, 1, 4)],
  ["vt", { kind: "vt", numChains: 1, numHops: 4 } as const],
  ["cwe", { kind: "cwe", freqCommon: 30, freqUncommon: 3, numCommon: 10 } as const],
  ["fwe", { kind: "fwe", alpha: 2.0, codedWordLength: 6 } as const],
  ["qa_1", { kind: "qa", dataset: "squad" } as const],
  ["qa_2", { kind: "qa", dataset: "hotpotqa" } as const],
].map(([name, config]) => {
  const c = config as RulerConfig;
  const tokensToGenerate = { niah: 128, vt: 30, cwe: 120, fwe: 50, qa: 32 }[c.kind];
  const metric: RulerMetric = c.kind === "qa" ? "string_match_part" : "string_match_all";
  return { name: name as string, config: c, tokensToGenerate, metric };
});

/** Names of the RULER tasks. */
export const RULER_TASK_NAMES: readonly string[] = RULER_TASKS.map((t) => t.name);

// Templates and answer prefixes as RULER defines them (scripts/data/synthetic/constants.py);
// they are the protocol and are reproduced faithfully for comparability, including RULER's
// spelling "assgined" in the variable-tracking answer prefix.

/** RULER's NIAH needle. */
export const NIAH_NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}.";

/** Task templates and answer prefixes (RULER constants.py). */
export const TEMPLATES = {
  niah: {
    template: "Some special magic {type_needle_v} are hidden within the following text. " +
      "Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n" +
      "{context}\nWhat are all the special magic {type_needle_v} for {query} mentioned in " +
      "the provided text?",
    answerPrefix: " The special magic {type_needle_v} for {query} mentioned in the provided " +
      "text are",
  },
  vt: {
    template: "Memorize and track the chain(s) of variable assignment hidden in the following " +
      "text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} " +
      "in the text above.",
    answerPrefix: " Answer: According to the chain(s) of variable assignment in the text " +
      "above, {num_v} variables are assgined the value {query}, they are: ",
  },
  cwe: {
    template: "Below is a numbered list of words. In these words, some appear more often than " +
      "others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the " +
      "10 most common words in the above list?",
    answerPrefix: " Answer: The top 10 words that appear most often in the list are:",
  },
  fwe: {
    template: "Read the following coded text and track the frequency of each coded word. Find " +
      "the three most frequently appeared coded words. {context}\nQuestion: Do not provide " +
      "any explanation. Please ignore the dots '....'. What are the three most frequently " +
      "appeared words in the above coded text?",
    answerPrefix: " Answer: According to the coded text above, the three most frequently " +
      "appeared words are:",
  },
  qa: {
    template: "Answer the question based on the given documents. Only give me the answer and " +
      "do not output any other words.\n\nThe following are given documents.\n\n{context}\n\n" +
      "Answer the question based on the given documents. Only give me the answer and do not " +
      "output any other words.\n\nQuestion: {query}",
    answerPrefix: " Answer:",
  },
} as const;

/** Python-style `str.format` for the named fields used by the templates. */
export function fill(template: string, fields: Readonly<Record<string, string | number>>): string {
  return template.replace(/\{([a-z_]+)\}/g, (m, name: string) => {
    const v = fields[name];
    return v === undefined ? m : String(v);
  });
}

/** What the generators draw from: the key word list, the essay words and the cwe vocabulary. */
export interface RulerResources {
  /** Word list for `words` keys (`ruler_words.ts`). */
  readonly words: readonly string[];
  /** The essay as words (`essayWords` of the cleaned essay text). */
  readonly essay: readonly string[];
  /** The cwe vocabulary: the word list shuffled with the task seed. */
  readonly cweVocabulary: readonly string[];
  /** The task seed (RULER's `random_seed`), for RULER's fixed-seed shuffles. */
  readonly seed: number;
}

/** One generated prompt before fitting: the input, the answer prefix and the references. */
export interface RulerPrompt {
  /** The task text (RULER's `input`), without the answer prefix. */
  readonly input: string;
  /** Appended after the input to form the prompt (RULER's `answer_prefix`). */
  readonly answerPrefix: string;
  /** References the prediction is scored against (RULER's `outputs`). */
  readonly outputs: readonly string[];
  /** NIAH: where each needle went (in the order of the shuffled needles). */
  readonly placements?: readonly Placement[];
  /** Haystack units before insertion (lines, sentences, words). */
  readonly haystackUnits: number;
}

/** The smallest number of haystack units a generator can build with. */
export function minUnits(config: RulerConfig): number {
  switch (config.kind) {
    case "niah": {
      const k = Math.max(config.numKeys, config.numQueries);
      return config.haystack === "essay" ? 1 : k * config.numValues;
    }
    case "vt":
      return config.numChains * (config.numHops + 1);
    case "cwe":
      return config.numCommon;
    case "fwe":
      return 1;
    case "qa":
      return 1;
  }
}

function randomNeedle(type: NeedleType, rng: SeededRng, words: readonly string[]): string {
  switch (type) {
    case "numbers":
      return String(rng.int(1_000_000, 9_999_999));
    case "uuids":
      return rng.uuid();
    case "words": {
      if (words.length < 2) throw new RangeError("The key word list needs at least two words");
      const [a, b] = rng.sample(words, 2);
      return `${a}-${b}`;
    }
  }
}

/** A NIAH prompt with `units` haystack units (lines, distractor needles or essay words). */
export function buildNiah(
  config: NiahConfig,
  res: RulerResources,
  seed: number,
  units: number,
): RulerPrompt {
  const rng = new SeededRng(seed);
  const numKeys = Math.max(config.numKeys, config.numQueries);
  const vType = config.valueType;
  const keys: string[] = [];
  const values: string[][] = [];
  const needles: string[] = [];
  for (let i = 0; i < numKeys; i++) {
    keys.push(randomNeedle(config.keyType, rng, res.words));
    const vs: string[] = [];
    for (let j = 0; j < config.numValues; j++) {
      vs.push(randomNeedle(vType, rng, res.words));
      needles.push(fill(NIAH_NEEDLE, { type_needle_v: vType, key: keys[i]!, value: vs[j]! }));
    }
    values.push(vs);
  }
  rng.shuffle(needles);

  let placed;
  if (config.haystack === "essay") {
    placed = placeInEssay(essayPrefix(res.essay, units), needles, rng);
  } else {
    const lines = config.haystack === "noise"
      ? new Array<string>(units).fill(NOISE)
      : Array.from({ length: units }, () =>
        fill(NIAH_NEEDLE, {
          type_needle_v: vType,
          key: randomNeedle(config.keyType, rng, res.words),
          value: randomNeedle(vType, rng, res.words),
        }));
    placed = placeInLines(lines, needles, rng);
  }

  const queried = rng.sample(Array.from({ length: numKeys }, (_, i) => i), config.numQueries);
  const queries = queried.map((i) => keys[i]!);
  const outputs = queried.flatMap((i) => values[i]!);
  const query = queries.length > 1
    ? `${queries.slice(0, -1).join(", ")}, and ${queries.at(-1)}`
    : queries[0]!;

  let template: string = TEMPLATES.niah.template;
  let prefix: string = TEMPLATES.niah.answerPrefix;
  let typeV: string = vType;
  if (config.numQueries * config.numValues === 1) {
    // RULER's singular grammar: the replacements run over template + answer prefix.
    const singular = (t: string) =>
      t.replaceAll("Some", "A").replaceAll("are all", "is").replaceAll("are", "is")
        .replaceAll("answers", "answer");
    template = singular(template);
    prefix = singular(prefix);
    typeV = vType.slice(0, -1);
  }
  return {
    input: fill(template, { type_needle_v: typeV, context: placed.context, query }),
    answerPrefix: fill(prefix, { type_needle_v: typeV, query }),
    outputs,
    placements: placed.placements,
    haystackUnits: placed.haystackUnits,
  };
}

function variableNames(rng: SeededRng, count: number, letters: number): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  while (out.length < count) {
    let name = "";
    for (let i = 0; i < letters; i++) name += String.fromCharCode(65 + rng.int(0, 25));
    if (seen.has(name) || name === "VAR") continue;
    seen.add(name);
    out.push(name);
  }
  return out;
}

/** One variable-tracking text: chains hidden among `noises` noise lines. */
function vtText(
  config: VtConfig,
  rng: SeededRng,
  noises: number,
  icl: boolean,
): { input: string; answerPrefix: string; outputs: string[] } {
  const hops = icl ? Math.min(10, config.numHops) : config.numHops;
  const names = variableNames(rng, config.numChains * (hops + 1), icl ? 3 : 5);
  const chains: string[][] = [];
  const vars: string[][] = [];
  for (let c = 0; c < config.numChains; c++) {
    const v = names.slice(c * (hops + 1), (c + 1) * (hops + 1));
    const value = icl ? 12345 : rng.int(10000, 99999);
    vars.push(v);
    chains.push([`VAR ${v[0]} = ${value}`, ...v.slice(1).map((x, j) => `VAR ${x} = VAR ${v[j]} `)]);
  }
  const sentences = new Array<string>(noises).fill(NOISE);
  for (const chain of chains) {
    const range = Array.from({ length: sentences.length }, (_, i) => i);
    const positions = rng.sample(range, chain.length).sort((a, b) => a - b);
    positions.forEach((p, j) => sentences.splice(p + j, 0, chain[j]!));
  }
  const context = sentences.join("\n").replaceAll(". \n", ".\n");
  const value = chains[0]![0]!.split("=").at(-1)!.trim();
  return {
    input: fill(TEMPLATES.vt.template, { context, query: value }),
    answerPrefix: fill(TEMPLATES.vt.answerPrefix, { num_v: hops + 1, query: value }),
    outputs: vars[0]!,
  };
}

/** Noise lines of the variable-tracking one-shot example (fitted once per tokenizer). */
export interface VtExampleSize {
  readonly noises: number;
}

/**
 * A variable-tracking prompt: the one-shot example (3-letter names, value 12345, `icl.noises`
 * noise lines, followed by its answer) then `"\n"`, then the task with `units` noise lines.
 */
export function buildVt(
  config: VtConfig,
  seed: number,
  units: number,
  icl: VtExampleSize,
): RulerPrompt {
  const rng = new SeededRng(seed);
  const ex = vtText(config, rng, icl.noises, true);
  const main = vtText(config, rng, units, false);
  const example = `${ex.input}${ex.answerPrefix} ${ex.outputs.join(" ")}\n`;
  return {
    input: `${example}\n${main.input}`,
    answerPrefix: main.answerPrefix,
    outputs: main.outputs,
    haystackUnits: units,
  };
}

/** The variable-tracking example alone (for fitting its size to RULER's 500-token budget). */
export function vtExampleText(config: VtConfig, seed: number, noises: number): string {
  const ex = vtText(config, new SeededRng(seed), noises, true);
  return `${ex.input}${ex.answerPrefix}`;
}

function cweList(
  rng: SeededRng,
  res: RulerResources,
  numWords: number,
  common: number,
  uncommon: number,
  numCommon: number,
): { context: string; answer: string[] } {
  if (numWords > res.cweVocabulary.length) {
    throw new RangeError(
      `cwe needs ${numWords} distinct words; the word list has ${res.cweVocabulary.length}`,
    );
  }
  const words = rng.sample(res.cweVocabulary, numWords);
  const answer = words.slice(0, numCommon);
  const list = [
    ...Array.from({ length: common }, () => answer).flat(),
    ...Array.from({ length: uncommon }, () => words.slice(numCommon)).flat(),
  ];
  new SeededRng(res.seed).shuffle(list);
  return { context: list.map((w, i) => `${i + 1}. ${w}`).join(" "), answer };
}

/**
 * A common-words prompt: one few-shot example (20 words repeated 3×/1× below 4096 tokens, else
 * 40 words 10×/3×) with its numbered answer, `"\n"`, then the task with `units` distinct words
 * (the first `numCommon` repeated 6× and the rest 1× below 4096, else `freqCommon`/`freqUncommon`).
 */
export function buildCwe(
  config: CweConfig,
  res: RulerResources,
  seed: number,
  units: number,
  maxSeqLength: number,
): RulerPrompt {
  const rng = new SeededRng(seed);
  const short = maxSeqLength < 4096;
  const ex = short
    ? cweList(rng, res, 20, 3, 1, config.numCommon)
    : cweList(rng, res, 40, 10, 3, config.numCommon);
  const main = short
    ? cweList(rng, res, units, 6, 1, config.numCommon)
    : cweList(rng, res, units, config.freqCommon, config.freqUncommon, config.numCommon);
  const t = TEMPLATES.cwe;
  const example = fill(t.template, { context: ex.context }) + t.answerPrefix + " " +
    ex.answer.map((w, i) => `${i + 1}. ${w}`).join(" ");
  return {
    input: `${example}\n${fill(t.template, { context: main.context })}`,
    answerPrefix: t.answerPrefix,
    outputs: main.answer,
    haystackUnits: units,
  };
}

/** Riemann ζ(s) for s > 1 (series with an Euler–Maclaurin tail; exact enough for counts). */
export function zeta(s: number): number {
  if (!(s > 1)) throw new RangeError(`zeta needs s > 1, got ${s}`);
  const n = 1000;
  let sum = 0;
  for (let k = 1; k < n; k++) sum += k ** -s;
  // tail Σ_{k≥n} k^-s ≈ n^(1-s)/(s-1) + n^-s/2 + s·n^(-s-1)/12
  return sum + n ** (1 - s) / (s - 1) + n ** -s / 2 + (s * n ** (-s - 1)) / 12;
}

/**
 * A frequent-words prompt: a vocabulary of `length / 50` distinct random lower-case words of
 * `codedWordLength` letters (sorted, shuffled with the task seed, rank 1 replaced by `"..."`);
 * word of rank k appears `floor(units · k^-α / ζ(α))` times; the text is shuffled with the task
 * seed. Answer: the words of ranks 2–4.
 */
export function buildFwe(
  config: FweConfig,
  res: RulerResources,
  seed: number,
  units: number,
  maxSeqLength: number,
): RulerPrompt {
  const vocabSize = Math.floor(maxSeqLength / 50);
  if (vocabSize < 4) {
    throw new UnsupportedConfigError(
      `fwe needs a vocabulary of at least 4 words (length / 50); length ${maxSeqLength} gives ` +
        `${vocabSize}`,
    );
  }
  const rng = new SeededRng(seed);
  const set = new Set<string>();
  while (set.size < vocabSize) {
    let w = "";
    for (let i = 0; i < config.codedWordLength; i++) {
      w += String.fromCharCode(97 + rng.int(0, 25));
    }
    set.add(w);
  }
  const vocab = new SeededRng(res.seed).shuffle([...set].sort());
  vocab[0] = "...";
  const z = zeta(config.alpha);
  const text: string[] = [];
  vocab.forEach((w, i) => {
    const count = Math.floor((units * (i + 1) ** -config.alpha) / z);
    for (let c = 0; c < count; c++) text.push(w);
  });
  new SeededRng(res.seed).shuffle(text);
  return {
    input: fill(TEMPLATES.fwe.template, { context: text.join(" ") }),
    answerPrefix: TEMPLATES.fwe.answerPrefix,
    outputs: vocab.slice(1, 4),
    haystackUnits: units,
  };
}

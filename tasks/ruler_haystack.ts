/**
 * RULER's haystacks and how needles go into them [NVIDIA/RULER `scripts/data/synthetic/niah.py`,
 * `variable_tracking.py`]:
 *
 * - **noise**: the line {@linkcode NOISE} repeated N times; the needles are inserted at line
 *   indices drawn without replacement from `range(N)`, and the lines are joined with `"\n"`;
 * - **essay**: the first N words of an essay text (cycled if N exceeds it), split into
 *   sentences; each needle goes in at a sentence boundary at a depth drawn without replacement
 *   from the 40 depths `round(linspace(0, 100, 40))` (sentence index `int(sentences · depth /
 *   100)`), and the pieces are joined with `" "`;
 * - **needle**: N distractor needles (random keys and values), with the real needles inserted
 *   as for noise.
 *
 * Deviations (recorded in every RULER row):
 * - RULER's essays are Paul Graham's (downloaded and converted with html2text). Offline, the essay
 *   text is configurable and defaults to WikiText-2 (raw test file), cleaned by
 *   {@linkcode cleanWikitext}: heading lines (`= … =`) dropped, `@-@ @,@ @.@` joined, the space
 *   before `. , ; : ! ? ) 's` and after `(` removed.
 * - RULER splits sentences with NLTK's punkt model; {@linkcode splitSentences} is a rule instead:
 *   a sentence ends at `.`, `!` or `?` (optionally followed by a closing quote or bracket) that is
 *   followed by white space and then an upper-case letter, a digit or an opening quote/bracket.
 *
 * @module
 */

/** RULER's noise line (niah `noise`/`repeat` haystack, variable tracking). */
export const NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. " +
  "There and back again.";

/** The 40 insertion depths in percent: `numpy.round(numpy.linspace(0, 100, 40)).astype(int)`. */
export const DEPTHS: readonly number[] = Array.from({ length: 40 }, (_, i) => {
  const x = (100 * i) / 39;
  // numpy.round rounds half to even; no linspace value here sits exactly on .5 but keep the rule.
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
});

/** Description of the WikiText cleaning, for protocols. */
export const WIKITEXT_CLEANING =
  "heading lines '= ... =' dropped; ' @-@ ' -> '-', ' @,@ ' -> ',', " +
  "' @.@ ' -> '.'; the space before . , ; : ! ? ) 's and after ( removed; white space collapsed";

/** Makes WikiText's tokenised raw text read like prose (see the module doc). */
export function cleanWikitext(text: string): string {
  return text
    .split("\n")
    .filter((line) => !/^\s*=.*=\s*$/.test(line))
    .join("\n")
    .replace(/ @-@ /g, "-")
    .replace(/ @,@ /g, ",")
    .replace(/ @\.@ /g, ".")
    .replace(/ ([.,;:!?)])/g, "$1")
    .replace(/ 's\b/g, "'s")
    .replace(/\( /g, "(")
    .replace(/\s+/g, " ")
    .trim();
}

/** RULER's essay preparation: white space collapsed, split on single spaces. */
export function essayWords(text: string): string[] {
  const t = text.replace(/\s+/g, " ").trim();
  return t.length === 0 ? [] : t.split(" ");
}

/** Splits text into sentences by the rule in the module doc (no empty sentences). */
export function splitSentences(text: string): string[] {
  return text
    .trim()
    .split(/(?<=[.!?]["')\]]?)\s+(?=["'(\[]?[A-Z0-9])/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The first `n` words of `words` (cycled when `n` exceeds the list) joined with spaces. */
export function essayPrefix(words: readonly string[], n: number): string {
  if (words.length === 0) throw new RangeError("The essay text has no words");
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(words[i % words.length]!);
  return out.join(" ");
}

/** Where a needle went: its text, the unit index it was inserted at, and (essay) its depth. */
export interface Placement {
  readonly text: string;
  /** Noise/needle: the needle's line index in the final context; essay: the sentence index. */
  readonly position: number;
  /** Essay: the depth in percent that chose the position. */
  readonly depth?: number;
}

/** A context with needles placed in it. */
export interface PlacedContext {
  readonly context: string;
  /** Placements in the order of `needles`. */
  readonly placements: readonly Placement[];
  /** Haystack units before insertion (lines or sentences). */
  readonly haystackUnits: number;
}

/** Minimal random source the placement routines need. */
export interface SampleSource {
  sample<T>(items: readonly T[], k: number): T[];
}

/**
 * Inserts `needles` among `lines` at indices drawn without replacement from `range(lines.length)`
 * (inserted from the highest index down, as RULER does) and joins with `"\n"`.
 */
export function placeInLines(
  lines: readonly string[],
  needles: readonly string[],
  rng: SampleSource,
): PlacedContext {
  const n = lines.length;
  if (needles.length > n) {
    throw new RangeError(`Cannot place ${needles.length} needles among ${n} lines`);
  }
  const range = Array.from({ length: n }, (_, i) => i);
  const indexes = rng.sample(range, needles.length).sort((a, b) => b - a);
  const out: { text: string; needle: number }[] = lines.map((text) => ({ text, needle: -1 }));
  indexes.forEach((at, i) => out.splice(at, 0, { text: needles[i]!, needle: i }));
  const positions = new Array<number>(needles.length);
  out.forEach((l, i) => {
    if (l.needle >= 0) positions[l.needle] = i;
  });
  return {
    context: out.map((l) => l.text).join("\n"),
    placements: needles.map((text, i) => ({ text, position: positions[i]! })),
    haystackUnits: n,
  };
}

/**
 * Inserts `needles` into the sentences of `text` at depths drawn without replacement from
 * {@linkcode DEPTHS} (sorted), joining the pieces with `" "`.
 */
export function placeInEssay(
  text: string,
  needles: readonly string[],
  rng: SampleSource,
): PlacedContext {
  if (needles.length > DEPTHS.length) {
    throw new RangeError(`Cannot place ${needles.length} needles at ${DEPTHS.length} depths`);
  }
  const sents = splitSentences(text);
  const depths = rng.sample(DEPTHS, needles.length).sort((a, b) => a - b);
  const at = depths.map((d) => Math.floor(sents.length * (d / 100)));
  const cuts = [0, ...at, sents.length];
  const pieces: string[] = [];
  for (let i = 1; i < cuts.length; i++) {
    const part = sents.slice(cuts[i - 1], cuts[i]).join(" ");
    if (part.length > 0) pieces.push(part);
    if (i - 1 < needles.length) pieces.push(needles[i - 1]!);
  }
  return {
    context: pieces.join(" "),
    placements: needles.map((t, i) => ({ text: t, position: at[i]!, depth: depths[i]! })),
    haystackUnits: sents.length,
  };
}

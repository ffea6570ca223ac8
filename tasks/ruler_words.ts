/**
 * Word lists for the RULER generators, derived deterministically from a text corpus.
 *
 * RULER draws NIAH keys from the `wonderwords` adjective × noun pairs ("adjective-noun", all
 * pairs, deduplicated and sorted) and the common-words-extraction vocabulary from the
 * `wonderwords` nouns + adjectives + verbs (with `english_words.json` as a fallback)
 * [NVIDIA/RULER `scripts/data/synthetic/niah.py`, `common_words_extraction.py`]. Those lists are
 * not available offline, so this module derives one list from the essay corpus instead
 * (deviation, recorded in every RULER row):
 *
 * - the words are the maximal runs of lower-case ASCII letters `[a-z]{4,12}` of the text
 *   (capitalised words, i.e. most proper nouns, are skipped because their first letter is not
 *   lower-case) that occur at least {@linkcode MIN_WORD_COUNT} times, deduplicated and sorted;
 * - a NIAH key of type `words` is two distinct words of that list joined by `-` (the shape of
 *   RULER's "adjective-noun" keys, without the part-of-speech roles).
 *
 * @module
 */

/** Shortest word kept. */
export const MIN_WORD_LENGTH = 4;
/** Longest word kept. */
export const MAX_WORD_LENGTH = 12;
/** A word must occur at least this many times in the corpus. */
export const MIN_WORD_COUNT = 3;

/** Description of the derivation, for protocols. */
export const WORD_LIST_RULE =
  `distinct runs of [a-z]{${MIN_WORD_LENGTH},${MAX_WORD_LENGTH}} bounded by non-letters, ` +
  `occurring >= ${MIN_WORD_COUNT} times in the essay corpus, sorted; 'words' keys = two ` +
  "distinct list words joined by '-' (RULER: wonderwords adjective-noun pairs)";

/** The sorted word list of `text` (see the module doc). */
export function corpusWords(text: string): string[] {
  const counts = new Map<string, number>();
  for (const m of text.matchAll(/[A-Za-z]+/g)) {
    const w = m[0];
    if (w.length < MIN_WORD_LENGTH || w.length > MAX_WORD_LENGTH) continue;
    if (!/^[a-z]+$/.test(w)) continue;
    counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  const words = [...counts].filter(([, c]) => c >= MIN_WORD_COUNT).map(([w]) => w);
  return words.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

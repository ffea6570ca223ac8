/**
 * The `pileval-awq` calibration recipe: AWQ's own sampling (llm-awq `awq/utils/calib_data.py`
 * `get_calib_dataset`, the same in AutoAWQ), over a corpus available offline (the references read
 * `mit-han-lab/pile-val-backup`, which is not).
 *
 * 1. The corpus's documents — JSON-lines corpora (`c4`): one per line; running text
 *    (`tinystories`, `wikitext2`): the blocks between blank lines (TinyStories' paragraphs),
 *    empty blocks dropped — are shuffled with `seed`.
 * 2. In shuffled order, each document is `strip()`ped (Python's whitespace set), tokenised with
 *    BOS (the Llama tokenizer's default `add_special_tokens`), and skipped when it has more than
 *    512 tokens (a constant in the references, not the block size) or none.
 * 3. The first `samples` kept documents are concatenated into one stream, which is cut into
 *    `⌊total / seqLen⌋` blocks of `seqLen` tokens (the tail is dropped). Blocks cross document
 *    boundaries and start wherever the cut falls, so there are usually fewer than `samples`
 *    of them.
 *
 * Deviations, recorded in the set's protocol: the shuffle is a Fisher–Yates pass driven by
 * pure-rand `xoroshiro128plus(seed)` with `uniformInt`, not Hugging Face datasets' `shuffle`
 * (a numpy PCG64 permutation), so the document order differs from the references' for the same
 * seed; a tokenizer without a BOS token (Qwen) starts each document with its EOS token, as our
 * evaluation windows do (the references' Qwen tokenizer adds nothing).
 *
 * @module
 */

import { SeededRng } from "../../core/rng.ts";

/** The recipe's id in a `CalibrationSpec`. */
export const PILEVAL_AWQ = "pileval-awq";

/** Documents longer than this many tokens are skipped (`if len(line_encoded) > 512`). */
export const PILEVAL_MAX_DOC_TOKENS = 512;

/** Characters Python's `str.strip()` removes (`str.isspace`). */
const PY_WHITESPACE = new Set(
  [
    "\t",
    "\n",
    "\v",
    "\f",
    "\r",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x1f",
    " ",
    "\x85",
    "\xa0",
    "\u1680",
    "\u2000",
    "\u2001",
    "\u2002",
    "\u2003",
    "\u2004",
    "\u2005",
    "\u2006",
    "\u2007",
    "\u2008",
    "\u2009",
    "\u200a",
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
  ],
);

/** Python's `str.strip()` with no argument. */
export function pythonStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && PY_WHITESPACE.has(s[a]!)) a++;
  while (b > a && PY_WHITESPACE.has(s[b - 1]!)) b--;
  return s.slice(a, b);
}

/** The documents of a running text: its blocks between blank lines, empty ones dropped. */
export function textDocuments(text: string): string[] {
  return text.split(/\n[ \t]*\n/).filter((d) => pythonStrip(d) !== "");
}

/** `0 … n − 1` shuffled by Fisher–Yates with pure-rand `xoroshiro128plus(seed)`. */
export function shuffledOrder(n: number, seed: number): number[] {
  return new SeededRng(seed).permutation(n);
}

/** The blocks of the recipe and how they were made. */
export interface PilevalAwqSample {
  /** `⌊total / seqLen⌋` blocks of `seqLen` token ids. */
  readonly windows: Int32Array[];
  /** Start of each block in the concatenated stream. */
  readonly offsets: number[];
  /** The document (index in the corpus) holding each block's first token. */
  readonly documents: number[];
  /** The kept documents (indices in the corpus), in stream order. */
  readonly keptDocuments: number[];
  /** Tokens of the concatenated stream. */
  readonly streamTokens: number;
  /** Documents looked at before `samples` were kept (or all of them). */
  readonly documentsSeen: number;
  /** Documents skipped for having more than 512 tokens. */
  readonly skippedLong: number;
  /** Documents skipped for having no token. */
  readonly skippedEmpty: number;
  /** Tokens of the stream after the last whole block (dropped). */
  readonly droppedTokens: number;
}

/**
 * Applies the recipe to `documents` (see the module documentation). `encode` tokenises one
 * stripped document with BOS. Throws a `RangeError` when the kept documents hold fewer than
 * `seqLen` tokens.
 */
export function samplePilevalAwq(
  documents: readonly string[],
  encode: (text: string) => number[],
  spec: { readonly samples: number; readonly seqLen: number; readonly seed: number },
): PilevalAwqSample {
  const order = shuffledOrder(documents.length, spec.seed);
  const kept: number[] = [];
  const encoded: number[][] = [];
  let seen = 0, skippedLong = 0, skippedEmpty = 0;
  for (const d of order) {
    if (kept.length === spec.samples) break;
    seen++;
    const ids = encode(pythonStrip(documents[d]!));
    if (ids.length > PILEVAL_MAX_DOC_TOKENS) {
      skippedLong++;
      continue;
    }
    if (ids.length === 0) {
      skippedEmpty++;
      continue;
    }
    kept.push(d);
    encoded.push(ids);
  }
  const total = encoded.reduce((s, e) => s + e.length, 0);
  const blocks = Math.floor(total / spec.seqLen);
  if (blocks === 0) {
    throw new RangeError(
      `Calibration recipe ${PILEVAL_AWQ}: the ${kept.length} kept documents hold ${total} ` +
        `tokens, fewer than one block of ${spec.seqLen}`,
    );
  }
  const stream = new Int32Array(total);
  const docOf = new Int32Array(total);
  let p = 0;
  encoded.forEach((ids, i) => {
    stream.set(ids, p);
    docOf.fill(kept[i]!, p, p + ids.length);
    p += ids.length;
  });
  const windows: Int32Array[] = [];
  const offsets: number[] = [];
  const docs: number[] = [];
  for (let b = 0; b < blocks; b++) {
    windows.push(stream.slice(b * spec.seqLen, (b + 1) * spec.seqLen));
    offsets.push(b * spec.seqLen);
    docs.push(docOf[b * spec.seqLen]!);
  }
  return {
    windows,
    offsets,
    documents: docs,
    keptDocuments: kept,
    streamTokens: total,
    documentsSeen: seen,
    skippedLong,
    skippedEmpty,
    droppedTokens: total - blocks * spec.seqLen,
  };
}

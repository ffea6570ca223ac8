/**
 * Calibration sets: seeded random token windows from a corpus's calibration text, hashed and
 * recorded so another implementation can use exactly the same tokens.
 *
 * Protocol (GPTQ/OmniQuant style, IST-DASLab/gptq `datautils.py` `get_loaders`, with the
 * deviations noted):
 * - **Running text** (`tinystories`, which means its `calib` half; `wikitext2`): encode the text
 *   once (dummy-prefix space, no BOS); draw `samples` window offsets uniformly from
 *   `[0, tokens − (seqLen − 1)]`, with replacement, as GPTQ's `random.randint` does.
 * - **Documents** (`c4`): draw a document uniformly; if it has fewer than `seqLen − 1` tokens draw
 *   again; then draw an offset inside it (GPTQ `get_c4`).
 * - Every window is BOS followed by `seqLen − 1` tokens of the stream. Deviation: GPTQ's windows
 *   are plain slices; ours start with BOS, as our evaluation windows (and llama2.c training
 *   sequences) do, so calibration sees the activations evaluation sees.
 * - Random numbers: pure-rand `xoroshiro128plus(seed)` with `uniformInt` (not Python's Mersenne
 *   Twister, so offsets differ from GPTQ's for the same seed; the offsets are recorded instead).
 * - `tinystories` calibration never reads its `eval` half. `wikitext2` has only its test split
 *   offline, so calibrating on it overlaps wikitext2 evaluation (the row says so).
 *
 * Defaults for stories260K: 128 windows × 256 tokens, seed 0.
 *
 * A spec's `recipe` chooses another way to sample: `pileval-awq` is AWQ's own (documents
 * concatenated and cut into blocks; `pileval_awq.ts`), where `samples` counts documents. Methods
 * name the recipe of their reference (`Method.calibration`); a matrix may override it.
 *
 * @module
 */

import { RNG_NAME, SeededRng } from "../../core/rng.ts";
import { sha256Hex } from "../../core/hash.ts";
import {
  type DatasetInfo,
  readDocuments,
  readTextDataset,
  resolveCorpus,
  TEXT_DATASETS,
} from "../../tasks/corpora/text.ts";
import { encodeCached } from "../../tasks/corpora/token_cache.ts";
import type { Tokenizer } from "../../models/types.ts";
import {
  PILEVAL_AWQ,
  PILEVAL_MAX_DOC_TOKENS,
  samplePilevalAwq,
  textDocuments,
} from "./pileval_awq.ts";

/** How windows are drawn: `windows` (the default above) or AWQ's `pileval-awq`. */
export type CalibrationRecipe = "windows" | typeof PILEVAL_AWQ;

/** Every calibration recipe. */
export const CALIBRATION_RECIPES: readonly CalibrationRecipe[] = ["windows", PILEVAL_AWQ];

/** What defines a calibration set. */
export interface CalibrationSpec {
  /** Corpus reference: `tinystories` (its calib half), `c4`, `wikitext2`, `tinystories:calib`. */
  readonly source: string;
  /** Number of windows. */
  readonly samples: number;
  /** Tokens per window, BOS included. */
  readonly seqLen: number;
  readonly seed: number;
  /**
   * How the set is drawn (absent: `windows`, the seeded BOS windows above; `pileval-awq`: AWQ's
   * recipe, with `samples` the number of documents and `seqLen` the block length).
   */
  readonly recipe?: CalibrationRecipe;
  /**
   * The window length asked for, when it exceeded the model's context and `seqLen` was clamped
   * to the context ({@linkcode methodCalibration}); absent otherwise.
   */
  readonly seqLenClampedFrom?: number;
}

/** The defaults for stories260K: 128 × 256 tokens of TinyStories' calibration half, seed 0. */
export const DEFAULT_CALIBRATION: CalibrationSpec = {
  source: "tinystories",
  samples: 128,
  seqLen: 256,
  seed: 0,
};

/**
 * The calibration spec of a method in a matrix: the suite's defaults, then the method's own
 * (`Method.calibration`, e.g. AWQ's recipe), then the matrix's settings, field by field; with
 * `maxSeqLen`, windows are at most the model's context (the clamp is recorded in the spec).
 */
export function methodCalibration(
  method: { readonly calibration?: Partial<CalibrationSpec> },
  matrix: Partial<CalibrationSpec> = {},
  maxSeqLen?: number,
): CalibrationSpec {
  const spec = { ...DEFAULT_CALIBRATION, ...method.calibration, ...matrix };
  // Windows longer than the model's context (256-token defaults on a 128-token llama2.c model)
  // are cut to the context, and the spec says from what.
  if (maxSeqLen !== undefined && spec.seqLen > maxSeqLen) {
    return { ...spec, seqLen: maxSeqLen, seqLenClampedFrom: spec.seqLen };
  }
  return spec;
}

/** A drawn calibration set. */
export interface CalibrationSet {
  readonly spec: CalibrationSpec;
  /** The corpus file, with the split read. */
  readonly dataset: DatasetInfo;
  /**
   * `samples` windows of `seqLen` token ids, each starting with BOS (`pileval-awq`: its blocks,
   * cut from a stream of BOS-prefixed documents).
   */
  readonly windows: readonly Int32Array[];
  /**
   * Start of each window's body in the token stream (of its document, for document corpora;
   * `pileval-awq`: in the concatenated stream).
   */
  readonly offsets: readonly number[];
  /** Document of each window, for document corpora (`pileval-awq`: of its first token). */
  readonly documents?: readonly number[];
  /** Tokens of the stream windows are drawn from (sum over eligible documents for `c4`). */
  readonly streamTokens: number;
  /** sha256 of all windows' ids as little-endian int32, in order. */
  readonly tokensSha256: string;
  /** How the windows were drawn, for the row. */
  readonly protocol: Readonly<Record<string, unknown>>;
}

/** The provenance of a calibration set as stored in rows (everything but the tokens). */
export interface CalibrationRecord {
  readonly source: string;
  readonly samples: number;
  readonly seqLen: number;
  readonly seed: number;
  readonly recipe?: CalibrationRecipe;
  readonly dataset: DatasetInfo;
  readonly tokensSha256: string;
  readonly offsets: readonly number[];
  readonly documents?: readonly number[];
  readonly protocol: Readonly<Record<string, unknown>>;
}

/** The row form of a calibration set. */
export function calibrationRecord(set: CalibrationSet): CalibrationRecord {
  return {
    ...set.spec,
    dataset: set.dataset,
    tokensSha256: set.tokensSha256,
    offsets: set.offsets,
    ...(set.documents ? { documents: set.documents } : {}),
    protocol: set.protocol,
  };
}

/** Checks a spec's numbers; throws a `RangeError` naming the field. */
export function validateCalibrationSpec(spec: CalibrationSpec, maxSeqLen: number): void {
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) {
      throw new RangeError(`Calibration ${name} must be an integer ≥ ${min}, got ${v}`);
    }
  };
  int("samples", spec.samples, 1);
  int("seqLen", spec.seqLen, 2);
  int("seed", spec.seed, 0);
  if (spec.recipe !== undefined && !CALIBRATION_RECIPES.includes(spec.recipe)) {
    throw new RangeError(
      `Unknown calibration recipe "${spec.recipe}": expected ${CALIBRATION_RECIPES.join(", ")}`,
    );
  }
  if (spec.seqLen > maxSeqLen) {
    throw new RangeError(
      `Calibration windows of ${spec.seqLen} tokens exceed the model's context of ${maxSeqLen}`,
    );
  }
}

/** The corpus a calibration source reads: a corpus with a `calib` split uses it by default. */
export function calibrationCorpus(source: string): string {
  if (source.includes(":") || source.startsWith("file:")) return source;
  const corpus = TEXT_DATASETS.find((d) => d.id === source);
  return corpus?.splits?.includes("calib") ? `${source}:calib` : source;
}

/**
 * Draws a calibration set. Every check (unknown source, window longer than the context, a set
 * larger than the split, an empty corpus) happens before any model compute.
 *
 * @param spec What to draw.
 * @param tokenizer The model's tokenizer.
 * @param maxSeqLen The model's context length.
 * @param dataDir The data root.
 */
export async function drawCalibrationSet(
  spec: CalibrationSpec,
  tokenizer: Tokenizer,
  maxSeqLen: number,
  dataDir: string,
): Promise<CalibrationSet> {
  validateCalibrationSpec(spec, maxSeqLen);
  const ref = calibrationCorpus(spec.source);
  const r = resolveCorpus(ref, dataDir);
  if (spec.recipe === PILEVAL_AWQ) return await drawPilevalAwq(spec, ref, tokenizer, dataDir);
  const body = spec.seqLen - 1;
  const rng = new SeededRng(spec.seed);
  const windows: Int32Array[] = [];
  const offsets: number[] = [];
  const window = (stream: readonly number[], at: number) => {
    const w = new Int32Array(spec.seqLen);
    w[0] = tokenizer.bosId;
    for (let i = 0; i < body; i++) w[i + 1] = stream[at + i]!;
    return w;
  };
  const common = {
    corpus: ref,
    window: "BOS + (seqLen − 1) tokens of the stream",
    encoding: "dummy-prefix space, no BOS, no EOS",
    rng: `${RNG_NAME}, offsets with replacement`,
    ...(r.corpus?.caveat ? { caveat: r.corpus.caveat } : {}),
  };

  if (r.corpus?.format === "jsonl") {
    const { documents: docs, info } = await readDocuments(ref, dataDir);
    const encoded = docs.map((d) => tokenizer.encode(d, { bos: false }));
    const eligible = encoded.filter((e) => e.length >= body);
    const streamTokens = eligible.reduce((s, e) => s + e.length, 0);
    if (eligible.length === 0) {
      throw new RangeError(
        `Calibration source "${spec.source}": no document has ${body} tokens (seqLen ${spec.seqLen})`,
      );
    }
    checkSize(spec, streamTokens, ref);
    const documents: number[] = [];
    while (windows.length < spec.samples) {
      const d = rng.int(0, encoded.length - 1);
      const toks = encoded[d]!;
      if (toks.length < body) continue;
      const at = rng.int(0, toks.length - body);
      windows.push(window(toks, at));
      offsets.push(at);
      documents.push(d);
    }
    return {
      spec,
      dataset: info,
      windows,
      offsets,
      documents,
      streamTokens,
      tokensSha256: await hashWindows(windows),
      protocol: {
        ...common,
        sampling: "uniform document with ≥ seqLen − 1 tokens (redrawn otherwise), then offset",
        documents: docs.length,
        eligibleDocuments: eligible.length,
      },
    };
  }

  const { text, info } = await readTextDataset(ref, dataDir);
  const stream = encodeCached(tokenizer, text);
  if (stream.length === 0) throw new RangeError(`Calibration source "${ref}" is empty`);
  checkSize(spec, stream.length, ref);
  for (let i = 0; i < spec.samples; i++) {
    const at = rng.int(0, stream.length - body);
    windows.push(window(stream, at));
    offsets.push(at);
  }
  return {
    spec,
    dataset: info,
    windows,
    offsets,
    streamTokens: stream.length,
    tokensSha256: await hashWindows(windows),
    protocol: { ...common, sampling: "uniform offset in the running token stream" },
  };
}

function checkSize(spec: CalibrationSpec, tokens: number, ref: string): void {
  const need = spec.samples * (spec.seqLen - 1);
  if (need > tokens) {
    throw new RangeError(
      `Calibration set of ${spec.samples} × ${spec.seqLen} tokens needs ${need} tokens, more than ` +
        `the ${tokens} tokens of "${ref}": use fewer samples or shorter windows`,
    );
  }
}

async function hashWindows(windows: readonly Int32Array[]): Promise<string> {
  const n = windows.reduce((s, w) => s + w.length, 0);
  const bytes = new Uint8Array(n * 4);
  const view = new DataView(bytes.buffer);
  let p = 0;
  for (const w of windows) {
    for (const id of w) {
      view.setInt32(p, id, true);
      p += 4;
    }
  }
  return await sha256Hex(bytes);
}

/** The `pileval-awq` recipe over the corpus `ref` (see `pileval_awq.ts`). */
async function drawPilevalAwq(
  spec: CalibrationSpec,
  ref: string,
  tokenizer: Tokenizer,
  dataDir: string,
): Promise<CalibrationSet> {
  const r = resolveCorpus(ref, dataDir);
  const jsonl = r.corpus?.format === "jsonl";
  const { documents, info } = jsonl
    ? await readDocuments(ref, dataDir)
    : await readTextDataset(ref, dataDir).then((t) => ({
      documents: textDocuments(t.text),
      info: t.info,
    }));
  const s = samplePilevalAwq(documents, (text) => tokenizer.encode(text, { bos: true }), spec);
  return {
    spec,
    dataset: info,
    windows: s.windows,
    offsets: s.offsets,
    documents: s.documents,
    streamTokens: s.streamTokens,
    tokensSha256: await hashWindows(s.windows),
    protocol: {
      recipe: PILEVAL_AWQ,
      reference: "llm-awq awq/utils/calib_data.py get_calib_dataset (AutoAWQ the same), " +
        "over this corpus instead of mit-han-lab/pile-val-backup (not available offline)",
      corpus: ref,
      documentsRule: jsonl
        ? "one document per JSON line"
        : "documents are the blocks between blank lines (TinyStories: paragraphs), empty ones dropped",
      shuffle: "Fisher–Yates with pure-rand xoroshiro128plus(seed), uniformInt — not Hugging " +
        "Face datasets' shuffle (numpy PCG64), so the order differs from the references'",
      encoding: "str.strip() (Python whitespace), then BOS + dummy-prefix space" +
        (tokenizer.bosId === tokenizer.eosId ? " (no BOS token: EOS, as our windows)" : ""),
      maxDocumentTokens: PILEVAL_MAX_DOC_TOKENS,
      window: "the kept documents concatenated, cut into ⌊total / seqLen⌋ blocks (tail dropped)",
      corpusDocuments: documents.length,
      documentsSeen: s.documentsSeen,
      skippedLong: s.skippedLong,
      skippedEmpty: s.skippedEmpty,
      keptDocuments: s.keptDocuments,
      blocks: s.windows.length,
      droppedTokens: s.droppedTokens,
      ...(r.corpus?.caveat ? { caveat: r.corpus.caveat } : {}),
    },
  };
}

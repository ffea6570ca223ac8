/**
 * A GPT-2-style byte-level BPE tokenizer shipped as `vocab.json` + `merges.txt` (+
 * `tokenizer_config.json`), without `tokenizer.json`, as the `tokenizer.json` object transformers
 * builds for it: `Qwen2Converter` (Qwen2Tokenizer: NFC, Qwen2's split pattern, single digits)
 * or `GPT2Converter` (GPT2Tokenizer: GPT-2's byte-level regex) of
 * `transformers/convert_slow_tokenizer.py`, serialized as the Rust `tokenizers` library writes
 * it, so that `hf_tokenizer.ts` loads it like any `tokenizer.json`.
 *
 * `merges.txt` is read as `Qwen2Tokenizer` reads it: a first line starting with `#version` and
 * empty lines are skipped. Added tokens are the config's `added_tokens_decoder`, plus the special
 * tokens it names (`eos_token`, …, `additional_special_tokens`) that are not among them, as
 * `PreTrainedTokenizerFast` adds them.
 *
 * @module
 */

import { FormatError } from "../core/errors.ts";

/** Qwen2's pre-tokenizer pattern (`Qwen2Converter`; Oniguruma syntax, as in `tokenizer.json`). */
export const QWEN2_PATTERN = String
  .raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** `tokenizer_class` values of `tokenizer_config.json` this module converts, by converter. */
export const BPE_FILE_CLASSES = {
  qwen2: ["Qwen2Tokenizer", "Qwen2TokenizerFast"],
  gpt2: ["GPT2Tokenizer", "GPT2TokenizerFast"],
} as const;

/** The names (or paths) of the three files, for error messages. */
export interface BpeFileNames {
  /** Default `vocab.json`. */
  readonly vocab?: string;
  /** Default `merges.txt`. */
  readonly merges?: string;
  /** Default `tokenizer_config.json`. */
  readonly config?: string;
}

/** Config fields naming special tokens (transformers' `SPECIAL_TOKENS_ATTRIBUTES`). */
const SPECIAL_FIELDS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Parses `merges.txt`: one merge per line, two tokens separated by a single space; a first line
 * starting with `#version` and empty lines are skipped; a trailing `\r` is dropped.
 *
 * @param text The file's text.
 * @param file The file's name or path, for error messages.
 * @returns The merges in rank order.
 * @throws {FormatError} On a line that is not two tokens separated by one space (with its number).
 */
export function parseMerges(text: string, file = "merges.txt"): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line === "" || (i === 0 && line.startsWith("#version"))) continue;
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw new FormatError(
        file,
        `line ${i + 1}: expected two tokens separated by a single space, got ` +
          JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}…` : line),
      );
    }
    merges.push([parts[0]!, parts[1]!]);
  }
  return merges;
}

/** Checks `vocab.json`: an object of token → non-negative integer id. */
function parseVocab(json: unknown, file: string): Record<string, number> {
  if (!isRecord(json)) throw new FormatError(file, "expected a JSON object of token → id");
  for (const [token, id] of Object.entries(json)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new FormatError(
        file,
        `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected a non-negative ` +
          `integer`,
      );
    }
  }
  return json as Record<string, number>;
}

/** An added token as `tokenizer.json` serializes it. */
interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** A special-token entry of the config: a string or `{content, lstrip, …}` (or null/absent). */
function specialToken(value: unknown): Omit<AddedToken, "id"> | undefined {
  const base = { single_word: false, lstrip: false, rstrip: false, normalized: false };
  if (typeof value === "string") return { ...base, content: value, special: true };
  if (isRecord(value) && typeof value.content === "string") {
    return {
      content: value.content,
      single_word: value.single_word === true,
      lstrip: value.lstrip === true,
      rstrip: value.rstrip === true,
      normalized: value.normalized === true,
      special: true,
    };
  }
  return undefined;
}

/**
 * The added tokens: `added_tokens_decoder` (id → entry), then the config's special tokens not
 * among them, with their vocabulary id or the next free id; sorted by id.
 */
function addedTokens(
  config: Record<string, unknown>,
  vocab: Record<string, number>,
  file: string,
): AddedToken[] {
  const added: AddedToken[] = [];
  const decoder = config.added_tokens_decoder ?? {};
  if (!isRecord(decoder)) {
    throw new FormatError(file, "added_tokens_decoder must be an object of id → token");
  }
  for (const [key, entry] of Object.entries(decoder)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !isRecord(entry) || typeof entry.content !== "string") {
      throw new FormatError(
        file,
        `added_tokens_decoder[${JSON.stringify(key)}]: expected an integer id and an entry ` +
          `with a string "content"`,
      );
    }
    const special = entry.special === true;
    added.push({
      id,
      content: entry.content,
      single_word: entry.single_word === true,
      lstrip: entry.lstrip === true,
      rstrip: entry.rstrip === true,
      normalized: typeof entry.normalized === "boolean" ? entry.normalized : !special,
      special,
    });
  }
  const named = [
    ...SPECIAL_FIELDS.map((f) => config[f]),
    ...(Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens : []),
  ];
  let nextId = 0;
  for (const id of Object.values(vocab)) nextId = Math.max(nextId, id + 1);
  for (const t of added) nextId = Math.max(nextId, t.id + 1);
  for (const value of named) {
    const token = specialToken(value);
    if (token === undefined) continue;
    const known = added.find((t) => t.content === token.content);
    if (known) {
      known.special = true;
      continue;
    }
    const id = Object.hasOwn(vocab, token.content) ? vocab[token.content]! : nextId++;
    added.push({ id, ...token });
  }
  return added.sort((a, b) => a.id - b.id);
}

/**
 * Builds the `tokenizer.json` object transformers' `Qwen2Converter` or `GPT2Converter` makes
 * from a byte-level BPE's `vocab.json` and `merges.txt`, chosen by `tokenizer_config.json`'s
 * `tokenizer_class`.
 *
 * @param vocabJson The parsed `vocab.json` (token → id).
 * @param mergesTxt The text of `merges.txt`.
 * @param tokenizerConfig The parsed `tokenizer_config.json` (`tokenizer_class`,
 *   `add_prefix_space`, `added_tokens_decoder`, special tokens).
 * @param files The files' names or paths, for error messages.
 * @returns A `tokenizer.json`-shaped object for `hfTokenizer`.
 * @throws {FormatError} On an unsupported or missing `tokenizer_class`, a malformed file, or a
 *   merge whose tokens are not in the vocabulary.
 */
export function tokenizerJsonFromBpeFiles(
  vocabJson: unknown,
  mergesTxt: string,
  tokenizerConfig: unknown,
  files: BpeFileNames = {},
): Record<string, unknown> {
  const vocabFile = files.vocab ?? "vocab.json";
  const mergesFile = files.merges ?? "merges.txt";
  const configFile = files.config ?? "tokenizer_config.json";
  const config = tokenizerConfig ?? {};
  if (!isRecord(config)) throw new FormatError(configFile, "expected a JSON object");
  const cls = config.tokenizer_class;
  const kind = (Object.keys(BPE_FILE_CLASSES) as (keyof typeof BPE_FILE_CLASSES)[])
    .find((k) => (BPE_FILE_CLASSES[k] as readonly unknown[]).includes(cls));
  if (kind === undefined) {
    throw new FormatError(
      configFile,
      `tokenizer_class ${JSON.stringify(cls ?? null)}: cannot build a tokenizer from vocab.json ` +
        `+ merges.txt for it (supported: ${Object.values(BPE_FILE_CLASSES).flat().join(", ")})`,
    );
  }
  const vocab = parseVocab(vocabJson, vocabFile);
  const merges = parseMerges(mergesTxt, mergesFile);
  for (const [i, [a, b]] of merges.entries()) {
    for (const token of [a, b, a + b]) {
      if (!Object.hasOwn(vocab, token)) {
        throw new FormatError(
          mergesFile,
          `merge ${i + 1} (${JSON.stringify(`${a} ${b}`)}): ${JSON.stringify(token)} is not in ` +
            `${vocabFile}`,
        );
      }
    }
  }
  const added = addedTokens(config, vocab, configFile);
  const addPrefixSpace = config.add_prefix_space === true;
  const model = {
    type: "BPE",
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: "",
    end_of_word_suffix: "",
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
    vocab,
    merges,
  };
  // decoders.ByteLevel() and processors.ByteLevel(trim_offsets=False): the Rust defaults
  // (add_prefix_space, trim_offsets, use_regex true) except where the converter sets them.
  const decoder = {
    type: "ByteLevel",
    add_prefix_space: true,
    trim_offsets: true,
    use_regex: true,
  };
  const byteLevelPost = {
    type: "ByteLevel",
    add_prefix_space: true,
    trim_offsets: false,
    use_regex: true,
  };
  const base = { version: "1.0", truncation: null, padding: null, added_tokens: added };
  if (kind === "qwen2") {
    return {
      ...base,
      normalizer: { type: "NFC" },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: QWEN2_PATTERN }, behavior: "Isolated", invert: false },
          {
            type: "ByteLevel",
            add_prefix_space: addPrefixSpace,
            trim_offsets: true,
            use_regex: false,
          },
        ],
      },
      post_processor: byteLevelPost,
      decoder,
      model,
    };
  }
  return {
    ...base,
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: addPrefixSpace,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: gpt2PostProcessor(config, added) ?? byteLevelPost,
    decoder,
    model,
  };
}

/** `GPT2Converter`'s post-processor when `add_bos_token`: BOS then the sequence(s). */
function gpt2PostProcessor(
  config: Record<string, unknown>,
  added: readonly AddedToken[],
): Record<string, unknown> | undefined {
  if (config.add_bos_token !== true) return undefined;
  const bos = specialToken(config.bos_token)?.content;
  const id = added.find((t) => t.content === bos)?.id;
  if (bos === undefined || id === undefined) return undefined;
  const special = (typeId: number) => ({ SpecialToken: { id: bos, type_id: typeId } });
  const seq = (name: string, typeId: number) => ({ Sequence: { id: name, type_id: typeId } });
  return {
    type: "TemplateProcessing",
    single: [special(0), seq("A", 0)],
    pair: [special(0), seq("A", 0), seq("B", 1)],
    special_tokens: { [bos]: { id: bos, ids: [id], tokens: [bos] } },
  };
}

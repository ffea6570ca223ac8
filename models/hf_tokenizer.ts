/**
 * A Hugging Face `tokenizer.json` (with `tokenizer_config.json`) as a {@linkcode Tokenizer},
 * through the pure-JS `@huggingface/tokenizers`.
 *
 * For SentencePiece-style Llama tokenizers the encoding equals llama2.c's (see
 * `shared/models/README.md`), except that `<s>`/`</s>` written in the text are read as the
 * special tokens and a literal `▁` is read as a space.
 *
 * @module
 */

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { FormatError } from "../core/errors.ts";
import { sha256Parts } from "../core/hash.ts";

/** The `@huggingface/tokenizers` release line encoding is done with (deno.json pins `^0.2.0`). */
const TOKENIZERS_LIBRARY = "@huggingface/tokenizers@0.2";
import { describe, isRecord } from "../core/describe.ts";
import type { Tokenizer } from "./types.ts";

/** The content of a special-token entry, written as a string or as `{content: ...}`. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (isRecord(value) && typeof value.content === "string") return value.content;
  return undefined;
}

/** The tokenizer models `tokenizer.json` may name (`model.type`). */
const MODEL_TYPES = ["BPE", "WordPiece", "Unigram", "WordLevel"];

/**
 * Checks the parts of a `tokenizer.json` that the tokenizers library trusts and would otherwise
 * turn into a wrong tokenizer or an internal error (`x.split is not a function`): `model.type`,
 * the vocabulary (ids: non-negative integers, each once), BPE merges (two tokens of the
 * vocabulary whose concatenation is one too, as the Rust `tokenizers` BPE builder requires) and
 * `added_tokens`.
 */
function checkTokenizerJson(json: Record<string, unknown>, file: string): void {
  const bad = (message: string) => new FormatError(file, message);
  const model = json.model as Record<string, unknown>;
  const type = model.type;
  if (type !== undefined && !MODEL_TYPES.includes(type as string)) {
    throw bad(`model type ${JSON.stringify(type)} is not one of ${MODEL_TYPES.join(", ")}`);
  }
  const vocab = model.vocab;
  let has: (token: string) => boolean = () => true;
  if (Array.isArray(vocab)) {
    // Unigram: [[piece, score], …], ids are positions.
    if (vocab.length === 0) throw bad(`model.vocab is empty`);
    vocab.forEach((entry, i) => {
      if (
        !Array.isArray(entry) || typeof entry[0] !== "string" || typeof entry[1] !== "number"
      ) {
        throw bad(`model.vocab[${i}] must be [piece, score], got ${describe(entry)}`);
      }
    });
  } else if (isRecord(vocab)) {
    // Vocabularies hold up to a few hundred thousand tokens: one pass, ids marked in a bitmap.
    let n = 0, max = 0;
    for (const token in vocab) {
      const id = vocab[token];
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
        throw bad(
          `model.vocab[${JSON.stringify(token)}] is ${describe(id)}, expected a non-negative ` +
            `integer id`,
        );
      }
      n++;
      if (id > max) max = id;
    }
    if (n === 0) throw bad(`model.vocab is empty`);
    const seen: { has(id: number): boolean; add(id: number): void } = max < 8 * n + 4096
      ? (() => {
        const marks = new Uint8Array(max + 1);
        return { has: (id: number) => marks[id] === 1, add: (id: number) => void (marks[id] = 1) };
      })()
      : new Set<number>();
    for (const token in vocab) {
      const id = vocab[token] as number;
      if (seen.has(id)) {
        const other = Object.keys(vocab).find((t) => vocab[t] === id && t !== token);
        throw bad(
          `model.vocab gives id ${id} to both ${JSON.stringify(other)} and ${
            JSON.stringify(token)
          }`,
        );
      }
      seen.add(id);
    }
    has = (token) => Object.hasOwn(vocab, token);
  } else if (vocab !== undefined) {
    throw bad(`model.vocab must be an object {token: id} or a list, got ${describe(vocab)}`);
  }
  const merges = model.merges;
  if (merges !== undefined && (type === "BPE" || type === undefined)) {
    if (!Array.isArray(merges)) throw bad(`model.merges must be a list, got ${describe(merges)}`);
    const prefix = typeof model.continuing_subword_prefix === "string"
      ? model.continuing_subword_prefix
      : "";
    merges.forEach((m, i) => {
      const pair = typeof m === "string" ? m.split(" ") : m;
      if (
        !Array.isArray(pair) || pair.length !== 2 ||
        !pair.every((t) => typeof t === "string" && t.length > 0)
      ) {
        throw bad(`model.merges[${i}] must be "a b" or ["a", "b"], got ${describe(m)}`);
      }
      const [a, b] = pair as [string, string];
      const merged = a + (prefix && b.startsWith(prefix) ? b.slice(prefix.length) : b);
      const missing = [a, b, merged].find((t) => !has(t));
      if (missing !== undefined) {
        throw bad(
          `model.merges[${i}] ${JSON.stringify(`${a} ${b}`)} merges tokens not in the ` +
            `vocabulary (${JSON.stringify(missing)} is not in model.vocab)`,
        );
      }
    });
  }
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) {
      throw bad(`added_tokens must be a list of {id, content}, got ${describe(added)}`);
    }
    added.forEach((t, i) => {
      if (
        !isRecord(t) || typeof t.content !== "string" || typeof t.id !== "number" ||
        !Number.isSafeInteger(t.id) || t.id < 0
      ) {
        throw bad(
          `added_tokens[${i}] must be {id, content} with a non-negative integer id and a ` +
            `string content, got ${describe(t)}`,
        );
      }
    });
  }
}

/**
 * Wraps a parsed `tokenizer.json` and `tokenizer_config.json`.
 *
 * `encode(text, {bos})` never lets the tokenizer's post-processor add special tokens; BOS is
 * prepended only when `bos` is true. `decode` skips special tokens. BOS/EOS are the
 * `bos_token`/`eos_token` of the config (default `<s>`/`</s>` when the vocabulary has them),
 * looked up in the vocabulary; a tokenizer without a BOS token (`bos_token: null`, Qwen) starts
 * sequences with its EOS token instead (lm-eval's `prefix_token_id`).
 * `clean_up_tokenization_spaces` defaults to false (transformers' Llama default).
 *
 * @param tokenizerJson The parsed `tokenizer.json`.
 * @param tokenizerConfig The parsed `tokenizer_config.json` (or `{}`/`undefined` when absent).
 * @param file The tokenizer file's name or path, for error messages.
 * @returns The tokenizer.
 * @throws {FormatError} When the JSON is not a tokenizer the library can build (an unknown model
 *   type, vocabulary ids that are not distinct non-negative integers, merges of tokens not in
 *   the vocabulary, malformed added tokens), or BOS/EOS are not in the vocabulary.
 */
export function hfTokenizer(
  tokenizerJson: unknown,
  tokenizerConfig: unknown,
  file: string,
): Tokenizer {
  if (!isRecord(tokenizerJson) || !isRecord(tokenizerJson.model)) {
    throw new FormatError(file, `not a tokenizer.json: expected an object with a "model" object`);
  }
  if (tokenizerConfig !== undefined && tokenizerConfig !== null && !isRecord(tokenizerConfig)) {
    throw new FormatError(file, `tokenizer_config.json must be a JSON object`);
  }
  checkTokenizerJson(tokenizerJson, file);
  const config: Record<string, unknown> = { ...(tokenizerConfig ?? {}) };
  config.clean_up_tokenization_spaces ??= false;
  const json = { ...tokenizerJson, added_tokens: tokenizerJson.added_tokens ?? [] };
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizer(json, config);
  } catch (e) {
    throw new FormatError(
      file,
      `cannot build the tokenizer: ${(e as Error).message}`,
      { cause: e },
    );
  }
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  /** The id of a special token: named in the config (must exist), or the fallback if present. */
  const specialId = (field: string, fallback: string): number | undefined => {
    const named = tokenContent(config[field]);
    if (named === undefined) {
      // Absent (or null, as Qwen's bos_token): the conventional token if the vocabulary has it.
      return config[field] === null ? undefined : tok.token_to_id(fallback);
    }
    const id = tok.token_to_id(named);
    if (id === undefined) {
      throw new FormatError(
        file,
        `${field} ${JSON.stringify(named)} is not in the tokenizer's vocabulary`,
      );
    }
    return id;
  };
  const eosId = specialId("eos_token", "</s>");
  if (eosId === undefined) {
    throw new FormatError(
      file,
      `no end-of-text token: tokenizer_config.json names no eos_token and "</s>" is not in the ` +
        `vocabulary`,
    );
  }
  // Without a BOS token (Qwen), sequences start with the end-of-text token, as lm-eval's
  // prefix_token_id does.
  const bos = specialId("bos_token", "<s>");
  const bosId = bos ?? eosId;

  return {
    kind: "hf",
    // What encodes: the library's major version and both files' contents.
    fingerprint: sha256Parts(
      `hf-tokenizer/${TOKENIZERS_LIBRARY}`,
      JSON.stringify(tokenizerJson),
      JSON.stringify(tokenizerConfig ?? null),
    ),
    vocabSize,
    bosId,
    eosId,
    hasBos: bos !== undefined,
    encode(text: string, options: { bos?: boolean } = {}): number[] {
      const ids = text.length === 0 ? [] : tok.encode(text, { add_special_tokens: false }).ids;
      return options.bos ? [bosId, ...ids] : ids;
    },
    decode(ids: readonly number[]): string {
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw new RangeError(
            `Cannot decode token id ${id}: outside the vocabulary [0, ${vocabSize})`,
          );
        }
      }
      if (ids.length === 0) return "";
      return tok.decode([...ids], { skip_special_tokens: true });
    },
  };
}

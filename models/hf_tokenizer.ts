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
import type { Tokenizer } from "./types.ts";

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The content of a special-token entry, written as a string or as `{content: ...}`. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (isRecord(value) && typeof value.content === "string") return value.content;
  return undefined;
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
 * @throws {FormatError} When the JSON is not a tokenizer the library can build, or BOS/EOS are
 *   not in the vocabulary.
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

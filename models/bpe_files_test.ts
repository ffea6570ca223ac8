import assert from "node:assert/strict";
import { FormatError } from "../core/errors.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { parseMerges, tokenizerJsonFromBpeFiles } from "./bpe_files.ts";
import { buildHfModel, type ModelFileReader, readHfTokenizer } from "./hf_model.ts";
import { hfTokenizer } from "./hf_tokenizer.ts";
import { loadModel } from "./load.ts";

const QWEN = "models/configs/Qwen/Qwen2.5-0.5B";
const WIKI = "data/text/wikitext2/wiki.test.raw";
const qwen = await needs(QWEN, WIKI);
const hf = await needs("models/stories260K-hf");

// A tiny byte-level vocabulary (Ġ is the space byte, Ċ the newline byte), its ids shifted by
// `offset`; expectations below are worked out by hand from the merge ranks.
const TINY_TOKENS = [
  "h",
  "e",
  "l",
  "o",
  "Ġ",
  "Ċ",
  "1",
  "2",
  "3",
  "w",
  "r",
  "d", // 0–11
  "ll",
  "he",
  "el",
  "hell",
  "hello",
  "Ġw",
  "Ġwo",
  "Ġwor",
  "Ġworl",
  "Ġworld",
  "12",
  "ĊĊ", // 12–23
]; // prettier-ignore
const TINY_MERGES = [
  "l l", // 0
  "h e", // 1
  "e l", // 2
  "he ll", // 3
  "hell o", // 4
  "Ġ w", // 5
  "Ġw o", // 6
  "Ġwo r", // 7
  "Ġwor l", // 8
  "Ġworl d", // 9
  "1 2", // 10
  "Ċ Ċ", // 11
].join("\n") + "\n";
const EOT = 24; // <|endoftext|>, only in added_tokens_decoder (as Qwen's special tokens)

function tinyVocab(offset = 0, extra: Record<string, number> = {}): Record<string, number> {
  return { ...extra, ...Object.fromEntries(TINY_TOKENS.map((t, i) => [t, i + offset])) };
}

function tinyConfig(cls: string, more: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tokenizer_class: cls,
    bos_token: null,
    eos_token: "<|endoftext|>",
    added_tokens_decoder: {
      [EOT]: {
        content: "<|endoftext|>",
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
        special: true,
      },
    },
    ...more,
  };
}

function tiny(cls: string, more: Record<string, unknown> = {}) {
  const config = tinyConfig(cls, more);
  return hfTokenizer(tokenizerJsonFromBpeFiles(tinyVocab(), TINY_MERGES, config), config, "tiny");
}

Deno.test("Qwen2Tokenizer files: hand-computed ids (merge priority, Ġ, newlines, digits, special)", () => {
  const tok = tiny("Qwen2Tokenizer");
  // h e l l o: "l l" (rank 0) before "h e" (1) and "e l" (2), then "he ll", "hell o".
  assert.deepEqual(tok.encode("hello"), [16]);
  // e l l: the lower-ranked "l l" wins over the leftmost "e l" -> [e, ll], not [el, l].
  assert.deepEqual(tok.encode("ell"), [1, 12]);
  // The space joins the following word (Ġworld); a leading space has no "Ġ h" merge.
  assert.deepEqual(tok.encode("hello world"), [16, 21]);
  assert.deepEqual(tok.encode(" hello"), [4, 16]);
  // \s*[\r\n]+ keeps "\n\n" together (ĊĊ); "world" without a space has no merges.
  assert.deepEqual(tok.encode("hello\n\nworld"), [16, 23, 9, 3, 10, 2, 11]);
  // \p{N}: one digit per piece, so the "1 2" merge never applies.
  assert.deepEqual(tok.encode("123"), [6, 7, 8]);
  // The special token is one token, splitting the text around it.
  assert.deepEqual(tok.encode("hello<|endoftext|>hello"), [16, EOT, 16]);
  assert.equal(tok.eosId, EOT);
  assert.equal(tok.hasBos, false);
  assert.equal(tok.vocabSize, 25);
  assert.equal(tok.decode([16, 21]), "hello world");
  assert.equal(tok.decode([16, 23, 9, 3, 10, 2, 11]), "hello\n\nworld");
  assert.equal(tok.decode([16, EOT, 16]), "hellohello", "special tokens are skipped");
});

Deno.test("GPT2Tokenizer files: GPT-2's regex (digit runs, single newlines) and add_prefix_space", () => {
  const tok = tiny("GPT2Tokenizer");
  // ` ?\p{N}+` keeps "123" whole: "1 2" merges.
  assert.deepEqual(tok.encode("123"), [22, 8]);
  // `\s+(?!\S)` leaves the last newline for `\s+`: two Ċ pieces, no ĊĊ.
  assert.deepEqual(tok.encode("hello\n\nworld"), [16, 5, 5, 9, 3, 10, 2, 11]);
  assert.deepEqual(tok.encode("hello world"), [16, 21]);
  assert.deepEqual(tiny("GPT2Tokenizer", { add_prefix_space: true }).encode("hello"), [4, 16]);
});

Deno.test("tokenizerJsonFromBpeFiles() writes the converters' components as tokenizer.json does", () => {
  const qwen = tokenizerJsonFromBpeFiles(
    tinyVocab(),
    TINY_MERGES,
    tinyConfig("Qwen2TokenizerFast"),
  );
  // As in Qwen's published tokenizer.json (trim_offsets as the converter leaves it).
  assert.deepEqual(qwen.normalizer, { type: "NFC" });
  assert.deepEqual(qwen.pre_tokenizer, {
    type: "Sequence",
    pretokenizers: [
      {
        type: "Split",
        pattern: {
          Regex:
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
        behavior: "Isolated",
        invert: false,
      },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  });
  assert.equal((qwen.decoder as { type: string }).type, "ByteLevel");
  assert.deepEqual(qwen.post_processor, {
    type: "ByteLevel",
    add_prefix_space: true,
    trim_offsets: false,
    use_regex: true,
  });
  const model = qwen.model as Record<string, unknown>;
  assert.equal(model.type, "BPE");
  assert.equal(model.unk_token, null);
  assert.equal(model.byte_fallback, false);
  assert.deepEqual((model.merges as unknown[])[3], ["he", "ll"]);
  assert.deepEqual(qwen.added_tokens, [{
    id: EOT,
    content: "<|endoftext|>",
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }]);
  const gpt2 = tokenizerJsonFromBpeFiles(tinyVocab(), TINY_MERGES, {
    tokenizer_class: "GPT2TokenizerFast",
    add_prefix_space: true,
  });
  assert.equal(gpt2.normalizer, null);
  assert.deepEqual(gpt2.pre_tokenizer, {
    type: "ByteLevel",
    add_prefix_space: true,
    trim_offsets: true,
    use_regex: true,
  });
});

Deno.test("tokenizerJsonFromBpeFiles() adds the config's special tokens missing from added_tokens_decoder", () => {
  // GPT-2's old configs: <|endoftext|> is in vocab.json and named only as bos/eos/unk.
  const vocab = tinyVocab(0, { "<|endoftext|>": 30 });
  const config = {
    tokenizer_class: "GPT2Tokenizer",
    bos_token: "<|endoftext|>",
    eos_token: { content: "<|endoftext|>", __type: "AddedToken" },
    additional_special_tokens: ["<extra>"],
  };
  const json = tokenizerJsonFromBpeFiles(vocab, TINY_MERGES, config);
  const added = (json.added_tokens as { id: number; content: string; special: boolean }[])
    .map(({ id, content, special }) => ({ id, content, special }));
  // The vocabulary's id when present, else the next id after the largest.
  assert.deepEqual(added, [
    { id: 30, content: "<|endoftext|>", special: true },
    { id: 31, content: "<extra>", special: true },
  ]);
  const tok = hfTokenizer(json, config, "gpt2");
  assert.deepEqual(tok.encode("hello<|endoftext|>"), [16, 30]);
});

Deno.test("parseMerges() skips #version and blank lines; tokenizerJsonFromBpeFiles() names bad input", () => {
  assert.deepEqual(parseMerges("#version: 0.2\nĠ t\r\n\nh e\n"), [["Ġ", "t"], ["h", "e"]]);
  assert.deepEqual(parseMerges("a b"), [["a", "b"]], "no #version line, no final newline");
  for (const bad of ["h e\nh e l\n", "h e\nh  e\n", "h e\nhe\n", "h e\n e\n"]) {
    assert.throws(() => parseMerges(bad, "merges.txt"), (e: unknown) => {
      assert.ok(e instanceof FormatError);
      assert.match(e.message, /^merges\.txt: line 2:/);
      return true;
    });
  }
  const build = (merges: string, config: unknown, vocab: unknown = tinyVocab()) =>
    tokenizerJsonFromBpeFiles(vocab, merges, config);
  assert.throws(
    () => build("#version: 0.2\nh e\nx y\n", tinyConfig("Qwen2Tokenizer")),
    /^FormatError: merges\.txt: merge 2 \("x y"\): "x" is not in vocab\.json/,
  );
  assert.throws(
    () => build(TINY_MERGES, tinyConfig("Qwen2Tokenizer"), { h: "0" }),
    /^FormatError: vocab\.json: token "h" has id "0"/,
  );
  for (const config of [tinyConfig("LlamaTokenizer"), {}]) {
    assert.throws(() => build(TINY_MERGES, config), (e: unknown) => {
      assert.ok(e instanceof FormatError);
      assert.match(e.message, /^tokenizer_config\.json: tokenizer_class ("LlamaTokenizer"|null)/);
      assert.match(
        e.message,
        /Qwen2Tokenizer, Qwen2TokenizerFast, GPT2Tokenizer, GPT2TokenizerFast/,
      );
      return true;
    });
  }
});

/** A file reader over in-memory files that records the names requested. */
function memoryReader(files: Record<string, string>, requested: string[]): ModelFileReader {
  return (name, optional) => {
    requested.push(name);
    if (!Object.hasOwn(files, name)) {
      if (optional) return Promise.resolve(undefined);
      return Promise.reject(new FormatError(name, "file not found"));
    }
    return Promise.resolve({ bytes: new TextEncoder().encode(files[name]), path: name });
  };
}

Deno.test("readHfTokenizer(): tokenizer.json first; vocab.json + merges.txt only without it", async () => {
  const config = JSON.stringify(tinyConfig("Qwen2Tokenizer"));
  const bpe = { "vocab.json": JSON.stringify(tinyVocab()), "merges.txt": TINY_MERGES };
  // A tokenizer.json with no merges at all: "hello" stays five tokens.
  const flat = JSON.stringify(
    tokenizerJsonFromBpeFiles(tinyVocab(), "", tinyConfig("Qwen2Tokenizer")),
  );

  let requested: string[] = [];
  const withJson = await readHfTokenizer(
    memoryReader({ "tokenizer.json": flat, "tokenizer_config.json": config, ...bpe }, requested),
  );
  assert.deepEqual(requested, ["tokenizer.json", "tokenizer_config.json"]);
  assert.deepEqual(withJson.encode("hello"), [0, 1, 2, 2, 3], "tokenizer.json is the one used");

  requested = [];
  const fromBpe = await readHfTokenizer(
    memoryReader({ "tokenizer_config.json": config, ...bpe }, requested),
  );
  assert.deepEqual(requested, [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
  ]);
  assert.deepEqual(fromBpe.encode("hello world"), [16, 21]);

  const incomplete: Record<string, string>[] = [
    { "tokenizer_config.json": config },
    { "vocab.json": bpe["vocab.json"] },
  ];
  for (const files of incomplete) {
    await assert.rejects(readHfTokenizer(memoryReader(files, [])), (e: unknown) => {
      assert.ok(e instanceof FormatError);
      for (const f of [/tokenizer\.json/, /vocab\.json/, /merges\.txt/]) assert.match(e.message, f);
      return true;
    });
  }
});

hf.test("loadModel() and buildHfModel() build the tokenizer from vocab.json + merges.txt", async () => {
  // stories260K's weights and config (BOS 1, EOS 2, 512 tokens) with a tiny GPT-2-style BPE.
  const src = sharedPath("models", "stories260K-hf");
  const dir = await Deno.makeTempDir({ prefix: "lowbit-bpe-" });
  try {
    for (const f of ["config.json", "model.safetensors"]) {
      await Deno.copyFile(`${src}/${f}`, `${dir}/${f}`);
    }
    const special = { "<unk>": 0, "<s>": 1, "</s>": 2 };
    await Deno.writeTextFile(`${dir}/vocab.json`, JSON.stringify(tinyVocab(3, special)));
    await Deno.writeTextFile(`${dir}/merges.txt`, `#version: 0.2\n${TINY_MERGES}`);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({
        tokenizer_class: "GPT2Tokenizer",
        bos_token: "<s>",
        eos_token: "</s>",
        unk_token: "<unk>",
      }),
    );
    const model = await loadModel(dir);
    assert.deepEqual(model.files.map((f) => f.path), [
      "config.json",
      "model.safetensors",
      "vocab.json",
      "merges.txt",
      "tokenizer_config.json",
    ]);
    assert.equal(model.tokenizer.bosId, 1);
    assert.equal(model.tokenizer.eosId, 2);
    assert.deepEqual(model.tokenizer.encode("hello world", { bos: true }), [1, 16 + 3, 21 + 3]);

    const inMemory = await buildHfModel(async (name, optional) => {
      try {
        return { bytes: await Deno.readFile(`${dir}/${name}`), path: name };
      } catch (e) {
        if (optional && e instanceof Deno.errors.NotFound) return undefined;
        throw e;
      }
    }, "tiny");
    assert.deepEqual(inMemory.files, model.files);
    assert.deepEqual(inMemory.tokenizer.encode("123</s>"), [22 + 3, 8 + 3, 2]);

    for (const f of ["vocab.json", "merges.txt", "tokenizer_config.json"]) {
      await Deno.remove(`${dir}/${f}`);
    }
    await assert.rejects(loadModel(dir), /tokenizer\.json.*vocab\.json \+ merges\.txt/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- An independent reference byte-level BPE, for the real Qwen2.5 files ----

/** GPT-2's `bytes_to_unicode()`: printable bytes map to themselves, the rest to U+0100…. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + n++);
  }
  return table;
}

/** Qwen2's split, with the contractions' case-insensitivity spelled out as character classes. */
const QWEN2_SPLIT =
  /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** Reference Qwen2 encoder: special tokens, NFC, regex pieces, GPT-2's `bpe()` over byte chars. */
function referenceQwen2(vocab: Record<string, number>, mergesText: string, config: {
  added_tokens_decoder: Record<string, { content: string }>;
}): (text: string) => number[] {
  const byteChar = bytesToUnicode();
  const ranks = new Map<string, number>();
  let rank = 0;
  for (const line of mergesText.split("\n")) {
    if (line.trim() === "" || line.startsWith("#version")) continue;
    ranks.set(line, rank++);
  }
  const special = new Map(
    Object.entries(config.added_tokens_decoder).map(([id, t]) => [t.content, Number(id)]),
  );
  const specialRe = new RegExp(
    [...special.keys()].sort((a, b) => b.length - a.length)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"),
    "g",
  );
  const cache = new Map<string, number[]>();
  const bpe = (piece: string): number[] => {
    const hit = cache.get(piece);
    if (hit) return hit;
    let word = [...new TextEncoder().encode(piece)].map((b) => byteChar[b]!);
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      const [first, second] = [word[best]!, word[best + 1]!];
      const next: string[] = [];
      for (let i = 0; i < word.length;) {
        if (word[i] === first && word[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else next.push(word[i++]!);
      }
      word = next;
    }
    const ids = word.map((t) => {
      const id = vocab[t];
      if (id === undefined) throw new Error(`reference: ${t} not in the vocabulary`);
      return id;
    });
    cache.set(piece, ids);
    return ids;
  };
  const plain = (text: string): number[] => {
    const ids: number[] = [];
    const normalized = text.normalize("NFC");
    let at = 0;
    for (const m of normalized.matchAll(QWEN2_SPLIT)) {
      if (m.index > at) ids.push(...bpe(normalized.slice(at, m.index)));
      ids.push(...bpe(m[0]));
      at = m.index + m[0].length;
    }
    if (at < normalized.length) ids.push(...bpe(normalized.slice(at)));
    return ids;
  };
  return (text) => {
    const ids: number[] = [];
    let at = 0;
    for (const m of text.matchAll(specialRe)) {
      ids.push(...plain(text.slice(at, m.index)), special.get(m[0])!);
      at = m.index + m[0].length;
    }
    return [...ids, ...plain(text.slice(at))];
  };
}

qwen.test("Qwen2.5 from vocab.json + merges.txt matches a reference BPE on WikiText-2", async () => {
  const dir = sharedPath(QWEN);
  const vocab = JSON.parse(await Deno.readTextFile(`${dir}/vocab.json`));
  const merges = await Deno.readTextFile(`${dir}/merges.txt`);
  const config = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
  const tok = hfTokenizer(tokenizerJsonFromBpeFiles(vocab, merges, config), config, "qwen");
  // Published: Qwen2.5 encodes "Hello world" as [9707, 1879]; no BOS, <|endoftext|> is EOS.
  assert.deepEqual(tok.encode("Hello world"), [9707, 1879]);
  assert.equal(tok.eosId, 151643);
  assert.equal(tok.hasBos, false);
  const ref = referenceQwen2(vocab, merges, config);
  const chat = "<|im_start|>user\nIt's 2024: don't   stop!\r\n\n<|im_end|><|endoftext|>";
  assert.deepEqual(tok.encode(chat), ref(chat));
  assert.equal(tok.encode(chat)[0], 151644, "<|im_start|> is one token");

  const lines = (await Deno.readTextFile(sharedPath(WIKI))).split("\n").slice(0, 3000);
  let tokens = 0;
  for (let i = 0; i < lines.length; i += 100) {
    const text = lines.slice(i, i + 100).join("\n");
    const ids = tok.encode(text);
    assert.deepEqual(ids, ref(text), `lines ${i + 1}–${i + 100}`);
    assert.equal(tok.decode(ids), text, `decode(encode()) of lines ${i + 1}–${i + 100}`);
    tokens += ids.length;
  }
  assert.ok(tokens > 150_000, `${tokens} tokens`);
});

/**
 * Tokenizer benchmark: loads three real tokenizers through the loaders' path
 * (`readHfTokenizer`: Llama-2's and Phi-3's `tokenizer.json`, Qwen2.5's `vocab.json` +
 * `merges.txt` converted by `models/bpe_files.ts`) and encodes the whole WikiText-2 raw test
 * text in one call, as the `wikitext2` perplexity task does. Prints load ms (read, parse, build),
 * encode s, tokens and chars/token. One run each, no warm-up: the numbers are a first-use cost.
 *
 * Usage: `deno run --allow-read --allow-env bench/tokenizers.ts [--chars N]` (files from the shared
 * fixtures, `LOWBIT_SHARED` or `../shared`; `--chars N`: encode only the text's first N characters,
 * a smoke run).
 *
 * @module
 */

import { readHfTokenizer } from "../models/hf_model.ts";
import { sharedPath } from "../testing/fixtures.ts";

const TOKENIZERS = [
  { name: "Llama-2 (tokenizer.json)", dir: "models/configs/meta-llama/Llama-2-7b-hf" },
  { name: "Phi-3 (tokenizer.json)", dir: "models/configs/microsoft/Phi-3-mini-4k-instruct" },
  { name: "Qwen2.5 (vocab.json + merges.txt)", dir: "models/configs/Qwen/Qwen2.5-0.5B" },
];

const ci = Deno.args.indexOf("--chars");
const chars = ci >= 0 ? Number(Deno.args[ci + 1]) : Infinity;
if (!(chars > 0)) {
  throw new RangeError(`--chars: expected a positive count, got ${Deno.args[ci + 1]}`);
}
const text = (await Deno.readTextFile(sharedPath("data/text/wikitext2/wiki.test.raw")))
  .slice(0, chars);
const rows: string[][] = [["tokenizer", "load ms", "encode s", "tokens", "chars/token"]];
for (const { name, dir } of TOKENIZERS) {
  const t0 = performance.now();
  const tok = await readHfTokenizer(async (file, optional) => {
    const path = sharedPath(dir, file);
    try {
      return { bytes: await Deno.readFile(path), path };
    } catch (e) {
      if (optional && e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  });
  const t1 = performance.now();
  const ids = tok.encode(text, { bos: false });
  const t2 = performance.now();
  rows.push([
    name,
    (t1 - t0).toFixed(0),
    ((t2 - t1) / 1000).toFixed(2),
    String(ids.length),
    (text.length / ids.length).toFixed(2),
  ]);
}
console.log(`WikiText-2 raw test: ${text.length} chars`);
const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
for (const [i, row] of rows.entries()) {
  console.log(`| ${row.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ")} |`);
  if (i === 0) console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
}

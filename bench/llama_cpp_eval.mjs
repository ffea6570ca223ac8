// Node side of bench/llama_cpp.ts: llama.cpp (node-llama-cpp's prebuilt CPU build) scores one
// perplexity window of a GGUF file with every position's logits computed, as llama.cpp's
// perplexity tool does, and prints one JSON line per repeat: {"seconds", "sumNll", "scored"}.
// Model loading and a short warm-up are not timed.
//
// Usage: node bench/llama_cpp_eval.mjs MODEL.gguf TOKENS.json THREADS REPEATS
// (run with NODE_PATH or from a directory whose node_modules holds node-llama-cpp).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const [gguf, tokensFile, threadsText = "2", repeatsText = "1"] = process.argv.slice(2);
const require = createRequire(`${process.env.LOWBIT_LLAMA_CPP ?? process.cwd()}/`);
const { getLlama } = await import(require.resolve("node-llama-cpp"));
const tokens = JSON.parse(readFileSync(tokensFile, "utf8"));
const threads = Number(threadsText);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: gguf });
const context = await model.createContext({
  contextSize: tokens.length,
  batchSize: tokens.length,
  threads,
});
const sequence = context.getSequence();
// Every position but the last asks for the logit of the next token, the top logit and the sum of
// exp(logit − top): llama.cpp computes the whole vocabulary's logits there, and the NLL follows.
const input = tokens.map((t, i) =>
  i + 1 < tokens.length
    ? [t, {
      generateNext: {
        logits: { filter: { tokens: [tokens[i + 1]], includeTop: 1 } },
        totalLogitWeight: true,
      },
    }]
    : t
);
await sequence.controlledEvaluate(input.slice(0, 32));
await sequence.clearHistory();
for (let r = 0; r < Number(repeatsText); r++) {
  const t0 = performance.now();
  const out = await sequence.controlledEvaluate(input);
  const seconds = (performance.now() - t0) / 1000;
  let sumNll = 0;
  for (let i = 0; i + 1 < tokens.length; i++) {
    const next = out[i].next;
    let top = -Infinity;
    for (const v of next.logits.values()) top = Math.max(top, v);
    sumNll += top + Math.log(next.totalLogitWeight) - next.logits.get(tokens[i + 1]);
  }
  console.log(JSON.stringify({ seconds, sumNll, scored: tokens.length - 1 }));
  await sequence.clearHistory();
}
await context.dispose();
await model.dispose();
await llama.dispose();

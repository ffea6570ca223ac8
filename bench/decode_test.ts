import assert from "node:assert/strict";
import { decodeBench } from "./decode.ts";
import { needs } from "../testing/fixtures.ts";

const stories = await needs("hf-mirror");

stories.test("decode benchmark prints both paths' tokens/s and their ratio (stories260K, brief)", async () => {
  const lines: string[] = [];
  const r = await decodeBench({ steps: 3, prompt: 16, pairs: 1, log: (l) => lines.push(l) });
  const text = lines.join("\n");
  assert.match(text, /kernels wasm-simd\+packed, 1 kernel thread;/);
  assert.match(text, /^fused linears: 35 of 35$/m);
  // Prefill plus 3 tokens: each of the 35 linears once per forward pass.
  assert.match(text, /^fused matmuls per packed run: 140$/m);
  assert.match(text, /^f32: +\d+\.\d tokens\/s decode \(prefill \d+\.\d ms\)$/m);
  assert.match(text, /^packed: \d+\.\d tokens\/s decode \(prefill \d+\.\d ms\)$/m);
  assert.match(
    text,
    /^ratio packed\/f32: \d+\.\d\d× \(median of the per-pair ratios \d+\.\d\d×\)$/m,
  );
  assert.match(text, /^greedy tokens equal before the first difference: \d of 3$/m);
  assert.match(text, /^load average: /m);
  assert.ok(r.f32.tokensPerS > 0 && r.packed.tokensPerS > 0);
  assert.equal(r.ratio, r.packed.tokensPerS / r.f32.tokensPerS);
  assert.deepEqual([r.fused, r.linears, r.steps, r.threads], [35, 35, 3, 1]);
});

import assert from "node:assert/strict";
import { forward } from "../../runners/forward.ts";
import { needs } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";
import { refKernels } from "../ref/mod.ts";
import type { Kernels } from "../types.ts";
import { wasmKernels } from "./mod.ts";

const stories = await needs("hf-mirror");

stories.test("stories260K logits with wasm kernels equal the reference kernels' within 1e-4", async () => {
  for (const fma of [false, true]) await compare(await wasmKernels({ fma }));
});

async function compare(kernels: Kernels): Promise<void> {
  const model = await stories260K();
  const text = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
  const tokens = [model.tokenizer.bosId, ...model.tokenizer.encode(text)];
  const want = forward(model, tokens, { kernels: refKernels });
  const got = forward(model, tokens, { kernels });
  assert.equal(got.length, want.length);
  let maxErr = 0;
  for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i]! - want[i]!));
  assert.ok(maxErr <= 1e-4, `${kernels.id}: max |Δlogit| = ${maxErr}`);
  // Decoding path (GEMV): last-position logits one token at a time.
  const last = forward(model, tokens.slice(0, 5), { kernels, logits: "last" });
  const lastRef = forward(model, tokens.slice(0, 5), { kernels: refKernels, logits: "last" });
  for (let i = 0; i < last.length; i++) {
    const err = Math.abs(last[i]! - lastRef[i]!);
    assert.ok(err <= 1e-4, `${kernels.id} logit ${i}: ${last[i]} vs ${lastRef[i]}`);
  }
}

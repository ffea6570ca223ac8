import assert from "node:assert/strict";
import { cellUnsupported, requireCalibration } from "./support.ts";
import { getMethod } from "./mod.ts";
import { chainMethods } from "./chain.ts";
import type { QuantConfig } from "./types.ts";

const q = (o: Partial<QuantConfig> = {}): QuantConfig => ({
  wBits: 4,
  aBits: 16,
  granularity: "group",
  groupSize: 128,
  symmetric: false,
  ...o,
});
const dense = {};
const moe = {
  moe: { nExperts: 8, topK: 2, expertHiddenDim: 16, normTopK: true, denseLayers: [] },
};

Deno.test("cellUnsupported: one message shape for bits, granularity and model kind", () => {
  const gptq = getMethod("gptq"), rtn = getMethod("rtn"), awq = getMethod("awq");
  assert.equal(cellUnsupported(gptq, dense, q()), undefined);
  assert.equal(cellUnsupported(gptq, moe, q({ granularity: "channel" })), undefined);
  assert.equal(
    cellUnsupported(gptq, dense, q({ granularity: "tensor" })),
    "gptq quantizes weights per output channel or per group, not per tensor",
  );
  assert.equal(cellUnsupported(rtn, dense, q({ granularity: "tensor" })), undefined);
  assert.match(cellUnsupported(rtn, dense, q({ wBits: 1 })) ?? "", /^rtn supports W.* not W1/);
  assert.equal(cellUnsupported(awq, moe, q()), "awq does not quantize Mixture-of-Experts models");
  assert.equal(
    cellUnsupported(getMethod("eaquant"), dense, q({ aBits: 4 })),
    "eaquant is for Mixture-of-Experts models",
  );
});

Deno.test("a chain runs what both steps run", () => {
  const chain = chainMethods(getMethod("awq"), getMethod("gptq"));
  assert.deepEqual(chain.granularities, ["group", "channel"]);
  assert.equal(chain.models, "dense");
  assert.match(cellUnsupported(chain, moe, q()) ?? "", /awq\+gptq does not quantize Mixture/);
  const rotated = chainMethods(getMethod("quarot"), getMethod("rtn"));
  assert.deepEqual(rotated.granularities, ["channel", "group"]);
  assert.equal(rotated.models, "dense");
  const open = chainMethods(getMethod("smoothquant"), getMethod("rtn"));
  assert.equal(open.granularities, undefined);
  assert.equal(open.models, undefined);
});

Deno.test("requireCalibration names the method when no set was given", () => {
  assert.throws(
    () => requireCalibration({} as Parameters<typeof requireCalibration>[0], "gptq"),
    /gptq needs a calibration set/,
  );
});

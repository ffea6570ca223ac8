import assert from "node:assert/strict";
import { withZeroRouters } from "../testing/moe.ts";
import { compareRouting, routingConsistency, type RoutingTally } from "./routing.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { loadModel } from "../models/load.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";

const moe = await needs("models/stories260K-moe");

Deno.test("compareRouting(): top-k agreement and router KL by hand", () => {
  // 2 tokens, 3 experts, top-2.
  const fp = {
    probs: Float64Array.from([0.5, 0.3, 0.2, 0.6, 0.3, 0.1]),
    chosen: Int32Array.from([0, 1, 0, 1]),
  };
  const q = {
    // Token 0: same set in another order; token 1: {0, 2}, one expert in common.
    probs: Float64Array.from([0.4, 0.4, 0.2, 0.5, 0.1, 0.4]),
    chosen: Int32Array.from([1, 0, 0, 2]),
  };
  const tally: RoutingTally = { pairs: 0, exact: 0, overlap: 0, kl: 0 };
  compareRouting(fp, q, 2, 3, 2, tally);
  assert.equal(tally.pairs, 2);
  assert.equal(tally.exact, 1);
  assert.equal(tally.overlap, 1 + 0.5);
  const kl0 = 0.5 * Math.log(0.5 / 0.4) + 0.3 * Math.log(0.3 / 0.4) + 0.2 * Math.log(0.2 / 0.2);
  const kl1 = 0.6 * Math.log(0.6 / 0.5) + 0.3 * Math.log(0.3 / 0.1) + 0.1 * Math.log(0.1 / 0.4);
  assert.ok(Math.abs(tally.kl - (kl0 + kl1)) < 1e-12);
});

moe.test("routingConsistency(): a model against itself agrees exactly; a zeroed router does not", async () => {
  const moe = await loadModel(sharedPath("models", "stories260K-moe"));
  const windows = [
    moe.tokenizer.encode("Once upon a time, there was a little dog.", { bos: true }),
  ];
  const same = routingConsistency(moe, moe, windows, refKernels);
  const m = (r: typeof same, id: string) => r.metrics.find((x) => x.metric === id)!.value;
  assert.equal(m(same, "router_topk_exact"), 1);
  assert.equal(m(same, "router_kl"), 0);
  const T = windows[0]!.length;
  for (const load of same.loadFp) assert.equal(load.reduce((a, b) => a + b, 0), 2 * T);
  assert.deepEqual(same.loadQuantized, same.loadFp);
  const zeroed = routingConsistency(moe, withZeroRouters(moe), windows, refKernels);
  // A zero router always picks experts 0 and 1 (ties to the lower index) with uniform probabilities.
  for (const load of zeroed.loadQuantized) assert.deepEqual(load, [T, T, 0, 0]);
  assert.ok(m(zeroed, "router_topk_exact") < 1);
  assert.ok(m(zeroed, "router_kl") > 0);
});

moe.test("a router producing NaN fails naming the layer", async () => {
  const moe = await loadModel(sharedPath("models", "stories260K-moe"));
  const layers = moe.weights.layers.map((l, i) => {
    if (i !== 3 || l.mlp.kind !== "moe") return l;
    const data = l.mlp.router.data.slice();
    data[0] = NaN;
    return { ...l, mlp: { ...l.mlp, router: { ...l.mlp.router, data } } };
  });
  const ids = moe.tokenizer.encode("A cat.", { bos: true });
  assert.throws(
    () =>
      routingConsistency(
        moe,
        { config: moe.config, weights: { ...moe.weights, layers } },
        [ids],
        refKernels,
      ),
    /MoE router of layer 3 produced NaN/,
  );
});

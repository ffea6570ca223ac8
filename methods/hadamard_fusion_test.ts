import assert from "node:assert/strict";
import { randomMatrix } from "../testing/random.ts";
import { randomDecoder, smallConfig } from "../testing/random_model.ts";
import {
  FALLBACK_SEED_OFFSET,
  fuseMatrixIntoInput,
  fuseOnlineRotations,
} from "./hadamard_fusion.ts";

Deno.test("fuseOnlineRotations: which sites get a Hadamard and which a dense orthogonal matrix", () => {
  const cases = [
    { c: {}, o: "hadamard", down: "hadamard", why: undefined },
    {
      c: { dim: 80, nHeads: 20, nKvHeads: 4, headDim: 4 },
      o: "orthogonal",
      down: "hadamard",
      why: /K = 20.*K = 40/,
    },
    {
      c: { nHeads: 14, headDim: 4, hiddenDim: 76 },
      o: "orthogonal",
      down: "orthogonal",
      why: /order 14/,
    },
    { c: { headDim: 12 }, o: "orthogonal", down: "hadamard", why: /power of two/ },
  ];
  for (const { c, o, down, why } of cases) {
    const config = smallConfig(c);
    const weights = randomDecoder(config, 1);
    const f = fuseOnlineRotations(config, weights, 41);
    assert.equal(f.o.onlineRotation, o, JSON.stringify(c));
    assert.equal(f.down.onlineRotation, down, JSON.stringify(c));
    if (why) assert.match(f.o.reason ?? "", why);
    if (o === "orthogonal") {
      assert.match(f.o.id, new RegExp(`seed ${41 + FALLBACK_SEED_OFFSET.o}`));
      // v is left as it is when o falls back (but o changes).
      assert.equal(f.weights.layers[0]!.v, weights.layers[0]!.v);
      assert.notDeepEqual(f.weights.layers[0]!.o.data, weights.layers[0]!.o.data);
    } else {
      assert.notDeepEqual(f.weights.layers[0]!.v.data, weights.layers[0]!.v.data);
    }
    assert.throws(() => fuseOnlineRotations(config, f.weights, 41), /already rotated/);
  }
});

Deno.test("fuseMatrixIntoInput: each row w becomes R·w", () => {
  const r = Float32Array.from([0, 1, -1, 0]); // rotation by 90°
  const m = { rows: 2, cols: 2, data: Float32Array.from([1, 2, 3, 4]) };
  assert.deepEqual([...fuseMatrixIntoInput(m, r).data], [2, -1, 4, -3]);
  assert.throws(() => fuseMatrixIntoInput(m, randomMatrix(9, 1)), /2×2/);
});

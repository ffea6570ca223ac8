import assert from "node:assert/strict";
import { shardIndices } from "./shard.ts";

Deno.test("shards partition the cells, balanced by cost, deterministically", () => {
  // Two expensive cells at even indices: a modulo split would put both in shard 0 (loads 9 and 3).
  const costs = [4, 1, 4, 1, 1, 1];
  const a = shardIndices(costs, { index: 0, count: 2 });
  const b = shardIndices(costs, { index: 1, count: 2 });
  // Longest first: cell 0 → s0, cell 2 → s1, then the 1s by least load, ties to the lower shard:
  // 1 → s0, 3 → s1, 4 → s0, 5 → s1.
  assert.deepEqual(a, [0, 1, 4]);
  assert.deepEqual(b, [2, 3, 5]);
  const load = (ix: number[]) => ix.reduce((s, i) => s + costs[i]!, 0);
  assert.equal(load(a), 6);
  assert.equal(load(b), 6);
  assert.deepEqual([...a, ...b].sort(), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(shardIndices(costs, { index: 0, count: 1 }), [0, 1, 2, 3, 4, 5]);
  assert.throws(() => shardIndices(costs, { index: 2, count: 2 }), /Shard 2\/2/);
});

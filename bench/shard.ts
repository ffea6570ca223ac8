/**
 * Sharding a matrix across CI jobs, balanced by expected cost.
 *
 * Cells are assigned greedily, most expensive first (longest-processing-time rule), each to the
 * shard with the least cost so far (ties to the lower shard, equal costs in matrix order), so the
 * partition is deterministic and every cell lands in exactly one shard. Within a shard, cells keep
 * their matrix order. A cell's expected cost is its method's `relativeCost` (relative to an RTN
 * cell, 1 when unset) — rough ratios measured on stories260K, enough to keep GPTQ and FlexRound
 * cells from piling up in one shard.
 *
 * @module
 */

/** Shard `index` of `count`. */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** Checks a shard; throws a `RangeError` naming it. */
export function validateShard(s: Shard): void {
  const { index, count } = s;
  if (
    !(Number.isInteger(count) && count >= 1 && Number.isInteger(index) && index >= 0 &&
      index < count)
  ) {
    throw new RangeError(`Shard ${index}/${count}: expected 0 ≤ index < count`);
  }
}

/** The indices (in matrix order) of the cells of `shard`, given each cell's expected cost. */
export function shardIndices(costs: readonly number[], shard: Shard): number[] {
  validateShard(shard);
  const order = costs.map((c, i) => ({ c, i })).sort((a, b) => b.c - a.c || a.i - b.i);
  const load = new Array<number>(shard.count).fill(0);
  const mine: number[] = [];
  for (const { c, i } of order) {
    let best = 0;
    for (let s = 1; s < shard.count; s++) if (load[s]! < load[best]!) best = s;
    load[best] = load[best]! + c;
    if (best === shard.index) mine.push(i);
  }
  return mine.sort((a, b) => a - b);
}

/**
 * The seeded random source of the RULER generators: `core/rng.ts` (pure-rand `xoroshiro128plus`
 * with `uniformInt`), whose routines stand for those RULER's Python calls (`randint`, `choice`,
 * `sample`, `shuffle`, `getrandbits(128)` for UUIDs), and the per-sample sub-seeds.
 *
 * Deviation (recorded in every RULER row): RULER draws from Python's Mersenne Twister and
 * CPython's sampling algorithms (and `numpy.random` for a few values), so the same seed does not
 * reproduce RULER's samples byte for byte; it reproduces ours, on every platform.
 *
 * @module
 */

import { RNG_NAME, SeededRng } from "../core/rng.ts";

/** Name of the generator, for protocols. */
export const RULER_RNG = `${RNG_NAME}; per-sample sub-seeds`;

/** The sub-seed of each sample: the first `count` draws of a generator seeded with `seed`. */
export function sampleSeeds(seed: number, count: number): number[] {
  const rng = new SeededRng(seed);
  return Array.from({ length: count }, () => rng.int(0, 0x7fffffff));
}

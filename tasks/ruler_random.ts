/**
 * The seeded random source of the RULER generators: pure-rand `xoroshiro128plus` with
 * `uniformInt`, wrapped in the few sampling routines RULER's Python calls (`randint`, `choice`,
 * `sample`, `shuffle`, `getrandbits(128)` for UUIDs).
 *
 * Deviation (recorded in every RULER row): RULER draws from Python's Mersenne Twister and
 * CPython's sampling algorithms (and `numpy.random` for a few values), so the same seed does not
 * reproduce RULER's samples byte for byte; it reproduces ours, on every platform.
 *
 * @module
 */

import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

/** Name of the generator, for protocols. */
export const RULER_RNG = "pure-rand xoroshiro128plus(seed), uniformInt; per-sample sub-seeds";

/** A seeded random source with the routines the RULER generators need. */
export class RulerRng {
  #rng: ReturnType<typeof xoroshiro128plus>;

  /** A generator seeded with the 32-bit integer `seed`. */
  constructor(seed: number) {
    this.#rng = xoroshiro128plus(seed | 0);
  }

  /** An integer uniform in [lo, hi] (both included, as Python's `random.randint`). */
  int(lo: number, hi: number): number {
    return uniformInt(this.#rng, lo, hi);
  }

  /** One element drawn uniformly. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Cannot pick from an empty list");
    return items[this.int(0, items.length - 1)]!;
  }

  /** `k` distinct elements in draw order (partial Fisher–Yates, as `random.sample`). */
  sample<T>(items: readonly T[], k: number): T[] {
    if (!Number.isInteger(k) || k < 0 || k > items.length) {
      throw new RangeError(`Cannot sample ${k} of ${items.length} items`);
    }
    const pool = items.slice();
    for (let i = 0; i < k; i++) {
      const j = this.int(i, pool.length - 1);
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    return pool.slice(0, k);
  }

  /** Shuffles `items` in place (Fisher–Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }

  /** A version-4 UUID from 128 random bits (as `uuid.UUID(int=getrandbits(128), version=4)`). */
  uuid(): string {
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i += 2) {
      const v = this.int(0, 0xffff);
      bytes[i] = v >>> 8;
      bytes[i + 1] = v & 0xff;
    }
    bytes[6] = (bytes[6]! & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8]! & 0x3f) | 0x80; // RFC 4122 variant
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
      hex.slice(20)
    }`;
  }
}

/** The sub-seed of each sample: the first `count` draws of a generator seeded with `seed`. */
export function sampleSeeds(seed: number, count: number): number[] {
  const rng = new RulerRng(seed);
  return Array.from({ length: count }, () => rng.int(0, 0x7fffffff));
}

/**
 * The project's one seeded random source: pure-rand `xoroshiro128plus(seed)` with its
 * `uniformInt` and `uniformFloat64`, and the sampling routines built on them (`randint`, `choice`,
 * `sample`, Fisher–Yates `shuffle`, a permutation, version-4 UUIDs). Calibration windows, AWQ's
 * document order, block-reconstruction batches, random rotations, RULER and the cloze task all
 * draw from it, so a seed reproduces the same numbers on every platform.
 *
 * Deviation where a reference draws from Python's Mersenne Twister or torch's generator: the same
 * seed does not reproduce the reference's draws; each user records this in its rows.
 *
 * Not drawn from it, on purpose: test data (`testing/random.ts`, `kernels/wasm/test_util.ts`: kept
 * independent of the code they test) and bulk benchmark data (`bench/synthetic_checkpoint.ts`,
 * `bench/gptq_layer.ts`: billions of normals from a few-instruction generator).
 *
 * @module
 */

import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

/** The generator and integer distribution, as protocols name them. */
export const RNG_NAME = "pure-rand xoroshiro128plus(seed), uniformInt";

/** A seeded random source: integers, floats and the sampling routines built on them. */
export class SeededRng {
  #rng: ReturnType<typeof xoroshiro128plus>;

  /** A generator seeded with the 32-bit integer `seed`. */
  constructor(seed: number) {
    this.#rng = xoroshiro128plus(seed | 0);
  }

  /** An integer uniform in [lo, hi] (both included, as Python's `random.randint`). */
  int(lo: number, hi: number): number {
    return uniformInt(this.#rng, lo, hi);
  }

  /** A float uniform in [0, 1) with 53 random bits (pure-rand `uniformFloat64`). */
  float64(): number {
    return uniformFloat64(this.#rng);
  }

  /** `0 … n − 1` in the order of {@linkcode SeededRng.shuffle}. */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
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

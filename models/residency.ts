/**
 * The residency budget: float32 copies of weights that are stored in another form (bf16/f16 on
 * disk, packed low-bit codes in memory) are materialized on access and kept in one
 * least-recently-used cache of bounded size, so a model larger than memory in float32 is
 * streamed block by block: the forward pass, calibration and the quantizers touch one decoder
 * block at a time, and older blocks fall out of the cache.
 *
 * Eviction only forgets the cache's reference: an array a caller still holds stays valid, and
 * the next access materializes it again (same values: materialization is deterministic).
 *
 * One number bounds every float32 copy of weights: {@linkcode WEIGHT_BUDGET},
 * `LOWBIT_RESIDENT_BYTES` (bytes) when set, else 1 GiB. A checkpoint whose float32 size is at
 * most half of it is converted at load (`hf_model.ts`); a larger one is streamed, with a quarter
 * of the budget for this cache (the copies the methods and the JavaScript kernels read) and half
 * for the WASM kernels' packed weight panels (`kernels/wasm/mod.ts`), which copy streamed
 * weights without making them resident here ({@linkcode Residency.peek}).
 *
 * @module
 */

const DEFAULT_BUDGET = 2 ** 30;

function budgetFromEnv(): number {
  let raw: string | undefined;
  try {
    raw = Deno.env.get("LOWBIT_RESIDENT_BYTES");
  } catch {
    return DEFAULT_BUDGET; // no --allow-env
  }
  if (raw === undefined || raw === "") return DEFAULT_BUDGET;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(
      `LOWBIT_RESIDENT_BYTES must be a positive integer number of bytes, got "${raw}"`,
    );
  }
  return n;
}

/** An LRU cache of materialized arrays, keyed by their owner, within a byte budget. */
export class Residency {
  #budget: number;
  #used = 0;
  #peak = 0;
  #loads = 0;
  readonly #entries = new Map<object, Float32Array>();

  /** A cache of at most `budget` bytes (default: a quarter of {@linkcode WEIGHT_BUDGET}). */
  constructor(budget?: number) {
    this.#budget = budget ?? Math.floor(WEIGHT_BUDGET / 4);
  }

  /** The byte budget. */
  get budget(): number {
    return this.#budget;
  }

  /** Changes the budget, evicting at once if over it. */
  set budget(bytes: number) {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw new RangeError(`residency budget must be a positive integer, got ${bytes}`);
    }
    this.#budget = bytes;
    this.#evict(0);
  }

  /** Bytes currently cached. */
  get used(): number {
    return this.#used;
  }

  /** Most bytes ever cached at once. */
  get peak(): number {
    return this.#peak;
  }

  /** How many times an array was materialized (cache misses). */
  get loads(): number {
    return this.#loads;
  }

  /** The cached array of `owner`, materializing it with `load` on a miss. */
  get(owner: object, load: () => Float32Array): Float32Array {
    const hit = this.#entries.get(owner);
    if (hit) {
      this.#entries.delete(owner);
      this.#entries.set(owner, hit);
      return hit;
    }
    const data = load();
    noteMaterialized(data.byteLength);
    this.#loads++;
    this.#evict(data.byteLength);
    this.#entries.set(owner, data);
    this.#used += data.byteLength;
    this.#peak = Math.max(this.#peak, this.#used);
    return data;
  }

  /** `owner`'s cached array, if any, without materializing it or counting a use. */
  peek(owner: object): Float32Array | undefined {
    return this.#entries.get(owner);
  }

  /** Forgets `owner`'s array, if cached. */
  drop(owner: object): void {
    const hit = this.#entries.get(owner);
    if (!hit) return;
    this.#entries.delete(owner);
    this.#used -= hit.byteLength;
  }

  /** Forgets everything. */
  clear(): void {
    this.#entries.clear();
    this.#used = 0;
  }

  #evict(incoming: number): void {
    for (const [owner, data] of this.#entries) {
      if (this.#used + incoming <= this.#budget) break;
      this.#entries.delete(owner);
      this.#used -= data.byteLength;
    }
  }
}

/**
 * Bytes of weight copies materialized since the last collection, and how many may be before the
 * next: streamed weights are read again and again, and V8 frees an array's memory only when its
 * (tiny) JavaScript object is collected, which the engine, seeing little JavaScript allocation,
 * postpones by hundreds of megabytes.
 */
let sinceCollect = 0;
const COLLECT_EVERY = 64 * 2 ** 20;

/**
 * Notes `bytes` of weight copies made for a one-off use; every {@linkcode COLLECT_EVERY} bytes
 * runs a garbage collection when the engine offers one (`--v8-flags=--expose-gc`, as the CLI's
 * tasks run), so the peak memory of a streamed model is its budgets, not its garbage.
 */
export function noteMaterialized(bytes: number): void {
  sinceCollect += bytes;
  if (sinceCollect < COLLECT_EVERY) return;
  sinceCollect = 0;
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * Bytes of float32 weight copies a run may hold: `LOWBIT_RESIDENT_BYTES`, else 1 GiB (see the
 * module documentation for how it is shared).
 */
export const WEIGHT_BUDGET: number = budgetFromEnv();

/** The process-wide residency budget every lazily materialized weight shares. */
export const residency: Residency = new Residency();

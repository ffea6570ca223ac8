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
 * The budget defaults to 1 GiB, or `LOWBIT_RESIDENT_BYTES` (bytes) when set. WASM weight panels
 * (`kernels/wasm/mod.ts`) are bounded by the same number.
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

  /** A cache of at most `budget` bytes (default: `LOWBIT_RESIDENT_BYTES` or 1 GiB). */
  constructor(budget?: number) {
    this.#budget = budget ?? budgetFromEnv();
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
    this.#loads++;
    this.#evict(data.byteLength);
    this.#entries.set(owner, data);
    this.#used += data.byteLength;
    this.#peak = Math.max(this.#peak, this.#used);
    return data;
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

/** The process-wide residency budget every lazily materialized weight shares. */
export const residency: Residency = new Residency();

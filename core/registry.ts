/**
 * Registries of methods, tasks, models and presets: lists of plain data with unique ids, and
 * lookup errors that suggest the closest id.
 *
 * @module
 */

/** Anything with a stable lower-case id. */
export interface HasId {
  readonly id: string;
}

/** A read-only collection of items addressed by id. */
export interface Registry<T extends HasId> {
  /** What the items are ("method", "task", …), used in error messages. */
  readonly kind: string;
  /** All items, sorted by id. */
  readonly items: readonly T[];
  /** Whether an item with this id exists. */
  has(id: string): boolean;
  /** The item with this id; throws a `TypeError` with a suggestion and the valid ids if absent. */
  get(id: string): T;
}

/** Levenshtein edit distance between two strings. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, sub));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The error for an unknown id: a "did you mean" when one id is close, and the full list. */
export function unknownIdError(kind: string, id: string, valid: readonly string[]): TypeError {
  let best: string | undefined;
  let bestD = Infinity;
  for (const v of valid) {
    const d = editDistance(id.toLowerCase(), v.toLowerCase());
    if (d < bestD) [best, bestD] = [v, d];
  }
  const hint = best !== undefined && bestD <= Math.max(2, Math.floor(id.length / 3))
    ? ` Did you mean "${best}"?`
    : "";
  return new TypeError(`Cannot find ${kind} "${id}".${hint} Available: ${valid.join(", ")}`);
}

/** Builds a registry; throws on duplicate ids. */
export function createRegistry<T extends HasId>(kind: string, items: readonly T[]): Registry<T> {
  const byId = new Map<string, T>();
  for (const item of items) {
    if (byId.has(item.id)) throw new TypeError(`Duplicate ${kind} id "${item.id}"`);
    byId.set(item.id, item);
  }
  const sorted = [...items].sort((a, b) => a.id.localeCompare(b.id));
  return {
    kind,
    items: sorted,
    has: (id) => byId.has(id),
    get(id) {
      const item = byId.get(id);
      if (!item) throw unknownIdError(kind, id, sorted.map((i) => i.id));
      return item;
    },
  };
}

/**
 * The error measure of the MatMulNBits oracles: max |ours − theirs| / max |ours|.
 *
 * @module
 */

/** max |ours − theirs| / max |ours|. */
export function relDiff(ours: Float32Array, theirs: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < ours.length; i++) {
    d = Math.max(d, Math.abs(ours[i]! - theirs[i]!));
    m = Math.max(m, Math.abs(ours[i]!));
  }
  return d / m;
}

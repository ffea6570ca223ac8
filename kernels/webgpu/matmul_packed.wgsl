// Fused dequant-matmul over packed low-bit codes (core/quantizer.ts `PackedWeight`):
// out[m][n] (+)= Σ_k x[m][k] · scale[n][g(k)] · (q[n][k] − zero[n][g(k)]).
// Row n holds `wordsPerRow` u32 words of floor(32 / bits) codes each, code j of a word at bit
// j · bits; g(k) = gidx[k] when useGidx = 1 (act-order), else k / groupSize. Weights are decoded
// while a tile is loaded (no dequantized copy), and rounded to f32 exactly as the reference does.
// The kernels (`matmul`, `matmul_blocked`, `gemv`) are matmul_tiles.wgsl, appended by shaders.ts.

struct Params {
  M: u32, N: u32, K: u32, acc: u32,
  bits: u32, groupSize: u32, wordsPerRow: u32, groupsPerRow: u32,
  useGidx: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> words: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> zeros: array<u32>;
@group(0) @binding(4) var<storage, read> gidx: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

fn weight(n: u32, k: u32) -> f32 {
  let per = 32u / p.bits;
  let mask = (1u << p.bits) - 1u;
  let q = (words[n * p.wordsPerRow + k / per] >> ((k % per) * p.bits)) & mask;
  var g = k / p.groupSize;
  if (p.useGidx == 1u) { g = gidx[k]; }
  let gi = n * p.groupsPerRow + g;
  return scales[gi] * (f32(q) - f32(zeros[gi]));
}

// Fused dequant-matmul over packed low-bit codes (core/quantizer.ts `PackedWeight`):
// out[m][n] (+)= Σ_k x[m][k] · scale[n][g(k)] · (q[n][k] − zero[n][g(k)]).
// Row n holds `wordsPerRow` u32 words of floor(32 / bits) codes each, code j of a word at bit
// j · bits; g(k) = gidx[k] when useGidx = 1 (act-order), else k / groupSize. Weights are decoded
// while a tile is loaded (no dequantized copy), and rounded to f32 exactly as the reference does.
// Same tiling as matmul.wgsl; `gemv_packed` for few tokens.

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

const TM = 64u;
const TN = 64u;
const TK = 16u;

var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;
var<workgroup> red: array<f32, 64>;

fn weight(n: u32, k: u32) -> f32 {
  let per = 32u / p.bits;
  let mask = (1u << p.bits) - 1u;
  let q = (words[n * p.wordsPerRow + k / per] >> ((k % per) * p.bits)) & mask;
  var g = k / p.groupSize;
  if (p.useGidx == 1u) { g = gidx[k]; }
  let gi = n * p.groupsPerRow + g;
  return scales[gi] * (f32(q) - f32(zeros[gi]));
}

fn store(m: u32, n: u32, v: f32) {
  let i = m * p.N + n;
  if (p.acc == 1u) {
    out[i] = out[i] + v;
  } else {
    out[i] = v;
  }
}

@compute @workgroup_size(16, 16)
fn matmul_packed(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    for (var e = li; e < TM * TK; e += 256u) {
      let r = e / TK;
      let c = e % TK;
      let gk = k0 + c;
      var a = 0.0;
      if (m0 + r < p.M && gk < p.K) { a = x[(m0 + r) * p.K + gk]; }
      As[c * TM + r] = a;
      var b = 0.0;
      if (n0 + r < p.N && gk < p.K) { b = weight(n0 + r, gk); }
      Bs[c * TN + r] = b;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = As[k * TM + lid.y * 4u + i];
        b[i] = Bs[k * TN + lid.x * 4u + i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x * 4u + j;
      if (m < p.M && n < p.N) { store(m, n, acc[i * 4u + j]); }
    }
  }
}

@compute @workgroup_size(64)
fn gemv_packed(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.M * p.N) { return; }
  let m = g / p.N;
  let n = g % p.N;
  var s = 0.0;
  for (var k = li; k < p.K; k += 64u) { s = fma(x[m * p.K + k], weight(n, k), s); }
  red[li] = s;
  workgroupBarrier();
  for (var half = 32u; half > 0u; half >>= 1u) {
    if (li < half) { red[li] = red[li] + red[li + half]; }
    workgroupBarrier();
  }
  if (li == 0u) { store(m, n, red[0]); }
}

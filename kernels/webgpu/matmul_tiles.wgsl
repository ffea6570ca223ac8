// The linear-layer kernels shared by matmul.wgsl (f32 weights) and matmul_packed.wgsl (packed
// low-bit codes): shaders.ts appends this file to each, which defines the bindings `x`, `out`,
// the uniform `p` (its first fields M, N, K, acc) and `fn weight(n, k) -> f32`, the weight of
// output n at input k. out[m][n] (+)= Σ_k x[m][k] · weight(n, k).
// `matmul`: 64×64 output tiles per workgroup of 16×16 threads, 4×4 outputs per thread, K in
// steps of 16 through workgroup memory, weights read once per tile. `gemv`: one workgroup of 64
// threads per output value, for few tokens (decoding), where tiles would sit mostly idle.

const TM = 64u;
const TN = 64u;
const TK = 16u;

var<workgroup> As: array<f32, 1024>; // [TK][TM]
var<workgroup> Bs: array<f32, 1024>; // [TK][TN]
var<workgroup> red: array<f32, 64>;

fn store(m: u32, n: u32, v: f32) {
  let i = m * p.N + n;
  if (p.acc == 1u) {
    out[i] = out[i] + v;
  } else {
    out[i] = v;
  }
}

@compute @workgroup_size(16, 16)
fn matmul(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  // Row i of this thread's 4×4 output block accumulates in a<i> (vec4s stay in registers).
  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  var a2 = vec4<f32>();
  var a3 = vec4<f32>();
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
      let ai = k * TM + lid.y * 4u;
      let bi = k * TN + lid.x * 4u;
      let b = vec4<f32>(Bs[bi], Bs[bi + 1u], Bs[bi + 2u], Bs[bi + 3u]);
      a0 = fma(vec4<f32>(As[ai]), b, a0);
      a1 = fma(vec4<f32>(As[ai + 1u]), b, a1);
      a2 = fma(vec4<f32>(As[ai + 2u]), b, a2);
      a3 = fma(vec4<f32>(As[ai + 3u]), b, a3);
    }
    workgroupBarrier();
  }
  var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x * 4u + j;
      if (m < p.M && n < p.N) { store(m, n, acc[i][j]); }
    }
  }
}

// `matmul_blocked`: the same product with no workgroup memory, each thread a 4×4 block read
// straight from global memory. Chosen on fallback (CPU) adapters such as llvmpipe, where
// workgroup barriers are expensive and caches make the tiles unnecessary (5× faster there).
@compute @workgroup_size(64)
fn matmul_blocked(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let id = (wid.x + wid.y * nwg.x) * 64u + li;
  let nb = (p.N + 3u) / 4u;
  let m0 = (id / nb) * 4u;
  let n0 = (id % nb) * 4u;
  if (m0 >= p.M) { return; }
  // Rows past the edge are clamped onto the last one (read, never stored).
  let r0 = min(m0, p.M - 1u) * p.K;
  let r1 = min(m0 + 1u, p.M - 1u) * p.K;
  let r2 = min(m0 + 2u, p.M - 1u) * p.K;
  let r3 = min(m0 + 3u, p.M - 1u) * p.K;
  let c0 = min(n0, p.N - 1u);
  let c1 = min(n0 + 1u, p.N - 1u);
  let c2 = min(n0 + 2u, p.N - 1u);
  let c3 = min(n0 + 3u, p.N - 1u);
  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  var a2 = vec4<f32>();
  var a3 = vec4<f32>();
  for (var k = 0u; k < p.K; k++) {
    let b = vec4<f32>(weight(c0, k), weight(c1, k), weight(c2, k), weight(c3, k));
    a0 = fma(vec4<f32>(x[r0 + k]), b, a0);
    a1 = fma(vec4<f32>(x[r1 + k]), b, a1);
    a2 = fma(vec4<f32>(x[r2 + k]), b, a2);
    a3 = fma(vec4<f32>(x[r3 + k]), b, a3);
  }
  var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      if (m0 + i < p.M && n0 + j < p.N) { store(m0 + i, n0 + j, acc[i][j]); }
    }
  }
}

@compute @workgroup_size(64)
fn gemv(
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

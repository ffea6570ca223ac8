// Per-position scores of a window from log-probabilities lp [rows][V] and, when hasRef = 1, the
// reference's ref [rows][V]: for t < scored, out[t] = (−lp[t][tokens[t+1]],
// KL(p_ref ‖ p) = Σ_i exp(ref[t][i]) · (ref[t][i] − lp[t][i]), 1 if argmax lp[t] = argmax ref[t]
// else 0, argmax lp[t]); argmax ties go to the lowest index. Without a reference KL is 0 and
// agreement 1. One workgroup of 256 threads per position.

struct Params { scored: u32, V: u32, hasRef: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> lp: array<f32>;
@group(0) @binding(1) var<storage, read> refLp: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> kl: array<f32, 256>;
var<workgroup> qv: array<f32, 256>;
var<workgroup> qi: array<u32, 256>;
var<workgroup> rv: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;

// Whether (v, i) beats (w, j) as an argmax: larger value, then lower index.
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
  return v > w || (v == w && i < j);
}

@compute @workgroup_size(256)
fn score(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.scored) { return; }
  let o = t * p.V;
  var k = 0.0;
  var bq = -3.4e38;
  var bqi = 0xffffffffu;
  var br = -3.4e38;
  var bri = 0xffffffffu;
  for (var i = li; i < p.V; i += 256u) {
    let q = lp[o + i];
    if (better(q, i, bq, bqi)) { bq = q; bqi = i; }
    if (p.hasRef == 1u) {
      let r = refLp[o + i];
      k += exp(r) * (r - q);
      if (better(r, i, br, bri)) { br = r; bri = i; }
    }
  }
  kl[li] = k;
  qv[li] = bq;
  qi[li] = bqi;
  rv[li] = br;
  ri[li] = bri;
  workgroupBarrier();
  for (var half = 128u; half > 0u; half >>= 1u) {
    if (li < half) {
      kl[li] = kl[li] + kl[li + half];
      if (better(qv[li + half], qi[li + half], qv[li], qi[li])) {
        qv[li] = qv[li + half];
        qi[li] = qi[li + half];
      }
      if (better(rv[li + half], ri[li + half], rv[li], ri[li])) {
        rv[li] = rv[li + half];
        ri[li] = ri[li + half];
      }
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    out[t * 4u] = -lp[o + tokens[t + 1u]];
    if (p.hasRef == 1u) {
      out[t * 4u + 1u] = kl[0];
      out[t * 4u + 2u] = select(0.0, 1.0, qi[0] == ri[0]);
    } else {
      out[t * 4u + 1u] = 0.0;
      out[t * 4u + 2u] = 1.0;
    }
    out[t * 4u + 3u] = f32(qi[0]);
  }
}

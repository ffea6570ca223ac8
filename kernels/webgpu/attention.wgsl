// Causal grouped-query attention: out[t][h] = Σ_{s ≤ start+t} softmax_s(q[t][h] · k[s][h/g] /
// √headDim) · v[s][h/g], g = nHeads / nKvHeads; q, out [T][nHeads·headDim], k, v
// [≥ start+T][nKvHeads·headDim]. One workgroup of 64 threads per (token, head): keys in chunks
// of 64 (one score per thread), an online softmax (running max and sum, rescaled per chunk), and
// each thread accumulating up to 4 of the headDim (≤ 256) output values.
// `attention_small` (headDim ≤ 32): one thread per (token, head) running the online softmax over
// its keys alone, with no workgroup barriers; far faster for small heads (tiny models), where most
// of the 64 threads above would idle.

struct Params { T: u32, start: u32, nHeads: u32, nKvHeads: u32, headDim: u32, scale: f32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> sc: array<f32, 64>;

@compute @workgroup_size(64)
fn attention(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.T * p.nHeads) { return; }
  let t = g / p.nHeads;
  let h = g % p.nHeads;
  let qDim = p.nHeads * p.headDim;
  let kvDim = p.nKvHeads * p.headDim;
  let qo = t * qDim + h * p.headDim;
  let ko = (h / (p.nHeads / p.nKvHeads)) * p.headDim;
  let n = p.start + t + 1u;
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, 4>;
  for (var s0 = 0u; s0 < n; s0 += 64u) {
    let cnt = min(64u, n - s0);
    let s = s0 + li;
    var dot = -3.0e38;
    if (li < cnt) {
      var d = 0.0;
      for (var i = 0u; i < p.headDim; i++) { d = fma(q[qo + i], k[s * kvDim + ko + i], d); }
      dot = d * p.scale;
    }
    sc[li] = dot;
    workgroupBarrier();
    var cm = m;
    for (var j = 0u; j < cnt; j++) { cm = max(cm, sc[j]); }
    workgroupBarrier();
    var e = 0.0;
    if (li < cnt) { e = exp(dot - cm); }
    sc[li] = e;
    workgroupBarrier();
    let f = exp(m - cm);
    var sum = 0.0;
    for (var j = 0u; j < cnt; j++) { sum += sc[j]; }
    l = l * f + sum;
    for (var jd = 0u; jd < 4u; jd++) {
      let d = li + 64u * jd;
      if (d < p.headDim) {
        var a = acc[jd] * f;
        for (var j = 0u; j < cnt; j++) { a = fma(sc[j], v[(s0 + j) * kvDim + ko + d], a); }
        acc[jd] = a;
      }
    }
    m = cm;
    workgroupBarrier();
  }
  for (var jd = 0u; jd < 4u; jd++) {
    let d = li + 64u * jd;
    if (d < p.headDim) { out[qo + d] = acc[jd] / l; }
  }
}

const SMALL_HEAD = 32u;

@compute @workgroup_size(64)
fn attention_small(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let g = (wid.x + wid.y * nwg.x) * 64u + li;
  if (g >= p.T * p.nHeads) { return; }
  let t = g / p.nHeads;
  let h = g % p.nHeads;
  let qDim = p.nHeads * p.headDim;
  let kvDim = p.nKvHeads * p.headDim;
  let qo = t * qDim + h * p.headDim;
  let ko = (h / (p.nHeads / p.nKvHeads)) * p.headDim;
  let n = p.start + t + 1u;
  var qv: array<f32, SMALL_HEAD>;
  for (var i = 0u; i < p.headDim; i++) { qv[i] = q[qo + i]; }
  var acc: array<f32, SMALL_HEAD>;
  var m = -3.0e38;
  var l = 0.0;
  for (var s = 0u; s < n; s++) {
    var d = 0.0;
    let kr = s * kvDim + ko;
    for (var i = 0u; i < p.headDim; i++) { d = fma(qv[i], k[kr + i], d); }
    d *= p.scale;
    if (d > m) {
      let f = exp(m - d);
      l *= f;
      for (var i = 0u; i < p.headDim; i++) { acc[i] *= f; }
      m = d;
    }
    let e = exp(d - m);
    l += e;
    for (var i = 0u; i < p.headDim; i++) { acc[i] = fma(e, v[kr + i], acc[i]); }
  }
  for (var i = 0u; i < p.headDim; i++) { out[qo + i] = acc[i] / l; }
}

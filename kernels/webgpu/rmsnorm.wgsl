// RMSNorm over the last dimension: out[t] = x[t] / sqrt(mean(x[t]²) + eps) · weight.
// One workgroup of 64 threads per token.

struct Params { T: u32, D: u32, eps: f32, _p: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn rmsnorm(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.T) { return; }
  let o = t * p.D;
  var s = 0.0;
  for (var i = li; i < p.D; i += 64u) { s = fma(x[o + i], x[o + i], s); }
  red[li] = s;
  workgroupBarrier();
  for (var half = 32u; half > 0u; half >>= 1u) {
    if (li < half) { red[li] = red[li] + red[li + half]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(p.D) + p.eps);
  for (var i = li; i < p.D; i += 64u) { out[o + i] = x[o + i] * inv * weight[i]; }
}

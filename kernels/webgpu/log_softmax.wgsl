// Log-softmax of each row of `rows` × V values, in place. One workgroup of 256 threads per row:
// the row's max, then Σ exp(x − max), then x − (max + log Σ).

struct Params { rows: u32, V: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn log_softmax(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let o = r * p.V;
  var mx = -3.4e38;
  for (var i = li; i < p.V; i += 256u) { mx = max(mx, x[o + i]); }
  red[li] = mx;
  workgroupBarrier();
  for (var half = 128u; half > 0u; half >>= 1u) {
    if (li < half) { red[li] = max(red[li], red[li + half]); }
    workgroupBarrier();
  }
  mx = red[0];
  workgroupBarrier();
  var s = 0.0;
  for (var i = li; i < p.V; i += 256u) { s += exp(x[o + i] - mx); }
  red[li] = s;
  workgroupBarrier();
  for (var half = 128u; half > 0u; half >>= 1u) {
    if (li < half) { red[li] = red[li] + red[li + half]; }
    workgroupBarrier();
  }
  let lse = mx + log(red[0]);
  for (var i = li; i < p.V; i += 256u) { x[o + i] = x[o + i] - lse; }
}

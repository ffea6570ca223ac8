// SwiGLU gate, in place: g[i] = silu(g[i]) · u[i], silu(a) = a / (1 + exp(−a)).

struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read_write> g: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn swiglu(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = (wid.x + wid.y * nwg.x) * 64u + li;
  if (i >= p.n) { return; }
  let a = g[i];
  g[i] = a / (1.0 + exp(-a)) * u[i];
}

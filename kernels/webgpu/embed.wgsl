// Token embeddings: out[t] = table[tokens[t]] ([T][dim]); ids were checked on the CPU.

struct Params { T: u32, dim: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> tokens: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn embed(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = (wid.x + wid.y * nwg.x) * 64u + li;
  if (i >= p.T * p.dim) { return; }
  let t = i / p.dim;
  out[i] = table[tokens[t] * p.dim + i % p.dim];
}

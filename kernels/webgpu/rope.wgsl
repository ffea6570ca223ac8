// Rotary position embeddings, in place on v [T][heads · headDim] at positions start … start+T−1,
// from the cos/sin table of models/rope.ts ([positions][headDim / 2]). style 0 = interleaved
// (llama2.c: pairs (2i, 2i+1)), 1 = half (Hugging Face rotate_half: pairs (i, i + headDim/2)).
// One thread per (token, head, pair).

struct Params { T: u32, heads: u32, headDim: u32, start: u32, style: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@group(0) @binding(1) var<storage, read> cosT: array<f32>;
@group(0) @binding(2) var<storage, read> sinT: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn rope(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let half = p.headDim / 2u;
  let id = (wid.x + wid.y * nwg.x) * 64u + li;
  if (id >= p.T * p.heads * half) { return; }
  let i = id % half;
  let h = (id / half) % p.heads;
  let t = id / (half * p.heads);
  let base = t * p.heads * p.headDim + h * p.headDim;
  var a = base + i;
  var b = a + half;
  if (p.style == 0u) {
    a = base + 2u * i;
    b = a + 1u;
  }
  let row = (p.start + t) * half + i;
  let cs = cosT[row];
  let sn = sinT[row];
  let x0 = v[a];
  let x1 = v[b];
  v[a] = x0 * cs - x1 * sn;
  v[b] = x0 * sn + x1 * cs;
}

// f32 linear layer: out[m][n] = Σ_k x[m][k] · w[n][k] (weights [out][in], as the models store
// them); with acc = 1, out[m][n] += that sum (a residual connection).
// The kernels (`matmul`, `matmul_blocked`, `gemv`) are matmul_tiles.wgsl, appended by shaders.ts.

struct Params { M: u32, N: u32, K: u32, acc: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn weight(n: u32, k: u32) -> f32 { return w[n * p.K + k]; }

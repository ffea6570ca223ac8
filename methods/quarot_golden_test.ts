/**
 * QuaRot's rotated weights against an independent numpy computation
 * (`testing/golden/quarot/generate.py`): a tiny Qwen2-style model (GQA, q/k/v biases, tied
 * classifier, ε 1e-6) with power-of-two sizes, the sign vector ε drawn by the script, the expected
 * rotated weights in float64 and the original model's float64 logits.
 */

import assert from "node:assert/strict";
import { forward } from "../runners/forward.ts";
import type { LlamaConfig, LlamaLayer, LlamaWeights, Matrix } from "../models/types.ts";
import { quarotTransform } from "./quarot.ts";
import { hadamardRotationFromSigns } from "./rotation.ts";

const DIR = new URL("../testing/golden/quarot/", import.meta.url);

interface Golden {
  config: LlamaConfig;
  tokens: number[];
  eps: number[];
  tensors: { name: string; shape: number[] }[];
  rotated: { name: string; shape: number[] }[];
}

async function readTensors<T extends Float32Array | Float64Array>(
  file: string,
  list: { name: string; shape: number[] }[],
  make: (b: ArrayBuffer, offset: number, n: number) => T,
  bytes: number,
): Promise<Map<string, T>> {
  const buf = (await Deno.readFile(new URL(file, DIR))).buffer;
  const out = new Map<string, T>();
  let off = 0;
  for (const { name, shape } of list) {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, make(buf, off, n));
    off += n * bytes;
  }
  assert.equal(off, buf.byteLength, `${file}: size`);
  return out;
}

Deno.test("quarot rotated weights equal an independent numpy computation to float32 rounding", async () => {
  const g = JSON.parse(await Deno.readTextFile(new URL("model.json", DIR))) as Golden;
  const w = await readTensors("weights.f32", g.tensors, (b, o, n) => new Float32Array(b, o, n), 4);
  const expected = await readTensors(
    "rotated.f64",
    g.rotated,
    (b, o, n) => new Float64Array(b, o, n),
    8,
  );
  const c = g.config;
  const mat = (name: string): Matrix => {
    const shape = g.tensors.find((t) => t.name === name)!.shape;
    return { rows: shape[0]!, cols: shape[1]!, data: w.get(name)! };
  };
  const embed = mat("embed");
  const layers = Array.from({ length: c.nLayers }, (_, l): LlamaLayer => {
    const p = `layers.${l}.`;
    return {
      attnNorm: w.get(p + "attn_norm")!,
      q: mat(p + "q"),
      k: mat(p + "k"),
      v: mat(p + "v"),
      o: mat(p + "o"),
      qBias: w.get(p + "q_bias")!,
      kBias: w.get(p + "k_bias")!,
      vBias: w.get(p + "v_bias")!,
      mlpNorm: w.get(p + "mlp_norm")!,
      mlp: { kind: "dense", gate: mat(p + "gate"), up: mat(p + "up"), down: mat(p + "down") },
    };
  });
  const weights: LlamaWeights = { embed, layers, norm: w.get("norm")!, lmHead: embed };
  const rotation = hadamardRotationFromSigns(Int8Array.from(g.eps));
  const t = quarotTransform(c, weights, {
    rotateMode: "hadamard",
    seed: 0,
    centerEmbeddings: false,
    rotation,
  });

  const got = (name: string): Float32Array | undefined => {
    const tw = t.weights;
    if (name === "embed") return tw.embed.data;
    if (name === "lm_head") return tw.lmHead.data;
    const [, l, kind] = name.split(".");
    const layer = tw.layers[Number(l)]!;
    const mlp = layer.mlp.kind === "dense" ? layer.mlp : undefined;
    switch (kind) {
      case "q":
      case "k":
      case "v":
      case "o":
        return layer[kind].data;
      case "q_bias":
        return layer.qBias;
      case "k_bias":
        return layer.kBias;
      case "v_bias":
        return layer.vBias;
      case "gate":
        return mlp?.gate?.data;
      case "up":
        return mlp?.up.data;
      case "down":
        return mlp?.down.data;
    }
    return undefined;
  };
  for (const { name } of g.rotated) {
    const a = got(name);
    const e = expected.get(name)!;
    assert.ok(a, name);
    assert.equal(a.length, e.length, name);
    // Each step (γ fold, residual rotation, Hadamard) rounds its float64 product once to
    // float32, as QuaRot casts back after each: half an ulp of the entry for the last step, and
    // for each of at most two earlier ones an error vector of norm ≤ 2^−24 of the row (or column)
    // it was in, which the orthogonal steps after it do not enlarge.
    const shape = g.rotated.find((r) => r.name === name)!.shape;
    const [rows, cols] = shape.length === 2 ? [shape[0]!, shape[1]!] : [1, shape[0]!];
    let norm = 0;
    for (let r = 0; r < rows; r++) {
      let s2 = 0;
      for (let j = 0; j < cols; j++) s2 += e[r * cols + j]! ** 2;
      norm = Math.max(norm, Math.sqrt(s2));
    }
    for (let j = 0; j < cols; j++) {
      let s2 = 0;
      for (let r = 0; r < rows; r++) s2 += e[r * cols + j]! ** 2;
      norm = Math.max(norm, Math.sqrt(s2));
    }
    for (let i = 0; i < e.length; i++) {
      const bound = 2 ** -24 * (Math.abs(e[i]!) + 2 * norm);
      assert.ok(Math.abs(a[i]! - e[i]!) <= bound, `${name}[${i}]: ${a[i]} vs ${e[i]}`);
    }
  }
  // The rotated float32 model with its online transforms reproduces the float64 logits.
  const ref = new Float64Array((await Deno.readFile(new URL("logits.f64", DIR))).buffer);
  const logits = forward(t, g.tokens);
  let d = 0, m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(logits[i]! - ref[i]!));
    m = Math.max(m, Math.abs(ref[i]!));
  }
  assert.ok(d <= 1e-4 * m, `max |Δlogit| ${d} of ${m}`);
  for (const v of [t.weights.norm, ...t.weights.layers.flatMap((l) => [l.attnNorm, l.mlpNorm])]) {
    assert.ok(v.every((x) => x === 1));
  }
});

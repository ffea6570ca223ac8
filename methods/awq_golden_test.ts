/**
 * AWQ's scale search against an independent numpy reimplementation
 * (`testing/awq_golden/generate.py`, written from llm-awq's and AutoAWQ's quantizer, groups and
 * scale search, not from this code): one random MHA Llama block and two windows of block inputs;
 * for every group (q/k/v with the whole attention as loss, v→o, gate/up with the whole MLP,
 * up→down) and both scale rules, the chosen grid index must be the reference's, the chosen scales
 * equal up to float32 rounding of the statistic (the block's intermediate values are computed in a
 * different order), and every grid point's loss close.
 */

import assert from "node:assert/strict";
import { refKernels } from "../kernels/ref/mod.ts";
import type { LlamaConfig, LlamaLayer, LlamaWeights, Matrix } from "../models/types.ts";
import { awqBlock } from "./awq_pipeline.ts";

const GOLDEN = new URL("../testing/awq_golden/awq_block.json", import.meta.url);

interface GroupExpected {
  index: number;
  ratio: number;
  losses: number[];
  scales: string;
  margin: number;
}

interface Golden {
  config: {
    dim: number;
    nHeads: number;
    headDim: number;
    hiddenDim: number;
    normEps: number;
    ropeTheta: number;
    bits: number;
    groupSize: number;
    grid: number;
  };
  weights: Record<string, string>;
  inputs: string[];
  tokens: number;
  expected: Record<"llm-awq" | "duo", Record<string, GroupExpected>>;
}

function f32(b64: string): Float32Array {
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

function setup(g: Golden) {
  const c = g.config;
  const config: LlamaConfig = {
    dim: c.dim,
    hiddenDim: c.hiddenDim,
    nLayers: 1,
    nHeads: c.nHeads,
    nKvHeads: c.nHeads,
    headDim: c.headDim,
    vocabSize: 4,
    maxSeqLen: g.tokens,
    normEps: c.normEps,
    ropeTheta: c.ropeTheta,
    ropeStyle: "half",
    tiedEmbeddings: false,
  };
  const m = (name: string, rows: number, cols: number): Matrix => ({
    rows,
    cols,
    data: f32(g.weights[name]!),
  });
  const layer: LlamaLayer = {
    attnNorm: f32(g.weights.attnNorm!),
    mlpNorm: f32(g.weights.mlpNorm!),
    q: m("q", c.dim, c.dim),
    k: m("k", c.dim, c.dim),
    v: m("v", c.dim, c.dim),
    o: m("o", c.dim, c.dim),
    mlp: {
      kind: "dense",
      gate: m("gate", c.hiddenDim, c.dim),
      up: m("up", c.hiddenDim, c.dim),
      down: m("down", c.dim, c.hiddenDim),
    },
  };
  const embed = { rows: 4, cols: c.dim, data: new Float32Array(4 * c.dim) };
  const weights: LlamaWeights & { layers: LlamaLayer[] } = {
    embed,
    layers: [layer],
    norm: new Float32Array(c.dim).fill(1),
    lmHead: embed,
  };
  return { config, weights };
}

Deno.test("AWQ scale search equals the numpy reference on one block: chosen ratio, scales and grid losses of every group, both scale rules", async () => {
  const g: Golden = JSON.parse(await Deno.readTextFile(GOLDEN));
  for (const rule of ["llm-awq", "duo"] as const) {
    const work = setup(g);
    const xs = g.inputs.map(f32);
    const r = awqBlock(work, 0, xs, {
      spec: {
        bits: g.config.bits,
        granularity: "group",
        groupSize: g.config.groupSize,
        symmetric: false,
      },
      rule: { duoScaling: rule === "duo", grid: g.config.grid },
      scale: true,
      propagate: "fp",
      quantize: false,
      kernels: refKernels,
    });
    assert.deepEqual(r.groups.map((x) => x.group), ["qkv", "o", "gateup", "down"]);
    for (const rec of r.groups) {
      const want = g.expected[rule][rec.group]!;
      const what = `${rule} ${rec.group}`;
      assert.equal(rec.ratio, want.ratio, `${what}: ratio`);
      rec.losses.forEach((l, i) => {
        const w = want.losses[i]!;
        assert.ok(Math.abs(l - w) <= 2e-5 * w, `${what}: loss ${i} ${l} vs ${w}`);
      });
      const s = f32(want.scales);
      assert.equal(rec.scales.length, s.length);
      for (let j = 0; j < s.length; j++) {
        assert.ok(
          Math.abs(rec.scales[j]! - s[j]!) <= 1e-6 * Math.abs(s[j]!),
          `${what}: scale ${j} ${rec.scales[j]} vs ${s[j]}`,
        );
      }
    }
  }
});

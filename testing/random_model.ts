/**
 * Test helper: small dense decoders with random weights of any shape the config describes
 * (biases, q/k norms, learned positions, ungated MLPs, tied classifier), from a seed.
 *
 * @module
 */

import type { LlamaConfig, LlamaLayer, LlamaWeights, Matrix } from "../models/types.ts";
import { randomMatrix } from "./random.ts";

/** A config for {@linkcode randomDecoder}: a small GQA Llama unless overridden. */
export function smallConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    dim: 32,
    hiddenDim: 48,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 8,
    vocabSize: 41,
    maxSeqLen: 64,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeStyle: "half",
    tiedEmbeddings: false,
    ...overrides,
  };
}

function matrix(rows: number, cols: number, seed: number, a = 1 / Math.sqrt(cols)): Matrix {
  return { rows, cols, data: randomMatrix(rows * cols, seed, a) };
}

/**
 * Random weights for `config`: norms 1 ± 0.3, linears uniform in ±1/√in, embeddings ±1; biases,
 * q/k norms and learned positions when the config asks for them; a tied classifier is the
 * embedding object itself.
 */
export function randomDecoder(config: LlamaConfig, seed: number): LlamaWeights {
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize } = config;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const vec = (n: number, s: number, a = 0.3) => randomMatrix(n, s, a);
  const norm = (n: number, s: number) => vec(n, s).map((x) => 1 + x);
  const layers: LlamaLayer[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const s = seed + 1000 * (l + 1);
    const qkNorm = config.qkNorm === "head"
      ? { qNorm: norm(headDim, s + 20), kNorm: norm(headDim, s + 21) }
      : config.qkNorm === "projection"
      ? { qNorm: norm(qDim, s + 20), kNorm: norm(kvDim, s + 21) }
      : {};
    layers.push({
      attnNorm: norm(dim, s),
      q: matrix(qDim, dim, s + 1),
      k: matrix(kvDim, dim, s + 2),
      v: matrix(kvDim, dim, s + 3),
      o: matrix(dim, qDim, s + 4),
      ...(config.qkvBias
        ? { qBias: vec(qDim, s + 10), kBias: vec(kvDim, s + 11), vBias: vec(kvDim, s + 12) }
        : {}),
      ...(config.oBias ? { oBias: vec(dim, s + 13) } : {}),
      ...qkNorm,
      mlpNorm: norm(dim, s + 5),
      mlp: {
        kind: "dense",
        ...(config.mlpGated === false ? {} : { gate: matrix(hiddenDim, dim, s + 6) }),
        up: matrix(hiddenDim, dim, s + 7),
        down: matrix(dim, hiddenDim, s + 8),
        ...(config.mlpBias
          ? {
            ...(config.mlpGated === false ? {} : { gateBias: vec(hiddenDim, s + 14) }),
            upBias: vec(hiddenDim, s + 15),
            downBias: vec(dim, s + 16),
          }
          : {}),
      },
    });
  }
  const embed = matrix(vocabSize, dim, seed + 1, 1);
  const positions = config.positions === "learned"
    ? { positions: matrix(config.maxSeqLen + 2, dim, seed + 2, 0.5) }
    : {};
  return {
    embed,
    layers,
    norm: norm(dim, seed + 3),
    ...positions,
    lmHead: config.tiedEmbeddings ? embed : matrix(vocabSize, dim, seed + 4),
  };
}

import assert from "node:assert/strict";
import {
  dequantizePacked,
  type PackedWeight,
  quantizeMatrix,
  type QuantizerSpec,
} from "../../core/quantizer.ts";
import { randomMatrix } from "../../testing/random.ts";
import { parseSafetensors } from "../safetensors.ts";
import {
  exportGptq,
  type GptqCheckpointFormat,
  gptqFormatFor,
  gptqGroupSize,
  gptqQuantizationConfig,
  gptqQuantizeConfig,
  importGptq,
} from "./gptq.ts";
import { withRoundedScales } from "./scale_rounding.ts";
import { namedEntries, serializeSafetensors } from "./safetensors_write.ts";
import type { RawTensor } from "./tensor.ts";

/** A hand-built packed weight (our layout: per row, floor(32/b) codes per word, LSB first). */
function handPacked(
  bits: number,
  codes: number[][],
  scales: number[][],
  zeros: number[][],
  groupSize: number,
): PackedWeight {
  const rows = codes.length, cols = codes[0]!.length;
  const per = Math.floor(32 / bits);
  const wordsPerRow = Math.ceil(cols / per);
  const words = new Uint32Array(rows * wordsPerRow);
  codes.forEach((row, r) =>
    row.forEach((q, c) => {
      const w = r * wordsPerRow + Math.floor(c / per);
      words[w] = (words[w]! + q * 2 ** ((c % per) * bits)) >>> 0;
    })
  );
  return {
    bits,
    rows,
    cols,
    groupSize,
    groupsPerRow: scales[0]!.length,
    wordsPerRow,
    words,
    scales: Float32Array.from(scales.flat()),
    zeros: Uint8Array.from(zeros.flat()),
  };
}

function int32s(t: RawTensor): number[] {
  const v = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return Array.from({ length: t.data.byteLength / 4 }, (_, i) => v.getInt32(4 * i, true));
}

Deno.test("exportGptq(): 4-bit hand case, codes 1..8 down the inputs → 0x87654321; qzeros across outputs", () => {
  // One output row, 8 inputs with codes 1..8, then a second row reversed; one group.
  const p = handPacked(
    4,
    [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]],
    [[0.5], [0.25]],
    [[3], [9]],
    8,
  );
  // Out must be a multiple of 8 for qzeros: pad to 8 identical-shaped rows by hand instead.
  assert.throws(
    () => exportGptq(p, { checkpointFormat: "gptq", name: "m" }),
    /m: GPTQ qzeros packs 8 outputs per word at 4 bits; out_features 2 is not a multiple of 8/,
  );
  const rows = Array.from(
    { length: 8 },
    (_, o) =>
      o === 0
        ? [1, 2, 3, 4, 5, 6, 7, 8]
        : o === 1
        ? [8, 7, 6, 5, 4, 3, 2, 1]
        : [0, 0, 0, 0, 0, 0, 0, 0],
  );
  const p8 = handPacked(4, rows, rows.map((_, o) => [o + 1]), rows.map((_, o) => [o + 1]), 8);
  const v1 = exportGptq(p8, { checkpointFormat: "gptq" });
  assert.deepEqual(v1.qweight.shape, [1, 8]);
  // 0x87654321 and 0x12345678 as int32.
  assert.deepEqual(int32s(v1.qweight).slice(0, 2), [0x87654321 - 2 ** 32, 0x12345678]);
  // Zero points 1..8 across the 8 outputs: v1 stores z − 1 → 0x76543210, v2 stores z → 0x87654321.
  assert.deepEqual(v1.qzeros.shape, [1, 1]);
  assert.deepEqual(int32s(v1.qzeros), [0x76543210]);
  const v2 = exportGptq(p8, { checkpointFormat: "gptq_v2" });
  assert.deepEqual(int32s(v2.qzeros), [0x87654321 - 2 ** 32]);
  assert.deepEqual(int32s(v1.g_idx), [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(v1.scales.data as Float16Array), [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("exportGptq(): 3-bit hand case, 32 codes j mod 8 → the 96-bit stream 0x88FAC688, 0xC688FAC6, 0xFAC688FA", () => {
  const row = Array.from({ length: 32 }, (_, j) => j % 8);
  const rows = Array.from({ length: 32 }, (_, o) => (o === 0 ? row : row.map((q) => 7 - q)));
  const zeros = Array.from({ length: 32 }, (_, o) => [(o % 7) + 1]);
  const p = handPacked(3, rows, zeros.map(() => [1]), zeros, 32);
  const t = exportGptq(p, { checkpointFormat: "gptq" });
  assert.deepEqual(t.qweight.shape, [3, 32]);
  const w = int32s(t.qweight);
  // Column 0 (output 0) holds words 0, 32, 64 of the [3][32] matrix.
  assert.deepEqual([w[0], w[32], w[64]].map((x) => x! >>> 0), [0x88fac688, 0xc688fac6, 0xfac688fa]);
  // Output 1 holds 7 − (j mod 8): 0x77053977, 0x39770539, 0x05397705 (computed the same way by hand).
  assert.deepEqual([w[1], w[33], w[65]].map((x) => x! >>> 0), [0x77053977, 0x39770539, 0x05397705]);
  // qzeros: outputs' v1 fields (o mod 7) across 32 outputs, 3 words.
  assert.deepEqual(t.qzeros.shape, [1, 3]);
  let stream = 0n;
  for (let o = 0; o < 32; o++) stream |= BigInt(o % 7) << BigInt(3 * o);
  const words = [0, 1, 2].map((k) => Number((stream >> BigInt(32 * k)) & 0xffffffffn));
  assert.deepEqual(int32s(t.qzeros).map((x) => x >>> 0), words);
});

/**
 * Independent decoder following AutoGPTQ's torch fallback (`qlinear_cuda_old.py` `forward`):
 * shift tables `wf`, arithmetic shifts, the 3-bit fix-ups of fields 10 and 21, and `+ 1` on
 * zeros for v1. Returns dequantized `[out][in]` weights in float32.
 */
function autoGptqDequant(
  t: Record<string, RawTensor>,
  bits: number,
  format: GptqCheckpointFormat,
): Float32Array {
  const [rowsPacked, outF] = t.qweight!.shape as [number, number];
  const inF = (rowsPacked * 32) / bits;
  const qw = int32s(t.qweight!);
  const qz = int32s(t.qzeros!);
  const G = t.scales!.shape[0]!;
  const zw = t.qzeros!.shape[1]!;
  const sv = new DataView(t.scales!.data.buffer, t.scales!.data.byteOffset);
  const gIdx = int32s(t.g_idx!);
  // Unpack one column of words (length n words, stride s) into fields, AutoGPTQ style.
  const unpack = (words: (k: number) => number, nWords: number): number[] => {
    const out: number[] = [];
    if (bits !== 3) {
      for (let k = 0; k < nWords; k++) {
        for (let j = 0; j < 32 / bits; j++) out.push((words(k) >> (bits * j)) & (2 ** bits - 1));
      }
      return out;
    }
    const wf = [
      [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
      [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
      [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0],
    ];
    for (let blk = 0; blk < nWords / 3; blk++) {
      const f = wf.map((row, r) => row.map((s) => (words(blk * 3 + r) >> s) & 7));
      f[0]![10] = (f[0]![10]! & 0x3) | ((f[1]![0]! << 2) & 0x4);
      f[1]![11] = (f[1]![11]! & 0x1) | ((f[2]![0]! << 1) & 0x6);
      out.push(...f[0]!.slice(0, 11), ...f[1]!.slice(1, 12), ...f[2]!.slice(1, 11));
    }
    return out;
  };
  const q: number[][] = []; // q[o][i]
  for (let o = 0; o < outF; o++) q.push(unpack((k) => qw[k * outF + o]!, rowsPacked));
  const z: number[][] = []; // z[g][o]
  for (let g = 0; g < G; g++) {
    z.push(unpack((k) => qz[g * zw + k]!, zw).map((v) => (format === "gptq" ? v + 1 : v)));
  }
  const w = new Float32Array(outF * inF);
  for (let o = 0; o < outF; o++) {
    for (let i = 0; i < inF; i++) {
      const g = gIdx[i]!;
      const s = sv.getFloat16(2 * (g * outF + o), true);
      w[o * inF + i] = s * (q[o]![i]! - z[g]![o]!);
    }
  }
  return w;
}

/** Random weights; with `positiveGroups`, every other group has no negative value (z = 0). */
function sampleWeight(
  rows: number,
  cols: number,
  spec: QuantizerSpec,
  seed: number,
  positiveGroups: boolean,
  actOrder: boolean,
): PackedWeight {
  const x = randomMatrix(rows * cols, seed);
  const gs = spec.granularity === "group" ? spec.groupSize! : cols;
  for (let r = 0; r < rows; r++) {
    for (let g0 = 0; g0 < cols; g0 += gs) {
      const gi = g0 / gs;
      if (positiveGroups && (r + gi) % 2 === 1) {
        for (let c = g0; c < Math.min(cols, g0 + gs); c++) {
          x[r * cols + c] = Math.abs(x[r * cols + c]!);
        }
      } else {
        x[r * cols + g0] = -1; // keeps z ≥ 1 under asymmetric min-max
        x[r * cols + g0 + 1] = 1;
      }
    }
  }
  const { packed } = quantizeMatrix(x, rows, cols, spec);
  if (!actOrder) return packed;
  // An act-order group map: a seeded permutation, groups of g consecutive positions in it.
  const perm = Array.from({ length: cols }, (_, i) => i);
  let s = seed;
  for (let i = cols - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const groupIndex = new Uint32Array(cols);
  perm.forEach((c, pos) => (groupIndex[c] = Math.floor(pos / gs)));
  return { ...packed, groupIndex };
}

Deno.test("GPTQ oracle §5.6: export → import and AutoGPTQ-style decode equal our dequantization with fp16 scales, bit for bit", () => {
  const [outF, inF] = [64, 160]; // 160 = 128 + 32: g128 has a short last group
  let cases = 0;
  for (const bits of [2, 3, 4, 8]) {
    for (const g of [32, 128, -1]) {
      for (const actOrder of [false, true]) {
        for (const format of ["gptq", "gptq_v2"] as const) {
          for (const sym of [false, true]) {
            const spec: QuantizerSpec = g === -1
              ? { bits, granularity: "channel", symmetric: sym }
              : { bits, granularity: "group", groupSize: g, symmetric: sym };
            const seed = 1 + bits * 100 + (g + 1) * 3 + (actOrder ? 7 : 0);
            const p = sampleWeight(outF, inF, spec, seed, format === "gptq_v2" && !sym, actOrder);
            const what = `b${bits} g${g} act${actOrder} ${format} sym${sym}`;
            const want = dequantizePacked(withRoundedScales(p));
            const t = exportGptq(p, { checkpointFormat: format });
            assert.equal(gptqGroupSize(p), g, what);
            assert.deepEqual(t.g_idx.shape, [inF]);
            // Independent decoder.
            const theirs = autoGptqDequant({ ...t }, bits, format);
            assert.deepEqual(theirs, want, `${what}: AutoGPTQ-style decode`);
            // Our reader.
            const back = importGptq({ ...t }, { bits, groupSize: g, checkpointFormat: format });
            assert.deepEqual(dequantizePacked(back.packed), want, `${what}: importGptq`);
            // Per-channel act-order has one group: its g_idx is all zeros, i.e. contiguous.
            assert.equal(back.packed.groupIndex !== undefined, actOrder && g !== -1, what);
            if (format === "gptq_v2" && !sym) assert.ok(p.zeros.includes(0), `${what} has z = 0`);
            cases++;
          }
        }
      }
    }
  }
  assert.equal(cases, 96);
});

Deno.test("exportGptq(): v1 refuses z = 0 and says what to do; gptqFormatFor picks v2 then", () => {
  const p = sampleWeight(
    8,
    32,
    { bits: 4, granularity: "group", groupSize: 32, symmetric: false },
    5,
    true,
    false,
  );
  assert.ok(p.zeros.includes(0));
  assert.throws(
    () => exportGptq(p, { checkpointFormat: "gptq", name: "model.layers.0.mlp.up_proj" }),
    /model\.layers\.0\.mlp\.up_proj: checkpoint_format "gptq" \(v1\) stores z − 1 and cannot hold zero point 0 \(output 1, group 0\); export as "gptq_v2"/,
  );
  assert.equal(gptqFormatFor(p), "gptq_v2");
  const sym = quantizeMatrix(randomMatrix(8 * 32, 6), 8, 32, {
    bits: 4,
    granularity: "channel",
    symmetric: true,
  });
  assert.equal(gptqFormatFor(sym.packed), "gptq");
  assert.throws(
    () => exportGptq({ ...sym.packed, bits: 5 } as PackedWeight, { checkpointFormat: "gptq_v2" }),
    /GPTQ stores 2, 3, 4 or 8 bits, got 5/,
  );
  const odd = quantizeMatrix(randomMatrix(8 * 36, 6), 8, 36, {
    bits: 4,
    granularity: "channel",
    symmetric: true,
  });
  assert.throws(
    () => exportGptq(odd.packed, { checkpointFormat: "gptq" }),
    /in_features 36 is not a multiple of 8/,
  );
});

Deno.test("importGptq(): through a safetensors file; bias; clear errors for wrong tensors", () => {
  const p = sampleWeight(
    32,
    64,
    { bits: 3, granularity: "group", groupSize: 32, symmetric: false },
    9,
    false,
    true,
  );
  const bias = randomMatrix(32, 10);
  const t = exportGptq(p, { checkpointFormat: "gptq", bias, name: "q_proj" });
  const file = serializeSafetensors(namedEntries("q_proj", { ...t }));
  const parsed = parseSafetensors(file, "x.safetensors");
  const get = (k: string) => parsed.get(`q_proj.${k}`);
  const back = importGptq(
    {
      qweight: get("qweight"),
      qzeros: get("qzeros"),
      scales: get("scales"),
      g_idx: get("g_idx"),
      bias: get("bias"),
    },
    { bits: 3, groupSize: 32, checkpointFormat: "gptq", name: "q_proj" },
  );
  assert.deepEqual(dequantizePacked(back.packed), dequantizePacked(withRoundedScales(p)));
  assert.deepEqual(back.bias, Float32Array.from(bias, (x) => Math.f16round(x)));
  assert.throws(
    () =>
      importGptq({ ...t, qzeros: undefined }, { bits: 3, groupSize: 32, checkpointFormat: "gptq" }),
    /tensor "weight.qzeros" is missing/,
  );
  assert.throws(
    () => importGptq({ ...t }, { bits: 3, groupSize: 16, checkpointFormat: "gptq", name: "k" }),
    /tensor "k.qzeros": shape \[2, 3\], expected \[4, 3\]/,
  );
  // A v1 zero field of 7 at 3 bits (what AutoGPTQ's packer leaves for z = 0) is refused.
  const bad = exportGptq(p, { checkpointFormat: "gptq_v2" });
  const zeros = new Int32Array(bad.qzeros.data.byteLength / 4).fill(-1);
  assert.throws(
    () =>
      importGptq({ ...bad, qzeros: { ...bad.qzeros, data: zeros } }, {
        bits: 3,
        groupSize: 32,
        checkpointFormat: "gptq",
      }),
    /v1 field 7 at group 0, output 0 means zero point 8, outside \[0, 7\]/,
  );
});

Deno.test("gptqQuantizeConfig() / gptqQuantizationConfig(): the fields loaders read", () => {
  const o = {
    bits: 4,
    groupSize: 128,
    descAct: true,
    sym: false,
    checkpointFormat: "gptq" as const,
  };
  assert.deepEqual(gptqQuantizeConfig(o), {
    bits: 4,
    group_size: 128,
    damp_percent: 0.01,
    desc_act: true,
    static_groups: false,
    sym: false,
    true_sequential: true,
    model_name_or_path: null,
    model_file_base_name: "model",
    quant_method: "gptq",
    checkpoint_format: "gptq",
  });
  assert.deepEqual(gptqQuantizationConfig({ ...o, groupSize: -1, dampPercent: 0.1 }), {
    quant_method: "gptq",
    bits: 4,
    group_size: -1,
    desc_act: true,
    sym: false,
    damp_percent: 0.1,
    true_sequential: true,
    static_groups: false,
    checkpoint_format: "gptq",
  });
  assert.throws(
    () => gptqQuantizationConfig({ ...o, bits: 6 }),
    /GPTQ stores 2, 3, 4 or 8 bits, got 6/,
  );
  assert.throws(
    () => gptqQuantizeConfig({ ...o, dampPercent: 1 }),
    /damp_percent must be in \(0, 1\), got 1/,
  );
});

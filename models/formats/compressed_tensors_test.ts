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
  compressedTensorsQuantizationConfig,
  exportCompressedTensors,
  importCompressedTensors,
} from "./compressed_tensors.ts";
import { withRoundedScales } from "./scale_rounding.ts";
import { namedEntries, serializeSafetensors } from "./safetensors_write.ts";
import type { FloatDtype, RawTensor } from "./tensor.ts";

function int32s(t: RawTensor): number[] {
  const v = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return Array.from({ length: t.data.byteLength / 4 }, (_, i) => v.getInt32(4 * i, true));
}

Deno.test("exportCompressedTensors(): codes [0..7] at 4 bits → weight_packed word 0x76543210 (oracle §5.7)", () => {
  // One row of 8 codes 0..7; our own layout happens to match, so build it by hand.
  const p: PackedWeight = {
    bits: 4,
    rows: 1,
    cols: 8,
    groupSize: 8,
    groupsPerRow: 1,
    wordsPerRow: 1,
    words: new Uint32Array([0x76543210]),
    scales: new Float32Array([0.5]),
    zeros: new Uint8Array([3]),
  };
  const t = exportCompressedTensors(p);
  assert.deepEqual(t.weight_packed.shape, [1, 1]);
  assert.deepEqual(int32s(t.weight_packed), [0x76543210]);
  assert.deepEqual(t.weight_scale.shape, [1, 1]);
  assert.deepEqual(Array.from(t.weight_scale.data as Float16Array), [0.5]);
  assert.deepEqual(Array.from(t.weight_shape.data as BigInt64Array), [1n, 8n]);
  // Asymmetric: the zero point 3 packed along dim 0 → [⌈1·4/32⌉, 1] = [1, 1] holding 3.
  assert.deepEqual(t.weight_zero_point!.shape, [1, 1]);
  assert.deepEqual(int32s(t.weight_zero_point!), [3]);
  assert.equal(t.weight_g_idx, undefined);
});

Deno.test("exportCompressedTensors(): zero points of 9 outputs pack down dim 0 per group column", () => {
  // 9 outputs × 2 groups at 4 bits: weight_zero_point is [⌈9·4/32⌉, 2] = [2, 2].
  const rows = 9, cols = 16;
  const zeros = new Uint8Array(rows * 2);
  for (let o = 0; o < rows; o++) {
    zeros[o * 2] = o + 1; // group 0: 1..9
    zeros[o * 2 + 1] = 15 - o; // group 1: 15..7
  }
  const p: PackedWeight = {
    bits: 4,
    rows,
    cols,
    groupSize: 8,
    groupsPerRow: 2,
    wordsPerRow: 2,
    words: new Uint32Array(rows * 2),
    scales: new Float32Array(rows * 2).fill(1),
    zeros,
  };
  const t = exportCompressedTensors(p);
  assert.deepEqual(t.weight_zero_point!.shape, [2, 2]);
  // Row-major [2][2]: word (0, g0) = 0x87654321, (0, g1) = 0x89ABCDEF, (1, g0) = 9, (1, g1) = 7.
  assert.deepEqual(int32s(t.weight_zero_point!).map((x) => x >>> 0), [
    0x87654321,
    0x89abcdef,
    9,
    7,
  ]);
});

/**
 * Independent decoder after compressed-tensors `unpack_from_int32` + `dequantize`: element i at
 * global bit i·b (word i·b/32, low bits then overflow into the next word), minus 2^(b−1) to signed,
 * zero point unpacked along dim 0 (transpose, unpack, transpose back), `(q_s − zp_s)·scale`.
 */
function ctDequant(t: Record<string, RawTensor>, bits: number, symmetric: boolean): Float32Array {
  const shape = Array.from(t.weight_shape!.data as BigInt64Array, Number);
  const [outF, inF] = shape as [number, number];
  const G = t.weight_scale!.shape[1]!;
  const unpackRow = (words: number[], n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const start = i * bits, w = Math.floor(start / 32), off = start % 32;
      const lo = Math.min(32 - off, bits);
      let v = (words[w]! >>> off) & (2 ** lo - 1);
      if (lo < bits) v |= (words[w + 1]! & (2 ** (bits - lo) - 1)) << lo;
      out.push(v - 2 ** (bits - 1));
    }
    return out;
  };
  const packed = int32s(t.weight_packed!);
  const wpr = t.weight_packed!.shape[1]!;
  const qs = Array.from(
    { length: outF },
    (_, o) => unpackRow(packed.slice(o * wpr, (o + 1) * wpr), inF),
  );
  let zps: number[][] = Array.from({ length: outF }, () => new Array(G).fill(0)); // zps[o][g]
  if (!symmetric) {
    const zp = int32s(t.weight_zero_point!);
    const zr = t.weight_zero_point!.shape[0]!;
    const cols = Array.from(
      { length: G },
      (_, g) => unpackRow(Array.from({ length: zr }, (_, r) => zp[r * G + g]!), outF),
    );
    zps = Array.from({ length: outF }, (_, o) => cols.map((c) => c[o]!));
  }
  const gIdx = t.weight_g_idx
    ? int32s(t.weight_g_idx)
    : Array.from({ length: inF }, (_, i) => Math.floor(i / Math.ceil(inF / G)));
  const scale = (o: number, g: number) => {
    const v = new DataView(t.weight_scale!.data.buffer, t.weight_scale!.data.byteOffset);
    const k = o * G + g;
    switch (t.weight_scale!.dtype) {
      case "F16":
        return v.getFloat16(2 * k, true);
      case "F32":
        return v.getFloat32(4 * k, true);
      default:
        return new Float32Array(new Uint32Array([v.getUint16(2 * k, true) << 16]).buffer)[0]!;
    }
  };
  const w = new Float32Array(outF * inF);
  for (let o = 0; o < outF; o++) {
    for (let i = 0; i < inF; i++) {
      const g = gIdx[i]!;
      w[o * inF + i] = (qs[o]![i]! - zps[o]![g]!) * scale(o, g);
    }
  }
  return w;
}

Deno.test("compressed-tensors oracle §5.7: export → import and a compressed-tensors-style decode equal our dequantization, bit for bit", () => {
  // 37 outputs (zero points straddle nothing at 4/8 bits but leave a partial word), 96 inputs.
  const [outF, inF] = [37, 96];
  let cases = 0;
  for (const bits of [4, 8]) {
    for (const g of [32, 128, -1]) {
      for (const sym of [false, true]) {
        for (const actOrder of [false, true]) {
          for (const dtype of ["F16", "BF16", "F32"] as FloatDtype[]) {
            const spec: QuantizerSpec = g === -1 || g >= inF
              ? { bits, granularity: "channel", symmetric: sym }
              : { bits, granularity: "group", groupSize: g, symmetric: sym };
            let p = quantizeMatrix(
              randomMatrix(outF * inF, bits * 31 + g + (sym ? 1 : 0)),
              outF,
              inF,
              spec,
            )
              .packed;
            if (actOrder && p.groupsPerRow > 1) {
              // Group map of a reversed column order: column c is at position inF − 1 − c.
              const groupIndex = Uint32Array.from(
                { length: inF },
                (_, c) => Math.floor((inF - 1 - c) / p.groupSize),
              );
              p = { ...p, groupIndex };
            }
            const what = `b${bits} g${g} sym${sym} act${actOrder} ${dtype}`;
            const want = dequantizePacked(withRoundedScales(p, dtype));
            const t = exportCompressedTensors(p, { scaleDtype: dtype });
            assert.equal(t.weight_zero_point === undefined, sym, what);
            assert.equal(t.weight_g_idx !== undefined, actOrder && p.groupsPerRow > 1, what);
            assert.deepEqual(
              ctDequant({ ...t } as Record<string, RawTensor>, bits, sym),
              want,
              `${what}: decode`,
            );
            const back = importCompressedTensors({ ...t }, {
              bits,
              groupSize: p.groupsPerRow > 1 ? p.groupSize : null,
              symmetric: sym,
            });
            assert.deepEqual(dequantizePacked(back), want, `${what}: import`);
            cases++;
          }
        }
      }
    }
  }
  assert.equal(cases, 72);
});

Deno.test("compressed-tensors: other bit-widths refused naming the versions issue; symmetric mismatch; file round trip", () => {
  const p3 = quantizeMatrix(randomMatrix(4 * 32, 1), 4, 32, {
    bits: 3,
    granularity: "channel",
    symmetric: false,
  })
    .packed;
  assert.throws(
    () => exportCompressedTensors(p3, { name: "mlp.down_proj" }),
    /mlp\.down_proj: compressed-tensors pack-quantized is exported for 4 or 8 bits only, got 3: the layout of other widths changed between versions \(≤ 0\.17\.x/,
  );
  assert.throws(
    () => importCompressedTensors({}, { bits: 2, symmetric: true }),
    /4 or 8 bits only, got 2/,
  );
  const asym = quantizeMatrix(randomMatrix(4 * 32, 2), 4, 32, {
    bits: 4,
    granularity: "channel",
    symmetric: false,
  })
    .packed;
  assert.throws(
    () => exportCompressedTensors(asym, { symmetric: true, name: "q" }),
    /q: a symmetric scheme stores no zero point \(it is 8 at 4 bits\), but output \d+, group 0 has zero point \d+/,
  );
  const t = exportCompressedTensors(asym, { name: "q" });
  const file = serializeSafetensors(namedEntries("model.q", { ...t }));
  const parsed = parseSafetensors(file, "f");
  const get = (k: string) => parsed.get(`model.q.${k}`);
  const back = importCompressedTensors(
    {
      weight_packed: get("weight_packed"),
      weight_scale: get("weight_scale"),
      weight_zero_point: get("weight_zero_point"),
      weight_shape: get("weight_shape"),
    },
    { bits: 4, symmetric: false, name: "model.q" },
  );
  assert.deepEqual(dequantizePacked(back), dequantizePacked(withRoundedScales(asym)));
  assert.throws(
    () =>
      importCompressedTensors({ ...t, weight_zero_point: undefined }, {
        bits: 4,
        symmetric: false,
        name: "model.q",
      }),
    /tensor "model\.q\.weight_zero_point" is missing/,
  );
  assert.throws(
    () =>
      importCompressedTensors({ ...t }, {
        bits: 4,
        groupSize: 16,
        symmetric: false,
        name: "model.q",
      }),
    /tensor "model\.q\.weight_scale": shape \[4, 1\], expected \[4, 2\]/,
  );
});

Deno.test("compressedTensorsQuantizationConfig(): group and channel schemes", () => {
  const c = compressedTensorsQuantizationConfig({ bits: 4, groupSize: 128, symmetric: false });
  assert.deepEqual(c, {
    quant_method: "compressed-tensors",
    format: "pack-quantized",
    quantization_status: "compressed",
    ignore: ["lm_head"],
    kv_cache_scheme: null,
    global_compression_ratio: null,
    config_groups: {
      group_0: {
        targets: ["Linear"],
        weights: {
          num_bits: 4,
          type: "int",
          symmetric: false,
          strategy: "group",
          group_size: 128,
          dynamic: false,
          actorder: null,
          observer: "minmax",
        },
        input_activations: null,
        output_activations: null,
      },
    },
  });
  const ch = compressedTensorsQuantizationConfig({
    bits: 8,
    groupSize: null,
    symmetric: true,
    actorder: "group",
  });
  const w = (ch.config_groups as { group_0: { weights: Record<string, unknown> } }).group_0.weights;
  assert.equal(w.strategy, "channel");
  assert.equal(w.group_size, null);
  assert.equal(w.actorder, "group");
});

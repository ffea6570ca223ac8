import assert from "node:assert/strict";
import { dequantizePacked, type PackedWeight, quantizeMatrix } from "../../core/quantizer.ts";
import { randomMatrix } from "../../testing/random.ts";
import { awqQuantizationConfig, exportAwqGemm, importAwqGemm } from "./awq.ts";
import { withRoundedScales } from "./scale_rounding.ts";
import type { RawTensor } from "./tensor.ts";

function int32s(t: RawTensor): number[] {
  const v = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return Array.from({ length: t.data.byteLength / 4 }, (_, i) => v.getInt32(4 * i, true));
}

Deno.test("exportAwqGemm(): hand case, outputs 0..7 holding codes 0..7 → 0x75316420 (AWQ order 0,2,4,6,1,3,5,7)", () => {
  // 8 outputs × 8 inputs; output o has code o at input 0 and code 7 − o elsewhere; zero of o is o.
  const codes = (o: number, i: number) => (i === 0 ? o : 7 - o);
  const words = new Uint32Array(8);
  for (let o = 0; o < 8; o++) {
    for (let i = 0; i < 8; i++) words[o] = (words[o]! + codes(o, i) * 16 ** i) >>> 0;
  }
  const p: PackedWeight = {
    bits: 4,
    rows: 8,
    cols: 8,
    groupSize: 8,
    groupsPerRow: 1,
    wordsPerRow: 1,
    words,
    scales: new Float32Array(8).fill(0.5),
    zeros: Uint8Array.from({ length: 8 }, (_, o) => o),
  };
  const t = exportAwqGemm(p);
  assert.deepEqual(t.qweight.shape, [8, 1]);
  const w = int32s(t.qweight).map((x) => x >>> 0);
  assert.equal(w[0], 0x75316420);
  // Inputs 1..7 hold 7 − o: slots read 7,5,3,1,6,4,2,0 → 0x02461357.
  assert.equal(w[1], 0x02461357);
  assert.deepEqual(int32s(t.qzeros).map((x) => x >>> 0), [0x75316420]);
});

/**
 * Independent decoder after AutoAWQ `packing_utils.py`: unpack each word into 8 nibbles
 * (shifts 0, 4, …, 28), reorder each block of 8 with AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]
 * (column j takes unpacked column REVERSE[j]), then `(iweight − izeros)·scales` with groups
 * repeated along the inputs.
 */
function awqDequant(t: Record<string, RawTensor>, g: number): Float32Array {
  const REVERSE = [0, 4, 1, 5, 2, 6, 3, 7];
  const unpackRows = (x: RawTensor) => {
    const [rows, wpr] = x.shape as [number, number];
    const words = int32s(x);
    return Array.from({ length: rows }, (_, r) => {
      const flat: number[] = [];
      for (let c = 0; c < wpr; c++) {
        for (let s = 0; s < 32; s += 4) flat.push((words[r * wpr + c]! >> s) & 15);
      }
      return flat.map((_, j) => flat[Math.floor(j / 8) * 8 + REVERSE[j % 8]!]!);
    });
  };
  const iw = unpackRows(t.qweight!); // [in][out]
  const iz = unpackRows(t.qzeros!); // [G][out]
  const [inF, outF] = [iw.length, iw[0]!.length];
  const sv = new DataView(t.scales!.data.buffer, t.scales!.data.byteOffset);
  const w = new Float32Array(outF * inF);
  for (let i = 0; i < inF; i++) {
    const gi = Math.floor(i / g);
    for (let o = 0; o < outF; o++) {
      w[o * inF + i] = (iw[i]![o]! - iz[gi]![o]!) * sv.getFloat16(2 * (gi * outF + o), true);
    }
  }
  return w;
}

Deno.test("AWQ GEMM: export → AutoAWQ-style decode and importAwqGemm equal our dequantization with fp16 scales", () => {
  for (const g of [32, 64, -1]) {
    for (const sym of [false, true]) {
      const [outF, inF] = [24, 128];
      const spec = g === -1
        ? { bits: 4, granularity: "channel" as const, symmetric: sym }
        : { bits: 4, granularity: "group" as const, groupSize: g, symmetric: sym };
      const p = quantizeMatrix(randomMatrix(outF * inF, 40 + g), outF, inF, spec).packed;
      const bias = randomMatrix(outF, 3);
      const want = dequantizePacked(withRoundedScales(p));
      const t = exportAwqGemm(p, { bias });
      assert.deepEqual(t.qweight.shape, [inF, outF / 8]);
      assert.deepEqual(
        awqDequant({ ...t } as Record<string, RawTensor>, g === -1 ? inF : g),
        want,
        `g${g} sym${sym}`,
      );
      const back = importAwqGemm({ ...t }, { groupSize: g });
      assert.deepEqual(dequantizePacked(back.packed), want);
      assert.deepEqual(back.bias, Float32Array.from(bias, (x) => Math.f16round(x)));
    }
  }
});

Deno.test("AWQ GEMM: clear refusals; quantization_config", () => {
  const p = quantizeMatrix(randomMatrix(12 * 64, 1), 12, 64, {
    bits: 4,
    granularity: "channel",
    symmetric: false,
  })
    .packed;
  assert.throws(
    () => exportAwqGemm(p, { name: "o_proj" }),
    /o_proj: AWQ GEMM packs 8 outputs per word; out_features 12/,
  );
  const p3 = quantizeMatrix(randomMatrix(8 * 64, 1), 8, 64, {
    bits: 3,
    granularity: "channel",
    symmetric: false,
  })
    .packed;
  assert.throws(() => exportAwqGemm(p3), /AutoAWQ GEMM stores 4 bits only, got 3/);
  const g24 = quantizeMatrix(randomMatrix(8 * 64, 1), 8, 64, {
    bits: 4,
    granularity: "group",
    groupSize: 24,
    symmetric: false,
  }).packed;
  assert.throws(() => exportAwqGemm(g24), /AWQ needs the group size 24 to divide in_features 64/);
  const act = quantizeMatrix(randomMatrix(8 * 64, 1), 8, 64, {
    bits: 4,
    granularity: "group",
    groupSize: 32,
    symmetric: false,
  }).packed;
  const groupIndex = Uint32Array.from({ length: 64 }, (_, c) => (c % 2));
  assert.throws(() => exportAwqGemm({ ...act, groupIndex }), /AWQ has no act-order/);
  const t = exportAwqGemm(act);
  assert.throws(
    () => importAwqGemm({ ...t }, { groupSize: 16 }),
    /tensor "weight.qzeros": shape \[2, 1\], expected \[4, 1\]/,
  );
  assert.deepEqual(awqQuantizationConfig(128), {
    quant_method: "awq",
    bits: 4,
    group_size: 128,
    zero_point: true,
    version: "gemm",
  });
});

/**
 * Oracle §5.8 on onnxruntime-web's WebGPU execution provider (the JSEP kernels of 1.20.1), where
 * `navigator.gpu` gives an adapter (Deno gets a software one from Mesa's lavapipe/llvmpipe);
 * skipped otherwise. The EP runs in a child process (`matmulnbits_webgpu_probe.ts`): on a
 * software adapter GPU buffers live in the process's heap, and this EP's kernels for blocks above
 * 32 are wrong there, so nothing it does can reach the test process. The test asserts on the
 * numbers the child prints, not on how the child's GPU stack tears down.
 */
import assert from "node:assert/strict";
import type { ProbeCase } from "./matmulnbits_webgpu_probe.ts";

const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;

async function runProbe(): Promise<{ adapter?: string; cases: ProbeCase[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("matmulnbits_webgpu_probe.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(
      `the probe printed no result (exit ${out.code}, signal ${out.signal}):\n` +
        new TextDecoder().decode(out.stderr).slice(-2000),
    );
  }
}

Deno.test({
  name:
    "MatMulNBits oracle §5.8 (WebGPU EP): 4-bit, blocks 16 and 32, with and without zero points, within 1e-5; blocks 64/128 reported (wrong in 1.20.1 on llvmpipe), right on the WASM EP",
  ignore: !adapter,
  fn: async () => {
    const { adapter: name, cases } = await runProbe();
    assert.ok(name, "the child found no adapter although this process did");
    const small = cases.filter((c) => c.block <= 32);
    assert.equal(small.length, 8);
    for (const c of small) {
      const rel = c.rel.webgpu!;
      assert.ok(rel <= 1e-5, `K ${c.K} block ${c.block} zp ${c.zeroPoints} M ${c.tokens}: ${rel}`);
    }
    const outcomes: string[] = [];
    for (const c of cases.filter((c) => c.block > 32)) {
      assert.ok(c.rel.wasm! <= 1e-5, `block ${c.block} zp ${c.zeroPoints} on WASM: ${c.rel.wasm}`);
      outcomes.push(
        `block ${c.block}${c.zeroPoints ? " zp" : ""}: rel ${c.rel.webgpu!.toExponential(2)}`,
      );
    }
    console.log(`WebGPU EP on "${name}", block > 32: ${outcomes.join("; ")}`);
  },
});

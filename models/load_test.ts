import assert from "node:assert/strict";
import { FormatError } from "../core/errors.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { startMirror } from "../testing/mirror_server.ts";
import { type TensorIn, writeSafetensors } from "../testing/safetensors_writer.ts";
import { forward } from "../runners/forward.ts";
import { countParams, loadModel } from "./load.ts";
import { parseSafetensors, toFloat32 } from "./safetensors.ts";

const hf = await needs("models/stories260K-hf");

const HF_DIR = sharedPath("models", "stories260K-hf");
const SIDE_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"];

/** The fixture's tensors as float32, in file order. */
async function fixtureTensors(): Promise<Map<string, TensorIn>> {
  const parsed = parseSafetensors(await Deno.readFile(`${HF_DIR}/model.safetensors`), "fixture");
  return new Map(
    [...parsed].map(([name, t]) => [name, { shape: t.shape, data: toFloat32(t, name, "fixture") }]),
  );
}

/** A temporary transformers-layout directory with the fixture's JSON files and given weights. */
async function modelDir(files: Record<string, Uint8Array | string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-model-" });
  for (const f of SIDE_FILES) await Deno.copyFile(`${HF_DIR}/${f}`, `${dir}/${f}`);
  for (const [name, body] of Object.entries(files)) {
    if (typeof body === "string") await Deno.writeTextFile(`${dir}/${name}`, body);
    else await Deno.writeFile(`${dir}/${name}`, body);
  }
  return dir;
}

const PROMPT = [1, 403, 407, 261, 378, 430, 271, 261, 263, 299];

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

hf.test("loadModel() reads a sharded checkpoint through model.safetensors.index.json", async () => {
  const single = await loadModel(HF_DIR);
  const tensors = await fixtureTensors();
  const names = [...tensors.keys()];
  const half = Math.floor(names.length / 2);
  const shards = [names.slice(0, half), names.slice(half)];
  const files: Record<string, Uint8Array | string> = {};
  const weightMap: Record<string, string> = {};
  shards.forEach((list, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    files[file] = writeSafetensors(new Map(list.map((n) => [n, tensors.get(n)!])));
    for (const n of list) weightMap[n] = file;
  });
  files["model.safetensors.index.json"] = JSON.stringify({ metadata: {}, weight_map: weightMap });
  const dir = await modelDir(files);
  try {
    const sharded = await loadModel(dir);
    assert.deepEqual(sharded.files.map((f) => f.path).sort(), [
      "config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    assert.equal(countParams(sharded), countParams(single));
    assert.equal(maxAbsDiff(forward(sharded, PROMPT), forward(single, PROMPT)), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

hf.test("loadModel() reads F16 and BF16 checkpoints, close to the F32 logits", async () => {
  const single = await loadModel(HF_DIR);
  const ref = forward(single, PROMPT);
  const tensors = await fixtureTensors();
  for (const dtype of ["F16", "BF16"] as const) {
    const dir = await modelDir({ "model.safetensors": writeSafetensors(tensors, dtype) });
    try {
      const m = await loadModel(dir);
      const d = maxAbsDiff(forward(m, PROMPT), ref);
      // Rounding the weights changes the logits a little: not at all would mean no conversion.
      assert.ok(d > 0 && d < (dtype === "F16" ? 0.05 : 0.5), `${dtype}: max |Δlogit| ${d}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

hf.test("loadModel() names the file and field of a broken config or checkpoint", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${HF_DIR}/config.json`));
  delete config.num_attention_heads;
  const weights = await Deno.readFile(`${HF_DIR}/model.safetensors`);
  const dir = await modelDir({ "model.safetensors": weights });
  try {
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    await assert.rejects(loadModel(dir), (e: unknown) => {
      assert.ok(e instanceof FormatError);
      assert.match(e.message, /config\.json/);
      assert.match(e.message, /num_attention_heads/);
      return true;
    });
    await Deno.copyFile(`${HF_DIR}/config.json`, `${dir}/config.json`);
    await Deno.writeFile(`${dir}/model.safetensors`, weights.subarray(0, weights.length - 100));
    await assert.rejects(loadModel(dir), (e: unknown) => {
      assert.ok(e instanceof FormatError);
      assert.match(e.message, /model\.safetensors/);
      return true;
    });
    await Deno.remove(`${dir}/model.safetensors`);
    await assert.rejects(loadModel(dir), /model\.safetensors: file not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

hf.test("loadModel('hf:owner/repo') downloads a transformers-layout repo through HF_ENDPOINT", async () => {
  // A mirror root holding the HF-layout fixture as lowbit-test/stories260K-hf@main.
  const root = await Deno.makeTempDir({ prefix: "lowbit-mirror-" });
  const repoDir = `${root}/lowbit-test/stories260K-hf/resolve/main`;
  await Deno.mkdir(repoDir, { recursive: true });
  for (const f of [...SIDE_FILES, "model.safetensors"]) {
    await Deno.copyFile(`${HF_DIR}/${f}`, `${repoDir}/${f}`);
  }
  const mirror = await startMirror(root);
  const cache = `${root}/cache`;
  try {
    const env = (n: string) =>
      ({ HF_ENDPOINT: mirror.endpoint, HF_HUB_CACHE: cache } as Record<string, string>)[n];
    const m = await loadModel("hf:lowbit-test/stories260K-hf", { env });
    assert.equal(m.format, "hf");
    assert.equal(maxAbsDiff(forward(m, PROMPT), forward(await loadModel(HF_DIR), PROMPT)), 0);
    const snap = `${cache}/models--lowbit-test--stories260K-hf/snapshots/main/model.safetensors`;
    assert.ok((await Deno.lstat(snap)).isSymlink);
    // Offline, from the cache only.
    const offline = (n: string) =>
      ({ HF_HUB_OFFLINE: "1", HF_HUB_CACHE: cache } as Record<string, string>)[n];
    const requests = mirror.requests.length;
    await loadModel("hf:lowbit-test/stories260K-hf", { env: offline });
    assert.equal(mirror.requests.length, requests);
  } finally {
    await mirror.close();
    await Deno.remove(root, { recursive: true });
  }
});

hf.test("loadModel() refuses a file that is a symlink out of the model directory, and reads a Hub cache snapshot's links", async () => {
  const outside = await Deno.makeTempDir({ prefix: "lowbit-outside-" });
  const dir = await modelDir({});
  try {
    await Deno.copyFile(`${HF_DIR}/model.safetensors`, `${outside}/model.safetensors`);
    await Deno.symlink(`${outside}/model.safetensors`, `${dir}/model.safetensors`);
    await assert.rejects(loadModel(dir), (e: unknown) => {
      assert.ok(e instanceof FormatError);
      assert.match(e.message, /model\.safetensors: resolves to .*outside the model directory/);
      return true;
    });
    // The same link inside the directory is fine.
    await Deno.remove(`${dir}/model.safetensors`);
    await Deno.rename(`${outside}/model.safetensors`, `${dir}/weights.bin`);
    await Deno.symlink(`${dir}/weights.bin`, `${dir}/model.safetensors`);
    assert.equal((await loadModel(dir)).config.dim, 64);
    // A Hugging Face cache snapshot: files are links to ../../blobs/, inside the repo's folder.
    const repo = `${outside}/models--owner--name`;
    await Deno.mkdir(`${repo}/blobs`, { recursive: true });
    await Deno.mkdir(`${repo}/snapshots/abc`, { recursive: true });
    for (const f of [...SIDE_FILES, "model.safetensors"]) {
      await Deno.copyFile(`${HF_DIR}/${f}`, `${repo}/blobs/${f}.blob`);
      await Deno.symlink(`../../blobs/${f}.blob`, `${repo}/snapshots/abc/${f}`);
    }
    assert.equal((await loadModel(`${repo}/snapshots/abc`)).config.dim, 64);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

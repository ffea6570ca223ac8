/**
 * Builds the browser page into a directory (default `web/dist`): `index.html`, `app.js` (the
 * library bundled for the browser by `deno bundle`), the WASM binaries and WGSL shaders it
 * loads relative to itself, and `data/text/tinystories/` (the repository's TinyStories text with
 * its README and licence: the page's default data root is `data/` beside it). The directory is
 * self-contained: serve it from any static host; models come from the Hugging Face Hub or any URL
 * (see the README).
 *
 * Usage: `deno task build:web [--out DIR]`.
 *
 * @module
 */

import { parseArgs } from "node:util";

const HERE = new URL(".", import.meta.url);

/** Bundles the page into `outDir`; throws with deno bundle's output when bundling fails. */
export async function buildWeb(outDir: string): Promise<void> {
  await Deno.mkdir(outDir, { recursive: true });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--output",
      `${outDir}/app.js`,
      new URL("app.ts", HERE).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno bundle failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  // A Node built-in in the import graph cannot load in a browser: fail here, naming it.
  const js = await Deno.readTextFile(`${outDir}/app.js`);
  const builtins = [...new Set(js.match(/["']node:[a-z_/]+["']/g) ?? [])];
  if (builtins.length > 0) {
    throw new Error(
      `web/app.ts imports Node built-ins (${builtins.join(", ")}), which browsers cannot load: ` +
        `import the modules the page needs directly instead of registries that reach them`,
    );
  }
  await Deno.copyFile(new URL("index.html", HERE), `${outDir}/index.html`);
  // Kernels the bundle loads relative to itself: the WASM builds and the WGSL shaders.
  for (const f of ["kernels.wasm", "kernels_fma.wasm", "kernels_mt.wasm"]) {
    await Deno.copyFile(new URL(`../kernels/wasm/${f}`, HERE), `${outDir}/${f}`);
  }
  for (const e of Deno.readDirSync(new URL("../kernels/webgpu/", HERE))) {
    if (e.name.endsWith(".wgsl")) {
      await Deno.copyFile(new URL(`../kernels/webgpu/${e.name}`, HERE), `${outDir}/${e.name}`);
    }
  }
  // The bundled corpus, laid out as under the repository's data root (the page's default root).
  const text = "data/text/tinystories";
  await Deno.mkdir(`${outDir}/${text}`, { recursive: true });
  for (const e of Deno.readDirSync(new URL(`../${text}/`, HERE))) {
    if (e.isFile) {
      await Deno.copyFile(new URL(`../${text}/${e.name}`, HERE), `${outDir}/${text}/${e.name}`);
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { out: { type: "string", default: new URL("dist", HERE).pathname } },
  });
  await buildWeb(values.out!);
  console.log(`built ${values.out}`);
}

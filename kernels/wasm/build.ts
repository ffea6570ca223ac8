/**
 * Builds `kernels/wasm/kernels.wasm` (SIMD128), `kernels_fma.wasm` (plus relaxed-SIMD
 * `f32x4.relaxed_madd`) and `kernels_mt.wasm` (SIMD128 over an imported shared memory, for
 * kernel threads) from `kernels.c` with Debian's clang-19 and wasm-ld-19, with pinned flags
 * and no paths, timestamps or debug info in the output, so the committed binaries can be
 * reproduced byte for byte.
 *
 * `deno task build:wasm` rewrites the binaries; `deno task build:wasm --check` builds into
 * temporary files and fails unless they equal the committed ones (what CI runs).
 *
 * @module
 */

import { sha256Hex } from "../../core/hash.ts";

/** The compiler the committed binary was built with (Debian bookworm's `clang-19`). */
export const CLANG = "clang-19";

/**
 * `clang-19 --version` of the build (apt package `clang-19=1:19.1.7-3~deb12u1`, with
 * `lld-19` of the same version); another version may emit different bytes.
 */
export const CLANG_VERSION = "Debian clang version 19.1.7 (3~deb12u1)";

/** Every flag of the build; changing one changes the binary. */
export const FLAGS: readonly string[] = [
  "--target=wasm32",
  "-O3",
  "-msimd128",
  "-nostdlib",
  "-ffreestanding",
  "-fno-builtin",
  "-g0",
  "-Wall",
  "-Werror",
  "-Wl,--no-entry",
  "-Wl,--strip-all",
  "-Wl,--export=__heap_base",
  "-Wl,--export-memory",
  "-Wl,-z,stack-size=65536",
  "-Wl,--initial-memory=1048576",
  "-Wl,--max-memory=4294967296",
];

/** The binaries built from `kernels.c`, with their extra flags. */
export const VARIANTS: readonly { readonly file: string; readonly flags: readonly string[] }[] = [
  { file: "kernels.wasm", flags: [] },
  { file: "kernels_fma.wasm", flags: ["-mrelaxed-simd", "-DLOWBIT_RELAXED=1"] },
  // Kernel threads: the same code over a shared memory imported from JS (one per kernel set,
  // shared by its workers' instances); each instance's stack pointer is set from outside.
  {
    file: "kernels_mt.wasm",
    flags: [
      "-matomics",
      "-mbulk-memory",
      "-Wl,--shared-memory",
      "-Wl,--import-memory",
      "-Wl,--export=__stack_pointer",
    ],
  },
];

const here = new URL(".", import.meta.url);

/** Compiles `kernels.c` with `extra` flags into `outPath`; throws with the compiler's output. */
export async function buildWasm(outPath: string, extra: readonly string[] = []): Promise<void> {
  const dir = here.pathname;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(CLANG, {
      // Relative source path and fixed cwd: nothing machine-specific reaches the output.
      args: [...FLAGS, ...extra, "-ffile-prefix-map=" + dir + "=./", "-o", outPath, "kernels.c"],
      cwd: dir,
      env: { SOURCE_DATE_EPOCH: "0", LC_ALL: "C" },
    }).output();
  } catch (e) {
    throw new Error(
      `build:wasm: cannot run ${CLANG} (apt-get install -y clang-19 lld-19): ${String(e)}`,
    );
  }
  if (!out.success) {
    throw new Error(`build:wasm: ${CLANG} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
}

/** The first line of `clang-19 --version`, or `undefined` when it does not run. */
export async function clangVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(CLANG, { args: ["--version"] }).output();
    return new TextDecoder().decode(out.stdout).split("\n")[0]?.trim();
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  const version = await clangVersion();
  if (version !== CLANG_VERSION) {
    console.error(
      `build:wasm: expected "${CLANG_VERSION}", found ${version ? `"${version}"` : "no " + CLANG}` +
        " (apt-get install -y clang-19=1:19.1.7-3~deb12u1 lld-19=1:19.1.7-3~deb12u1)",
    );
    if (check) Deno.exit(1);
  }
  let failed = false;
  for (const v of VARIANTS) {
    const target = new URL(v.file, here).pathname;
    const outPath = check ? await Deno.makeTempFile({ suffix: ".wasm" }) : target;
    await buildWasm(outPath, v.flags);
    const built = await Deno.readFile(outPath);
    const hash = await sha256Hex(built);
    if (check) {
      await Deno.remove(outPath);
      const committed = await Deno.readFile(target).catch(() => new Uint8Array());
      const want = await sha256Hex(committed);
      if (want !== hash) {
        console.error(
          `build:wasm --check: ${target} (sha256 ${want}) differs from a fresh build ${hash}`,
        );
        failed = true;
      } else console.log(`${v.file} reproduced: sha256 ${hash}`);
    } else {
      console.log(`wrote ${target} (${built.length} bytes, sha256 ${hash})`);
    }
  }
  if (failed) Deno.exit(1);
}

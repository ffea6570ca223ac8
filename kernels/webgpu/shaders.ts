/**
 * The WGSL sources of the WebGPU kernels, loaded as text next to this module at runtime (no build
 * step): `fetch` of a `file:` URL in Deno (read permission), of an `http(s):` URL in a browser.
 *
 * @module
 */

/** Kernel source files, one per bind-group layout. */
export const SHADER_FILES = [
  "matmul",
  "matmul_packed",
  "rmsnorm",
  "rope",
  "attention",
  "swiglu",
  "embed",
  "log_softmax",
  "score",
] as const;

/** A shader file name. */
export type ShaderName = typeof SHADER_FILES[number];

/**
 * Files appended to a shader's own (WGSL has no includes): the linear-layer kernels are written
 * once, over the `weight(n, k)` each of their two files defines.
 */
const APPENDED: Partial<Record<ShaderName, string>> = {
  matmul: "matmul_tiles",
  matmul_packed: "matmul_tiles",
};

/** Source text of every shader, by name. */
export type Shaders = Readonly<Record<ShaderName, string>>;

let loaded: Promise<Shaders> | undefined;

/**
 * Loads (once) the text of every shader, with the files appended to it; rejects naming the file
 * that cannot be read.
 */
export function loadShaders(): Promise<Shaders> {
  loaded ??= (async () => {
    const files = [...new Set([...SHADER_FILES, ...Object.values(APPENDED)])];
    const text = new Map(
      await Promise.all(files.map(async (name) => {
        const url = new URL(`./${name}.wgsl`, import.meta.url);
        try {
          const res = await fetch(url);
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          return [name, await res.text()] as const;
        } catch (e) {
          throw new Error(
            `Cannot load WGSL kernel ${url.href}: ${e instanceof Error ? e.message : String(e)}`,
          );
        }
      })),
    );
    const source = (name: ShaderName) => {
      const extra = APPENDED[name];
      return text.get(name)! + (extra ? "\n" + text.get(extra)! : "");
    };
    return Object.fromEntries(SHADER_FILES.map((n) => [n, source(n)])) as Record<
      ShaderName,
      string
    >;
  })();
  loaded.catch(() => loaded = undefined);
  return loaded;
}

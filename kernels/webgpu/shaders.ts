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

/** Source text of every shader, by name. */
export type Shaders = Readonly<Record<ShaderName, string>>;

let loaded: Promise<Shaders> | undefined;

/** Loads (once) the text of every `.wgsl` file; rejects naming the file that cannot be read. */
export function loadShaders(): Promise<Shaders> {
  loaded ??= (async () => {
    const entries = await Promise.all(SHADER_FILES.map(async (name) => {
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
    }));
    return Object.fromEntries(entries) as Record<ShaderName, string>;
  })();
  loaded.catch(() => loaded = undefined);
  return loaded;
}

/**
 * No import cycle between the project's files, and folders that layer: every relative
 * `import`/`export … from` and literal dynamic `import()` of every `.ts` file is read (npm and
 * `node:` specifiers are outside the graph); a depth-first search reports the first file cycle it
 * meets as a path, and every import of a non-test file must point to its own folder or to a
 * folder below it in {@linkcode LAYERS}. Tests are leaves that may reach up for their oracles.
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const SKIP = new Set(["node_modules", ".git", ".cache", "results"]);

async function sources(dir: string, out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(dir)) {
    if (SKIP.has(e.name) || e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    if (e.isDirectory) await sources(p, out);
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

const SPECIFIER =
  /(?:^|[;\s])(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']|(?:^|[;\s])import\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/gm;

/** Relative specifiers of `text`, resolved against `file`. */
export function relativeImports(file: string, text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  for (const m of code.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (spec.startsWith("./") || spec.startsWith("../")) out.push(join(dirname(file), spec));
  }
  return out;
}

/** The first cycle of `graph` as a path that ends where it starts, or undefined. */
export function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | undefined {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const visit = (u: string): string[] | undefined => {
    state.set(u, 1);
    stack.push(u);
    for (const v of graph.get(u) ?? []) {
      if (state.get(v) === 1) return [...stack.slice(stack.indexOf(v)), v];
      if (state.get(v) === undefined) {
        const c = visit(v);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(u, 2);
    return undefined;
  };
  for (const u of graph.keys()) {
    if (state.get(u) === undefined) {
      const c = visit(u);
      if (c) return c;
    }
  }
  return undefined;
}

Deno.test("findCycle and relativeImports on hand-built cases", () => {
  const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(findCycle(g), ["a", "b", "c", "a"]);
  assert.equal(findCycle(new Map([["a", ["b"]], ["b", []], ["c", ["a", "b"]]])), undefined);
  assert.deepEqual(findCycle(new Map([["a", ["a"]]])), ["a", "a"]);
  const text = [
    `import { x } from "./x.ts";`,
    `import type { Y } from "../core/y.ts";`,
    `export { z } from "./z.ts";`,
    `import "./side.ts";`,
    `const w = await import("./w.ts");`,
    `import assert from "node:assert/strict";`,
    `import { Tokenizer } from "@huggingface/tokenizers";`,
    `// import { no } from "./commented.ts";`,
    `/* import { no } from "./block.ts"; */`,
  ].join("\n");
  assert.deepEqual(relativeImports("/p/models/m.ts", text), [
    "/p/models/x.ts",
    "/p/core/y.ts",
    "/p/models/z.ts",
    "/p/models/side.ts",
    "/p/models/w.ts",
  ]);
});

Deno.test("no import cycle between the project's files", async () => {
  const files = await sources(ROOT);
  assert.ok(files.length > 100, `only ${files.length} files found under ${ROOT}`);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    graph.set(f, relativeImports(f, await Deno.readTextFile(f)).filter((t) => t.endsWith(".ts")));
  }
  const cycle = findCycle(graph);
  assert.equal(
    cycle,
    undefined,
    `import cycle: ${cycle?.map((f) => relative(ROOT, f)).join(" → ")}`,
  );
});

/**
 * The layers, lowest first: a file may import its own top-level folder or one listed before it.
 * `.` is the repository root (`mod.ts`, `cli.ts`). A worker started with `new URL(…)` is not an
 * import.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ["core"],
  ["models"],
  ["kernels", "testing"],
  ["runners"],
  ["tasks"],
  ["methods"],
  ["results"],
  ["bench"],
  ["export"],
  ["web", "."],
];

/** `from → to` imports of `graph` (files under `root`) that go up or sideways between folders. */
export function layerViolations(
  graph: ReadonlyMap<string, readonly string[]>,
  root: string,
  layers: readonly (readonly string[])[] = LAYERS,
): string[] {
  const rank = new Map<string, number>();
  layers.forEach((names, i) => names.forEach((n) => rank.set(n, i)));
  const folder = (f: string) => {
    const rel = relative(root, f);
    return rel.includes("/") ? rel.slice(0, rel.indexOf("/")) : ".";
  };
  const out: string[] = [];
  for (const [from, targets] of graph) {
    if (from.endsWith("_test.ts")) continue;
    const a = folder(from);
    for (const to of targets) {
      const b = folder(to);
      if (a === b) continue;
      const ra = rank.get(a), rb = rank.get(b);
      if (ra === undefined || rb === undefined || rb >= ra) {
        out.push(`${relative(root, from)} → ${relative(root, to)}`);
      }
    }
  }
  return out.sort();
}

Deno.test("layerViolations on hand-built cases", () => {
  const g = new Map([
    ["/p/models/a.ts", ["/p/core/x.ts", "/p/models/b.ts"]],
    ["/p/kernels/k.ts", ["/p/models/a.ts"]],
    ["/p/models/b.ts", ["/p/kernels/k.ts"]],
    ["/p/models/b_test.ts", ["/p/kernels/k.ts"]],
    ["/p/testing/t.ts", ["/p/kernels/k.ts"]],
    ["/p/odd/o.ts", ["/p/core/x.ts"]],
  ]);
  assert.deepEqual(layerViolations(g, "/p"), [
    "models/b.ts → kernels/k.ts",
    "odd/o.ts → core/x.ts",
    "testing/t.ts → kernels/k.ts",
  ]);
});

Deno.test("the folders layer: each imports only itself and the layers below it", async () => {
  const files = await sources(ROOT);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    graph.set(f, relativeImports(f, await Deno.readTextFile(f)).filter((t) => t.endsWith(".ts")));
  }
  const folders = new Set(
    files.map((f) => relative(ROOT, f).split("/")).map((p) => p.length > 1 ? p[0]! : "."),
  );
  const named = new Set(LAYERS.flat());
  assert.deepEqual([...folders].filter((f) => !named.has(f)), [], "folders missing from LAYERS");
  assert.deepEqual(layerViolations(graph, ROOT), []);
});

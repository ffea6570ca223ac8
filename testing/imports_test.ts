/**
 * No import cycle between the project's files: every relative `import`/`export … from` and
 * literal dynamic `import()` of every `.ts` file is read (npm and `node:` specifiers are outside
 * the graph), and a depth-first search reports the first cycle it meets as a path.
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

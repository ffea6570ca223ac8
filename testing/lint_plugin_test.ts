import assert from "node:assert/strict";
import plugin, { MAX_FUNCTION_LINES } from "./lint_plugin.ts";

/** A function declaration of exactly `lines` lines, and an arrow function inside a call. */
function source(lines: number): string {
  const body = Array.from({ length: lines - 2 }, (_, i) => `  x += ${i};`).join("\n");
  return `let x = 0;\nexport function f() {\n${body}\n}\nf(() => {\n${body}\n});\n`;
}

Deno.test("max-function-lines reports a function one line over the limit, not one at it", () => {
  const at = Deno.lint.runPlugin(plugin, "at.ts", source(MAX_FUNCTION_LINES));
  assert.deepEqual(at, []);
  const over = Deno.lint.runPlugin(plugin, "over.ts", source(MAX_FUNCTION_LINES + 1));
  assert.equal(over.length, 2, "the declaration and the arrow function");
  for (const d of over) {
    assert.equal(d.id, "lowbit/max-function-lines");
    assert.equal(
      d.message,
      `function of ${MAX_FUNCTION_LINES + 1} lines (at most ${MAX_FUNCTION_LINES})`,
    );
  }
});

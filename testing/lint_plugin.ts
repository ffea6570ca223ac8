/**
 * The project's own lint rules, run by `deno lint` (`deno.json` → `lint.plugins`):
 *
 * - `lowbit/max-function-lines`: no function, method or arrow function longer than
 *   {@linkcode MAX_FUNCTION_LINES} lines, counted from its first line to its closing brace (a
 *   nested function counts inside its parent too). Long functions are split into named steps.
 *
 * @module
 */

/** The longest a function may be, in lines. */
export const MAX_FUNCTION_LINES = 120;

/** 1-based line of each character offset of `text`, by binary search over the line starts. */
function lineIndex(text: string): (offset: number) => number {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return (offset) => {
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
}

const plugin: Deno.lint.Plugin = {
  name: "lowbit",
  rules: {
    "max-function-lines": {
      create(context) {
        const lineOf = lineIndex(context.sourceCode.text);
        const check = (node: Deno.lint.Node) => {
          const lines = lineOf(node.range[1]) - lineOf(node.range[0]) + 1;
          if (lines > MAX_FUNCTION_LINES) {
            context.report({
              node,
              message: `function of ${lines} lines (at most ${MAX_FUNCTION_LINES})`,
              hint: "split it into named steps",
            });
          }
        };
        return {
          FunctionDeclaration: check,
          FunctionExpression: check,
          ArrowFunctionExpression: check,
        };
      },
    },
  },
};

export default plugin;

import assert from "node:assert/strict";
import {
  exactMatch,
  extractFlexible,
  extractStrict,
  normalizeAnswer,
  parseGold,
} from "./answer_extract.ts";

Deno.test("strict-match: the first '#### n', lm-eval's character class", () => {
  assert.equal(extractStrict("so 8 * 9 = 72\n#### 72"), "72");
  assert.equal(extractStrict("#### -3 then #### 5"), "-3");
  assert.equal(extractStrict("#### 1,234.50"), "1,234.50");
  // '$' is not in the strict class: no match right after '#### '.
  assert.equal(extractStrict("#### $1,234.50"), undefined);
  assert.equal(extractStrict("The answer is 72."), undefined);
  assert.equal(extractStrict("####72"), undefined);
  assert.equal(extractStrict(""), undefined);
});

Deno.test("flexible-extract: the last number-like run, its non-empty group", () => {
  assert.equal(extractFlexible("She pays $1,234.50 in total."), "$1,234.50");
  assert.equal(extractFlexible("3 + 4 = 7, then 7 * 2 = 14. So 14 apples."), "14");
  assert.equal(extractFlexible("3 + 4 = 7, so the answer is 14."), "14.");
  assert.equal(extractFlexible("It drops to -5 degrees"), "-5");
  assert.equal(extractFlexible("2 cats and 9"), "9");
  assert.equal(extractFlexible("Once upon a time, there was a girl."), undefined);
  // Single '.' or ',' are not numbers ({2,} needs two characters of the class).
  assert.equal(extractFlexible("A, b. c"), undefined);
  assert.equal(extractFlexible("#### 72"), "72");
});

Deno.test("exact match: ',' '$' and a trailing '.' are ignored; strings compared", () => {
  assert.equal(normalizeAnswer("$1,234.50"), "1234.50");
  assert.equal(normalizeAnswer("14."), "14");
  assert.equal(normalizeAnswer("Lots of work\n#### 72"), "72");
  assert.ok(exactMatch("$1,234", "x\n#### 1234"));
  assert.ok(exactMatch("14.", "Natalia…\n#### 14"));
  assert.ok(exactMatch("-5", "#### -5"));
  assert.ok(!exactMatch("1234.50", "#### 1234.5"));
  assert.ok(!exactMatch(undefined, "#### 7"));
  assert.ok(!exactMatch("7", "#### 72"));
});

Deno.test("gold answers parse from the '#### n' line", () => {
  assert.equal(
    parseGold("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"),
    "72",
  );
  assert.equal(parseGold("…\n#### 1,000"), "1000");
  assert.equal(parseGold("…\n#### -8"), "-8");
  assert.throws(() => parseGold("The answer is 5."), /####/);
});

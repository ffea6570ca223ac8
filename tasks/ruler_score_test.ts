import assert from "node:assert/strict";
import {
  postprocessPrediction,
  scorePrediction,
  stringMatchAll,
  stringMatchPart,
} from "./ruler_score.ts";

Deno.test("postprocessPrediction() strips and turns control characters into newlines", () => {
  assert.equal(postprocessPrediction("  1234567 \n"), "1234567");
  assert.equal(postprocessPrediction("a\tb\x00c\x1fd"), "a\nb\nc\nd");
  assert.equal(postprocessPrediction("\t\x01 x \x02"), "x");
  assert.equal(postprocessPrediction(""), "");
});

Deno.test("stringMatchAll() is the fraction of references found, case-insensitively", () => {
  assert.equal(stringMatchAll("The number is 1234567.", ["1234567"]), 1);
  assert.equal(stringMatchAll("The number is 1234568.", ["1234567"]), 0);
  // 2 of 4 values present.
  assert.equal(stringMatchAll("1111111, 3333333", ["1111111", "2222222", "3333333", "4"]), 0.5);
  // Case-insensitive both ways, substring (not word) match.
  assert.equal(stringMatchAll("VAR ABCDE and qwert", ["abcde", "QWERT", "zzz"]), 2 / 3);
  assert.equal(stringMatchAll("xxapplexx", ["APPLE"]), 1);
  assert.throws(() => stringMatchAll("x", []), RangeError);
});

Deno.test("stringMatchPart() is 1 when any reference is found", () => {
  assert.equal(stringMatchPart("It was in Paris, France", ["paris", "London"]), 1);
  assert.equal(stringMatchPart("It was in Rome", ["paris", "London"]), 0);
  assert.equal(stringMatchPart("LONDON", ["paris", "london"]), 1);
  assert.throws(() => stringMatchPart("x", []), RangeError);
});

Deno.test("scorePrediction() post-processes first, then applies the named metric", () => {
  // A reference split by a control character no longer matches (it became a newline).
  assert.equal(scorePrediction("string_match_all", "12\t34", ["12\t34"]), 0);
  assert.equal(scorePrediction("string_match_all", " 1234 \n", ["1234", "99"]), 0.5);
  assert.equal(scorePrediction("string_match_part", " 1234 \n", ["1234", "99"]), 1);
  assert.equal(scorePrediction("string_match_part", "", ["1234"]), 0);
});

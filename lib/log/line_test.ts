import assert from "node:assert/strict";
import { oneLine } from "./line.ts";

Deno.test("oneLine() escapes what could start a new line or steer a terminal", () => {
  assert.equal(
    oneLine("a\nb\r\nc\td\x1b[2Je\u2028f\u0085g\u202eh"),
    "a\\nb\\r\\nc\\td\\u001b[2Je\\u2028f\\u0085g\\u202eh",
  );
  assert.equal(oneLine("job 1 g.t: ok"), "job 1 g.t: ok");
  assert.equal(oneLine("ünïcode ✓"), "ünïcode ✓");
});

Deno.test("oneLine() doubles backslashes, so an escape in the text cannot pass for one it made", () => {
  assert.equal(oneLine("\\n and \n"), "\\\\n and \\n");
});

Deno.test("oneLine() keeps at most maxChars characters and says how many it left out", () => {
  assert.equal(oneLine("x".repeat(10), 4), "xxxx… (6 more characters)");
  assert.equal(oneLine("\n".repeat(3), 2), "\\n\\n… (1 more character)");
});

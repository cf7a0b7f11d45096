import assert from "node:assert/strict";
import { checkRelativePath, SyncError } from "./paths.ts";

Deno.test("checkRelativePath() counts a name's bytes in UTF-8: 255 pass, 256 are refused, however they are made", () => {
  for (
    const [char, fits] of [["a", 255], ["é", 127], ["€", 85], ["😀", 63]] as const
  ) {
    const bytes = new TextEncoder().encode(char).length;
    assert.equal(checkRelativePath(`d/${char.repeat(fits)}`), `d/${char.repeat(fits)}`);
    const over = char.repeat(Math.floor(255 / bytes) + 1);
    assert.throws(() => checkRelativePath(`d/${over}`), SyncError, char);
    assert.throws(() => checkRelativePath(`d/${over}`), /longer than 255 bytes/, char);
  }
  // A whole path: 4096 bytes at most.
  const part = "€".repeat(80); // 240 bytes
  const path = Array(17).fill(part).join("/"); // 17 * 240 + 16 = 4096
  assert.equal(checkRelativePath(path), path);
  assert.throws(() => checkRelativePath(`${path}x`), /more than 4096 bytes/);
});

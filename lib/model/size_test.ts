import assert from "node:assert/strict";
import { parseSize } from "./size.ts";

Deno.test("parseSize() reads bytes and K/M/G/T suffixes as powers of 1024, and nothing else", () => {
  assert.equal(parseSize("1048576"), 1048576);
  assert.equal(parseSize("512k"), 512 * 1024);
  assert.equal(parseSize("100M"), 100 * 1024 ** 2);
  assert.equal(parseSize("64G"), 64 * 1024 ** 3);
  assert.equal(parseSize("2GiB"), 2 * 1024 ** 3);
  assert.equal(parseSize("1TB"), 1024 ** 4);
  for (const bad of ["", "lots", "-1", "1.5G", "10X", "G"]) {
    assert.equal(parseSize(bad), undefined, bad);
  }
});

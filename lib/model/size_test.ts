import assert from "node:assert/strict";
import { formatSize, parseSize } from "./size.ts";

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

Deno.test("formatSize() writes sizes in powers of 1024, rounded down", () => {
  assert.equal(formatSize(300), "300 bytes");
  assert.equal(formatSize(12 * 1024), "12 KiB");
  assert.equal(formatSize(150 * 1024 ** 2), "150 MiB");
  assert.equal(formatSize(64 * 1024 ** 2 - 1), "63.9 MiB");
  assert.equal(formatSize(1.5 * 1024 ** 3), "1.5 GiB");
  assert.equal(formatSize(16 * 1024 ** 3), "16 GiB");
  assert.equal(formatSize(2048 * 1024 ** 3), "2048 GiB");
});

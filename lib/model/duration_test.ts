import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("parseDuration() reads milliseconds, seconds, minutes and bare numbers of seconds", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration(1.5), 1500);
  assert.equal(parseDuration("2"), 2000);
});

Deno.test("parseDuration() rejects text that is not a duration", () => {
  for (const bad of ["", "soon", "5 parsecs", "10x", "-1s", "0s", "s"]) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
  assert.equal(parseDuration(-3), undefined);
  assert.equal(parseDuration(Number.NaN), undefined);
});

Deno.test("formatDuration() keeps short durations readable", () => {
  assert.equal(formatDuration(12), "12ms");
  assert.equal(formatDuration(1234), "1.23s");
  assert.equal(formatDuration(75_000), "1m15s");
});

import assert from "node:assert/strict";
import { redirectConsole } from "./console.ts";

Deno.test("redirectConsole() sends every console method to the sink, none to the process's output", () => {
  const saved = { ...globalThis.console };
  const got: string[] = [];
  try {
    redirectConsole((level, message) => got.push(`${level}:${message}`));
    console.log("\n2026-01-01T00:00:00.000Z forged", 1);
    console.error("err", { a: 1 });
    console.warn("w");
    console.info("i");
    console.debug("d");
    console.assert(true, "not shown");
    console.assert(false, "shown");
  } finally {
    Object.assign(globalThis.console, saved);
  }
  assert.deepEqual(got, [
    "info:\n2026-01-01T00:00:00.000Z forged 1",
    "warn:err { a: 1 }",
    "warn:w",
    "info:i",
    "info:d",
    "warn:Assertion failed: shown",
  ]);
});

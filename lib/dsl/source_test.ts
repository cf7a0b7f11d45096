import assert from "node:assert/strict";
import {
  cleanLuaError,
  fixModernDsls,
  resolvePath,
  sortBySource,
  sourceContext,
} from "./source.ts";

Deno.test("fixModernDsls() rewrites exactly the docs' header and keeps line numbers", () => {
  const fixed = fixModernDsls("-- x\n  Modern DSLs = {\n}\n");
  assert.equal(fixed.source, "-- x\n  TaskDefinitions = {\n}\n");
  assert.equal(fixed.line, 2);
  assert.deepEqual(fixModernDsls("local s = 'Modern DSLs = {'"), {
    source: "local s = 'Modern DSLs = {'",
  });
  assert.equal(fixModernDsls("Modern DSLs = 3").line, undefined);
});

Deno.test("sourceContext() shows two lines either side, the error line marked", () => {
  assert.equal(sourceContext("a\nb\nc", 1), "> 1 | a\n  2 | b\n  3 | c");
  assert.equal(sourceContext("a", 5), "");
});

Deno.test("sortBySource() orders keys by where the file defines them", () => {
  const source = `T = {\n  zeta = {},\n  ["with-dash"] = {},\n  alpha = {},\n}`;
  assert.deepEqual(sortBySource(["alpha", "unknown", "with-dash", "zeta"], (x) => x, source), [
    "zeta",
    "with-dash",
    "alpha",
    "unknown",
  ]);
});

Deno.test("sortBySource() orders keys whose values are builders or variables too, a table's first", () => {
  const source = `local ta = { name = "a" }
T = { tasks = {
  x = task("a"):command("a"):build(),
` +
    `  zz = ta,
  y = { command = "y" },
  w = {}, } }
w = 1`;
  assert.deepEqual(sortBySource(["y", "w", "zz", "x"], (k) => k, source), ["x", "zz", "y", "w"]);
});

Deno.test("cleanLuaError() drops tracebacks and wasmoon's prefixes", () => {
  assert.equal(
    cleanLuaError("Error: Error: a.lua:1: boom\nstack traceback:\n\t..."),
    "a.lua:1: boom",
  );
});

Deno.test("resolvePath() resolves . and .. against a base", () => {
  assert.equal(resolvePath("/a/b", "../c/./d"), "/a/c/d");
  assert.equal(resolvePath("/a", "/abs"), "/abs");
});

import assert from "node:assert/strict";
import { checkGlobals, type LuaFile, scanLua } from "./globals.ts";

/** The global reads of `source` as `name@line`, those in function bodies marked `fn:`. */
function reads(source: string): string[] {
  return scanLua(source).reads.map((r) => `${r.inFunction ? "fn:" : ""}${r.name}@${r.line}`);
}

function file(name: string, text: string): LuaFile {
  return { path: `/w/${name}`, name, text };
}

function check(
  files: LuaFile[],
  options: { defined?: string[]; others?: LuaFile[] } = {},
) {
  return checkGlobals(files, {
    defined: options.defined ?? [],
    read: (path) => options.others?.find((f) => f.path === path),
  });
}

Deno.test("scanLua() tells locals, parameters and loop variables from globals", () => {
  assert.deepEqual(
    reads(`local a = 1
local function f(p, ...)
  for i = 1, a do q(i, p, ...) end
  for k, v in pairs(t) do local w = k .. v; r(w) end
  return f
end`),
    ["fn:q@3", "fn:pairs@4", "fn:t@4", "fn:r@4"],
  );
});

Deno.test("scanLua() follows shadowing and upvalues: a local counts from the statement after it", () => {
  assert.deepEqual(
    reads(`function before() return x end
local x = x
function after() return x end
do local y = 1 end
function outside() return y end
local g = function() return g end
repeat local z = 1 until z`),
    ["fn:x@1", "x@2", "fn:y@5", "fn:g@6"],
  );
});

Deno.test("scanLua() counts only the base of a field read, and gives a method its self", () => {
  assert.deepEqual(
    reads(`function a.b.c:d(e) return self.f, e.g, h.i.j, k:l(), m["n"], o[p] end`),
    ["a@1", "fn:h@1", "fn:k@1", "fn:m@1", "fn:o@1", "fn:p@1"],
  );
  assert.deepEqual(reads(`function a.b(e) return self end`), ["a@1", "fn:self@1"]);
});

Deno.test("scanLua() does not read table keys, labels or goto targets", () => {
  assert.deepEqual(
    reads(`local t = { key = v1, [k2] = v2, v3 }
::top:: goto top`),
    ["v1@1", "k2@1", "v2@1", "v3@1"],
  );
});

Deno.test("scanLua() records globals assigned anywhere, and not assignments to locals", () => {
  const scan = scanLua(`a = 1
local b; b = 2
function c() d = 3 end
local function e() end
_G.f = 4; _G["g"] = 5; rawset(_G, "h", 6); _ENV.i = 7
x.y = 8`);
  assert.deepEqual([...scan.assigned].sort(), ["a", "c", "d", "f", "g", "h", "i"]);
  assert.deepEqual(scan.reads.map((r) => r.name), ["_G", "_G", "rawset", "_G", "x"]);
});

Deno.test("scanLua() reads no globals under a local _ENV, and notes a metatable on _G", () => {
  assert.deepEqual(
    reads(`local function sandboxed(_ENV) return print, x end
function open() local _ENV = {}; y = 1; return z end
function plain() return w end`),
    ["fn:w@3"],
  );
  assert.equal(scanLua(`setmetatable(_G, { __index = function() end })`).dynamic, true);
  assert.equal(scanLua(`local _G = {}; setmetatable(_G, {})`).dynamic, false);
});

Deno.test("scanLua() notes require and import with a literal path", () => {
  assert.deepEqual(
    scanLua(`local a = require("lib.utils")
local b = import "other.lua"
local c = require(name)
function f() return require("pulumi") end`).loads,
    [
      { kind: "require", path: "lib.utils", line: 1 },
      { kind: "import", path: "other.lua", line: 2 },
      { kind: "require", path: "pulumi", line: 4 },
    ],
  );
});

Deno.test("scanLua() reads Lua 5.4's <const> and <close> locals, keeping line numbers", () => {
  assert.deepEqual(
    reads(`local a <const>, b < close > = 1, nil
function f() return a, b, c end`),
    ["fn:c@2"],
  );
});

Deno.test("checkGlobals() reports task code's unknown globals with file:line and a guess", () => {
  const report = check([file(
    "workflow.lua",
    `local top = undefined_at_top
TaskDefinitions = { g = { tasks = { { name = "t", command = function(params)
  exce.run("make")
  exce.run("again")
  return foo(params), lgo
end } } } }`,
  )]);
  assert.deepEqual(report.unknown, [
    'workflow.lua:3: task code reads global "exce", which nothing defines. Did you mean "exec"?',
    'workflow.lua:5: task code reads global "foo", which nothing defines',
    'workflow.lua:5: task code reads global "lgo", which nothing defines. Did you mean "log"?',
  ]);
  assert.deepEqual(report.modules, []);
  assert.deepEqual(report.notes, []);
});

Deno.test("checkGlobals() takes as defined what any file assigns and what the state had", () => {
  const report = check(
    [
      file("workflow.lua", `function task_code() return helper(), from_state, set_late end`),
      file("lib.lua", `function helper() set_late = 1 end`),
    ],
    { defined: ["from_state"] },
  );
  assert.deepEqual(report.unknown, []);
});

Deno.test("checkGlobals() also checks files that task code requires, and counts their globals", () => {
  const report = check(
    [file("workflow.lua", `function f() require("lib.tools"); return tool(), other() end`)],
    { others: [file("lib/tools.lua", `function tool() return pulumi end`)] },
  );
  assert.deepEqual(report.unknown, [
    'workflow.lua:1: task code reads global "other", which nothing defines',
  ]);
  assert.deepEqual(report.modules, [
    'lib/tools.lua:1: "pulumi" is a module of the Go sloth-runner that sloth-runner does not ' +
    'provide; use exec.run("pulumi ...")',
  ]);
});

Deno.test("checkGlobals() names a Go sloth-runner module read anywhere, or required, once a file", () => {
  const report = check([file(
    "workflow.lua",
    `local up = pulumi.up
function f() systemd.restart("x"); systemd.stop("y"); return require("docker") end
function g() return require("docker") end`,
  )]);
  assert.deepEqual(report.modules, [
    'workflow.lua:2: "docker" is a module of the Go sloth-runner that sloth-runner does not ' +
    'provide; use exec.run("docker ...")',
    'workflow.lua:1: "pulumi" is a module of the Go sloth-runner that sloth-runner does not ' +
    'provide; use exec.run("pulumi ...")',
    'workflow.lua:2: "systemd" is a module of the Go sloth-runner that sloth-runner does not ' +
    'provide; use exec.run("systemctl ...")',
  ]);
  assert.deepEqual(report.unknown, []);
});

Deno.test("checkGlobals() lets a workflow define a name the Go sloth-runner used", () => {
  const report = check(
    [file(
      "workflow.lua",
      `docker = {}; function f() return docker, state, require("pulumi") end`,
    )],
    { defined: ["state"], others: [file("pulumi.lua", `return {}`)] },
  );
  assert.deepEqual(report, { modules: [], unknown: [], notes: [] });
});

Deno.test("checkGlobals() skips a file its parser cannot read, with a note, and guesses nothing then", () => {
  const report = check([
    file("workflow.lua", `function f() return from_odd_file end`),
    file("odd.lua", `local s = "\\u{7FFFFFFF}"\nfunction g() return unknown end`),
  ]);
  assert.deepEqual(report.unknown, []);
  assert.deepEqual(report.notes, [
    "odd.lua:1: not checked for globals that nothing defines (the check's Lua parser stops " +
    "here: UTF-8 value too large near '\\u{7FFFFFF')",
  ]);
});

Deno.test("checkGlobals() reports no unknown global when a file sets a metatable on _G", () => {
  const report = check([file(
    "workflow.lua",
    `setmetatable(_G, { __index = function(_, k) return k end })
function f() return anything, pulumi end`,
  )]);
  assert.deepEqual(report.unknown, []);
  assert.equal(report.modules.length, 1);
});

Deno.test("scanLua() without lines finds the same reads in the same order, at line 0", () => {
  const source = `local a <const> = 1
function f(x) return x + b, c.d, require("e") end
g = h`;
  const fast = scanLua(source, { lines: false });
  const full = scanLua(source);
  assert.equal(fast.lines, false);
  assert.deepEqual(fast.reads, full.reads.map((r) => ({ ...r, line: 0 })));
  assert.deepEqual(fast.loads, full.loads.map((l) => ({ ...l, line: 0 })));
  assert.deepEqual(fast.assigned, full.assigned);
});

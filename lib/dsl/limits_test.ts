/**
 * What Lua may move to the host side (whose memory Lua's limit does not cover)
 * and where its output goes. These run with the default limits: 64 MiB of data
 * (SLOTH_LUA_DATA_LIMIT), 256 MiB of Lua memory.
 */
import assert from "node:assert/strict";
import { createHost, MAX_IN_FLIGHT } from "./host.ts";
import { LUA_DATA_LIMIT } from "./mod.ts";
import { runLua } from "./_testing.ts";

const MiB = 1024 * 1024;

Deno.test("the data limit is 64 MiB unless SLOTH_LUA_DATA_LIMIT says otherwise", () => {
  assert.equal(Deno.env.get("SLOTH_LUA_DATA_LIMIT"), undefined, "run the tests without it");
  assert.equal(LUA_DATA_LIMIT, 64 * MiB);
});

Deno.test("a string over the data limit is refused before it crosses, at the caller's line", async () => {
  const r = await runLua(`local big = string.rep("x", 65 * 1024 * 1024)
  local results = {}
  local function try(call) results[#results + 1] = select(2, pcall(call)) end
  try(function() local _ = data.parse_json(big) end)
  try(function() local _ = fs.write("out.txt", big) end)
  try(function() local _ = exec.run(big) end)
  try(function() local _ = net.http_post("http://127.0.0.1:9/", big) end)
  try(function() local _ = data.to_json({ big }) end)
  return true, "", results`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [
    "workflow.lua:5: data.parse_json: the input is 65 MiB, more than the 64 MiB limit (SLOTH_LUA_DATA_LIMIT)",
    "workflow.lua:6: fs.write: the content is 65 MiB, more than the 64 MiB limit (SLOTH_LUA_DATA_LIMIT)",
    "workflow.lua:7: exec.run: the command is 65 MiB, more than the 64 MiB limit (SLOTH_LUA_DATA_LIMIT)",
    "workflow.lua:8: net.http_post: the body is 65 MiB, more than the 64 MiB limit (SLOTH_LUA_DATA_LIMIT)",
    "workflow.lua:9: data.to_json: the value is more than the 64 MiB limit (SLOTH_LUA_DATA_LIMIT); " +
    "a table counts its strings and keys, 8 bytes for each other value and 32 for each table",
  ]);
});

Deno.test("just under the data limit, a JSON text still parses and a table still encodes", async () => {
  const r = await runLua(`local text = '"' .. string.rep("x", 64 * 1024 * 1024 - 2) .. '"'
  local parsed = data.parse_json(text)
  text = nil
  local encoded = data.to_json({ string.rep("y", 60 * 1024 * 1024) })
  return true, "", { parsed = #parsed, encoded = #encoded }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, { parsed: 64 * MiB - 2, encoded: 60 * MiB + 4 });
});

Deno.test("tables are measured before they cross: shared parts count each time, a table inside itself is refused", async () => {
  const r = await runLua(`
  local t = { "leaf" }
  for i = 1, 40 do t = { t, t } end -- 2^40 leaves once written out
  local loop = { name = "loop" }
  loop.self = loop
  local wide = {}
  for i = 1, 2100000 do wide[i] = {} end -- 2.1 million tables at 32 bytes each
  local results = {}
  local function try(call) results[#results + 1] = select(2, pcall(call)) end
  try(function() local _ = data.to_json(t) end)
  try(function() local _ = data.to_yaml(loop) end)
  try(function() local _ = data.to_json(wide) end)
  return true, "", results`);
  assert.equal(r.error, undefined);
  const outputs = r.outputs as unknown as string[];
  assert.match(
    outputs[0],
    /^workflow\.lua:\d+: data\.to_json: the value is more than the 64 MiB limit/,
  );
  assert.match(
    outputs[1],
    /^workflow\.lua:\d+: data\.to_yaml: the value is a table that contains itself$/,
  );
  assert.match(
    outputs[2],
    /^workflow\.lua:\d+: data\.to_json: the value is more than the 64 MiB limit/,
  );
});

Deno.test("YAML gets a sixteenth of the data limit (parsing it takes far more memory than JSON)", async () => {
  const r = await runLua(`
  local ok, e = pcall(data.parse_yaml, string.rep("- {}\\n", 1024 * 1024 + 1))
  local fits = data.parse_yaml(string.rep("- 1\\n", 1000))
  return true, "", { e, #fits }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [
    "workflow.lua:3: data.parse_yaml: the input is 5 MiB, more than the 4 MiB limit " +
    "for YAML (1/16 of SLOTH_LUA_DATA_LIMIT)",
    1000,
  ]);
});

Deno.test("a task's message and outputs over the limit fail the task; a long error message is cut", async () => {
  const outputs = await runLua(
    `return true, "ok", { log = string.rep("x", 65 * 1024 * 1024) }`,
  );
  assert.equal(
    outputs.error,
    "the task function returned outputs that cannot be kept: their size is more than the " +
      "64 MiB limit (SLOTH_LUA_DATA_LIMIT); a table counts its strings and keys, 8 bytes for " +
      "each other value and 32 for each table",
  );
  const message = await runLua(`return true, string.rep("x", 65 * 1024 * 1024)`);
  assert.equal(
    message.error,
    "the task function returned a message that cannot be kept: it is 65 MiB, more than the " +
      "64 MiB limit (SLOTH_LUA_DATA_LIMIT)",
  );
  const long = await runLua(`error(string.rep("e", 100000), 0)`);
  assert.equal(long.error, `${"e".repeat(65536)}… (${100000 - 65536} more bytes)`);
});

Deno.test("Lua's output goes to the task's log, never to the process's own stdout or stderr", async () => {
  const r = await runLua(`
  print("a", 1)
  io.write("part ", 2, "; ")
  io.write("rest\\nnext ")
  io.stdout:write("line\\n")
  io.stderr:write("to stderr\\n", "and more\\n")
  io.output():write("via output\\n")
  warn("@on")
  warn("careful ", "now")
  io.write("unfinished")
  return true`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.logs, [
    "print:a 1",
    "print:part 2; rest",
    "print:next line",
    "stderr:to stderr",
    "stderr:and more",
    "print:via output",
    "warn:Lua warning: careful now",
    "print:unfinished",
  ]);
});

Deno.test("no Lua function reaches the process's standard streams, its input or JavaScript-side files", async () => {
  const r = await runLua(`
  local results = {}
  local function try(call) results[#results + 1] = select(2, pcall(call)) end
  try(function() local _ = io.read("l") end)
  try(function() local _ = io.stdin:read("l") end)
  try(function() local _ = io.tmpfile() end)
  try(function() local _ = io.open("x", "w") end)
  try(function() local _ = io.output("x") end)
  try(function() local _ = io.input("x") end)
  results[#results + 1] = select(2, load(string.dump(function() return 1 end)))
  local debug_names = {}
  for name in pairs(debug) do debug_names[#debug_names + 1] = name end
  table.sort(debug_names)
  results[#results + 1] = table.concat(debug_names, ",")
  results[#results + 1] = tostring(debug.getregistry)
  results[#results + 1] = tostring(package.loaded.io == io)
  return true, "", results`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [
    "workflow.lua:5: io.stdin: tasks have no standard input",
    "workflow.lua:6: io.stdin: tasks have no standard input",
    "workflow.lua:7: io.tmpfile is not available in sloth-runner; use fs.tmpname()",
    "workflow.lua:8: io.open is not available in sloth-runner; use fs.read(path) / fs.write(path, text)",
    "workflow.lua:9: io.output: only io.stdout is available; use fs.write(path, text) for files",
    "workflow.lua:10: io.input: only io.stdin is available; use fs.read(path) for files",
    "attempt to load a binary chunk (mode is 't')",
    "getinfo,traceback",
    "nil",
    "true",
  ]);
});

Deno.test("a long log line arrives whole, in pieces of at most 64 KiB cut between characters", async () => {
  const r = await runLua(`print(string.rep("é", 100000)) return true`);
  assert.equal(r.error, undefined);
  const pieces = r.logs.map((line) => line.slice("print:".length));
  assert.ok(pieces.length > 1);
  for (const piece of pieces) assert.ok(new TextEncoder().encode(piece).length <= 65536);
  assert.equal(pieces.join(""), "é".repeat(100000));
});

Deno.test(`at most ${MAX_IN_FLIGHT} exec.run and net.* calls of one Lua state are in flight at once`, async () => {
  let running = 0;
  let most = 0;
  const host = createHost({
    workdir: "/",
    env: {},
    values: {},
    log: () => {},
    exec: async () => {
      most = Math.max(most, ++running);
      await new Promise((resolve) => setTimeout(resolve, 20));
      running--;
      return { stdout: "", stderr: "", exit_code: 0, success: true };
    },
    resolveImport: () => {
      throw new Error("no imports here");
    },
  }) as Record<string, (cmd: string) => Promise<{ ok: boolean }>>;
  const results = await Promise.all(Array.from({ length: 30 }, () => host.exec_run("true")));
  assert.ok(results.every((r) => r.ok));
  assert.equal(most, MAX_IN_FLIGHT);
});

Deno.test("net.http_get refuses a body over the limit, declared or streamed; net.download streams it to the file", async () => {
  const size = 65 * MiB;
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const chunk = new Uint8Array(MiB).fill(120);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= size) return controller.close();
        controller.enqueue(chunk);
        sent += chunk.length;
      },
    });
    const headers: HeadersInit = req.url.endsWith("/declared")
      ? { "content-length": String(size) }
      : {};
    return new Response(body, { headers });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const r = await runLua(`
  local a, e1 = pcall(net.http_get, "${base}/declared")
  local b, e2 = pcall(net.http_get, "${base}/streamed")
  local got = net.download("${base}/streamed", "big.bin")
  return true, "", { e1, e2, got.bytes, fs.size("big.bin") }`);
  assert.equal(r.error, undefined);
  const limitWords = "is more than the 64 MiB limit (SLOTH_LUA_DATA_LIMIT); " +
    "net.download saves big responses to a file";
  assert.deepEqual(r.outputs, [
    `workflow.lua:3: net.http_get: the response from ${base}/declared ${limitWords}`,
    `workflow.lua:4: net.http_get: the response from ${base}/streamed ${limitWords}`,
    size,
    size,
  ]);
});

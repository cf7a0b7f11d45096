import assert from "node:assert/strict";
import { LuaFactory } from "wasmoon";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { loadWorkflow, LUA_WASM_PATH, luaAnnotations, LuaPool, openTaskSession } from "./mod.ts";
import { agentDef, GROUP_FIELDS, TASK_FIELDS, tlsDef } from "./normalize.ts";

const META = luaAnnotations();

/** Runs `body` as a task's function in a real task state; returns its outputs. */
async function runTask(body: string): Promise<Record<string, unknown>> {
  await using ws = await tempWorkspace({
    "workflow.lua":
      `TaskDefinitions = { g = { tasks = { { name = "t", command = function(params, inputs)
${body}
end } } } }`,
  });
  const pool = new LuaPool();
  try {
    const loaded = await loadWorkflow(pool, { file: "workflow.lua", cwd: ws.dir });
    const task = loaded.workflow.groups[0].tasks[0];
    const session = await openTaskSession(pool, loaded.source, task, { onLog: () => {} });
    const result = await session.call("command", { group: "g", task: "t", field: "command" }, [
      {},
      {},
    ]);
    session.release();
    assert.equal(result.error, undefined);
    return result.outputs ?? {};
  } finally {
    pool.close();
  }
}

/** A fresh wasmoon state, made the way worker.ts makes its states, before the prelude. */
async function withBareLua<T>(fn: (lua: { run(code: string): Promise<unknown> }) => Promise<T>) {
  const engine = await new LuaFactory(LUA_WASM_PATH).createEngine({
    injectObjects: false,
    enableProxy: false,
  });
  try {
    return await fn({ run: (code) => engine.doString(code) });
  } finally {
    engine.global.close();
  }
}

interface GlobalFound {
  kind: string;
  /** `debug.getinfo().source` of a function: "=sloth" for the prelude's, "=[C]" for C. */
  source?: string;
  /** Function members of a table, by name, with their source. */
  members: Record<string, string>;
}
type Globals = Record<string, GlobalFound>;

// Internal globals (`__sloth_call`, ...) start with "__" and are left out.
const WALK_GLOBALS = `
local found = {}
for name, value in pairs(_G) do
  if type(name) == "string" and name:sub(1, 2) ~= "__" then
    local entry = { kind = type(value), members = {} }
    if type(value) == "function" then entry.source = debug.getinfo(value, "S").source end
    if type(value) == "table" and value ~= _G then
      for key, member in pairs(value) do
        if type(key) == "string" and type(member) == "function" then
          entry.members[key] = debug.getinfo(member, "S").source
        end
      end
    end
    found[name] = entry
  end
end`;

/** `function a.b(` stubs of the annotations. */
function stubs(text: string): Set<string> {
  return new Set([...text.matchAll(/^function ([\w.]+)\(/gm)].map((m) => m[1]));
}

/** Globals the annotations declare: assigned (`name = ...`) or defined as functions. */
function declaredGlobals(text: string): Set<string> {
  const assigned = [...text.matchAll(/^(\w+) = /gm)].map((m) => m[1]);
  return new Set([...assigned, ...[...stubs(text)].filter((name) => !name.includes("."))]);
}

/** The `---@field` names of a `---@class` block. */
function classFields(text: string, name: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((line) =>
    /^---@class (\(exact\) )?(\S+)$/.exec(line)?.[2] === name
  );
  assert.notEqual(start, -1, `no ---@class ${name}`);
  const fields: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (!line.startsWith("---") || line.startsWith("---@class")) break;
    const field = /^---@field (\S+?)\??\s/.exec(line);
    if (field) fields.push(field[1]);
  }
  return fields;
}

const sorted = (names: Iterable<string>) => [...names].sort();

Deno.test("luaAnnotations() is a LuaLS meta file", () => {
  assert.equal(META.split("\n")[0], "---@meta");
  assert.ok(META.endsWith("\n"));
});

Deno.test("the annotations are valid Lua that defines every stub as a function", async () => {
  const names = sorted(stubs(META));
  const kinds = await withBareLua(async (lua) => {
    await lua.run(META);
    return await lua.run(`
      local kinds = {}
      for _, name in ipairs({ ${names.map((n) => JSON.stringify(n)).join(", ")} }) do
        local value = _G
        for part in name:gmatch("[^.]+") do value = value[part] end
        kinds[#kinds + 1] = type(value)
      end
      return kinds`) as string[];
  });
  assert.deepEqual(kinds, names.map(() => "function"));
  await assert.rejects(withBareLua((lua) => lua.run(`${META}\nfunction broken(`)));
});

Deno.test("every function the Lua runtime adds or replaces is annotated, and nothing else", async () => {
  const runtime = (await runTask(`${WALK_GLOBALS}\nreturn true, "", found`)) as Globals;
  const bare = await withBareLua((lua) => lua.run(`${WALK_GLOBALS}\nreturn found`)) as Globals;

  const mustStub = new Set<string>();
  const exposed = new Set<string>();
  for (const [name, found] of Object.entries(runtime)) {
    if (found.kind === "function") {
      exposed.add(name);
      if (found.source === "=sloth") mustStub.add(name);
    }
    for (const [key, source] of Object.entries(found.members)) {
      exposed.add(`${name}.${key}`);
      // A table the runtime adds (log, fs, ...): all of it; a standard one: what the prelude replaced.
      if (!(name in bare) || source === "=sloth") mustStub.add(`${name}.${key}`);
    }
  }
  // The walk itself must see the prelude's work, or the comparisons below prove nothing.
  for (const name of ["exec.run", "fs.read", "log.info", "net.download", "import", "os.getenv"]) {
    assert.ok(mustStub.has(name), `the walk did not find ${name}`);
  }

  const annotated = stubs(META);
  assert.deepEqual(sorted([...mustStub].filter((n) => !annotated.has(n))), [], "not annotated");
  assert.deepEqual(sorted([...annotated].filter((n) => !exposed.has(n))), [], "not in the runtime");

  const added = Object.keys(runtime).filter((name) => !(name in bare));
  assert.ok(added.includes("values") && added.includes("unpack"), "the walk missed the globals");
  const declared = declaredGlobals(META);
  assert.deepEqual(sorted(added.filter((n) => !declared.has(n))), [], "globals not declared");
  assert.deepEqual(sorted([...declared].filter((n) => !(n in runtime))), [], "declared, not set");
});

Deno.test("the task, group, agent and tls classes list exactly the fields the loader accepts", () => {
  // `tasks` and `uses` are read by the prelude before normalize.ts sees the fields.
  assert.deepEqual(sorted(classFields(META, "sloth.Task")), sorted([...TASK_FIELDS, "uses"]));
  assert.deepEqual(sorted(classFields(META, "sloth.Group")), sorted([...GROUP_FIELDS, "tasks"]));
  assert.deepEqual(sorted(classFields(META, "sloth.Agent")), sorted(Object.keys(agentDef.shape)));
  assert.deepEqual(sorted(classFields(META, "sloth.Tls")), sorted(Object.keys(tlsDef.shape)));
  assert.deepEqual(classFields(META, "sloth.TaskDefinitions"), ["[string]"]);
});

Deno.test("the option and reply classes match what exec and net accept and return", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("body"),
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const out = await runTask(`
    local function known(fn, ...)
      local ok, err = pcall(fn, ...)
      return not ok and tostring(err):match("%(known: ([^)]*)%)") or "no error: " .. tostring(err)
    end
    local function keys(t)
      local list = {}
      for k in pairs(t) do list[#list + 1] = k end
      table.sort(list)
      return list
    end
    local probe = { not_an_option = 1 }
    return true, "", {
      exec = known(exec.run, "true", probe),
      http_get = known(net.http_get, "${base}", probe),
      http_post = known(net.http_post, "${base}", "", probe),
      download = known(net.download, "${base}", "f", probe),
      exec_result = keys(exec.run("true")),
      response = keys(net.http_get("${base}")),
      downloaded = keys(net.download("${base}", "f")),
    }`);
  const options = (list: unknown) => sorted(String(list).split(", "));
  assert.deepEqual(options(out.exec), sorted(classFields(META, "sloth.ExecOptions")));
  for (const fn of ["http_get", "http_post", "download"]) {
    assert.deepEqual(options(out[fn]), sorted(classFields(META, "sloth.HttpOptions")), fn);
  }
  assert.deepEqual(out.exec_result, sorted(classFields(META, "sloth.ExecResult")));
  assert.deepEqual(out.response, sorted(classFields(META, "sloth.HttpResponse")));
  assert.deepEqual(out.downloaded, sorted(classFields(META, "sloth.Download")));
});

Deno.test("every stub has a description and a ---@param for each parameter", () => {
  const blocks = META.trimEnd().split("\n\n").filter((block) => /^function /m.test(block));
  assert.ok(blocks.length >= stubs(META).size);
  for (const block of blocks) {
    const lines = block.split("\n");
    const [, name, params] = /^function ([\w.]+)\((.*)\) end$/.exec(lines.at(-1)!)!;
    assert.match(lines[0], /^--- \S/, `${name} has no description`);
    const documented = lines.flatMap((line) => /^---@param (\S+?)\??\s/.exec(line)?.[1] ?? []);
    assert.deepEqual(documented, params ? params.split(", ") : [], name);
  }
});

Deno.test("every sloth.* type the annotations use is defined in them", () => {
  const defined = new Set(
    [...META.matchAll(/^---@(?:class(?: \(exact\))?|alias) (sloth\.\w+)/gm)].map((m) => m[1]),
  );
  const used = new Set(
    [...META.matchAll(/^---@(?:field|param|return|type|alias) .*$/gm)]
      .flatMap((m) => [...m[0].matchAll(/sloth\.\w+/g)].map((u) => u[0])),
  );
  assert.ok(used.has("sloth.Task") && used.has("sloth.TaskFunction"));
  assert.deepEqual(sorted([...used].filter((name) => !defined.has(name))), []);
});

import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { loadWorkflow, LuaPool } from "./mod.ts";

async function load(files: Record<string, string>, values: unknown = {}) {
  await using ws = await tempWorkspace(files);
  const pool = new LuaPool();
  const logs: string[] = [];
  try {
    const loaded = await loadWorkflow(pool, {
      file: "workflow.lua",
      cwd: ws.dir,
      values,
      onLog: (level, message) => logs.push(`${level}:${message}`),
    });
    return { ...loaded, logs, dir: ws.dir };
  } finally {
    pool.close();
  }
}

async function loadError(files: Record<string, string>): Promise<SlothError> {
  try {
    await load(files);
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    return error;
  }
  assert.fail("the workflow loaded");
}

Deno.test("loadWorkflow() reads groups, tasks in file order, and every field", async () => {
  const { workflow, dir } = await load({
    "workflow.lua": `
TaskDefinitions = {
  build = {
    description = "Build it",
    workdir = "sub",
    tasks = {
      { name = "compile", description = "compile", command = "make", retries = 2, timeout = "30s",
        async = true, params = { level = 3, nested = { a = { 1, 2 } } } },
      { name = "package", command = function() return true end, depends_on = "compile",
        next_if_fail = { "compile" }, run_if = "test -f x", abort_if = function() return false end,
        pre_exec = function() return true end, post_exec = function() return true end,
        workdir = "/tmp", timeout = 1.5 },
    },
  },
}`,
  });
  assert.deepEqual(workflow.groups.map((g) => g.name), ["build"]);
  const [compile, pack] = workflow.groups[0].tasks;
  assert.equal(workflow.groups[0].description, "Build it");
  assert.deepEqual(compile, {
    id: "build.compile",
    name: "compile",
    group: "build",
    description: "compile",
    command: { kind: "shell", script: "make" },
    dependsOn: [],
    nextIfFail: [],
    retries: 2,
    timeoutMs: 30_000,
    async: true,
    preExec: undefined,
    postExec: undefined,
    runIf: undefined,
    abortIf: undefined,
    workdir: `${dir}/sub`,
    params: { level: 3, nested: { a: [1, 2] } },
    target: { kind: "local" },
    syncBack: "on_success",
  });
  assert.deepEqual(pack.command, { kind: "lua", where: "workflow.lua:9" });
  assert.deepEqual(pack.dependsOn, ["compile"]);
  assert.deepEqual(pack.nextIfFail, ["compile"]);
  assert.deepEqual(pack.runIf, { kind: "shell", script: "test -f x" });
  assert.equal(pack.abortIf?.kind, "lua");
  assert.equal(pack.preExec?.kind, "lua");
  assert.equal(pack.postExec?.kind, "lua");
  assert.equal(pack.workdir, "/tmp");
  assert.equal(pack.timeoutMs, 1500);
});

Deno.test("loadWorkflow() defaults a task's workdir to the directory sloth-runner started in", async () => {
  const { workflow, dir } = await load({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "a", command = "true" } } } }`,
  });
  assert.equal(workflow.groups[0].tasks[0].workdir, dir);
});

Deno.test("loadWorkflow() names keyed tasks by their key and keeps the file's order of keys", async () => {
  const { workflow } = await load({
    "workflow.lua": `
TaskDefinitions = {
  zeta = { tasks = { { name = "z1", command = "true" } } },
  alpha = {
    tasks = {
      { name = "listed", command = "true" },
      third = { command = "true" },
      first = { command = "true" },
      ["second-one"] = { command = "true" },
    },
  },
}`,
  });
  assert.deepEqual(workflow.groups.map((g) => g.name), ["zeta", "alpha"]);
  assert.deepEqual(workflow.groups[1].tasks.map((t) => t.name), [
    "listed",
    "third",
    "first",
    "second-one",
  ]);
});

Deno.test("loadWorkflow() starts a task from its `uses` table and overrides its fields", async () => {
  const { workflow } = await load({
    "workflow.lua": `
local base = { command = "echo base", retries = 3, description = "from base" }
local mid = { uses = base, retries = 1 }
TaskDefinitions = { g = { tasks = { { name = "t", uses = mid, description = "mine" } } } }`,
  });
  const task = workflow.groups[0].tasks[0];
  assert.deepEqual(task.command, { kind: "shell", script: "echo base" });
  assert.equal(task.retries, 1);
  assert.equal(task.description, "mine");
});

Deno.test("loadWorkflow() reads `Modern DSLs = {` as TaskDefinitions, with a warning", async () => {
  const { workflow, warnings } = await load({
    "workflow.lua": `-- pasted from the docs
Modern DSLs = {
  my_group = { tasks = { { name = "local_task", command = "echo 'Hello from local machine!'" } } }
}`,
  });
  assert.equal(workflow.groups[0].tasks[0].name, "local_task");
  assert.deepEqual(warnings, [
    'workflow.lua:2: "Modern DSLs = {" is not valid Lua; reading it as "TaskDefinitions = {"',
  ]);
});

Deno.test("loadWorkflow() reports a syntax error as file:line with the source around it", async () => {
  const error = await loadError({
    "workflow.lua": `TaskDefinitions = {
  g = {
    tasks = {
      { name = "a" command = "true" },
    },
  },
}`,
  });
  assert.equal(error.code, "lua_syntax");
  assert.equal(error.exitCode, 2);
  assert.match(error.message, /^workflow\.lua:4: '}' expected .*near 'command'/);
  assert.equal(
    error.detail,
    [
      "  2 |   g = {",
      "  3 |     tasks = {",
      '> 4 |       { name = "a" command = "true" },',
      "  5 |     },",
      "  6 |   },",
    ].join("\n"),
  );
});

Deno.test("loadWorkflow() does not accept other invalid names than the docs' header", async () => {
  const error = await loadError({ "workflow.lua": `Modern Tasks = {}` });
  assert.equal(error.code, "lua_syntax");
  assert.match(error.message, /^workflow\.lua:1:/);
});

Deno.test("loadWorkflow() reports an error raised at the top level with its line", async () => {
  const error = await loadError({
    "workflow.lua": `local x = 1\nerror("config missing")\nTaskDefinitions = {}`,
  });
  assert.equal(error.code, "lua_runtime");
  assert.equal(error.message, "workflow.lua:2: config missing");
  assert.match(error.detail ?? "", /> 2 \| error\("config missing"\)/);
});

Deno.test("loadWorkflow() explains a file without TaskDefinitions", async () => {
  const error = await loadError({ "workflow.lua": `Tasks = {}` });
  assert.equal(error.code, "workflow_invalid");
  assert.match(error.message, /does not define TaskDefinitions/);
  assert.match(error.hint ?? "", /TaskDefinitions = \{/);
});

Deno.test("loadWorkflow() lists every invalid field, with the group and task it belongs to", async () => {
  const error = await loadError({
    "workflow.lua": `
TaskDefinitions = {
  g = {
    tasks = {
      { name = "a", cmd = "true", retries = "3" },
      { name = "b", timeout = "soon", async = "yes" },
      { description = "no name" },
      { name = "c", params = { f = function() end } },
    },
  },
}`,
  });
  assert.equal(error.code, "workflow_invalid");
  const m = error.message;
  assert.match(m, /group "g" task "a": unknown field "cmd"\. Did you mean "command"\?/);
  assert.match(m, /group "g" task "a": retries must be a whole number/);
  assert.match(m, /group "g" task "b": timeout "soon" is not a duration/);
  assert.match(m, /group "g" task "b": async must be true or false/);
  assert.match(m, /group "g" task #3: name is missing/);
  assert.match(m, /params\.f is a function/);
});

Deno.test("loadWorkflow() rejects two tasks with the same name in a group", async () => {
  const error = await loadError({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "a", command = "true" }, { name = "a", command = "false" } } } }`,
  });
  assert.match(error.message, /group "g": two tasks are named "a"/);
});

Deno.test("loadWorkflow() resolves delegate_to and agent in every documented form", async () => {
  const { workflow, dir } = await load({
    "workflow.lua": `
TaskDefinitions = {
  remote = {
    delegate_to = { address = "localhost:50051" },
    agents = { web = { address = "10.0.0.5:7000", token_env = "WEB_TOKEN", tls = { ca = "certs/ca.pem" }, compress = true } },
    tasks = {
      { name = "inherits", command = "true" },
      { name = "own", delegate_to = { address = "192.168.1.100:50051", compress = false }, command = "true" },
      { name = "plain", delegate_to = "host.example:1234", command = "true" },
      { name = "by_name", delegate_to = "web", command = "true" },
      { name = "pt", agent = "web", command = "true" },
    },
  },
  here = { tasks = { { name = "local_task", command = "true" } } },
}`,
  });
  const targets = Object.fromEntries(
    workflow.groups.flatMap((g) => g.tasks).map((t) => [t.name, t.target]),
  );
  assert.deepEqual(targets, {
    inherits: {
      kind: "remote",
      address: "localhost:50051",
      tokenEnv: undefined,
      tls: undefined,
      compress: undefined,
    },
    own: {
      kind: "remote",
      address: "192.168.1.100:50051",
      tokenEnv: undefined,
      tls: undefined,
      compress: false,
    },
    plain: { kind: "remote", address: "host.example:1234" },
    by_name: {
      kind: "remote",
      address: "10.0.0.5:7000",
      agent: "web",
      tokenEnv: "WEB_TOKEN",
      tls: { ca: `${dir}/certs/ca.pem`, cert: undefined, key: undefined },
      compress: true,
    },
    pt: {
      kind: "remote",
      address: "10.0.0.5:7000",
      agent: "web",
      tokenEnv: "WEB_TOKEN",
      tls: { ca: `${dir}/certs/ca.pem`, cert: undefined, key: undefined },
      compress: true,
    },
    local_task: { kind: "local" },
  });
});

Deno.test("loadWorkflow() meets a misspelt field whose value is a function by its name, and a function where none goes by where it is", async () => {
  const error = await loadError({
    "workflow.lua": `
TaskDefinitions = {
  g = {
    on_sucess = function() end,
    description = function() end,
    tasks = {
      { name = "a", command = "true", post_exce = function() return true end },
      { name = "b", command = "true", timeout = function() end },
    },
  },
}`,
  });
  const m = error.message;
  assert.match(m, /group "g" task "a": unknown field "post_exce"\. Did you mean "post_exec"\?/);
  assert.match(m, /group "g": unknown field "on_sucess"\./);
  assert.match(
    m,
    /group "g": description is a function \(workflow\.lua:5\); it takes no function here/,
  );
  assert.match(
    m,
    /group "g" task "b": timeout is a function \(workflow\.lua:8\); it takes no function here/,
  );
  assert.doesNotMatch(m, /only strings, numbers, booleans and tables can be kept/);
});

Deno.test("loadWorkflow() names the unknown agent and lists the known ones", async () => {
  const error = await loadError({
    "workflow.lua": `
TaskDefinitions = { g = {
  agents = { builder = { address = "h:1" }, tester = { address = "h:2" } },
  tasks = { { name = "a", agent = "bulder", command = "true" } } } }`,
  });
  assert.equal(error.code, "workflow_invalid");
  assert.match(
    error.message,
    /task "a": unknown agent "bulder"\. Known agents: builder, tester \(the group's agents table\)\. Did you mean "builder"\?/,
  );
});

Deno.test("loadWorkflow() rejects an address without a port", async () => {
  const error = await loadError({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "localhost" },
      tasks = { { name = "a", command = "true" } } } }`,
  });
  assert.match(error.message, /group "g": delegate_to/);
});

Deno.test("loadWorkflow() runs imports relative to the importing file and gives `values`", async () => {
  const { workflow, files, dir, logs } = await load({
    "workflow.lua": `
local common = import("lib/common.lua")
log.info("env is " .. values.env .. ", first region " .. values.regions[1])
TaskDefinitions = { g = { tasks = { { name = common.name, command = "true" } } } }`,
    "lib/common.lua": `local more = import("more.lua"); return { name = "from_" .. more }`,
    "lib/more.lua": `return "import"`,
  }, { env: "prod", regions: ["eu", "us"] });
  assert.equal(workflow.groups[0].tasks[0].name, "from_import");
  assert.deepEqual(files, [`${dir}/workflow.lua`, `${dir}/lib/common.lua`, `${dir}/lib/more.lua`]);
  assert.deepEqual(logs, ["info:env is prod, first region eu"]);
});

Deno.test("loadWorkflow() reports an import that is missing at the line that imports it", async () => {
  const error = await loadError({
    "workflow.lua": `\nlocal x = import("nope.lua")\nTaskDefinitions = {}`,
  });
  assert.match(error.message, /^workflow\.lua:2: import: nope\.lua not found/);
});

Deno.test("loadWorkflow() stops a top level that never ends", async () => {
  await using ws = await tempWorkspace({ "workflow.lua": "while true do end" });
  const pool = new LuaPool();
  try {
    const started = Date.now();
    await assert.rejects(
      pool.open(
        {
          file: `${ws.dir}/workflow.lua`,
          cwd: ws.dir,
          workdir: ws.dir,
          values: {},
          env: {},
          quiet: false,
        },
        { onLog: () => {} },
        { loadTimeoutMs: 300 },
      ),
      (error: SlothError) => error.code === "lua_timeout" && /within 300ms/.test(error.message),
    );
    assert.ok(Date.now() - started < 3000);
  } finally {
    pool.close();
  }
});

Deno.test("loadWorkflow() says which file is missing", async () => {
  await using ws = await tempWorkspace();
  const pool = new LuaPool();
  try {
    await assert.rejects(
      loadWorkflow(pool, { file: "missing.lua", cwd: ws.dir }),
      (error: SlothError) =>
        error.code === "workflow_not_found" &&
        error.message === "workflow file missing.lua not found",
    );
  } finally {
    pool.close();
  }
});

Deno.test("loadWorkflow() says what is wrong with a delegate_to address whose port is out of range", async () => {
  const error = await loadError({
    "workflow.lua": `TaskDefinitions = { g = {
      tasks = { { name = "a", delegate_to = "127.0.0.1:99999", command = "true" } } } }`,
  });
  assert.match(
    error.message,
    /task "a": delegate_to "127\.0\.0\.1:99999" has a port outside 1-65535/,
  );
});

Deno.test("loadWorkflow() skips a #! first line, keeping line numbers, and require gives built-in modules and files", async () => {
  const { workflow, logs } = await load({
    "workflow.lua": `#!/usr/bin/env sloth-runner
local log = require("log")
local utils = require("lib/utils")
log.success(utils.name .. " " .. tostring(require("lib.utils") == utils) .. " " .. tostring(require("exec") == exec))
TaskDefinitions = { g = { tasks = { { name = utils.name, command = "true" } } } }`,
    "lib/utils.lua": `loads = (loads or 0) + 1; return { name = "from_utils" .. loads }`,
  });
  assert.equal(workflow.groups[0].tasks[0].name, "from_utils1");
  assert.deepEqual(logs, ["info:from_utils1 true true"]);
  const error = await loadError({
    "workflow.lua":
      `#!/usr/bin/env sloth-runner\nlocal p = require("pulumi")\nTaskDefinitions = {}`,
  });
  assert.equal(
    error.message,
    'workflow.lua:2: "pulumi" is a module of the Go sloth-runner that sloth-runner does not ' +
      'provide; use exec.run("pulumi ...")',
  );
  const other = await loadError({
    "workflow.lua": `local p = require("nosuch")\nTaskDefinitions = {}`,
  });
  assert.match(
    other.message,
    /^workflow\.lua:1: require: no module "nosuch" here \(built in: log, exec, fs, data, net, goroutine\) and no file nosuch\.lua/,
  );
});

Deno.test("loadWorkflow() refuses a module of the Go sloth-runner that task code reads, naming what to use", async () => {
  const error = await loadError({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
  { name = "up", command = function() pulumi.up() return true end },
  { name = "svc", command = function() systemd.restart("nginx") return true end },
} } }`,
  });
  assert.equal(error.code, "workflow_invalid");
  assert.equal(
    error.message,
    "the workflow uses modules of the Go sloth-runner that sloth-runner does not provide:\n" +
      '  - workflow.lua:2: "pulumi" is a module of the Go sloth-runner that sloth-runner does ' +
      'not provide; use exec.run("pulumi ...")\n' +
      '  - workflow.lua:3: "systemd" is a module of the Go sloth-runner that sloth-runner does ' +
      'not provide; use exec.run("systemctl ...")',
  );
});

Deno.test("loadWorkflow() names the globals task code reads that nothing defines, counting the state's and imports'", async () => {
  const { unknownGlobals, warnings } = await load({
    "workflow.lua": `local lib = import("lib.lua")
_G["made_" .. "here"] = true
TaskDefinitions = { g = { tasks = { { name = "t", command = function()
  return from_lib() and made_here, exce.run("true")
end } } } }`,
    "lib.lua": `function from_lib() return true end`,
  });
  assert.deepEqual(unknownGlobals, [
    'workflow.lua:4: task code reads global "exce", which nothing defines. Did you mean "exec"?',
  ]);
  assert.deepEqual(warnings, []);
});

Deno.test("loadWorkflow() on an agent (one task) does not check globals", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "t", command = function()
  return pulumi, nothing_defines_this
end } } } }`,
  });
  const pool = new LuaPool();
  try {
    const loaded = await loadWorkflow(pool, {
      file: "workflow.lua",
      cwd: ws.dir,
      ignoreTargets: true,
      only: { group: "g", task: "t" },
    });
    assert.deepEqual(loaded.unknownGlobals, []);
    assert.deepEqual(loaded.workflow.groups[0].tasks.map((t) => t.name), ["t"]);
  } finally {
    pool.close();
  }
});

Deno.test("loadWorkflow() loads a file that Lua reads and the check's parser does not, with a note", async () => {
  const { workflow, warnings, unknownGlobals } = await load({
    "workflow.lua": `local big = "\\u{7FFFFFFF}"
TaskDefinitions = { g = { tasks = { { name = "t", command = function() return unknown_here end } } } }`,
  });
  assert.equal(workflow.groups[0].tasks.length, 1);
  assert.deepEqual(unknownGlobals, []);
  assert.deepEqual(warnings, [
    "workflow.lua:1: not checked for globals that nothing defines (the check's Lua parser " +
    "stops here: UTF-8 value too large near '\\u{7FFFFFF')",
  ]);
});

Deno.test("a module of the Go sloth-runner read at the top level fails the load at that line", async () => {
  const error = await loadError({
    "workflow.lua": `local x <const> = 1\nlocal stack = pulumi.stack("dev")\nTaskDefinitions = {}`,
  });
  assert.equal(
    error.message,
    'workflow.lua:2: "pulumi" is a module of the Go sloth-runner that sloth-runner does not ' +
      'provide; use exec.run("pulumi ...")',
  );
});

import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import type { Workflow } from "../model/mod.ts";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { loadWorkflow, LuaPool } from "./mod.ts";

async function load(source: string, files: Record<string, string> = {}) {
  await using ws = await tempWorkspace({ "workflow.lua": source, ...files });
  const pool = new LuaPool();
  try {
    const loaded = await loadWorkflow(pool, { file: "workflow.lua", cwd: ws.dir });
    return { ...loaded, dir: ws.dir };
  } finally {
    pool.close();
  }
}

async function loadError(source: string): Promise<string> {
  try {
    await load(source);
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    return error.message;
  }
  assert.fail("the workflow loaded");
}

/** The workflow with each Lua function's file:line left out (the two forms differ there). */
function shape(workflow: Workflow): unknown {
  return JSON.parse(JSON.stringify(workflow, (key, value) => key === "where" ? "fn" : value));
}

Deno.test("task():...:build() gives the same task as the table form, field for field", async () => {
  const builder = await load(`
local function ok() return true end
workflow.define("ship", {
  description = "ship it",
  tasks = {
    task("compile"):command("make"):build(),
    task("deploy")
      :description("deploys")
      :command(ok)
      :timeout("30s")
      :retries(2, "linear")
      :depends_on("compile")
      :next_if_fail({ "compile" })
      :async(true)
      :workdir("sub")
      :run_if("test -f x")
      :abort_if(ok)
      :pre_hook(ok)
      :post_hook(ok)
      :on_success(ok)
      :on_fail(ok)
      :on_timeout(ok)
      :params({ a = 1 })
      :params({ b = "two" })
      :artifacts("dist/*.tgz", "report.txt")
      :user("builder")
      :sync_back("always")
      :build(),
  },
})`);
  const table = await load(`
local function ok() return true end
TaskDefinitions = {
  ship = {
    description = "ship it",
    tasks = {
      { name = "compile", command = "make" },
      { name = "deploy", description = "deploys", command = ok, timeout = "30s", retries = 2,
        retry_strategy = "linear", depends_on = "compile", next_if_fail = { "compile" },
        async = true, workdir = "sub", run_if = "test -f x", abort_if = ok, pre_exec = ok,
        post_exec = ok, on_success = ok, on_failure = ok, on_timeout = ok,
        params = { a = 1, b = "two" }, artifacts = { "dist/*.tgz", "report.txt" },
        user = "builder", sync_back = "always" },
    },
  },
}`);
  assert.deepEqual(
    shape(builder.workflow),
    JSON.parse(JSON.stringify(shape(table.workflow)).replaceAll(table.dir, builder.dir)),
  );
  const deploy = builder.workflow.groups[0].tasks[1];
  assert.equal(deploy.retryStrategy, "linear");
  assert.deepEqual(deploy.artifacts, ["dist/*.tgz", "report.txt"]);
  assert.equal(deploy.user, "builder");
  // Where a builder's function is, is the user's function, not the wrapper around it.
  assert.match((deploy.command as { where: string }).where, /workflow\.lua:2$/);
});

Deno.test("workflow.define: builder and table forms, several per file, in the order defined", async () => {
  const { workflow } = await load(`
workflow.define("zeta")
  :description("builder form")
  :version("2.1.0")
  :config({ timeout = "10m", retries = 3, workdir = "sub" })
  :tasks({ task("a"):command("true"), task("b"):command("true"):timeout("5s"):retries(0):build() })
workflow.define("alpha", { description = "table form", version = 7, tasks = { { name = "t", command = "true" } } })
TaskDefinitions = { legacy = { tasks = { { name = "x", command = "true" } } } }
`);
  assert.deepEqual(workflow.groups.map((g) => g.name), ["legacy", "zeta", "alpha"]);
  const [, zeta, alpha] = workflow.groups;
  assert.equal(zeta.description, "builder form");
  assert.equal(zeta.version, "2.1.0");
  assert.equal(alpha.version, "7");
  // config gives each task what it does not set itself.
  const [a, b] = zeta.tasks;
  assert.equal(a.timeoutMs, 600_000);
  assert.equal(a.retries, 3);
  assert.equal(b.timeoutMs, 5_000);
  assert.equal(b.retries, 0);
  assert.match(a.workdir, /\/sub$/);
});

Deno.test("a builder's delegate_to may be a function, called as the file loads", async () => {
  const { workflow } = await load(`
workflow.define("w", { tasks = {
  task("r"):command("true"):delegate_to(function() return "127.0.0.1:" .. (50000 + 51) end):build(),
} })`);
  assert.deepEqual(workflow.groups[0].tasks[0].target, {
    kind: "remote",
    address: "127.0.0.1:50051",
  });
});

Deno.test("a builder says which method does not exist, where, and what it may have meant", async () => {
  const message = await loadError(`
local t = task("a")
  :comand("ls")
  :build()
workflow.define("w", { tasks = { t } })`);
  assert.match(
    message,
    /workflow\.lua:3: task\("a"\) has no method :comand \(did you mean :command\?\)/,
  );
  assert.match(message, /:on_failure/);
  assert.match(
    await loadError(`workflow.define("w"):taks({})`),
    /workflow\.lua:1: workflow "w" has no method :taks \(did you mean :tasks\?\)/,
  );
});

Deno.test("a builder refuses a value that is neither a command nor a function where it is given", async () => {
  assert.match(
    await loadError(`workflow.define("w", { tasks = { task("a"):command(42):build() } })`),
    /workflow\.lua:1: task\("a"\):command: expected a shell command string or a function, got number/,
  );
  assert.match(
    await loadError(
      `workflow.define("w", { tasks = { task("a"):on_success("echo hi"):build() } })`,
    ),
    /workflow\.lua:1: task\("a"\):on_success: expected a function, got string/,
  );
  assert.match(
    await loadError(`local b = task("a"); b.command("ls")`),
    /workflow\.lua:1: command: call it with a colon/,
  );
});

Deno.test("workflow names are unique, also against TaskDefinitions; other names mix freely", async () => {
  assert.match(
    await loadError(`
workflow.define("w", { tasks = {} })
workflow.define("w", { tasks = {} })`),
    /workflow\.lua:3: workflow\.define: a workflow "w" is already defined \(workflow\.lua:2\)/,
  );
  assert.match(
    await loadError(`
TaskDefinitions = { w = { tasks = { { name = "a", command = "true" } } } }
workflow.define("w", { tasks = { task("b"):command("true") } })`),
    /workflow "w" is defined twice: by workflow\.define \(workflow\.lua:3\) and in TaskDefinitions/,
  );
  // A built task (or a builder) also goes into a TaskDefinitions group.
  const { workflow } = await load(`
TaskDefinitions = { t = { tasks = { task("a"):command("true"):build(), task("b"):command("true") } } }`);
  assert.deepEqual(workflow.groups[0].tasks.map((t) => t.name), ["a", "b"]);
});

Deno.test("a workflow's fields are checked like a group's, each problem with its workflow and task", async () => {
  const message = await loadError(`
workflow.define("w", {
  config = { timeout = "soon", paralel = 3 },
  on_complete = "done",
})`);
  assert.match(message, /workflow "w": config: unknown field "paralel"/);
  assert.match(message, /workflow "w": config\.timeout "soon" is not a duration/);
  assert.match(message, /workflow "w": on_complete must be a Lua function/);
  const tasks = await loadError(`
workflow.define("w", {
  tasks = {
    task("a"):command("true"):retries(1, "sometimes"):artifacts("../out"):build(),
    task("b"):command("true"):timeout("never"):build(),
  },
})`);
  assert.match(
    tasks,
    /workflow "w" task "a": retry_strategy must be "exponential", "linear" or "fixed"/,
  );
  assert.match(tasks, /task "a": artifacts.*"\.\.\/out" must be a path inside the task's workdir/);
  assert.match(tasks, /workflow "w" task "b": timeout "never" is not a duration/);
});

Deno.test("a file with neither TaskDefinitions nor workflow.define says both ways", async () => {
  assert.match(
    await loadError(`local x = 1`),
    /does not define TaskDefinitions or any workflow\.define/,
  );
});

Deno.test("workflow(name) is workflow.define(name), and a workflow's :build() keeps it defined", async () => {
  const { workflow } = await load(`
workflow("cron"):description("called"):tasks({ task("t"):command("true") }):build()`);
  assert.deepEqual(workflow.groups.map((g) => [g.name, g.description]), [["cron", "called"]]);
});

Deno.test("config maps the Go tool's keys onto each task: retries, retry_policy, max_parallel_tasks, fail_fast", async () => {
  const { workflow } = await load(`
workflow.define("w", {
  metadata = { author = "me", tags = { "a", "b" } },
  config = { max_retries = 2, retry_policy = "linear", max_parallel_tasks = 3, fail_fast = true },
  tasks = { task("a"):command("true"), task("b"):command("true"):retries(0, "fixed") },
})
workflow.define("v", { config = { continue_on_error = false }, tasks = { task("c"):command("true") } })
workflow.define("u", { config = { continue_on_error = true }, tasks = { task("d"):command("true") } })`);
  const [a, b] = workflow.groups[0].tasks;
  assert.equal(a.retries, 2);
  assert.equal(a.retryStrategy, "linear");
  assert.equal(a.groupMaxParallel, 3);
  assert.equal(a.stopRunOnFailure, true);
  assert.equal(b.retries, 0);
  assert.equal(b.retryStrategy, "fixed");
  assert.equal(workflow.groups[1].tasks[0].stopRunOnFailure, true);
  assert.equal(workflow.groups[2].tasks[0].stopRunOnFailure, undefined);
  assert.match(
    await loadError(
      `workflow.define("w", { config = { fail_fast = true, continue_on_error = true }, tasks = {} })`,
    ),
    /fail_fast and continue_on_error say opposite things/,
  );
  assert.match(
    await loadError(`workflow.define("w", { config = { max_paralel_tasks = 2 }, tasks = {} })`),
    /workflow "w": config: unknown field "max_paralel_tasks"\. Did you mean "max_parallel_tasks"\?/,
  );
});

Deno.test("task({ ... }) and workflow({ name = ..., tasks = ... }) as the Go tool's older examples write them", async () => {
  const { workflow } = await load(`
workflow({
  name = "legacy",
  description = "older agents style",
  tasks = {
    { name = "a", run = "echo a" },
    { name = "b", depends_on = "a", run = function() return { changed = true } end },
  },
})
workflow.define("one", { tasks = { task({ name = "solo", command = "true", timeout = "5s" }) } })`);
  assert.deepEqual(workflow.groups.map((g) => g.name), ["legacy", "one"]);
  const [a, b] = workflow.groups[0].tasks;
  assert.deepEqual(a.command, { kind: "shell", script: "echo a" });
  assert.equal(b.command?.kind, "lua");
  assert.deepEqual(b.dependsOn, ["a"]);
  assert.equal(workflow.groups[1].tasks[0].timeoutMs, 5_000);
  assert.match(
    await loadError(
      `workflow.define("w", { tasks = { task({ name = "x", run = "a", command = "b" }) } })`,
    ),
    /workflow\.lua:1: task "x": set run or command, not both/,
  );
});

Deno.test("config keys of the Go tool that mean nothing here are said, with what to use, and the load goes on", async () => {
  const { workflow, warnings } = await load(`
workflow.define("w", {
  config = { timeout = "1m", cleanup_on_failure = true, circuit_breaker = { threshold = 3 },
             create_workdir_before_run = true },
  tasks = { task("a"):command("true") },
})`);
  assert.equal(workflow.groups[0].tasks[0].timeoutMs, 60_000);
  assert.deepEqual(workflow.groups[0].dir?.create, true);
  assert.deepEqual(warnings, [
    'workflow "w": config.cleanup_on_failure is a setting of the Go sloth-runner that does ' +
    "nothing here; instead: create_workdir_before_run = true with clean_workdir_after_run = " +
    "function(r) return not r.success end removes the workflow's own directory after a failure",
    'workflow "w": config.circuit_breaker is a setting of the Go sloth-runner that does ' +
    "nothing here; instead: a task's retries and retry_strategy",
  ]);
});

Deno.test("a builder refuses nil and a field set twice, adds lists up, and takes delegate_to(false) as here", async () => {
  assert.match(
    await loadError(
      `workflow.define("w", { tasks = { task("a"):command("true"):delegate_to(values.host):build() } })`,
    ),
    /workflow\.lua:1: task\("a"\):delegate_to: got nil \(a variable that is not set\?\)/,
  );
  assert.match(
    await loadError(`workflow.define("w", { tasks = { task("a"):command("true")
      :timeout("1s")
      :timeout("2s"):build() } })`),
    /workflow\.lua:\d: task\("a"\):timeout: timeout is set already \(workflow\.lua:\d\)/,
  );
  assert.match(
    await loadError(
      `workflow.define("w", { tasks = { task("a"):on_failure(print):on_fail(print):build() } })`,
    ),
    /task\("a"\):on_fail: on_failure is set already/,
  );
  assert.match(
    await loadError(`workflow.define("w"):description("x"):description("y")`),
    /workflow "w":description: description is set already/,
  );
  const { workflow } = await load(`
local b = task("b"):command("true")
workflow.define("w")
  :tasks({ task("a"):command("true"), b })
  :tasks({ task("c"):command("true"):depends_on("a"):depends_on({ "b" }):delegate_to(false):user(0) })`);
  const [a, bb, c] = workflow.groups[0].tasks;
  assert.deepEqual([a.name, bb.name, c.name], ["a", "b", "c"]);
  assert.deepEqual(c.dependsOn, ["a", "b"]);
  assert.deepEqual(c.target, { kind: "local" });
  assert.equal(c.user, "0");
});

Deno.test("pcall(require, ...) and pcall(import, ...) load the file relative to the calling file", async () => {
  const { workflow } = await load(
    `local ok, utils = pcall(require, "lib/utils")
local ok2, same = pcall(import, "lib/utils.lua")
local missing = pcall(require, "lib/missing")
assert(ok and ok2 and utils == same and not missing, tostring(utils))
workflow.define(utils.name, { tasks = { task("t"):command("true") } })`,
    { "lib/utils.lua": `return { name = "from_utils" }` },
  );
  assert.equal(workflow.groups[0].name, "from_utils");
});

Deno.test("a timeout longer than a timer can hold is refused where it is given, not run as 1 ms", async () => {
  const message = await loadError(`workflow.define("w"):config({ timeout = "600h" }):tasks({
    task("a"):command("true"):timeout(1e12):build() })`);
  assert.match(
    message,
    /workflow "w": config\.timeout "600h" is longer than the longest timeout, 24 days/,
  );
  const { workflow } = await load(
    `workflow.define("w", { tasks = { task("a"):command("true"):timeout("596h"):build() } })`,
  );
  assert.equal(workflow.groups[0].tasks[0].timeoutMs, 596 * 3600_000);
});

/** `list`, `validate`, `version`, `--help` and usage errors, as separate processes. */
import assert from "node:assert/strict";
import { cliProcess, FIXTURES, ROOT, tempWorkspace } from "../_helpers/mod.ts";

const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));

Deno.test("list shows groups, tasks, descriptions, dependencies and where each runs", async () => {
  const r = await cliProcess(["list", "-f", "workflow.lua"], { cwd: `${FIXTURES}/seed_pt` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^my_distributed_group — Um grupo de tarefas com tarefas distribuídas\.$/m,
  );
  assert.match(
    r.stdout,
    /^ {2}remote_hello\s+agent my_remote_agent \(localhost:50051\)\s+-\s+Executa uma tarefa hello world em um agente remoto\.$/m,
  );
  assert.match(r.stdout, /^ {2}local_task\s+local\s+-\s+Esta tarefa é executada localmente\.$/m);
  const deps = await cliProcess(["list", "-f", "workflow.lua"], { cwd: `${FIXTURES}/lua_task` });
  assert.match(deps.stdout, /^ {2}consume\s+local\s+produce\s*$/m);
});

Deno.test("validate accepts a good workflow, says where tasks run, and contacts no agent", async () => {
  const r = await cliProcess(["validate", "-f", "workflow.lua"], {
    cwd: `${FIXTURES}/seed_en_task`,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "workflow.lua is valid: 1 group, 2 tasks (1 remote)\n");
});

Deno.test("validate reports the problems of a bad workflow and exits 2", async () => {
  const cycle = await cliProcess(["validate", "-f", "workflow.lua"], { cwd: `${FIXTURES}/cycle` });
  assert.equal(cycle.code, 2);
  assert.match(cycle.stderr, /cycle: a -> c -> b -> a/);
  const syntax = await cliProcess(["validate", "-f", "workflow.lua"], {
    cwd: `${FIXTURES}/syntax_error`,
  });
  assert.equal(syntax.code, 2);
  assert.match(syntax.stderr, /^error: workflow\.lua:4:/m);
});

Deno.test("version prints the version from deno.json", async () => {
  const r = await cliProcess(["version"], { cwd: ROOT });
  assert.equal(r.code, 0);
  assert.match(r.stdout, new RegExp(`^sloth-runner ${denoJson.version.replaceAll(".", "\\.")} `));
  const flag = await cliProcess(["--version"], { cwd: ROOT });
  assert.equal(flag.stdout.trim(), denoJson.version);
});

Deno.test("every command has --help, and run's help lists every flag and the exit codes", async () => {
  for (const command of ["run", "list", "validate", "version"]) {
    const r = await cliProcess([command, "--help"], { cwd: ROOT });
    assert.equal(r.code, 0, command);
    assert.match(r.stdout, new RegExp(`^Usage: sloth-runner ${command}`, "m"));
  }
  const run = await cliProcess(["run", "--help"], { cwd: ROOT });
  for (
    const flag of [
      "--file",
      "--group",
      "--task",
      "--values",
      "--max-parallel",
      "--dry-run",
      "--yes",
      "--output",
      "--verbose",
    ]
  ) {
    assert.match(run.stdout, new RegExp(flag), flag);
  }
  assert.match(run.stdout, /130\s+interrupted/);
  const top = await cliProcess(["--help"], { cwd: ROOT });
  assert.match(top.stdout, /run \[options\]/);
});

Deno.test("a bad flag is a usage error with exit code 2", async () => {
  const r = await cliProcess(["run", "--no-such-flag"], { cwd: ROOT });
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "error: unknown option '--no-such-flag'\n(sloth-runner run --help shows its options)\n",
  );
  const agent = await cliProcess(["agent", "ping"], { cwd: ROOT });
  assert.match(agent.stderr, /\(sloth-runner agent ping --help shows its options\)/);
  const dir = await cliProcess(["run", "-f", "tests"], { cwd: ROOT });
  assert.equal(dir.code, 2);
  assert.equal(
    dir.stderr,
    "error: tests is a directory, not a workflow file\nhint: pass the file itself, e.g. -f tests/workflow.lua\n",
  );
  const j = await cliProcess(["run", "-j", "0"], { cwd: ROOT });
  assert.equal(j.code, 2);
  assert.match(j.stderr, /expected a whole number ≥ 1/);
  const out = await cliProcess(["run", "--output", "yaml"], { cwd: ROOT });
  assert.equal(out.code, 2);
  assert.match(out.stderr, /Allowed choices are text, json/);
});

Deno.test("--yes is accepted", async () => {
  const r = await cliProcess(["run", "-f", "workflow.lua", "--yes", "-t", "greet"], {
    cwd: `${FIXTURES}/shell_task`,
  });
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("a bad values file is reported with its name", async () => {
  const r = await cliProcess(["run", "-f", "workflow.lua", "-v", "missing.yaml"], {
    cwd: `${FIXTURES}/values`,
  });
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "error: values file missing.yaml not found\n" +
      "hint: -v takes a YAML file, relative to the current directory\n",
  );
});

Deno.test("validate stops a top level that never ends, within its time limit", async () => {
  const r = await cliProcess(["validate", "-f", "workflow.lua"], {
    cwd: `${FIXTURES}/hostile/lua_loop`,
    env: { SLOTH_LUA_TIMEOUT: "1s" },
  });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: the workflow did not finish loading within 1000ms$/m);
  assert.match(r.stderr, /^hint: Look for an endless loop/m);
});

Deno.test("validate stops a top level that eats memory, at its memory limit", async () => {
  const r = await cliProcess(["validate", "-f", "workflow.lua"], {
    cwd: `${FIXTURES}/hostile/lua_bomb`,
    env: { SLOTH_LUA_MEMORY: String(64 * 1024 * 1024) },
  });
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "error: workflow.lua: the Lua code used more than its memory limit of 64 MiB (SLOTH_LUA_MEMORY)\n",
  );
});

Deno.test("agent start-up errors say what failed, why, and what to do", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const inUse = await cliProcess(["agent", "-p", String(port)], { cwd: ROOT });
  assert.equal(inUse.code, 2);
  assert.equal(
    inUse.stderr,
    `error: cannot listen on 127.0.0.1:${port}: the port is already in use\n` +
      "hint: stop what uses it (another agent?), or choose another port: -p PORT (-p 0 picks a free one)\n",
  );
  const token = await cliProcess(["agent", "-p", "0", "--token-file", "/nonexistent/token"], {
    cwd: ROOT,
  });
  assert.equal(token.code, 2);
  assert.match(
    token.stderr,
    /^error: cannot read token file \/nonexistent\/token: it does not exist\nhint: make one with: openssl rand -hex 32 > /,
  );
  const address = await cliProcess(["agent", "ping", "localhost"], { cwd: ROOT });
  assert.equal(address.code, 2);
  assert.equal(
    address.stderr,
    'error: "localhost" is not an agent address\n' +
      "hint: give it as host:port with a port from 1 to 65535, e.g. 127.0.0.1:50051 " +
      "(or an agent's name, with an inventory: -i FILE)\n",
  );
  const range = await cliProcess(["agent", "ping", "127.0.0.1:99999"], { cwd: ROOT });
  assert.equal(range.code, 2);
  assert.match(range.stderr, /^error: "127\.0\.0\.1:99999" is not an agent address\n/);
});

Deno.test("a bad environment variable is a usage error that says what it expects, before any task runs", async () => {
  const timeout = await cliProcess(["validate", "-f", "workflow.lua"], {
    cwd: `${FIXTURES}/shell_task`,
    env: { SLOTH_LUA_TIMEOUT: "banana" },
  });
  assert.equal(timeout.code, 2);
  assert.equal(
    timeout.stderr,
    'error: SLOTH_LUA_TIMEOUT=banana is not valid: expected a duration such as "30s" or "2m"\n' +
      "hint: fix or unset SLOTH_LUA_TIMEOUT\n",
  );
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "here", command = "touch ran" },
      { name = "there", delegate_to = "127.0.0.1:1", command = "true" } } } }`,
  });
  const sync = await cliProcess(["run"], { cwd: ws.dir, env: { SLOTH_SYNC_MAX_BYTES: "lots" } });
  assert.equal(sync.code, 2);
  assert.match(
    sync.stderr,
    /^error: SLOTH_SYNC_MAX_BYTES=lots is not a size such as 64G, 512M or 1048576\nhint: /,
  );
  await assert.rejects(Deno.stat(`${ws.dir}/ran`), Deno.errors.NotFound);
});

Deno.test("a task function that eats memory fails naming the limit and how to change it", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "greedy", command = function()
      local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(1000) .. i end return true end } } } }`,
  });
  const r = await cliProcess(["run", "--plain"], {
    cwd: ws.dir,
    env: { SLOTH_LUA_MEMORY: String(32 * 1024 * 1024) },
  });
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^\[greedy\] ✘ failed: the Lua code used more than its memory limit of 32 MiB \(SLOTH_LUA_MEMORY\)/m,
  );
});

Deno.test("a mistyped agent subcommand names the real ones", async () => {
  const r = await cliProcess(["agent", "stop"], { cwd: ROOT });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: unknown agent command 'stop' \(agent commands: start, ping\)\n/);
});

Deno.test("help for an unknown command, a retries out of range and an unknown task say what is there", async () => {
  const help = await cliProcess(["help", "nosuch"], { cwd: ROOT });
  assert.equal(help.code, 2);
  assert.match(
    help.stderr,
    /^error: unknown command 'nosuch' \(commands: run, list, validate, agent, /,
  );
  await using ws = await tempWorkspace({
    "retries.lua":
      `TaskDefinitions = { g = { tasks = { { name = "a", retries = -1, command = "true" } } } }`,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "build", command = "true" }, { name = "test", command = "true" } } } }`,
  });
  const retries = await cliProcess(["validate", "-f", "retries.lua"], { cwd: ws.dir });
  assert.match(retries.stderr, /retries must be a whole number of extra attempts, 0 to 100/);
  const task = await cliProcess(["run", "-t", "deploy"], { cwd: ws.dir });
  assert.equal(task.code, 2);
  assert.match(
    task.stderr,
    /^hint: Tasks: build, test \(sloth-runner list -f FILE shows them all\)\.$/m,
  );
});

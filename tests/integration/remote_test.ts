/** A master (the real CLI) and real agent processes on 127.0.0.1. */
import assert from "node:assert/strict";
import { jobDirs, startAgent } from "../_helpers/agent.ts";
import {
  cliProcess,
  copyFixture,
  ROOT,
  snapshot,
  tempWorkspace,
  waitFor,
} from "../_helpers/mod.ts";
import { runArgs } from "../../scripts/executables.ts";

const lua = (s: TemplateStringsArray, ...v: unknown[]) => String.raw(s, ...v);

Deno.test("a remote task creates, modifies, deletes and chmods files, and they land on the master", async () => {
  await using workRoot = await tempWorkspace();
  await using agent = await startAgent({ args: ["--work-root", workRoot.dir] });
  await using ws = await tempWorkspace({
    "keep.txt": "keep\n",
    "modify.txt": "before\n",
    "delete.txt": "bye\n",
    "script.sh": "#!/bin/sh\necho run\n",
    "sub/nested.txt": "nested\n",
    "workflow.lua": lua`
TaskDefinitions = {
  remote = {
    delegate_to = { address = "${"AGENT"}" },
    tasks = {
      {
        name = "change_things",
        command = "echo after > modify.txt; rm delete.txt; chmod +x script.sh; echo new > added.txt; " ..
          "mkdir -p made/empty; ln -s keep.txt link; rm -r sub; echo \"ran in $PWD\"",
      },
    },
  },
}`.replace("AGENT", agent.address),
  });
  await Deno.chmod(`${ws.dir}/script.sh`, 0o644);
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(
    r.stdout,
    new RegExp(`^\\[change_things@${agent.address}\\] ran in /.*sloth-job-`, "m"),
  );
  const files = await snapshot(ws.dir);
  assert.equal(files["keep.txt"], "keep\n");
  assert.equal(files["modify.txt"], "after\n");
  assert.equal(files["added.txt"], "new\n");
  assert.equal(files["delete.txt"], undefined);
  assert.equal(files["sub/nested.txt"], undefined);
  assert.equal(files["link"], "-> keep.txt");
  assert.equal((await Deno.stat(`${ws.dir}/script.sh`)).mode! & 0o111, 0o111);
  assert.ok((await Deno.stat(`${ws.dir}/made/empty`)).isDirectory);
  await assert.rejects(Deno.stat(`${ws.dir}/sub`));
  assert.match(
    r.stdout,
    new RegExp(`^change_things\\s+success\\s+1\\s+\\S+\\s+agent ${agent.address}\\s*$`, "m"),
  );
  assert.match(
    agent.log(),
    /job 1 remote\.change_things \(attempt 1\) from 127\.0\.0\.1:\d+: success in /,
  );
  await waitFor(() => jobDirs(agent, workRoot.dir).length === 0, 3000);
});

Deno.test("outputs flow from a remote task to a local one and back to a remote one", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "workflow.lua": lua`
local agent = { address = "${"AGENT"}" }
TaskDefinitions = {
  flow = {
    tasks = {
      { name = "remote_first", delegate_to = agent, params = { n = 20 },
        command = function(params) return true, "made", { n = params.n + 1, list = { "x", "y" } } end },
      { name = "local_middle", depends_on = "remote_first",
        command = function(params, inputs) return true, "doubled", { n = inputs.remote_first.n * 2 } end },
      { name = "remote_last", delegate_to = agent, depends_on = { "local_middle", "remote_first" },
        command = function(params, inputs)
          log.info("n=" .. inputs.local_middle.n .. " list=" .. table.concat(inputs.remote_first.list, ","))
          return true, "done", { final = inputs.local_middle.n }
        end },
    },
  },
}`.replace("AGENT", agent.address),
  });
  const r = await cliProcess(["run", "-f", "workflow.lua", "--output", "json"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const finished = Object.fromEntries(
    events.filter((e) => e.type === "task_finished").map((e) => [e.task, e]),
  );
  assert.deepEqual(finished.remote_first.outputs, { n: 21, list: ["x", "y"] });
  assert.deepEqual(finished.local_middle.outputs, { n: 42 });
  assert.deepEqual(finished.remote_last.outputs, { final: 42 });
  assert.equal(finished.remote_last.where, `agent ${agent.address}`);
  const log = events.find((e) => e.type === "log" && e.task === "remote_last");
  assert.deepEqual(log, {
    type: "log",
    id: "flow.remote_last",
    task: "remote_last",
    agent: agent.address,
    stream: "log",
    level: "info",
    line: "n=42 list=x,y",
  });
});

Deno.test("both seed documents' examples run unchanged against an agent on port 50051", async () => {
  await using agent = await startAgent({ port: 50051 });
  await using en = await copyFixture("seed_en_group");
  const group = await cliProcess(["run", "-f", "workflow.lua"], { cwd: en.dir });
  assert.equal(group.code, 0, group.stdout + group.stderr);
  assert.match(group.stdout, /^\[remote_hello@localhost:50051\] Hello from remote agent!$/m);
  assert.match(group.stdout, /^remote_hello\s+success\s+1\s+\S+\s+agent localhost:50051\s*$/m);

  await using pt = await copyFixture("seed_pt");
  const portuguese = await cliProcess(["run", "-f", "workflow.lua"], { cwd: pt.dir });
  assert.equal(portuguese.code, 0, portuguese.stdout + portuguese.stderr);
  assert.match(portuguese.stdout, /^\[remote_hello@my_remote_agent\] Olá do agente remoto!$/m);
  assert.match(portuguese.stdout, /^\[local_task\] Olá da máquina local!$/m);
  assert.match(
    portuguese.stdout,
    /^remote_hello\s+success .* agent my_remote_agent \(localhost:50051\)/m,
  );

  await using task = await copyFixture("seed_en_task");
  const dry = await cliProcess(["run", "-f", "workflow.lua", "--dry-run"], { cwd: task.dir });
  assert.equal(dry.code, 0);
  assert.match(dry.stdout, /specific_remote_task\s+agent 192\.168\.1\.100:50051/);
  const validate = await cliProcess(["validate", "-f", "workflow.lua"], { cwd: task.dir });
  assert.equal(validate.code, 0);
  assert.match(agent.log(), /job 2 my_distributed_group\.remote_hello/);
  assert.doesNotMatch(agent.log(), /job 3/);
});

Deno.test("an agent with a token refuses a master without it or with a wrong one; nothing runs", async () => {
  await using ws = await tempWorkspace({ "token": "s3cret-token\n" });
  await using agent = await startAgent({ args: ["--token-file", `${ws.dir}/token`] });
  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    `TaskDefinitions = { g = { agents = { a = { address = "${agent.address}", token_env = "MY_TOKEN" } },
      tasks = { { name = "t", agent = "a", command = "touch ran" } } } }`,
  );
  const wrong = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { MY_TOKEN: "nope" },
  });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stdout, new RegExp(`agent ${agent.address} refused the token`));
  const missing = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(missing.code, 1);
  assert.match(missing.stdout, /token_env MY_TOKEN is not set/);
  assert.ok(!(await snapshot(ws.dir))["ran"]);
  assert.doesNotMatch(agent.log(), /job \d/);

  const right = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { MY_TOKEN: "s3cret-token" },
  });
  assert.equal(right.code, 0, right.stdout + right.stderr);
  assert.equal((await snapshot(ws.dir))["ran"], "");
});

Deno.test("SLOTH_AGENT_TOKEN is the master's token when the agent has no token_env", async () => {
  await using agent = await startAgent({ env: { SLOTH_AGENT_TOKEN: "env-token" } });
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = "${"127.0.0.1:" + 0}", tasks = {} } }`,
  });
  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    `TaskDefinitions = { g = { delegate_to = "${agent.address}", tasks = { { name = "t", command = "true" } } } }`,
  );
  const none = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.match(none.stdout, /requires a token; set SLOTH_AGENT_TOKEN/);
  const ok = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: "env-token" },
  });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
});

Deno.test("an unreachable agent fails the task in seconds with the address and the reason", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "far", delegate_to = "127.0.0.1:1", command = "true" },
      { name = "near", command = "echo still ran" } } } }`,
  });
  const started = Date.now();
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.ok(Date.now() - started < 10_000);
  assert.match(
    r.stdout,
    /^far\s+failed .* agent 127\.0\.0\.1:1 unreachable: connect ECONNREFUSED 127\.0\.0\.1:1 \(is an agent running there\? start one with: sloth-runner agent -p 1\)$/m,
  );
  assert.match(r.stdout, /^\[near\] still ran$/m);
});

Deno.test("agent ping reports reachability, version and running jobs", async () => {
  await using agent = await startAgent({ args: ["--max-concurrent", "3"] });
  const r = await cliProcess(["agent", "ping", agent.address], { cwd: "/tmp" });
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    new RegExp(
      `^agent ${agent.address} is reachable: sloth-runner \\S+, protocol \\d+, 0 running, 0 waiting, 3 at once$`,
      "m",
    ),
  );
  const down = await cliProcess(["agent", "ping", "127.0.0.1:1"], { cwd: "/tmp" });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /agent 127\.0\.0\.1:1 unreachable/);
});

Deno.test("agent.ts and `agent start` are the same agent as `sloth-runner agent`", async () => {
  for (const entry of ["main", "start"] as const) {
    await using agent = await startAgent({ entry });
    const r = await cliProcess(["agent", "ping", agent.address], { cwd: "/tmp" });
    assert.equal(r.code, 0, r.stderr);
  }
});

Deno.test("an agent refuses a non-loopback address without a token, unless --insecure", async () => {
  const r = await cliProcess(["agent", "-p", "0", "--bind", "0.0.0.0"], { cwd: "/tmp" });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /refusing to listen on 0\.0\.0\.0 without a token/);
  assert.match(r.stderr, /hint: Set one with --token-file FILE or SLOTH_AGENT_TOKEN/);
});

Deno.test("on the agent, Lua sees the same values, imports and modules as on the master", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "values.yaml": "region: eu-west\nlimits: { cpu: 4 }\n",
    "lib/helpers.lua": `return { greet = function(who) return "hello " .. who end }`,
    "workflow.lua": `
local helpers = import("lib/helpers.lua")
TaskDefinitions = { g = { tasks = {
  { name = "remote_lua", delegate_to = "${agent.address}",
    command = function(params)
      local r = exec.run("echo shell-ok")
      fs.write("made-by-lua.txt", helpers.greet(values.region))
      log.info(helpers.greet("agent") .. " cpu=" .. values.limits.cpu .. " " .. r.stdout)
      return true, "ok", { region = values.region }
    end },
} } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua", "-v", "values.yaml"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^\[remote_lua@[^\]]+\] hello agent cpu=4 shell-ok$/m);
  assert.equal(await Deno.readTextFile(`${ws.dir}/made-by-lua.txt`), "hello eu-west");
});

Deno.test("the executable bit, empty directories and inner symlinks reach the agent", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "tool.sh": "#!/bin/sh\necho tool ran\n",
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "check", delegate_to = "${agent.address}",
        command = "./tool.sh; test -d empty && echo empty-dir; readlink link" },
    } } }`,
  });
  await Deno.chmod(`${ws.dir}/tool.sh`, 0o755);
  await Deno.mkdir(`${ws.dir}/empty`);
  await Deno.symlink("tool.sh", `${ws.dir}/link`);
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\] tool ran$/m);
  assert.match(r.stdout, /\] empty-dir$/m);
  assert.match(r.stdout, /\] tool\.sh$/m);
});

Deno.test("a symlink that points outside the workspace is not sent, with a warning", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "t", delegate_to = "${agent.address}", command = "test ! -e etc && echo not-there" },
    } } }`,
  });
  await Deno.symlink("/etc", `${ws.dir}/etc`);
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stderr, /WARN not sent: etc: symlink to \/etc points outside the workspace/);
  assert.match(r.stdout, /\] not-there$/m);
  assert.equal(await Deno.readLink(`${ws.dir}/etc`), "/etc");
});

Deno.test("a loopback agent without a token makes one only its own user can read; other users are refused", async () => {
  await using state = await tempWorkspace();
  const env = { XDG_RUNTIME_DIR: state.dir };
  const agent = await startAgent({ env });
  const tokenFile = `${state.dir}/sloth-runner/agent-127.0.0.1-${agent.port}.token`;
  assert.match(
    agent.log(),
    new RegExp(`token for this user's masters in ${tokenFile.replaceAll(".", "\\.")}`),
  );
  assert.equal((await Deno.stat(tokenFile)).mode! & 0o777, 0o600);
  assert.equal((await Deno.stat(`${state.dir}/sloth-runner`)).mode! & 0o777, 0o700);
  await using ws = await tempWorkspace({
    "workflow.lua":
      `TaskDefinitions = { g = { tasks = { { name = "t", delegate_to = "localhost:${agent.port}", command = "true" } } } }`,
  });
  const same = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir, env });
  assert.equal(same.code, 0, same.stdout + same.stderr);
  await using elsewhere = await tempWorkspace();
  const other = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { XDG_RUNTIME_DIR: elsewhere.dir },
  });
  assert.equal(other.code, 1);
  assert.match(other.stdout, /requires a token/);
  await agent.stop();
  await assert.rejects(Deno.stat(tokenFile), Deno.errors.NotFound);
});

Deno.test("a run of 150 remote tasks on one agent leaves it serving (connections are renewed)", async () => {
  await using agent = await startAgent();
  const tasks = Array.from(
    { length: 150 },
    (_, i) =>
      `{ name = "t${i}", async = true, delegate_to = "${agent.address}", command = "true" }`,
  );
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { ${tasks.join(",\n")} } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua", "-j", "8"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^150 tasks: 150 success$/m);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const ping = await cliProcess(["agent", "ping", agent.address], { cwd: "/tmp" });
  assert.equal(ping.code, 0, ping.stderr + agent.log());
});

Deno.test("a remote task that fails before its upload starts fails alone; the master does not crash", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "one", delegate_to = "${agent.address}", command = "true" },
      { name = "two", delegate_to = "${agent.address}", command = "true" },
      { name = "here", command = "echo still ran" } } } }`,
  });
  // Without sys access to the host name the master cannot name its workspace: an
  // exception between opening the call and sending on it.
  const args = runArgs("sloth-runner", ROOT).map((a) =>
    a.startsWith("--allow-sys") ? "--allow-sys=uid,gid" : a
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...args, "run", "--plain"],
    cwd: ws.dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1, stdout + stderr);
  assert.match(stdout, /^one +failed .*Requires sys access to "hostname"/m);
  assert.match(stdout, /^two +failed /m);
  assert.match(stdout, /^\[here\] still ran$/m);
  assert.doesNotMatch(stderr, /Uncaught/);
});

/**
 * Claims of the README that a careful new user found untrue, each as they would
 * check it: the CLI run as a process, its output, its reports.
 */
import assert from "node:assert/strict";
import { startAgent, waitUnderAgent } from "../_helpers/agent.ts";
import { cliProcess, spawnCli, tempWorkspace } from "../_helpers/mod.ts";

Deno.test("a task killed by a signal says which signal in the summary, the JSON report and JUnit", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "killed", async = true, command = "kill -KILL $$" },
      { name = "segv", async = true, command = "kill -SEGV $$" },
    } } }`,
  });
  const run = await cliProcess(
    [
      "run",
      "-f",
      "workflow.lua",
      "--plain",
      "--report",
      "json=run.json",
      "--report",
      "junit=j.xml",
    ],
    { cwd: ws.dir },
  );
  assert.equal(run.code, 1);
  const all = run.stdout + run.stderr;
  assert.match(all, /killed +failed .*killed by SIGKILL/);
  assert.match(all, /segv +failed .*killed by SIGSEGV/);
  assert.doesNotMatch(all, /exit code null/);
  const json = await Deno.readTextFile(`${ws.dir}/run.json`);
  assert.match(json, /"killed by SIGKILL"/);
  assert.match(json, /"killed by SIGSEGV"/);
  assert.doesNotMatch(json, /null"/);
  const junit = await Deno.readTextFile(`${ws.dir}/j.xml`);
  assert.match(junit, /message="killed by SIGKILL"/);
  assert.match(junit, /message="killed by SIGSEGV"/);
});

Deno.test("-t runs a task's next_if_fail targets, as the README says it runs what a task depends on", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "fails", command = "exit 3" },
      { name = "rescue", next_if_fail = "fails", command = "echo rescued > rescued.txt" },
      { name = "unrelated", command = "touch unrelated.txt" },
    } } }`,
  });
  const run = await cliProcess(["run", "-f", "workflow.lua", "-t", "rescue", "--plain"], {
    cwd: ws.dir,
  });
  // `fails` ran and failed, so `rescue` ran; the run fails because `fails` did.
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.equal(await Deno.readTextFile(`${ws.dir}/rescued.txt`), "rescued\n");
  assert.match(run.stdout + run.stderr, /fails +failed .*exit code 3/);
  await assert.rejects(Deno.stat(`${ws.dir}/unrelated.txt`));
});

Deno.test("on an agent, os.getenv sees the task's SLOTH_* variables only, and the README says so everywhere", async () => {
  await using agent = await startAgent({ env: { SLOTH_TEST_AGENT_VAR: "agent-only" } });
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
      tasks = { { name = "env", command = function()
        log.info("var=" .. tostring(os.getenv("SLOTH_TEST_AGENT_VAR")) ..
          " path=" .. tostring(os.getenv("PATH")) .. " task=" .. tostring(os.getenv("SLOTH_TASK")))
        return true
      end } } } }`,
  });
  const run = await cliProcess(["run", "-f", "workflow.lua", "--plain"], { cwd: ws.dir });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /var=nil path=nil task=env/);
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  assert.doesNotMatch(
    readme.replace(/\s+/g, " "),
    /os\.getenv` there sees the agent's environment/,
  );
});

Deno.test("the messages for a missing token and for an agent stopped mid-task are the README's", async () => {
  const readme = (await Deno.readTextFile(new URL("../../README.md", import.meta.url)))
    .replace(/\s+/g, " ");
  await using agent = await startAgent({ env: { SLOTH_AGENT_TOKEN: "s3cret-token-value" } });
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
      tasks = { { name = "t", command = "sleep 30" } } } }`,
  });
  // A directory of local tokens of its own: a file an earlier agent on the same port left
  // behind (a port the system gave out again) is not this master's to find.
  const none = await cliProcess(["run", "-f", "workflow.lua", "--plain"], {
    cwd: ws.dir,
    env: { XDG_RUNTIME_DIR: `${ws.dir}/runtime` },
  });
  assert.equal(none.code, 1);
  assert.match(
    none.stdout + none.stderr,
    /agent 127\.0\.0\.1:\d+ requires a token; set SLOTH_AGENT_TOKEN/,
  );
  assert.match(readme, /agent host:port requires a token; set SLOTH_AGENT_TOKEN/);

  const master = spawnCli(["run", "-f", "workflow.lua", "--plain"], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: "s3cret-token-value" },
  });
  await waitUnderAgent(agent, ["sleep", "30"]);
  await agent.stop("SIGTERM");
  const out = await master.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1, text);
  assert.match(text, /agent 127\.0\.0\.1:\d+ lost: the agent stopped while the task ran/);
  assert.match(readme, /agent host:port lost: \.\.\./);
});

Deno.test("a misspelt key inside an agent's table, and a misspelt agent name, get the closest suggestion", async () => {
  await using ws = await tempWorkspace({
    "key.lua": `TaskDefinitions = { g = { agents = { web = { adress = "127.0.0.1:5" } },
      tasks = { { name = "t", agent = "web", command = "true" } } } }`,
    "name.lua": `TaskDefinitions = { g = {
      agents = { web = { address = "127.0.0.1:5" }, db = { address = "127.0.0.1:6" } },
      tasks = { { name = "t", agent = "wbe", command = "true" } } } }`,
    "tls.lua": `TaskDefinitions = { g = { tasks = { { name = "t", command = "true",
      delegate_to = { address = "127.0.0.1:5", tls = { ca = "ca.pem", crt = "c.pem", key = "k.pem" } } } } } }`,
  });
  const key = await cliProcess(["validate", "-f", "key.lua"], { cwd: ws.dir });
  assert.equal(key.code, 2);
  assert.match(key.stderr, /agents\.web: unknown field "adress"\. Did you mean "address"\?/);
  assert.match(key.stderr, /agents\.web\.address is missing/);
  assert.doesNotMatch(key.stderr, /Unrecognized key|received undefined/);
  const name = await cliProcess(["validate", "-f", "name.lua"], { cwd: ws.dir });
  assert.match(name.stderr, /unknown agent "wbe"\..* Did you mean "web"\?/);
  const tls = await cliProcess(["validate", "-f", "tls.lua"], { cwd: ws.dir });
  assert.match(tls.stderr, /tls: unknown field "crt"\. Did you mean "cert"\?/);
});

Deno.test("a command line over 64 KiB arrives in 64 KiB lines; -t group.task picks one of two same-named tasks (both as the README says)", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = {
      a = { tasks = { { name = "build", command = "head -c 150000 /dev/zero | tr '\\\\0' x; echo" } } },
      b = { tasks = { { name = "build", command = "touch b-built" } } },
    }`,
  });
  const run = await cliProcess([
    "run",
    "-f",
    "workflow.lua",
    "-t",
    "a.build",
    "--plain",
    "--verbose",
  ], {
    cwd: ws.dir,
  });
  assert.equal(run.code, 0, run.stderr);
  const pieces = run.stdout.split("\n").map((l) => l.match(/x+$/)?.[0].length).filter(Boolean);
  assert.deepEqual(pieces, [65536, 65536, 150000 - 2 * 65536]);
  await assert.rejects(Deno.stat(`${ws.dir}/b-built`));
  const readme = (await Deno.readTextFile(new URL("../../README.md", import.meta.url)))
    .replace(/\s+/g, " ");
  assert.match(readme, /a line longer than 64 KiB arrives as several lines of 64 KiB/);
  assert.match(readme, /`group\.task` picks one of two same-named tasks/);
});

Deno.test("a remote task that writes a file the master has but did not send (.slothignore) fails; the local file is kept", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    ".slothignore": "*.log\n",
    "secret.log": "local secret\n",
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
      tasks = { { name = "t", command = "echo remote > secret.log; echo made > new.log" } } } }`,
  });
  const run = await cliProcess(["run", "-f", "workflow.lua", "--plain"], { cwd: ws.dir });
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(
    run.stdout + run.stderr,
    /conflict on secret\.log: this machine has it but did not send it/,
  );
  assert.equal(await Deno.readTextFile(`${ws.dir}/secret.log`), "local secret\n");
  // Nothing of that change set was written.
  await assert.rejects(Deno.stat(`${ws.dir}/new.log`));
  const readme = (await Deno.readTextFile(new URL("../../README.md", import.meta.url)))
    .replace(/\s+/g, " ");
  assert.match(readme, /`conflict on PATH: this machine has it but did not send it`/);
});

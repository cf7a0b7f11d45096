/** Stopping remote work: Ctrl-C, timeouts, abort_if, an agent that dies, an agent told to stop. */
import assert from "node:assert/strict";
import { jobDirs, startAgent } from "../_helpers/agent.ts";
import {
  cliProcess,
  LiveOutput,
  pgrep,
  snapshot,
  spawnCli,
  tempWorkspace,
  uniqueSeconds,
  waitFor,
} from "../_helpers/mod.ts";

function sleeperWorkflow(address: string, seconds: string, extra = ""): string {
  return `TaskDefinitions = { g = { tasks = {
    { name = "sleeper", delegate_to = "${address}", ${extra}
      command = "echo started; sleep ${seconds}; echo never" },
  } } }`;
}

Deno.test("Ctrl-C on the master kills the remote task's process tree within 2 seconds", async () => {
  await using agent = await startAgent();
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({ "workflow.lua": sleeperWorkflow(agent.address, seconds) });
  const child = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/\[sleeper@[^\]]+\] started/);
  assert.ok((await pgrep(`sleep ${seconds}`)).length > 0);
  child.kill("SIGINT");
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 130);
  assert.match(live.stdout, /^sleeper\s+cancelled /m);
  await waitFor(async () => (await pgrep(`sleep ${seconds}`)).length === 0, 2000);
  await waitFor(() => /job 1 g\.sleeper .*: cancelled by the master/.test(agent.log()), 5000);
});

Deno.test("a task timeout kills the remote task's tree and reports timeout", async () => {
  await using agent = await startAgent();
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({
    "workflow.lua": sleeperWorkflow(agent.address, seconds, `timeout = "1s",`),
  });
  const started = Date.now();
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.ok(Date.now() - started < 10_000);
  assert.match(r.stdout, /^sleeper\s+timeout\s+1 .* timed out after 1000ms$/m);
  await waitFor(async () => (await pgrep(`sleep ${seconds}`)).length === 0, 2000);
});

Deno.test("abort_if on another task cancels a running remote task", async () => {
  await using agent = await startAgent();
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "sleeper", async = true, delegate_to = "${agent.address}", command = "echo started; sleep ${seconds}" },
      { name = "stopper", async = true, abort_if = function() exec.run("sleep 1") return true end },
    } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^sleeper\s+cancelled /m);
  assert.match(r.stdout, /Run aborted: run aborted by task "stopper"/);
  await waitFor(async () => (await pgrep(`sleep ${seconds}`)).length === 0, 2000);
});

Deno.test("an agent killed mid-task fails the task as agent_lost, retries it, and leaves the master's directory as it was", async () => {
  const agent = await startAgent();
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({
    "data.txt": "original\n",
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "doomed", retries = 1, delegate_to = "${agent.address}",
        command = "echo changed > data.txt; echo new > new.txt; echo started; sleep ${seconds}" },
    } } }`,
  });
  const before = await snapshot(ws.dir);
  const child = spawnCli(["run", "-f", "workflow.lua", "--output", "json"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/"line":"started"/);
  const killedAt = Date.now();
  await agent.stop("SIGKILL");
  const status = await child.status;
  await live.done();
  assert.ok(Date.now() - killedAt < 15_000);
  assert.equal(status.code, 1);
  const events = live.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const retry = events.find((e) => e.type === "log" && /attempt 1 of 2 failed/.test(e.line));
  assert.match(retry.line, new RegExp(`agent ${agent.address.replaceAll(".", "\\.")} lost: `));
  const finished = events.find((e) => e.type === "task_finished");
  assert.equal(finished.status, "failed");
  assert.equal(finished.attempts, 2);
  assert.match(
    finished.error,
    new RegExp(`agent ${agent.address.replaceAll(".", "\\.")} (lost|unreachable)`),
  );
  assert.deepEqual(await snapshot(ws.dir), before);
  // The orphaned sleep on the "remote" side belonged to the killed agent.
  for (const pid of await pgrep(`sleep ${seconds}`)) Deno.kill(pid, "SIGKILL");
});

Deno.test("an agent told to stop cancels its running jobs, kills their trees and removes their directories", async () => {
  await using root = await tempWorkspace();
  const agent = await startAgent({ args: ["--work-root", root.dir] });
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({ "workflow.lua": sleeperWorkflow(agent.address, seconds) });
  const child = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/\[sleeper@[^\]]+\] started/);
  assert.equal(jobDirs(agent, root.dir).length, 1);
  assert.equal(await agent.stop("SIGTERM"), 0);
  assert.match(agent.log(), /SIGTERM: stopping/);
  assert.match(agent.log(), /stopped/);
  assert.deepEqual(jobDirs(agent, root.dir), []);
  assert.deepEqual(await pgrep(`sleep ${seconds}`), []);
  await child.status;
  await live.done();
  assert.match(live.stdout, /^sleeper\s+failed /m);
});

Deno.test("cancelling a task that prints without pause frees the agent's slot and directory", async () => {
  await using root = await tempWorkspace();
  await using agent = await startAgent({
    args: ["--max-concurrent", "1", "--work-root", root.dir],
  });
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "chatty", delegate_to = "${agent.address}",
        command = "echo started; while :; do echo 'a line of output that keeps coming'; done" },
    } } }`,
  });
  const child = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/\[chatty@[^\]]+\] started/);
  child.kill("SIGINT");
  assert.equal((await child.status).code, 130);
  await live.done();
  await waitFor(async () => {
    const ping = await cliProcess(["agent", "ping", agent.address], { cwd: "/tmp" });
    return /0 running, 0 waiting/.test(ping.stdout);
  }, 5000);
  await waitFor(() => jobDirs(agent, root.dir).length === 0, 5000);
  await Deno.writeTextFile(
    `${ws.dir}/next.lua`,
    `TaskDefinitions = { g = { tasks = { { name = "next", delegate_to = "${agent.address}", command = "echo next ran" } } } }`,
  );
  const next = await cliProcess(["run", "-f", "next.lua"], { cwd: ws.dir });
  assert.equal(next.code, 0, next.stdout + next.stderr);
});

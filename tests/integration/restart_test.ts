/**
 * Masters ride over agent restarts: a task whose agent was lost or unreachable
 * waits for the agent to answer again before its retry (real agents, SIGKILLed
 * and started again on the same port, as a supervisor would).
 */
import assert from "node:assert/strict";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { LiveOutput, pgrep, spawnCli, tempWorkspace, uniqueSeconds } from "../_helpers/mod.ts";

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function events(stdout: string): Record<string, unknown>[] {
  return stdout.trim().split("\n").map((line) => JSON.parse(line));
}

/** The task `g.work`'s finished event, and the warnings its retries printed. */
function outcome(stdout: string) {
  const all = events(stdout);
  const finished = all.find((e) => e.type === "task_finished") as {
    status: string;
    attempts: number;
    error?: string;
  };
  const retries = all.filter((e) => e.type === "log" && /^attempt \d+ of/.test(e.line as string))
    .map((e) => e.line as string);
  return { finished, retries };
}

function workflow(address: string, retries: number, command: string): string {
  return `TaskDefinitions = { g = { tasks = {
    { name = "work", retries = ${retries}, delegate_to = "${address}", command = "${command}" },
  } } }`;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** SIGKILL: the agent's own process only (its sandboxed children die with it). */
async function kill(agent: TestAgent, seconds?: string): Promise<void> {
  await agent.stop("SIGKILL");
  // Without a sandbox a job's process outlives a SIGKILLed agent.
  if (seconds) { for (const pid of await pgrep(`sleep ${seconds}`)) Deno.kill(pid, "SIGKILL"); }
}

Deno.test("a task whose agent is SIGKILLed under it and restarted 3s later on its port succeeds on its retry", async () => {
  const agent = await startAgent();
  // Both attempts run the same command: attempt 1 is killed in its sleep, attempt 2 finishes.
  await using ws = await tempWorkspace({
    "workflow.lua": workflow(agent.address, 1, "echo started; sleep 2; echo done > out.txt"),
  });
  const child = spawnCli(["run", "-f", "workflow.lua", "--output", "json"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/"line":"started"/);
  await kill(agent);
  await live.waitFor(/waiting for agent/);
  await delay(3000);
  await using again = await startAgent({ port: agent.port });
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 0, live.stdout + live.stderr);
  const { finished, retries } = outcome(live.stdout);
  assert.equal(finished.status, "success");
  assert.equal(finished.attempts, 2);
  assert.equal(retries.length, 1);
  assert.match(
    retries[0],
    new RegExp(
      `^attempt 1 of 2 failed: agent ${escape(agent.address)} lost: .+; ` +
        `waiting for agent ${escape(agent.address)} to answer \\(up to 10s\\), then retrying$`,
    ),
  );
  assert.doesNotMatch(retries[0], /null|undefined/);
  assert.equal(await Deno.readTextFile(`${ws.dir}/out.txt`), "done\n");
  assert.match(again.log(), /job 1 g\.work \(attempt 2\) from .*: success/);
});

Deno.test("with retries = 0, a task whose agent is SIGKILLed under it fails at once as agent lost", async () => {
  const agent = await startAgent();
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({
    "workflow.lua": workflow(agent.address, 0, `echo started; sleep ${seconds}`),
  });
  const child = spawnCli(["run", "-f", "workflow.lua", "--output", "json"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/"line":"started"/);
  await kill(agent, seconds);
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 1);
  const { finished, retries } = outcome(live.stdout);
  assert.equal(finished.status, "failed");
  assert.equal(finished.attempts, 1);
  assert.deepEqual(retries, []);
  assert.match(
    finished.error!,
    new RegExp(`^agent ${escape(agent.address)} lost: \\S.*the task's retries apply\\)$`),
  );
  assert.doesNotMatch(finished.error!, /null|undefined/);
});

Deno.test("a task sent while its agent is down succeeds when the agent is back within 5 seconds (retries = 2)", async () => {
  const down = await startAgent();
  await kill(down);
  await using ws = await tempWorkspace({
    "workflow.lua": workflow(down.address, 2, "echo ran > out.txt"),
  });
  const child = spawnCli(["run", "-f", "workflow.lua", "--output", "json"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/waiting for agent/);
  await delay(2500);
  await using back = await startAgent({ port: down.port });
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 0, live.stdout + live.stderr);
  const { finished, retries } = outcome(live.stdout);
  assert.equal(finished.status, "success");
  assert.equal(finished.attempts, 2);
  assert.match(
    retries[0],
    new RegExp(
      `^attempt 1 of 3 failed: agent ${escape(down.address)} unreachable: connect ` +
        `ECONNREFUSED .*; waiting for agent ${escape(down.address)} to answer`,
    ),
  );
  assert.equal(await Deno.readTextFile(`${ws.dir}/out.txt`), "ran\n");
  assert.match(back.log(), /job 1 g\.work \(attempt 2\)/);
});

Deno.test("with a token set on both sides, a task whose agent restarts (same token) succeeds on its retry", async () => {
  await using secrets = await tempWorkspace({ "token": "restart-test-token-0123456789\n" });
  const args = ["--token-file", `${secrets.dir}/token`];
  const env = { SLOTH_AGENT_TOKEN: "restart-test-token-0123456789" };
  const agent = await startAgent({ args });
  await using ws = await tempWorkspace({
    "workflow.lua": workflow(agent.address, 1, "echo started; sleep 2; echo done > out.txt"),
  });
  const child = spawnCli(["run", "-f", "workflow.lua", "--output", "json"], { cwd: ws.dir, env });
  const live = new LiveOutput(child);
  await live.waitFor(/"line":"started"/);
  await kill(agent);
  await live.waitFor(/waiting for agent/);
  await delay(2000);
  await using again = await startAgent({ port: agent.port, args });
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 0, live.stdout + live.stderr);
  const { finished } = outcome(live.stdout);
  assert.equal(finished.status, "success");
  assert.equal(finished.attempts, 2);
  assert.equal(await Deno.readTextFile(`${ws.dir}/out.txt`), "done\n");
  assert.match(again.log(), /job 1 g\.work \(attempt 2\) from .*: success/);
});

Deno.test("with retries = 0, a task whose agent is down fails at once as unreachable", async () => {
  const down = await startAgent();
  await kill(down);
  await using ws = await tempWorkspace({
    "workflow.lua": workflow(down.address, 0, "echo ran > out.txt"),
  });
  const child = spawnCli(["run", "-f", "workflow.lua", "--output", "json"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 1);
  const { finished, retries } = outcome(live.stdout);
  assert.equal(finished.attempts, 1);
  assert.deepEqual(retries, []);
  assert.match(finished.error!, new RegExp(`^agent ${escape(down.address)} unreachable: `));
  assert.doesNotMatch(live.stdout, /waiting for agent/);
});

Deno.test("Ctrl-C while a retry waits for its agent ends the run with 130", async () => {
  const down = await startAgent();
  await kill(down);
  await using ws = await tempWorkspace({
    "workflow.lua": workflow(down.address, 2, "echo ran > out.txt"),
  });
  const child = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/waiting for agent .* to answer/);
  child.kill("SIGINT");
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 130);
  assert.match(live.stdout, /^work\s+cancelled\s+1 /m);
  await assert.rejects(Deno.stat(`${ws.dir}/out.txt`));
});

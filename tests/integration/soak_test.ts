/**
 * Fault soak: 300 remote tasks over 3 agents while one agent after another is
 * SIGKILLed and started again on its port, as a supervisor would. Bounded (well
 * under a minute) so that it runs in CI with the rest.
 */
import assert from "node:assert/strict";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { LiveOutput, snapshot, spawnCli, tempWorkspace } from "../_helpers/mod.ts";

const TASKS = 300;
const CYCLES = 5;

/** What task `i` writes: numbers (so that files differ in size) and its own name. */
function expected(i: number): string {
  return Array.from({ length: i * 10 }, (_, n) => `${n + 1}\n`).join("") + `task ${i}\n`;
}

function soakWorkflow(addresses: string[]): string {
  return `
local agents = { "${addresses.join('", "')}" }
local tasks = {}
for i = 1, ${TASKS} do
  tasks[i] = {
    name = "t" .. i,
    async = true,
    retries = 3,
    delegate_to = agents[(i % #agents) + 1],
    command = "sleep 0.3; seq 1 " .. (i * 10) .. " > out/t" .. i .. ".txt; " ..
      "echo task " .. i .. " >> out/t" .. i .. ".txt",
  }
end
TaskDefinitions = { soak = { tasks = tasks } }
`;
}

const pause = (min: number, max: number) =>
  new Promise((resolve) => setTimeout(resolve, min + Math.random() * (max - min)));

Deno.test("300 tasks over 3 agents, one SIGKILLed and restarted on its port 5 times: every task succeeds, every file exact", async () => {
  await using root = await tempWorkspace();
  // Each agent keeps its jobs and cache under `<root>/sloth-agent-<port>`.
  const start = (port = 0) => startAgent({ port, args: ["--work-root", root.dir] });
  const agents: TestAgent[] = [];
  for (let i = 0; i < 3; i++) agents.push(await start());
  try {
    await using ws = await tempWorkspace({
      "workflow.lua": soakWorkflow(agents.map((a) => a.address)),
      "out/.keep": "",
    });
    const child = spawnCli(["run", "-f", "workflow.lua", "-j", "8", "--output", "json"], {
      cwd: ws.dir,
    });
    const live = new LiveOutput(child);
    let runEnded = false;
    const ended = child.status.finally(() => runEnded = true);
    await live.waitFor(/"type":"task_finished"/, 30_000);

    let cycles = 0;
    for (let cycle = 0; cycle < CYCLES && !runEnded; cycle++) {
      await pause(1000, 3000);
      const i = cycle % agents.length;
      await agents[i].stop("SIGKILL");
      // Down for a moment (a supervisor's restart delay), then back on the same port.
      await pause(200, 1000);
      agents[i] = await start(agents[i].port);
      cycles++;
    }
    const killsLandedMidRun = !runEnded;

    const status = await ended;
    await live.done();
    assert.equal(status.code, 0, live.stderr + live.stdout.slice(-4000));
    assert.equal(cycles, CYCLES);
    assert.ok(killsLandedMidRun, "the run ended before the last restart: make the tasks slower");

    const finished = live.stdout.trim().split("\n").map((line) => JSON.parse(line))
      .filter((e) => e.type === "task_finished");
    assert.equal(finished.length, TASKS);
    const failed = finished.filter((e) => e.status !== "success");
    assert.deepEqual(failed.map((e) => `${e.task}: ${e.status}: ${e.error}`), []);
    // The kills hit tasks (the soak tested something): some needed their retries.
    assert.ok(finished.some((e) => e.attempts > 1));
    const retries = live.stdout.trim().split("\n").map((line) => JSON.parse(line))
      .filter((e) => e.type === "log" && /^attempt \d+ of 4 failed: /.test(e.line));
    assert.ok(retries.length > 0);
    for (const { line } of retries) {
      assert.match(
        line,
        /; waiting for agent 127\.0\.0\.1:\d+ to answer \(up to 10s\), then retrying$/,
      );
      assert.doesNotMatch(line, /\b(null|undefined)\b/);
    }

    const files = await snapshot(ws.dir);
    const want: Record<string, string> = {
      "workflow.lua": soakWorkflow(agents.map((a) => a.address)),
      "out/.keep": "",
    };
    for (let i = 1; i <= TASKS; i++) want[`out/t${i}.txt`] = expected(i);
    delete files[".sloth"];
    for (const path of Object.keys(files)) if (path.startsWith(".sloth/")) delete files[path];
    assert.deepEqual(Object.keys(files).sort(), Object.keys(want).sort());
    for (const [path, content] of Object.entries(want)) {
      assert.ok(files[path] === content, `${path} differs`);
    }
  } finally {
    for (const agent of agents) await agent.stop();
  }
});

/** Workspace synchronisation rules, with real agents. */
import assert from "node:assert/strict";
import { startAgent } from "../_helpers/agent.ts";
import { cliProcess, LiveOutput, snapshot, spawnCli, tempWorkspace } from "../_helpers/mod.ts";

Deno.test("10 parallel remote tasks on 2 agents all land their files", async () => {
  await using a = await startAgent();
  await using b = await startAgent();
  const tasks = Array.from(
    { length: 10 },
    (_, i) =>
      `{ name = "t${i}", async = true, agent = "${i % 2 ? "a" : "b"}",
       command = "sleep 0.2; echo ${i} > out-${i}.txt" },`,
  ).join("\n");
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = {
      agents = { a = { address = "${a.address}" }, b = { address = "${b.address}" } },
      tasks = { ${tasks} } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua", "-j", "10"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const files = await snapshot(ws.dir);
  for (let i = 0; i < 10; i++) assert.equal(files[`out-${i}.txt`], `${i}\n`);
  for (const agent of [a, b]) {
    const peers = [...agent.log().matchAll(/job \d+ g\.t\d \(attempt 1\) from (\S+):/g)].map((m) =>
      m[1]
    );
    assert.equal(peers.length, 5);
    assert.equal(new Set(peers).size, 1, "one channel per agent per run");
  }
});

Deno.test("two parallel remote tasks that change the same file: one lands, the other fails naming the file", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "shared.txt": "base\n",
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = "${agent.address}", tasks = {
      { name = "first", async = true, command = "echo first > shared.txt; echo a > a.txt" },
      { name = "second", async = true, command = "sleep 0.5; echo second > shared.txt; echo b > b.txt" },
    } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^first\s+success /m);
  assert.match(
    r.stdout,
    /^second\s+failed .* conflict on shared\.txt: it changed here while the task ran remotely/m,
  );
  const files = await snapshot(ws.dir);
  assert.equal(files["shared.txt"], "first\n");
  assert.equal(files["a.txt"], "a\n");
  assert.equal(files["b.txt"], undefined, "nothing of a conflicting change set is applied");
});

Deno.test(".slothignore keeps paths from being sent, and they survive on the master", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    ".slothignore": "node_modules/\n*.log\n",
    "node_modules/pkg/index.js": "big",
    "debug.log": "local log",
    "src/app.js": "app",
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "look", delegate_to = "${agent.address}",
        command = "ls -R . | sort | tr '\\\\n' ' '; echo; test ! -e node_modules && test ! -e debug.log && echo out > build.log" },
    } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /node_modules|debug\.log/);
  assert.match(r.stdout, /app\.js/);
  const files = await snapshot(ws.dir);
  assert.equal(files["node_modules/pkg/index.js"], "big");
  assert.equal(files["debug.log"], "local log");
  assert.equal(files["build.log"], "out\n", "new files at ignored paths still come back");
});

Deno.test('a failed remote task\'s changes are dropped unless sync_back = "always"', async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = "${agent.address}", tasks = {
      { name = "dropped", command = "echo x > dropped.txt; exit 3" },
      { name = "kept", sync_back = "always", command = "echo x > kept.txt; exit 3" },
      { name = "never", sync_back = "never", command = "echo x > never.txt" },
    } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^dropped\s+failed .* exit code 3$/m);
  const files = await snapshot(ws.dir);
  assert.equal(files["dropped.txt"], undefined);
  assert.equal(files["kept.txt"], "x\n");
  assert.equal(files["never.txt"], undefined);
});

Deno.test("a 200 MB workspace goes to the agent and its change comes back", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "big", delegate_to = "${agent.address}",
        command = "du -sm data | cut -f1; sha256sum data/blob-0 | cut -c1-16; echo done > result.txt" },
    } } }`,
  });
  await Deno.mkdir(`${ws.dir}/data`);
  const blob = new Uint8Array(20 * 1024 * 1024);
  for (let i = 0; i < 10; i++) {
    crypto.getRandomValues(blob.subarray(0, 65536));
    blob.fill(i, 65536);
    await Deno.writeFile(`${ws.dir}/data/blob-${i}`, blob);
  }
  const local = new Uint8Array(
    await crypto.subtle.digest("SHA-256", await Deno.readFile(`${ws.dir}/data/blob-0`)),
  );
  const hex = [...local.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^\[big@[^\]]+\] 20[01]$/m);
  assert.match(r.stdout, new RegExp(`^\\[big@[^\\]]+\\] ${hex}$`, "m"));
  assert.equal(await Deno.readTextFile(`${ws.dir}/result.txt`), "done\n");
});

Deno.test("an agent runs --max-concurrent jobs at once and queues the rest", async () => {
  await using agent = await startAgent({ args: ["--max-concurrent", "1"] });
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = "${agent.address}", tasks = {
      { name = "one", async = true, command = "echo one-started; sleep 1" },
      { name = "two", async = true, command = "echo two-started; sleep 1" },
    } } }`,
  });
  const child = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/(one|two)-started/);
  const ping = await cliProcess(["agent", "ping", agent.address], { cwd: ws.dir });
  assert.match(ping.stdout, /1 running, 1 waiting, 1 at once/);
  assert.equal((await child.status).code, 0);
  await live.done();
});

Deno.test("the agent serves the standard gRPC health service, behind its token", async () => {
  const { healthCheck } = await import("../../lib/rpc/mod.ts");
  await using agent = await startAgent({ env: { SLOTH_AGENT_TOKEN: "t0k" } });
  assert.equal(await healthCheck(agent.address, { token: "t0k" }), "SERVING");
  await assert.rejects(healthCheck(agent.address, {}), /requires a token/);
});

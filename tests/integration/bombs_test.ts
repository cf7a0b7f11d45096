/**
 * Bombs fail the task, not the agent; a task cannot write lines into the
 * agent's log. Each bomb runs as a task through the real CLI against a real
 * agent, in both of the agent's ways of running Lua (a confined process with
 * bubblewrap; a Web Worker inside the serving process without it, where a
 * JavaScript heap that runs out would end the agent), and locally. After each
 * bomb the same serving process (not a restarted one) answers `agent ping` and
 * runs the next task.
 *
 * Before the limits, `data.parse_json` of a 150 MiB JSON text took the heap past
 * 4 GB in a minute and V8 ended the process; a Lua `io.stderr:write` printed
 * lines into the agent's log that looked like its own.
 */
import assert from "node:assert/strict";
import { AgentClient, type RunTaskResponse } from "../../lib/rpc/mod.ts";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { cliProcess, hasCommand, tempWorkspace } from "../_helpers/mod.ts";
import { agentToken, taskStart } from "../_helpers/jobs.ts";

const BWRAP = hasCommand("bwrap");
const MiB = 1024 * 1024;
/** Lua memory large enough to build a 150 MiB text (the data limit stays the default 64 MiB). */
const ENV = { SLOTH_LUA_MEMORY: "1G" };

/** A JSON text of many small objects: what took the heap past 4 GB. */
const JSON_150 = `"[" .. string.rep('{"a":[{}]},', 150 * 1024 * 1024 // 11 + 1) .. "1]"`;

interface Bomb {
  name: string;
  /** The body of the task's Lua function. */
  lua: string;
  /** What the run prints (the task's error, or its output). */
  expect: RegExp;
  ok: boolean;
}

/** A server streaming 100 MiB without a length, for net.http_get and net.download. */
function bigServer(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    const chunk = new Uint8Array(MiB).fill(120);
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= 100) return controller.close();
          controller.enqueue(chunk);
          sent++;
        },
      }),
    );
  });
}

function bombs(url: string): Bomb[] {
  return [
    {
      name: "json_150",
      lua: `local text = ${JSON_150}
        log.info("built " .. #text)
        return true, "", { n = #data.parse_json(text) }`,
      expect:
        /data\.parse_json: the input is 150 MiB, more than the 64 MiB limit \(SLOTH_LUA_DATA_LIMIT\)/,
      ok: false,
    },
    {
      name: "json_under",
      // One byte under the limit: 65,000 strings of 1 KiB and one that pads it out.
      lua: `local body = string.rep('"' .. string.rep("x", 1022) .. '",', 65000)
        local pad = 64 * 1024 * 1024 - 1 - #body - 4
        local text = "[" .. body .. '"' .. string.rep("y", pad) .. '"]'
        log.info("parsed " .. #data.parse_json(text) .. " items from " .. #text .. " bytes")
        return true`,
      expect: /parsed 65001 items from 67108863 bytes/,
      ok: true,
    },
    {
      name: "read_sparse",
      lua: `assert(exec.run("truncate -s 16G huge.bin").success)
        return true, "", { text = fs.read("huge.bin") }`,
      expect: /fs\.read: huge\.bin is 16 GiB, more than the 64 MiB limit \(SLOTH_LUA_DATA_LIMIT\)/,
      ok: false,
    },
    {
      name: "read_fifo",
      lua: `assert(exec.run("mkfifo p").success)
        return true, "", { text = fs.read("p") }`,
      expect: /fs\.read: p: not a regular file \(a FIFO\)/,
      ok: false,
    },
    {
      name: "write_big",
      lua: `fs.write("big.txt", string.rep("x", 65 * 1024 * 1024))
        return true`,
      expect: /fs\.write: the content is 65 MiB, more than the 64 MiB limit/,
      ok: false,
    },
    {
      name: "yaml",
      lua: `return true, "", { v = data.parse_yaml(string.rep("- {}\\n", 1024 * 1024 + 1)) }`,
      expect: /data\.parse_yaml: the input is 5 MiB, more than the 4 MiB limit for YAML/,
      ok: false,
    },
    {
      name: "exec_flood",
      // 10 commands of 17 MB of output each, at once (9 in coroutines, resumed until done):
      // every capture is capped at 16 MiB, and 8 run at a time.
      lua: `local flood = "head -c 17000000 /dev/zero | tr '\\\\0' x"
        local sizes, workers = {}, {}
        for i = 1, 9 do
          workers[i] = coroutine.create(function() sizes[i] = #exec.run(flood).stdout end)
          assert(coroutine.resume(workers[i]))
        end
        sizes[10] = #exec.run(flood).stdout
        repeat
          local running = 0
          for i = 1, 9 do
            if coroutine.status(workers[i]) ~= "dead" then
              assert(coroutine.resume(workers[i]))
              running = running + 1
            end
          end
          if running > 0 then exec.run("sleep 0.2") end
        until running == 0
        log.info(#sizes .. " captured, at most " .. math.max(table.unpack(sizes)) .. " bytes")
        return true`,
      expect: /10 captured, at most 1677\d{4} bytes/,
      ok: true,
    },
    {
      name: "http_body",
      lua: `local ok, e = pcall(net.http_get, "${url}")
        log.info(e)
        local got = net.download("${url}", "big.bin")
        log.info("downloaded " .. got.bytes .. ", on disk " .. fs.size("big.bin"))
        return true`,
      expect:
        /net\.http_get: the response from \S+ is more than the 64 MiB limit[^\n]*\n.*downloaded 104857600, on disk 104857600/,
      ok: true,
    },
    {
      name: "outputs",
      lua: `return true, "", { blob = string.rep("x", 65 * 1024 * 1024) }`,
      expect: /returned outputs that cannot be kept: their size is more than the 64 MiB limit/,
      ok: false,
    },
  ];
}

function workflow(address: string | undefined, list: Bomb[]): string {
  // A timeout, so that a bomb that hangs fails the test instead of stopping it.
  const tasks = list.map((b) =>
    `{ name = "${b.name}", timeout = "120s", command = function()\n${b.lua}\nend },`
  );
  const where = address ? `delegate_to = "${address}", ` : "";
  return `TaskDefinitions = { g = { ${where}tasks = {
    ${tasks.join("\n")}
    { name = "after", command = "echo still-serving" },
  } } }`;
}

async function bombAgent(agent: TestAgent) {
  await using server = bigServer();
  const list = bombs(`http://127.0.0.1:${server.addr.port}/`);
  await using ws = await tempWorkspace({ "workflow.lua": workflow(agent.address, list) });
  const serving = agent.servingPid();
  assert.ok(serving);
  for (const bomb of list) {
    const r = await cliProcess(["run", "-f", "workflow.lua", "-t", bomb.name], { cwd: ws.dir });
    const output = r.stdout + r.stderr;
    assert.equal(r.code, bomb.ok ? 0 : 1, `${bomb.name}:\n${output}`);
    assert.match(output, bomb.expect, `${bomb.name}:\n${output}`);
    const ping = await cliProcess(["agent", "ping", agent.address], { cwd: ws.dir });
    assert.equal(ping.code, 0, `${bomb.name}: ${ping.stdout}${ping.stderr}`);
    // The same serving process: the supervisor did not have to restart a dead one.
    assert.equal(agent.servingPid(), serving, `${bomb.name}: the serving process changed`);
  }
  const after = await cliProcess(["run", "-f", "workflow.lua", "-t", "after"], { cwd: ws.dir });
  assert.equal(after.code, 0, after.stdout + after.stderr);
  assert.match(after.stdout, /\] still-serving$/m);
  assert.doesNotMatch(agent.log(), /out of memory|restart/i);
}

Deno.test({
  name: "bombs fail the task, not the agent: Lua in a confined process (bubblewrap)",
  ignore: !BWRAP,
  async fn() {
    await using agent = await startAgent({ args: ["--sandbox", "bwrap"], env: ENV });
    await bombAgent(agent);
  },
});

Deno.test("bombs fail the task, not the agent: Lua in the serving process (--sandbox none)", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"], env: ENV });
  await bombAgent(agent);
});

Deno.test("bombs fail the task, not the run: a local 150 MiB JSON text, and the next task runs", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "bomb", command = function() return true, "", { n = #data.parse_json(${JSON_150}) } end },
      { name = "after", command = "echo still-running" },
    } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua", "-j", "1"], { cwd: ws.dir, env: ENV });
  const output = r.stdout + r.stderr;
  assert.equal(r.code, 1, output);
  assert.match(output, /data\.parse_json: the input is 150 MiB, more than the 64 MiB limit/);
  assert.match(r.stdout, /\] still-running$/m);
});

/** What a task writes, trying to pass for the agent. */
const FORGED = "2026-01-01T00:00:00.000Z sloth-agent 0.1.0 listening on 127.0.0.1:1 (forged)";

/** A shell job sent as a hostile master would: any task name, unchecked by a loader. */
async function rawShellJob(agent: TestAgent, task: string): Promise<boolean> {
  const client = new AgentClient(agent.address, { token: agentToken(agent) });
  try {
    const call = client.runTask();
    const responses: RunTaskResponse[] = [];
    const reading = (async () => {
      for await (const r of call.responses) responses.push(r);
    })();
    await call.send({ start: taskStart({ task }) });
    await call.send({ manifest_end: { entries: 0 } });
    await call.send({ workspace_end: { bytes: 0 } });
    call.end();
    await reading;
    return responses.some((r) => "result" in r && r.result.ok);
  } finally {
    client.close();
  }
}

Deno.test({
  name: "a task cannot write lines into the agent's log, in either way of running Lua",
  async fn() {
    const modes = BWRAP ? [["--sandbox", "bwrap"], ["--sandbox", "none"]] : [["--sandbox", "none"]];
    for (const args of modes) {
      const startedAt = Date.now();
      await using agent = await startAgent({ args });
      const f = JSON.stringify(`\n${FORGED}\n`);
      await using ws = await tempWorkspace({
        // Task names may hold no whitespace (the loader says so); group names may.
        "workflow.lua": `TaskDefinitions = { [${JSON.stringify(`g\n${FORGED}`)}] = {
          delegate_to = "${agent.address}", tasks = {
          { name = "writes", command = function()
              io.stderr:write(${f})
              io.stdout:write(${f})
              io.write(${f})
              print(${f})
              warn(${f})
              log.error(${f})
              error(${f}, 0)
            end },
          { name = "shell", command = ${JSON.stringify(`printf '\\n${FORGED}\\n' >&2`)} },
        } } }`,
      });
      const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      // What the task wrote reached its own log: the master's output, under the task's name.
      const forged = FORGED.replace(/[().]/g, "\\$&");
      assert.match(r.stdout + r.stderr, new RegExp(`\\[writes@[^\\]]+\\] ${forged}`));
      assert.match(r.stdout + r.stderr, new RegExp(`\\[shell@[^\\]]+\\] ${forged}`));
      assert.ok(await rawShellJob(agent, `t\n${FORGED}`));
      await agent.stop();
      const log = agent.log();
      // The agent logged each job on one line, what the master and the task chose escaped.
      const g =
        "g\\\\n2026-01-01T00:00:00\\.000Z sloth-agent 0\\.1\\.0 listening on 127\\.0\\.0\\.1:1 \\(forged\\)";
      assert.match(
        log,
        new RegExp(`job \\d+ ${g}\\.writes \\(attempt 1\\) [^\\n]*: failed \\(\\\\n2026-01-01T`),
      );
      assert.match(log, new RegExp(`job \\d+ ${g}\\.shell \\(attempt 1\\) [^\\n]*: success`));
      assert.match(log, /job \d+ g\.t\\n2026-01-01T00:00:00\.000Z sloth-agent [^\n]*: success/);
      for (const line of log.split("\n").filter(Boolean)) {
        const stamp = Date.parse(line.slice(0, 24));
        assert.ok(
          stamp >= startedAt - 60_000,
          `${args.join(" ")}: a line the agent did not write:\n${line}\n\n${log}`,
        );
      }
    }
  },
});

/**
 * Two hosts on one machine: a master and an agent in network namespaces this
 * test creates, joined by a veth pair in 10.231.0.0/16. A guard route in the root
 * namespace makes that range unreachable, and every client runs inside a
 * namespace, so no packet can leave the machine. Needs root and iproute2.
 */
import assert from "node:assert/strict";
import { executable, snapshot, tempWorkspace, waitFor } from "../_helpers/mod.ts";

/** The command line that starts an executable, for `ip netns exec`. */
function commandLine(name: "sloth-runner" | "sloth-agent"): string[] {
  const run = executable(name, []);
  return [run.command, ...run.args];
}

const GUARD = "10.231.0.0/16";

async function run(cmd: string[], check = true): Promise<{ code: number; out: string }> {
  const output = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdin: "null" }).output();
  const out = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (check && output.code !== 0) throw new Error(`${cmd.join(" ")} failed: ${out}`);
  return { code: output.code, out };
}

async function canUseNamespaces(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not running as root";
  try {
    await run(["ip", "-V"]);
  } catch {
    return "iproute2 (ip) is not installed";
  }
  const probe = `sloth-probe-${Deno.pid}`;
  const added = await run(["ip", "netns", "add", probe], false);
  if (added.code !== 0) return `cannot create a network namespace: ${added.out.trim()}`;
  await run(["ip", "netns", "del", probe], false);
  return undefined;
}

const skip = await canUseNamespaces();
if (skip) console.log(`netns_test: skipped: ${skip}`);

Deno.test({
  name:
    "a master and an agent on two namespaced hosts run a task with a token, and a cut link is agent_lost",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const id = Deno.pid % 100000;
  const nsAgent = `sloth-a-${id}`;
  const nsMaster = `sloth-m-${id}`;
  const vethAgent = `sa${id}`;
  const vethMaster = `sm${id}`;
  const agentIp = "10.231.7.1";
  const masterIp = "10.231.7.2";
  const guard = await run(["ip", "route", "add", "unreachable", GUARD], false);
  const addedGuard = guard.code === 0;
  if (!addedGuard) assert.match(guard.out, /File exists/, "the guard route must be in place");
  const agentProcesses: Deno.ChildProcess[] = [];
  await using ws = await tempWorkspace({ "token": "netns-secret\n", "input.txt": "from master\n" });
  try {
    await run(["ip", "netns", "add", nsAgent]);
    await run(["ip", "netns", "add", nsMaster]);
    await run(["ip", "link", "add", vethAgent, "type", "veth", "peer", "name", vethMaster]);
    await run(["ip", "link", "set", vethAgent, "netns", nsAgent]);
    await run(["ip", "link", "set", vethMaster, "netns", nsMaster]);
    for (const [ns, dev, ip] of [[nsAgent, vethAgent, agentIp], [nsMaster, vethMaster, masterIp]]) {
      await run(["ip", "-n", ns, "addr", "add", `${ip}/30`, "dev", dev]);
      await run(["ip", "-n", ns, "link", "set", dev, "up"]);
      await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    const agent = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        nsAgent,
        ...commandLine("sloth-agent"),
        "--bind",
        agentIp,
        "-p",
        "50051",
        "--token-file",
        `${ws.dir}/token`,
      ],
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    agentProcesses.push(agent);
    let agentLog = "";
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of agent.stderr) agentLog += decoder.decode(chunk, { stream: true });
    })();
    await waitFor(() => /listening on 10\.231\.7\.1:50051/.test(agentLog), 20_000);

    await Deno.writeTextFile(
      `${ws.dir}/workflow.lua`,
      `TaskDefinitions = { g = { agents = { far = { address = "${agentIp}:50051", token_env = "FAR_TOKEN" } },
        tasks = {
          { name = "hello", agent = "far", command = "cat input.txt; echo from agent > output.txt" },
          { name = "stuck", agent = "far", depends_on = "hello", command = "echo stuck-started; sleep 120" },
        } } }`,
    );
    const master = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        nsMaster,
        ...commandLine("sloth-runner"),
        "run",
        "-f",
        "workflow.lua",
      ],
      cwd: ws.dir,
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0", FAR_TOKEN: "netns-secret" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let masterOut = "";
    const masterReading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of master.stdout) masterOut += decoder.decode(chunk, { stream: true });
    })();
    const masterErr = new Response(master.stderr).text();
    await waitFor(() => /stuck-started/.test(masterOut), 30_000);
    // Cut the link: no FIN, no RST; only keepalive can tell.
    const cutAt = Date.now();
    await run(["ip", "-n", nsMaster, "link", "set", vethMaster, "down"]);
    const status = await master.status;
    await masterReading;
    const lostAfter = Date.now() - cutAt;
    assert.equal(status.code, 1, masterOut + (await masterErr));
    assert.match(masterOut, /^\[hello@far\] from master$/m);
    assert.match(masterOut, /^hello\s+success\s+1 .* agent far \(10\.231\.7\.1:50051\)/m);
    assert.match(masterOut, /^stuck\s+failed .* agent 10\.231\.7\.1:50051 lost/m);
    assert.ok(lostAfter < 20_000, `noticed after ${lostAfter}ms`);
    assert.equal((await snapshot(ws.dir))["output.txt"], "from agent\n");
    agent.kill("SIGTERM");
    await agent.status;
    await reading;
  } finally {
    for (const p of agentProcesses) {
      try {
        p.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await run(["ip", "netns", "del", nsAgent], false);
    await run(["ip", "netns", "del", nsMaster], false);
    if (addedGuard) await run(["ip", "route", "del", "unreachable", GUARD], false);
  }
});

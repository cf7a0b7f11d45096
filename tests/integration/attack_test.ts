/**
 * Hostile clients against real agents, started as the README shows: each attack
 * (a Node `node:http2` or raw-socket client, tests/_helpers/hostile_client.mjs)
 * runs against a fresh agent that has had no earlier connection (an earlier
 * connection changes what the runtime's HTTP/2 crash needs). After each, the
 * same serving process (no restart) answers a ping and runs a real task.
 */
import assert from "node:assert/strict";
import { startAgent, type TestAgent, waitUnderAgent } from "../_helpers/agent.ts";
import { cliProcess, hasCommand, ROOT, tempWorkspace, waitFor } from "../_helpers/mod.ts";
import { localTokenPath } from "../../lib/rpc/mod.ts";
import { makeCerts, type TestCerts } from "../_helpers/certs.ts";

const NODE = hasCommand("node");

let certs: Promise<TestCerts> | undefined;
/** Made once, for the TLS attacks, and removed when the tests end. */
function tlsFiles(): Promise<TestCerts> {
  certs ??= makeCerts().then((made) => {
    globalThis.addEventListener("unload", () => Deno.removeSync(made.dir, { recursive: true }));
    return made;
  });
  return certs;
}
const CLIENT = `${ROOT}/tests/_helpers/hostile_client.mjs`;

interface Attack {
  name: string;
  /** The agent serves TLS; the attacker talks TLS (accepting any certificate). */
  tls?: boolean;
  attack: string;
  count: number;
  withToken?: boolean;
  /** What the attacker saw, checked. */
  check?(report: Record<string, unknown>, agent: TestAgent): void;
  /** Start the agent under this (a lower descriptor limit). */
  prefix?: string[];
}

const ATTACKS: Attack[] = [
  { name: "GOAWAY after 250 unauthenticated calls", attack: "goaway-unauthenticated", count: 250 },
  { name: "GOAWAY after 400 unauthenticated calls", attack: "goaway-unauthenticated", count: 400 },
  {
    name: "GOAWAY after 1,000 unauthenticated calls",
    attack: "goaway-unauthenticated",
    count: 1000,
  },
  {
    name: "GOAWAY after one unauthenticated call left open",
    attack: "goaway-unauthenticated",
    count: 1,
  },
  {
    name: "GOAWAY after 150 authenticated calls",
    attack: "goaway-authenticated",
    count: 150,
    withToken: true,
  },
  {
    name: "GOAWAY after 300 authenticated calls, one at a time",
    attack: "goaway-sequential",
    count: 300,
    withToken: true,
    check: (report) => {
      // After 48 calls the agent sent GOAWAY and refused the rest: far below the
      // hundred-odd streams after which a closing connection can crash Deno.
      assert.equal(report.answered, 48);
    },
  },
  {
    name: "GOAWAY after 1,000 unauthenticated calls over TLS",
    attack: "goaway-unauthenticated",
    count: 1000,
    tls: true,
  },
  { name: "an RST_STREAM flood", attack: "rst-flood", count: 1000 },
  { name: "an authenticated RST_STREAM flood", attack: "rst-flood", count: 1000, withToken: true },
  { name: "a SETTINGS flood", attack: "settings-flood", count: 5000 },
  { name: "a PING flood", attack: "ping-flood", count: 5000 },
  {
    name: "2,000 idle connections",
    attack: "idle",
    count: 2000,
    check: (report) => {
      // Past the limits, connections are refused at once rather than held.
      assert.ok(Number(report.closedEarly) > 1000, JSON.stringify(report));
    },
  },
  {
    name: "2,000 idle connections against a 256-descriptor limit",
    attack: "idle",
    count: 2000,
    prefix: ["/bin/sh", "-c", 'ulimit -n 256 && exec "$0" "$@"'],
  },
  { name: "slow readers", attack: "slow-readers", count: 100 },
  {
    name: "1,000 wrong tokens",
    attack: "wrong-tokens",
    count: 1000,
    check: (report, agent) => {
      // Each answer comes later than the last: a handful in 5 s, not thousands.
      assert.ok(Number(report.tries) < 100, JSON.stringify(report));
      assert.equal(report.unauthenticated, report.answered);
      assert.match(agent.log(), /refused a missing or wrong token from 127\.0\.0\.1/);
    },
  },
  {
    name: "a message declaring 4 GiB",
    attack: "huge-message",
    count: 1,
    withToken: true,
    check: (report) => {
      // Reset at once (ENHANCE_YOUR_CALM), long before 64 MiB of body was taken.
      assert.equal(report.rstCode, 11, JSON.stringify(report));
      assert.ok(Number(report.sent) < 8 * 1024 * 1024, JSON.stringify(report));
    },
  },
  { name: "random bytes and a bad preface", attack: "garbage", count: 20 },
];

for (const a of ATTACKS) {
  Deno.test({
    name: `an agent survives ${a.name} and runs the next task`,
    ignore: !NODE,
    async fn() {
      const certs = a.tls ? await tlsFiles() : undefined;
      await using agent = await startAgent({
        prefix: a.prefix,
        args: certs ? ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey] : [],
      });
      const serving = agent.servingPid();
      const token = a.withToken
        ? Deno.readTextFileSync(localTokenPath("127.0.0.1", agent.port)).trim()
        : "";
      const output = await new Deno.Command("node", {
        args: [CLIENT, a.attack, agent.address, String(a.count), token],
        env: { HOSTILE_TLS: a.tls ? "1" : "0" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(output.stdout).trim();
      assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
      const report = JSON.parse(text.split("\n").at(-1)!);
      assert.notEqual(report.timedOut, true, text);
      a.check?.(report, agent);
      await runsATask(agent, certs?.ca);
      // Not restarted: the same serving process did all of it.
      assert.equal(agent.servingPid(), serving);
      assert.doesNotMatch(agent.log(), /the serving process/);
    },
  });
}

/** A real run through the CLI, as users do: a shell task on the agent writes a file back. */
async function runsATask(agent: TestAgent, ca?: string): Promise<void> {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
      tasks = { { name = "t", command = "echo done > out.txt" } } } }`,
  });
  const tls = ca ? ["--tls-ca", ca] : [];
  const run = await cliProcess(["run", "-f", "workflow.lua", ...tls], { cwd: ws.dir });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await Deno.readTextFile(`${ws.dir}/out.txt`), "done\n");
}

Deno.test({
  name: "a serving process that dies is restarted within a second, on the same port and token",
  async fn() {
    await using agent = await startAgent();
    const first = agent.servingPid()!;
    for (const signal of ["SIGABRT", "SIGKILL"] as const) {
      const before = agent.servingPid()!;
      Deno.kill(before, signal);
      const died = Date.now();
      let back = false;
      while (!back && Date.now() - died < 5000) {
        const ping = await cliProcess(["agent", "ping", agent.address], { cwd: "/tmp" });
        back = ping.code === 0;
        if (!back) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(back, agent.log());
      // Sub-second here even on a loaded machine (ping's own start-up counts too).
      assert.notEqual(agent.servingPid(), before);
    }
    assert.notEqual(agent.servingPid(), first);
    assert.match(agent.log(), /the serving process \(pid \d+\) was killed by SIGABRT; restarting/);
    await runsATask(agent);
  },
});

Deno.test({
  name: "a task running when the serving process dies is killed with it, and its retry succeeds",
  async fn() {
    // Without bubblewrap (whose --die-with-parent would end the tree by itself), the
    // tree outlives its serving process unless the supervisor kills it from its record.
    await using agent = await startAgent({ args: ["--sandbox", "none"] });
    await using ws = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
        tasks = { { name = "t", retries = 1, command = "sleep 3 && echo done > out.txt" } } } }`,
    });
    const run = cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    // The first attempt's shell, on the agent: kill the serving process under it.
    const pid = await waitUnderAgent(agent, ["sleep", "3"]);
    Deno.kill(agent.servingPid()!, "SIGKILL");
    // The first attempt's tree did not outlive its serving process: gone by the
    // time the supervisor restarts it (its `sleep 3` had seconds left).
    await waitFor(() => /restarting/.test(agent.log()), 5000);
    assert.match(agent.log(), /killed the process trees of 1 running task; restarting/);
    await waitFor(() => !processExists(pid), 1000);
    const result = await run;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await Deno.readTextFile(`${ws.dir}/out.txt`), "done\n");
  },
});

function processExists(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

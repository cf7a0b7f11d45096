/**
 * A fleet of real agents on distinct loopback addresses (one port), named in an
 * inventory: named agents, pools, failover, fan-out, `agents`, `exec`, Ctrl-C.
 */
import assert from "node:assert/strict";
import { findUnderAgent } from "../_helpers/agent.ts";
import { makeCerts } from "../_helpers/certs.ts";
import { dnsServerSkip, startDnsServer } from "../_helpers/dns.ts";
import { FLEET_TOKEN, inventoryYaml, startFleet, type TestFleet } from "../_helpers/fleet.ts";
import {
  cliProcess,
  LiveOutput,
  spawnCli,
  tempWorkspace,
  uniqueSeconds,
  waitFor,
} from "../_helpers/mod.ts";

const ENV = { SLOTH_AGENT_TOKEN: FLEET_TOKEN };

interface Finished {
  status: string;
  attempts: number;
  where: string;
  error?: string;
}

/** The JSON events of a run: its finished tasks by name, and every event in order. */
function events(stdout: string) {
  const all = stdout.trim().split("\n").filter(Boolean).map((line) => JSON.parse(line));
  const finished = new Map<string, Finished>();
  for (const e of all) if (e.type === "task_finished") finished.set(e.task, e);
  return { all, finished };
}

/** Which agent's work root a path is under: its index in the fleet. */
function agentOf(fleet: TestFleet, path: string): number {
  return fleet.roots.findIndex((root) => path.includes(root));
}

/** Three agents: web-1, web-2 (labelled web) and build-1, and pools over them. */
async function threeAgents(prefix: string) {
  const fleet = await startFleet(prefix, 3);
  const inventory = inventoryYaml(fleet, ["web-1", "web-2", "build-1"], [["web", "linux"], [
    "web",
  ], ["build"]], `  web: { labels: [web] }\n  all: { members: [build-1, web-1, web-2] }`);
  return { fleet, inventory };
}

Deno.test("a task names an inventory agent; an unknown name is a load error listing the known ones", async () => {
  const { fleet, inventory } = await threeAgents("127.0.61");
  await using _ = fleet;
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "named", delegate_to = "build-1", command = "pwd" },
      { name = "by_agent", agent = "web-2", command = "pwd" },
    } } }`,
    "bad.lua": `TaskDefinitions = { g = { tasks = {
      { name = "x", delegate_to = "biuld-1", command = "true" } } } }`,
  });
  const run = await cliProcess(["run", "--plain"], { cwd: ws.dir, env: ENV });
  assert.equal(run.code, 0, run.stderr + run.stdout);
  const named = /\[named@build-1\] (\S+)/.exec(run.stdout)![1];
  assert.equal(agentOf(fleet, named), 2);
  const byAgent = /\[by_agent@web-2\] (\S+)/.exec(run.stdout)![1];
  assert.equal(agentOf(fleet, byAgent), 1);

  const bad = await cliProcess(["validate", "-f", "bad.lua"], { cwd: ws.dir, env: ENV });
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /unknown agent "biuld-1"\. Known agents: build-1, web-1, web-2 \(inventory sloth-inventory\.yaml\)\. Did you mean "build-1"\?/,
  );
});

Deno.test("a pool spreads parallel tasks over its members; list and --dry-run show the members", async () => {
  const { fleet, inventory } = await threeAgents("127.0.62");
  await using _ = fleet;
  const tasks = Array.from(
    { length: 6 },
    (_, i) => `{ name = "t${i}", async = true, command = "sleep 0.4; pwd" },`,
  ).join("\n");
  await using ws = await tempWorkspace({
    "inv.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = { pool = "all" }, tasks = {
      ${tasks} } } }`,
  });
  const list = await cliProcess(["list", "-i", "inv.yaml"], { cwd: ws.dir, env: ENV });
  assert.match(list.stdout, /t0\s+pool all: build-1, web-1, web-2/);
  const dry = await cliProcess(["run", "--dry-run", "-i", "inv.yaml"], { cwd: ws.dir, env: ENV });
  assert.match(dry.stdout, /t5\s+pool all: build-1, web-1, web-2/);

  const run = await cliProcess(["run", "-i", "inv.yaml", "-o", "json", "-j", "6"], {
    cwd: ws.dir,
    env: ENV,
  });
  assert.equal(run.code, 0, run.stderr + run.stdout);
  const { all, finished } = events(run.stdout);
  const used = new Set<number>();
  for (const e of all) {
    if (e.type === "log" && e.stream === "stdout") used.add(agentOf(fleet, e.line));
  }
  assert.deepEqual([...used].sort(), [0, 1, 2], "every member took some of the 6 tasks");
  for (const [name, result] of finished) {
    assert.match(
      result.where,
      /^agent (web-1|web-2|build-1) \(127\.0\.62\.\d:\d+\), pool all$/,
      name,
    );
  }
});

Deno.test("a pool passes over a member stopped before the run and one stopped during it, without spending retries", async () => {
  const { fleet, inventory } = await threeAgents("127.0.63");
  await using _ = fleet;
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = { pool = "web" }, tasks = {
      { name = "first", command = "pwd" } } } }`,
  });
  // web-1 is down before the run starts.
  await fleet.agents[0].stop();
  const before = await cliProcess(["run", "-o", "json"], { cwd: ws.dir, env: ENV });
  assert.equal(before.code, 0, before.stderr + before.stdout);
  const first = events(before.stdout).finished.get("first")!;
  assert.equal(first.attempts, 1);
  assert.match(first.where, /^agent web-2 /);
});

Deno.test("a pool member that dies during a run: the next task goes to another member, with no retry spent", async () => {
  const { fleet, inventory } = await threeAgents("127.0.64");
  await using _ = fleet;
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "first", delegate_to = { pool = "web" }, command = "pwd" },
      { name = "pause", command = "while [ ! -e stopped ]; do sleep 0.05; done" },
      { name = "second", delegate_to = { pool = "web" }, command = "pwd" },
    } } }`,
  });
  const child = spawnCli(["run", "--plain"], { cwd: ws.dir, env: ENV });
  const live = new LiveOutput(child);
  const match = await live.waitFor(/\[first@web-(\d)\] \S+/);
  const holder = Number(match[1]) - 1;
  // The member that ran "first" (and so holds its workspace, which a pool prefers) dies.
  await fleet.agents[holder].stop("SIGKILL");
  await Deno.writeTextFile(`${ws.dir}/stopped`, "");
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 0, live.stdout + live.stderr);
  assert.match(
    live.stdout,
    new RegExp(`^second\\s+success\\s+1\\s+.*agent web-${2 - holder} `, "m"),
  );
});

Deno.test("no member left: the task fails naming the pool and each member's reason", async () => {
  const { fleet, inventory } = await threeAgents("127.0.65");
  await using _ = fleet;
  await fleet.agents[0].stop();
  await fleet.agents[1].stop();
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "x", delegate_to = { pool = "web" }, retries = 1, command = "true" } } } }`,
  });
  const run = await cliProcess(["run", "-o", "json"], { cwd: ws.dir, env: ENV });
  assert.equal(run.code, 1);
  const x = events(run.stdout).finished.get("x")!;
  assert.equal(x.status, "failed");
  assert.match(x.error!, /^pool "web": no member could take the task \(web-\d: /);
  for (const n of [1, 2]) {
    assert.match(x.error!, new RegExp(`web-${n}: agent 127\\.0\\.65\\.${n + 1}:\\d+ unreachable`));
  }
  assert.equal(x.attempts, 2, "the retry was spent once no member was left, not before");
});

Deno.test("a fan-out runs on every member, rows task@host, outputs keyed by host; max_failures stops new hosts", async () => {
  const fleet = await startFleet("127.0.66", 4);
  await using _ = fleet;
  const names = ["h1", "h2", "h3", "h4"];
  const inventory = inventoryYaml(
    fleet,
    names,
    names.map(() => ["web"]),
    "  web: { labels: [web] }",
  );
  // h2 fails (its work root is the second one); batch = 1 runs them one after another.
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "probe", delegate_to = { each = "web" }, async = true,
        command = function(params)
          local dir = exec.run("pwd").stdout:gsub("%s+$", "")
          return true, "ran", { dir = dir }
        end },
      { name = "gather", depends_on = "probe", command = function(params, inputs)
          local keys = {}
          for host, out in pairs(inputs.probe) do keys[#keys + 1] = host .. "=" .. out.dir end
          table.sort(keys)
          fs.write("gathered.txt", table.concat(keys, "\\n"))
          return true
        end },
      { name = "roll", delegate_to = { each = "web", batch = 1, max_failures = 1 },
        depends_on = "gather",
        command = "case \\"$PWD\\" in ${fleet.roots[1]}*) exit 3;; esac; true" },
      { name = "after_roll", depends_on = "roll", command = "true" },
    } } }`,
  });
  const run = await cliProcess(["run", "-o", "json"], { cwd: ws.dir, env: ENV });
  assert.equal(run.code, 1, run.stderr);
  const { all, finished } = events(run.stdout);
  for (const host of names) assert.equal(finished.get(`probe@${host}`)?.status, "success", host);
  const gathered = Deno.readTextFileSync(`${ws.dir}/gathered.txt`).split("\n");
  assert.deepEqual(gathered.map((l) => l.split("=")[0]), names);
  gathered.forEach((l, i) => assert.equal(agentOf(fleet, l.split("=")[1]), i));

  assert.equal(finished.get("roll@h1")?.status, "success");
  assert.equal(finished.get("roll@h2")?.status, "failed");
  for (const host of ["h3", "h4"]) {
    const r = finished.get(`roll@${host}`)!;
    assert.equal(r.status, "skipped");
    assert.match(r.error!, /not started: 1 host of "roll" failed \(max_failures = 1\)/);
  }
  assert.equal(finished.get("after_roll")?.status, "skipped");
  // batch = 1: h2 started only after h1 finished.
  const order = all.filter((e) =>
    (e.type === "task_started" || e.type === "task_finished") && /^roll@/.test(e.task)
  ).map((e) => `${e.type === "task_started" ? "start" : "end"} ${e.task}`);
  assert.deepEqual(order.slice(0, 3), ["start roll@h1", "end roll@h1", "start roll@h2"]);
});

Deno.test("batch = 2 over four hosts: the second pair starts after the first pair finished", async () => {
  const fleet = await startFleet("127.0.67", 4);
  await using _ = fleet;
  const names = ["h1", "h2", "h3", "h4"];
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventoryYaml(
      fleet,
      names,
      names.map(() => ["x"]),
      "  x: { labels: [x] }",
    ),
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "step", delegate_to = { each = "x", batch = 2 }, command = "sleep 0.3" } } } }`,
  });
  const run = await cliProcess(["run", "-o", "json", "-j", "8"], { cwd: ws.dir, env: ENV });
  assert.equal(run.code, 0, run.stderr);
  const order = events(run.stdout).all.filter((e) =>
    e.type === "task_started" || e.type === "task_finished"
  ).map((e) => `${e.type === "task_started" ? "start" : "end"} ${e.task}`);
  const index = (s: string) => order.indexOf(s);
  for (const late of ["start step@h3", "start step@h4"]) {
    for (const early of ["end step@h1", "end step@h2"]) {
      assert.ok(index(early) < index(late), `${early} before ${late}: ${order.join(", ")}`);
    }
  }
  // The first pair ran side by side.
  assert.ok(index("start step@h2") < index("end step@h1"), order.join(", "));
});

Deno.test("`agents` shows every agent, the one down with its reason, and exits 1; json too", async () => {
  const { fleet, inventory } = await threeAgents("127.0.68");
  await using _ = fleet;
  await fleet.agents[1].stop();
  await using ws = await tempWorkspace({ "fleet.yaml": inventory });
  const text = await cliProcess(["agents", "-i", "fleet.yaml"], { cwd: ws.dir, env: ENV });
  assert.equal(text.code, 1, text.stderr);
  assert.match(
    text.stdout,
    /^build-1\s+127\.0\.68\.4:\d+\s+build\s+\S+\s+0\/\d+\s+[\d.]+ ms\s+ok$/m,
  );
  assert.match(text.stdout, /^web-2\s+127\.0\.68\.3:\d+\s+web\s+-\s+-\s+-\s+unreachable: /m);
  assert.match(text.stdout, /3 agents: 2 reachable, 1 not/);
  const json = await cliProcess(["agents", "-i", "fleet.yaml", "-o", "json"], {
    cwd: ws.dir,
    env: ENV,
  });
  const rows = JSON.parse(json.stdout);
  assert.deepEqual(rows.map((r: { name: string; reachable: boolean }) => [r.name, r.reachable]), [
    ["build-1", true],
    ["web-1", true],
    ["web-2", false],
  ]);
  assert.equal(rows[1].labels.join(), "web,linux");
  assert.ok(rows[1].pools.includes("web"));
  assert.equal(typeof rows[0].max_concurrent, "number");
});

Deno.test("`exec` runs on one pool member, on every member with --each, and fails when one host fails", async () => {
  const { fleet, inventory } = await threeAgents("127.0.69");
  await using _ = fleet;
  await using ws = await tempWorkspace({ "sloth-inventory.yaml": inventory, "dir/f.txt": "hi" });
  const one = await cliProcess(["exec", "web", "--", "echo", "it's", "one"], {
    cwd: ws.dir,
    env: ENV,
  });
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /^web-[12]: it's one$/m);
  assert.equal(one.stdout.trim().split("\n").length, 1);

  const each = await cliProcess(["exec", "web", "--each", "--", "echo hi; pwd"], {
    cwd: ws.dir,
    env: ENV,
  });
  assert.equal(each.code, 0, each.stderr);
  assert.match(each.stdout, /^web-1: hi$/m);
  assert.match(each.stdout, /^web-2: hi$/m);
  const dirs = [...each.stdout.matchAll(/^(web-\d): (\/\S+)$/gm)];
  for (const [, host, dir] of dirs) assert.equal(agentOf(fleet, dir), Number(host.at(-1)) - 1);

  const synced = await cliProcess(["exec", "build-1", "--sync", "dir", "--", "cat f.txt"], {
    cwd: ws.dir,
    env: ENV,
  });
  assert.equal(synced.stdout, "build-1: hi\n");

  const failing = await cliProcess(
    ["exec", "all", "--each", "--", `case "$PWD" in ${fleet.roots[0]}*) exit 4;; esac`],
    { cwd: ws.dir, env: ENV },
  );
  assert.equal(failing.code, 1);
  assert.match(failing.stderr, /^web-1: failed: .*exit code 4/m);
  assert.match(failing.stderr, /^web-2: ok /m);
});

Deno.test("Ctrl-C during a fan-out leaves no process on any agent", async () => {
  const { fleet, inventory } = await threeAgents("127.0.70");
  await using _ = fleet;
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "long", delegate_to = { each = "all" }, command = "sleep ${seconds}" } } } }`,
  });
  const child = spawnCli(["run", "--plain"], { cwd: ws.dir, env: ENV });
  const live = new LiveOutput(child);
  await waitFor(() => fleet.agents.every((a) => findUnderAgent(a, ["sleep", seconds])), 15_000);
  child.kill("SIGINT");
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 130);
  for (const host of ["build-1", "web-1", "web-2"]) {
    assert.match(live.stdout, new RegExp(`^long@${host}\\s+cancelled`, "m"));
  }
  await waitFor(() => fleet.agents.every((a) => !findUnderAgent(a, ["sleep", seconds])), 5000);
});

const dnsSkip = await dnsServerSkip();

Deno.test({
  name:
    "a DNS pool finds its members through a real name server, and looks again before a failover",
  ignore: dnsSkip !== undefined,
  fn: async () => {
    const fleet = await startFleet("127.0.71", 3);
    await using _ = fleet;
    const [a, b, c] = fleet.agents.map((agent) => agent.address.split(":")[0]);
    const started = await startDnsServer({ hosts: { "agents.test": [a, b] } });
    if ("skipped" in started) throw new Error(started.skipped);
    await using dns = started;
    const env = { ...ENV, SLOTH_DNS_SERVER: dns.server };
    await using ws = await tempWorkspace({
      "sloth-inventory.yaml": `pools:\n  k8s: { dns: "agents.test:${fleet.port}" }\n`,
      "workflow.lua": `TaskDefinitions = { g = { tasks = {
        { name = "everywhere", delegate_to = { each = "k8s" }, command = "pwd" },
        { name = "pause", depends_on = "everywhere",
          command = "while [ ! -e moved ]; do sleep 0.05; done" },
        { name = "one", depends_on = "pause", delegate_to = { pool = "k8s" }, command = "pwd" },
      } } }`,
    });
    const list = await cliProcess(["list"], { cwd: ws.dir, env });
    assert.match(list.stdout, /everywhere\s+each of pool k8s: members found by DNS at run time/);

    const agents = await cliProcess(["agents", "-o", "json"], { cwd: ws.dir, env });
    assert.equal(agents.code, 0, agents.stderr);
    assert.deepEqual(
      JSON.parse(agents.stdout).map((r: { name: string; pools: string[] }) => [r.name, r.pools]),
      [[`${a}:${fleet.port}`, ["k8s"]], [`${b}:${fleet.port}`, ["k8s"]]],
    );

    const child = spawnCli(["run", "--plain"], { cwd: ws.dir, env });
    const live = new LiveOutput(child);
    await live.waitFor(/\[pause\] ▶ started/);
    // Both members go away; DNS now names only the third agent.
    await Promise.all([fleet.agents[0].stop(), fleet.agents[1].stop()]);
    await dns.update({ hosts: { "agents.test": [c] } });
    await Deno.writeTextFile(`${ws.dir}/moved`, "");
    const status = await child.status;
    await live.done();
    assert.equal(status.code, 0, live.stdout + live.stderr);
    assert.match(
      live.stdout,
      new RegExp(`^everywhere@${a.replaceAll(".", "\\.")}:\\d+\\s+success`, "m"),
    );
    assert.match(
      live.stdout,
      new RegExp(`^everywhere@${b.replaceAll(".", "\\.")}:\\d+\\s+success`, "m"),
    );
    assert.match(
      live.stdout,
      new RegExp(`^one\\s+success\\s+1\\s+.*${c.replaceAll(".", "\\.")}`, "m"),
    );
    assert.equal(agentOf(fleet, /\[one@[^\]]+\] (\S+)/.exec(live.stdout)![1]), 2);
  },
});

Deno.test({
  name:
    "a DNS pool's members are dialled by address and their certificates checked against the pool's name",
  ignore: dnsSkip !== undefined,
  fn: async () => {
    await using certs = await makeCerts();
    const fleet = await startFleet("127.0.72", 2, {
      args: ["--tls-cert", certs.poolCert, "--tls-key", certs.agentKey],
    });
    await using _ = fleet;
    const hosts = fleet.agents.map((agent) => agent.address.split(":")[0]);
    const started = await startDnsServer({ hosts: { "agents.sloth.test": hosts } });
    if ("skipped" in started) throw new Error(started.skipped);
    await using dns = started;
    const env = { ...ENV, SLOTH_DNS_SERVER: dns.server };
    await using ws = await tempWorkspace({
      "sloth-inventory.yaml":
        `pools:\n  tls: { dns: "agents.sloth.test:${fleet.port}", tls: { ca: ${
          JSON.stringify(certs.ca)
        } } }\n`,
      "workflow.lua": `TaskDefinitions = { g = { tasks = {
        { name = "both", delegate_to = { each = "tls" }, command = "echo over tls" } } } }`,
    });
    const run = await cliProcess(["run", "--plain"], { cwd: ws.dir, env });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(run.stdout.match(/\] over tls$/gm)?.length, 2);
  },
});

Deno.test("a token with a trailing newline (base64 > file, a Secret) works; a bad one is refused without being printed", async () => {
  const { fleet, inventory } = await threeAgents("127.0.73");
  await using _ = fleet;
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "x", delegate_to = "web-1", command = "echo ok" } } } }`,
  });
  const good = await cliProcess(["run", "--plain"], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: `${FLEET_TOKEN}\n` },
  });
  assert.equal(good.code, 0, good.stdout + good.stderr);
  const secret = "s3cr3t-with-a-\u0007-bell";
  const bad = await cliProcess(["agents"], { cwd: ws.dir, env: { SLOTH_AGENT_TOKEN: secret } });
  assert.equal(bad.code, 1);
  assert.match(
    bad.stdout,
    /the token in SLOTH_AGENT_TOKEN holds a character a gRPC header cannot carry/,
  );
  assert.ok(!(bad.stdout + bad.stderr).includes("s3cr3t"), "the token is never printed");
});

Deno.test("a pool with no members fails validate (exit 2); a DNS pool only unselected tasks use is not looked up", async () => {
  const { fleet, inventory } = await threeAgents("127.0.74");
  await using _ = fleet;
  await using ws = await tempWorkspace({
    "sloth-inventory.yaml": inventory +
      `  db: { labels: [db] }\n  nx: { dns: "nowhere.invalid:1" }\n`,
    "empty.lua": `TaskDefinitions = { g = { tasks = {
      { name = "x", delegate_to = { pool = "db" }, command = "true" } } } }`,
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "here", delegate_to = { each = "web" }, command = "true" },
      { name = "there", delegate_to = { each = "nx" }, command = "true" } } } }`,
  });
  const validate = await cliProcess(["validate", "-f", "empty.lua"], { cwd: ws.dir, env: ENV });
  assert.equal(validate.code, 2);
  assert.match(
    validate.stderr,
    /pool "db" has no members: no agent of the inventory carries every label of \[db\]/,
  );
  // A silent name server: a look-up of "nx" would fail; -t here never looks.
  const run = await cliProcess(["run", "-t", "here", "-o", "json"], {
    cwd: ws.dir,
    env: { ...ENV, SLOTH_DNS_SERVER: "127.0.0.1:9" },
  });
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual([...events(run.stdout).finished.keys()].sort(), ["here@web-1", "here@web-2"]);
  const all = await cliProcess(["run"], {
    cwd: ws.dir,
    env: { ...ENV, SLOTH_DNS_SERVER: "127.0.0.1:9" },
  });
  assert.equal(all.code, 1);
  assert.match(all.stderr, /pool "nx": cannot resolve DNS pool "nowhere\.invalid:1"/);
});

Deno.test("Ctrl-C does not wait for a member that takes connections and never answers", async () => {
  const { fleet, inventory } = await threeAgents("127.0.75");
  await using _ = fleet;
  // Takes TCP connections on a loopback address and says nothing.
  const silent = Deno.listen({ hostname: "127.0.75.9", port: fleet.port });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  try {
    const seconds = uniqueSeconds();
    await using ws = await tempWorkspace({
      "sloth-inventory.yaml": inventory.replace(
        "pools:\n",
        `  mute: { address: "127.0.75.9:${fleet.port}", labels: [web] }\npools:\n`,
      ).replace(/^agents:\n/, "agents:\n"),
      "workflow.lua": `TaskDefinitions = { g = { tasks = {
        { name = "long", delegate_to = { each = "web" }, command = "sleep ${seconds}" } } } }`,
    });
    const child = spawnCli(["run", "--plain"], { cwd: ws.dir, env: ENV });
    const live = new LiveOutput(child);
    await waitFor(
      () => [fleet.agents[0], fleet.agents[1]].every((a) => findUnderAgent(a, ["sleep", seconds])),
      15_000,
    );
    const sent = Date.now();
    child.kill("SIGINT");
    const status = await child.status;
    const took = Date.now() - sent;
    await live.done();
    assert.equal(status.code, 130, live.stdout + live.stderr);
    assert.match(live.stdout, /^long@mute\s+cancelled/m);
    // The silent member's ping deadline is 5 s: the cancel did not wait for it.
    assert.ok(took < 4000, `the run ended ${took} ms after Ctrl-C`);
  } finally {
    silent.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
  }
});

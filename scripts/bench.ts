/**
 * `deno task bench`: sloth-runner against its baselines, in one run, on this
 * machine. Medians (and p99 where latency matters) over repeated runs, ratios to
 * the baseline, and whether each target is met. Writes BENCHMARKS.md.
 *
 *   deno task bench            everything (about 10 minutes on 2 cores)
 *   deno task bench -- --only=dispatch,warm   some of it, table only (names below)
 *
 * Parts: local, dispatch, chain, throughput, sync, warm, memory, startup, ansible, fleet.
 * Issue 13's targets are ratios to a baseline taken in the same run (this machine's
 * speed swings 2×), so each target row carries its own baseline.
 *
 * Issue 14's fleet part starts 30 agents on 127.0.0.2 ... 127.0.0.31 (about 5 GB).
 *
 * Every run is back-to-back (no pauses), so the VM's memory give-back
 * (MACHINE-NOTES.md) affects baseline and subject alike.
 */
import { startAgent, type TestAgent } from "../tests/_helpers/agent.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const MAIN = `${ROOT}/main.ts`;
const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const want = (name: string) => !only || only.includes(name);

interface Row {
  name: string;
  subject: string;
  baseline: string;
  ratio?: number;
  target?: string;
  met?: boolean;
  note?: string;
}
const rows: Row[] = [];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

const secs = (n: number) => `${(n / 1000).toFixed(2)} s`;
const ms = (n: number) => `${n < 10 ? n.toFixed(2) : n.toFixed(0)} ms`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const kb = (bytes: number) => `${(bytes / 1e3).toFixed(1)} kB`;

/**
 * A scratch directory. Passable by others (0711): an agent run as root, used as its
 * --work-root, runs tasks as nobody, who must pass through it.
 */
async function scratch(): Promise<string> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-bench-" }));
  await Deno.chmod(dir, 0o711);
  return dir;
}

interface SlothRun {
  wallMs: number;
  stdout: string;
  stderr: string;
  code: number;
  maxRssKb?: number;
  /** CPU of the CLI process and the children it waited for (getrusage, 10 ms resolution). */
  cpu?: { userMs: number; sysMs: number };
}

/**
 * Runs the CLI; returns its wall time, stdout, and (with /usr/bin/time) its peak RSS
 * and CPU time.
 */
async function sloth(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<SlothRun> {
  const started = performance.now();
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "MAXRSS %M CPU %U %S", Deno.execPath(), "run", "-A", MAIN, ...args],
    cwd,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...env },
    stdin: "null",
  }).output();
  const wallMs = performance.now() - started;
  const stderr = new TextDecoder().decode(out.stderr);
  const rss = /MAXRSS (\d+)/.exec(stderr);
  const cpu = /CPU ([\d.]+) ([\d.]+)/.exec(stderr);
  return {
    wallMs,
    stdout: new TextDecoder().decode(out.stdout),
    stderr,
    code: out.code,
    maxRssKb: rss ? Number(rss[1]) : undefined,
    cpu: cpu ? { userMs: Number(cpu[1]) * 1000, sysMs: Number(cpu[2]) * 1000 } : undefined,
  };
}

interface Event {
  type: string;
  task?: string;
  where?: string;
  duration_ms?: number;
  transfer?: { sent_bytes: number; received_bytes: number };
  status?: string;
}

function events(stdout: string): Event[] {
  return stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

function finished(stdout: string): Event[] {
  return events(stdout).filter((e) => e.type === "task_finished");
}

function runDuration(stdout: string): number {
  return events(stdout).find((e) => e.type === "run_finished")!.duration_ms!;
}

function workflow(tasks: string[], header = ""): string {
  return `${header}\nTaskDefinitions = { bench = { tasks = {\n${tasks.join(",\n")}\n} } }\n`;
}

async function writeFiles(dir: string, count: number, size: number): Promise<void> {
  const data = new Uint8Array(size);
  for (let i = 0; i < count; i++) {
    const sub = `${dir}/d${Math.floor(i / 500)}`;
    if (i % 500 === 0) await Deno.mkdir(sub, { recursive: true });
    crypto.getRandomValues(data.subarray(0, Math.min(size, 65536)));
    await Deno.writeFile(`${sub}/f${i}.bin`, data);
  }
}

function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) * 1024;
}

/**
 * Peak RSS of an agent: the larger of its supervisor (the process we started) and the
 * serving process under it, which is the one that receives and writes workspaces.
 */
function agentRss(agent: TestAgent): number {
  const serving = agent.servingPid();
  return Math.max(rssOf(agent.process.pid), serving ? rssOf(serving) : 0);
}

const CLK_TCK = Number(
  new TextDecoder().decode(new Deno.Command("getconf", { args: ["CLK_TCK"] }).outputSync().stdout)
    .trim(),
) || 100;

/**
 * CPU an agent's serving process has used so far, in ms: its own, and that of the
 * children it has reaped (the commands of finished jobs). /proc/<pid>/stat, fields
 * 14-17, in clock ticks.
 */
function agentCpuMs(agent: TestAgent): number {
  const pid = agent.servingPid();
  if (!pid) return NaN;
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the ")", field 3 (state) is index 0, so utime (14) is index 11.
  const ticks = fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0);
  return ticks * 1000 / CLK_TCK;
}

/** Tasks running at once in the throughput runs (`run -j`). */
const THROUGHPUT_JOBS = 16;

/** The throughput workload: `count` async no-op shell tasks; `where(i)` places task i. */
function noopTasks(count: number, where: (i: number) => string = () => ""): string[] {
  return Array.from(
    { length: count },
    (_, i) => `{ name = "t${i}", async = true, ${where(i)}command = "true" }`,
  );
}

/** The throughput row's workflow: the tasks alternate between two agents, a and b. */
function twoAgentWorkflow(count: number, a: string, b: string): string {
  const tasks = noopTasks(count, (i) => `agent = "${i % 2 ? "a" : "b"}", `);
  return `TaskDefinitions = { bench = { agents = { a = { address = "${a}" }, b = { address = "${b}" } },
      tasks = {\n${tasks.join(",\n")}\n} } }`;
}

interface Throughput {
  /** Tasks a second over the run (run_started to run_finished: no start-up, no loading). */
  rate: number;
  /** The master's user + system CPU, start-up and loading included (/usr/bin/time). */
  cpuMs: number;
  /** CPU the given agents' serving processes (and the commands they reaped) used meanwhile. */
  agentsMs: number;
  /** The master's peak RSS (/usr/bin/time, as the memory row). */
  maxRssBytes: number;
  /** Where the tasks ran: how many distinct places (agents, or this machine). */
  hosts: number;
  /** Workspace bytes the master sent, all tasks together. */
  sentBytes: number;
}

/**
 * One `run -j THROUGHPUT_JOBS -o json` of `file` in `dir`, whose `count` tasks must all
 * succeed.
 */
async function throughput(
  dir: string,
  file: string,
  count: number,
  options: { agents?: TestAgent[]; args?: string[] } = {},
): Promise<Throughput> {
  const agents = options.agents ?? [];
  const before = agents.map(agentCpuMs);
  const r = await sloth(
    ["run", "-f", file, "-j", String(THROUGHPUT_JOBS), "-o", "json", ...options.args ?? []],
    dir,
  );
  if (r.code !== 0) throw new Error(r.stdout + r.stderr);
  const done = finished(r.stdout);
  if (done.filter((e) => e.status === "success").length !== count) {
    throw new Error(`${file}: not every task succeeded`);
  }
  return {
    rate: count / (runDuration(r.stdout) / 1000),
    cpuMs: r.cpu ? r.cpu.userMs + r.cpu.sysMs : NaN,
    agentsMs: agents.reduce((sum, agent, i) => sum + agentCpuMs(agent) - before[i], 0),
    maxRssBytes: (r.maxRssKb ?? NaN) * 1024,
    hosts: new Set(done.map((e) => e.where)).size,
    sentBytes: done.reduce((sum, e) => sum + (e.transfer?.sent_bytes ?? 0), 0),
  };
}

/**
 * What start-up and loading a workflow cost the master, to read a per-task CPU figure
 * without them: `validate` of the same file, median of 3 (it imports less than `run`,
 * so an underestimate).
 */
async function validateCpuMs(dir: string, file: string, args: string[] = []): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const v = await sloth(["validate", "-f", file, ...args], dir);
    if (v.code !== 0 || !v.cpu) throw new Error(v.stdout + v.stderr);
    runs.push(v.cpu.userMs + v.cpu.sysMs);
  }
  return median(runs);
}

/**
 * A TCP port free on every one of `hosts` now (loopback addresses), for agents that
 * share it; the first host's kernel picks it, at most 20 tries.
 */
function freePortOn(hosts: string[]): number {
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = Deno.listen({ hostname: hosts[0], port: 0 });
    const port = (first.addr as Deno.NetAddr).port;
    const held = [first];
    try {
      for (const hostname of hosts.slice(1)) held.push(Deno.listen({ hostname, port }));
      return port;
    } catch {
      // Taken on one of them: another port.
    } finally {
      for (const listener of held) listener.close();
    }
  }
  throw new Error(`no port free on all of ${hosts[0]} ... ${hosts.at(-1)}`);
}

/**
 * Stops an agent (SIGTERM); one still there after `ms` is killed, its serving process
 * with it (the supervisor would not be there to end it).
 */
async function stopWithin(agent: TestAgent, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  const stopped = agent.stop();
  try {
    if (await Promise.race([stopped, late]) !== "late") return;
    for (const pid of [agent.servingPid(), agent.process.pid]) {
      try {
        if (pid) Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    await stopped;
  } finally {
    clearTimeout(timer);
  }
}

// 1. Local overhead ----------------------------------------------------------
if (want("local")) {
  const dir = await scratch();
  const shell = Array.from({ length: 200 }, (_, i) => `{ name = "s${i}", command = "true" }`);
  const lua = Array.from(
    { length: 200 },
    (_, i) => `{ name = "l${i}", command = function() return true end }`,
  );
  await Deno.writeTextFile(`${dir}/shell.lua`, workflow(shell));
  await Deno.writeTextFile(`${dir}/lua.lua`, workflow(lua));
  const perTask = async (file: string) => {
    const r = await sloth(["run", "-f", file, "-o", "json"], dir);
    if (r.code !== 0) throw new Error(r.stderr);
    return runDuration(r.stdout) / 200;
  };
  // Interleaved (shell, Lua, shell, ...) so both see the same machine.
  const shellRuns: number[] = [];
  const luaRuns: number[] = [];
  for (let i = 0; i < 5; i++) {
    shellRuns.push(await perTask("shell.lua"));
    luaRuns.push(await perTask("lua.lua"));
  }
  const shellMs = median(shellRuns);
  const luaMs = median(luaRuns);
  const baselineRuns: number[] = [];
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    for (let j = 0; j < 200; j++) {
      await new Deno.Command("sh", { args: ["-c", "true"], stdout: "null", stderr: "null" })
        .output();
    }
    baselineRuns.push((performance.now() - started) / 200);
  }
  const base = median(baselineRuns);
  rows.push({
    name: "Local: 200 no-op shell tasks, per task",
    subject: ms(shellMs),
    baseline: `${ms(base)} (sh -c true from Deno)`,
    ratio: shellMs / base,
  });
  rows.push({
    name: "Local: 200 no-op Lua function tasks, per task",
    subject: `${ms(luaMs)} (${(luaMs / base).toFixed(2)}× sh -c true)`,
    baseline: `${ms(shellMs)} (local shell no-op task, row above)`,
    ratio: luaMs / shellMs,
    target: "≤ 1.5× a local shell task",
    met: luaMs <= 1.5 * shellMs,
  });
  await Deno.remove(dir, { recursive: true });
}

// 2. Remote dispatch latency -------------------------------------------------
if (want("dispatch")) {
  // The target is about sloth-runner's own overhead: measured without the bubblewrap
  // sandbox, whose namespace set-up costs ~7 ms a command here (reported separately).
  for (const sandbox of ["none", "bwrap"]) {
    await using agent = await startAgent({ args: ["--sandbox", sandbox] });
    for (const files of sandbox === "none" ? [0, 100] : [0]) {
      const dir = await scratch();
      if (files) await writeFiles(dir, files, 1024);
      const count = 201;
      const tasks = (remote: boolean) =>
        Array.from(
          { length: count },
          (_, i) =>
            `{ name = "t${i}", ${
              remote ? `delegate_to = "${agent.address}", ` : ""
            }command = "true" }`,
        );
      await Deno.writeTextFile(`${dir}/remote.lua`, workflow(tasks(true)));
      await Deno.writeTextFile(`${dir}/local.lua`, workflow(tasks(false)));
      const durations = async (file: string) => {
        const r = await sloth(["run", "-f", file, "-o", "json"], dir);
        if (r.code !== 0) throw new Error(r.stdout + r.stderr);
        // The first task also pays for the connection; the rest are the steady state.
        return finished(r.stdout).slice(1).map((e) => e.duration_ms!);
      };
      const remote = await durations("remote.lua");
      const local = await durations("local.lua");
      // Issue 13: p50 at most 2× the same task run locally (3× with 100 files to sync).
      const target = files ? 3 : 2;
      const ratio = median(remote) / median(local);
      rows.push({
        name: `Remote no-op shell task, ${files ? "100-file" : "empty"} workspace${
          sandbox === "bwrap" ? ", bubblewrap sandbox" : ""
        } (p50 / p99)`,
        subject: `${ms(median(remote))} / ${ms(percentile(remote, 99))}`,
        baseline: `${ms(median(local))} / ${ms(percentile(local, 99))} (same task, local)`,
        ratio,
        target: sandbox === "none" ? `p50 ≤ ${target}× local` : undefined,
        met: sandbox === "none" ? ratio <= target : undefined,
        note: sandbox === "none" ? undefined : "for information",
      });
      await Deno.remove(dir, { recursive: true });
    }
  }
  // A Lua function task: the agent loads the workflow in a worker made ahead for the job;
  // with bubblewrap, that worker is a process confined to the job's directory.
  for (const sandbox of ["none", "bwrap"]) {
    await using agent = await startAgent({ args: ["--sandbox", sandbox] });
    const dir = await scratch();
    const tasks = (remote: boolean) =>
      Array.from(
        { length: 41 },
        (_, i) =>
          `{ name = "t${i}", ${
            remote ? `delegate_to = "${agent.address}", ` : ""
          }command = function() return true end }`,
      );
    await Deno.writeTextFile(`${dir}/remote.lua`, workflow(tasks(true)));
    await Deno.writeTextFile(`${dir}/local.lua`, workflow(tasks(false)));
    const durations = async (file: string) => {
      const r = await sloth(["run", "-f", file, "-o", "json"], dir);
      if (r.code !== 0) throw new Error(r.stdout + r.stderr);
      return finished(r.stdout).slice(1).map((e) => e.duration_ms!);
    };
    const remote = await durations("remote.lua");
    const local = await durations("local.lua");
    const ratio = median(remote) / median(local);
    rows.push({
      name: `Remote no-op Lua function task, empty workspace${
        sandbox === "bwrap" ? ", bubblewrap sandbox (Lua in a confined process)" : ""
      } (p50 / p99)`,
      subject: `${ms(median(remote))} / ${ms(percentile(remote, 99))}`,
      baseline: `${ms(median(local))} / ${ms(percentile(local, 99))} (same task, local)`,
      ratio,
      // Issue 13's target, like the shell rows', is for sloth-runner's own overhead.
      target: sandbox === "none" ? "p50 ≤ 3× local" : undefined,
      met: sandbox === "none" ? ratio <= 3 : undefined,
      note: sandbox === "none" ? undefined : "for information",
    });
    await Deno.remove(dir, { recursive: true });
  }
}

// 2b. Chains, as a user meets them ----------------------------------------------
if (want("chain")) {
  // 100 tasks, each depending on the one before, so nothing overlaps: what a user
  // waits for is `sloth-runner run -f workflow.lua` from start to exit, the same chain
  // locally and delegated. Start-up and exit are in both and cancel in the difference;
  // the remote run's connection and first sync are a real cost of the chain and stay.
  const LENGTH = 100;
  const PAIRS = 5;
  const kinds = [
    { kind: "Lua function", command: "function() return true end", target: 5 },
    { kind: "shell", command: `"true"`, target: 3 },
  ];
  const chain = (command: string, address?: string) =>
    workflow(Array.from(
      { length: LENGTH },
      (_, i) =>
        `{ name = "t${i}", ${address ? `delegate_to = "${address}", ` : ""}command = ${command}${
          i ? `, depends_on = "t${i - 1}"` : ""
        } }`,
    ));
  const wall = async (dir: string, file: string) => {
    // Default (text) output, as a user runs it; the summary line says all of it ran.
    const r = await sloth(["run", "-f", file], dir);
    if (r.code !== 0 || !r.stdout.includes(`${LENGTH} tasks: ${LENGTH} success`)) {
      throw new Error(`chain ${file} failed (${r.code}):\n${r.stdout}${r.stderr}`);
    }
    return r.wallMs;
  };
  const localMedian = new Map<string, number>();
  {
    // The targets are for sloth-runner's own overhead, so without bubblewrap, as in dispatch.
    await using agent = await startAgent({ args: ["--sandbox", "none"] });
    for (const { kind, command, target } of kinds) {
      // Each chain in a directory of its own holding only its workflow (an empty workspace).
      const localDir = await scratch();
      const remoteDir = await scratch();
      await Deno.writeTextFile(`${localDir}/workflow.lua`, chain(command));
      await Deno.writeTextFile(`${remoteDir}/workflow.lua`, chain(command, agent.address));
      // One unmeasured pair first: the agent's first job of a kind pays for what it
      // then keeps ready (a Lua worker, the kept workspace).
      await wall(localDir, "workflow.lua");
      await wall(remoteDir, "workflow.lua");
      const local: number[] = [];
      const remote: number[] = [];
      for (let i = 0; i < PAIRS; i++) {
        local.push(await wall(localDir, "workflow.lua"));
        remote.push(await wall(remoteDir, "workflow.lua"));
      }
      const extra = (median(remote) - median(local)) / LENGTH;
      localMedian.set(kind, median(local));
      rows.push({
        name: `Chain of ${LENGTH} ${kind} tasks (each depends_on the previous), delegate_to ` +
          `an agent, run wall time`,
        subject: `${secs(median(remote))} (${extra >= 0 ? "+" : ""}${ms(extra)} a task)`,
        baseline: `${secs(median(local))} (same chain, local)`,
        ratio: median(remote) / median(local),
        target: `≤ ${target} ms extra a task over local`,
        met: extra <= target,
      });
      await Deno.remove(localDir, { recursive: true });
      await Deno.remove(remoteDir, { recursive: true });
    }
  }
  {
    // The same with the bubblewrap sandbox (the default where it works): one run each,
    // after a warm-up, against the local medians above.
    await using agent = await startAgent({ args: ["--sandbox", "bwrap"] });
    const extras: string[] = [];
    for (const { kind, command } of kinds) {
      const dir = await scratch();
      await Deno.writeTextFile(`${dir}/workflow.lua`, chain(command, agent.address));
      await wall(dir, "workflow.lua");
      const remote = await wall(dir, "workflow.lua");
      const extra = (remote - localMedian.get(kind)!) / LENGTH;
      extras.push(`${kind} ${secs(remote)} (${extra >= 0 ? "+" : ""}${ms(extra)} a task)`);
      await Deno.remove(dir, { recursive: true });
    }
    rows.push({
      name: "Chains as above, bubblewrap sandbox (one run each)",
      subject: extras.join("; "),
      baseline: "the local medians above",
      note: "for information",
    });
  }
}

// 3. Throughput --------------------------------------------------------------
/** The 2-agent throughput row's tasks a second, for the fleet part (when both run). */
let twoAgentRate: number | undefined;
if (want("throughput")) {
  // Without the sandbox, as for dispatch; one run with it follows, for information.
  await using a = await startAgent({ args: ["--sandbox", "none"] });
  await using b = await startAgent({ args: ["--sandbox", "none"] });
  const dir = await scratch();
  await Deno.writeTextFile(`${dir}/w.lua`, twoAgentWorkflow(1000, a.address, b.address));
  await Deno.writeTextFile(`${dir}/local.lua`, workflow(noopTasks(1000)));
  // Interleaved (local, remote, ...) so both see the same machine.
  const remoteRuns: Throughput[] = [];
  const localRuns: Throughput[] = [];
  for (let i = 0; i < 3; i++) {
    localRuns.push(await throughput(dir, "local.lua", 1000));
    remoteRuns.push(await throughput(dir, "w.lua", 1000, { agents: [a, b] }));
  }
  const rate = twoAgentRate = median(remoteRuns.map((r) => r.rate));
  const localRate = median(localRuns.map((r) => r.rate));
  rows.push({
    name: `Throughput: 1,000 no-op remote shell tasks, 2 agents, -j ${THROUGHPUT_JOBS}`,
    subject: `${rate.toFixed(0)} tasks/s`,
    baseline: `${localRate.toFixed(0)} tasks/s (same tasks, local)`,
    ratio: rate / localRate,
    target: "≥ 0.7× local",
    met: rate >= 0.7 * localRate,
  });
  // getrusage of the CLI process (/usr/bin/time): everything the master did, its
  // start-up and loading the 1,000-task workflow included; the local run's figure also
  // holds its 1,000 `sh` children. The agents' (serving processes and the commands they
  // reaped) from /proc, for comparison.
  const startupPerTask = await validateCpuMs(dir, "w.lua") / 1000;
  const cpuPerTask = median(remoteRuns.map((r) => r.cpuMs)) / 1000;
  const localCpuPerTask = median(localRuns.map((r) => r.cpuMs)) / 1000;
  const agentsPerTask = median(remoteRuns.map((r) => r.agentsMs)) / 1000;
  rows.push({
    name: "CPU per remote task in the throughput run: the master (user + system)",
    subject: `${ms(cpuPerTask)}, ${ms(cpuPerTask - startupPerTask)} without start-up ` +
      `(agents: ${ms(agentsPerTask)})`,
    baseline: `${ms(localCpuPerTask)} (same tasks, local: the CLI and its sh children)`,
    ratio: cpuPerTask / localCpuPerTask,
    note: "reported",
  });
  await using sa = await startAgent({ args: ["--sandbox", "bwrap"] });
  await using sb = await startAgent({ args: ["--sandbox", "bwrap"] });
  await Deno.writeTextFile(
    `${dir}/sandboxed.lua`,
    twoAgentWorkflow(1000, sa.address, sb.address),
  );
  const sandboxedRate = (await throughput(dir, "sandboxed.lua", 1000)).rate;
  rows.push({
    name: "Throughput as above, bubblewrap sandbox (one run)",
    subject: `${sandboxedRate.toFixed(0)} tasks/s`,
    baseline: `${rate.toFixed(0)} tasks/s (no sandbox)`,
    ratio: sandboxedRate / rate,
    note: "for information",
  });
  await Deno.remove(dir, { recursive: true });
}

// 4 and 5. Cold and warm sync ------------------------------------------------
if (want("sync") || want("warm")) {
  const dir = await scratch();
  await writeFiles(dir, 10_000, 20 * 1024);
  const tarRuns: number[] = [];
  const tarOnce = async () => {
    const target = await scratch();
    const started = performance.now();
    const out = await new Deno.Command("sh", {
      args: ["-c", `tar cf - . | tar xf - -C ${target}`],
      cwd: dir,
    }).output();
    if (out.code !== 0) throw new Error("tar failed");
    tarRuns.push(performance.now() - started);
    await Deno.remove(target, { recursive: true });
  };
  const run = async (extra: string[] = []) => {
    const r = await sloth(["run", "-f", "w.lua", "-o", "json", ...extra], dir);
    if (r.code !== 0) throw new Error(r.stdout + r.stderr);
    const e = finished(r.stdout)[0];
    return {
      ms: e.duration_ms!,
      sent: e.transfer?.sent_bytes ?? 0,
      received: e.transfer?.received_bytes ?? 0,
    };
  };
  // Cold: an agent with an empty content store and no kept workspace, each time,
  // interleaved with the baseline so both run under the same conditions (back-to-back).
  const coldRuns: { ms: number; sent: number; received: number }[] = [];
  let agent: TestAgent | undefined;
  const roots: string[] = [];
  // Five pairs: this VM's disk speed swings, and the median of five holds still better.
  for (let i = 0; i < 5; i++) {
    await agent?.stop();
    const root = await scratch();
    roots.push(root);
    agent = await startAgent({ args: ["--work-root", root, "--sandbox", "none"] });
    await Deno.writeTextFile(
      `${dir}/w.lua`,
      workflow([`{ name = "noop", delegate_to = "${agent.address}", command = "true" }`]),
    );
    await tarOnce();
    coldRuns.push(await run());
  }
  const cold = coldRuns.sort((x, y) => x.ms - y.ms)[2];
  const tarMs = median(tarRuns);
  rows.push({
    name: "Cold sync: 200 MB, 10,000 files, to the agent and back",
    subject: `${ms(cold.ms)}, ${mb(cold.sent)} sent, ${mb(cold.received)} back`,
    baseline: `${ms(tarMs)} (tar cf - . | tar xf -)`,
    ratio: cold.ms / tarMs,
    target: "≤ 1.5× baseline; nothing back for an unchanged workspace",
    met: cold.ms <= 1.5 * tarMs && cold.received === 0,
  });
  {
    // The price of --compress where it cannot pay (random content, loopback): once, cold.
    const root = await scratch();
    roots.push(root);
    await using zipped = await startAgent({ args: ["--work-root", root, "--sandbox", "none"] });
    await Deno.writeTextFile(
      `${dir}/w.lua`,
      workflow([`{ name = "noop", delegate_to = "${zipped.address}", command = "true" }`]),
    );
    const z = await run(["--compress"]);
    rows.push({
      name: "Cold sync with --compress (random content; for information)",
      subject: `${ms(z.ms)}, ${mb(z.sent)} sent`,
      baseline: `${ms(cold.ms)} (cold, plain)`,
      ratio: z.ms / cold.ms,
      note: "off by default",
    });
    await Deno.writeTextFile(
      `${dir}/w.lua`,
      workflow([`{ name = "noop", delegate_to = "${agent!.address}", command = "true" }`]),
    );
  }
  if (want("warm")) {
    const warmRuns: { ms: number; sent: number; received: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const f = `${dir}/d0/f${i}.bin`;
      const data = await Deno.readFile(f);
      data[0] ^= 0xff;
      await Deno.writeFile(f, data);
      warmRuns.push(await run());
    }
    const warm = warmRuns.sort((x, y) => x.ms - y.ms)[1];
    rows.push({
      name: "Warm sync: the same after one file changed",
      subject: `${ms(warm.ms)}, ${kb(warm.sent)} sent, ${kb(warm.received)} back`,
      baseline: `${ms(cold.ms)}, ${mb(cold.sent)} sent (cold)`,
      ratio: warm.ms / cold.ms,
      target: "≤ 1% of cold bytes, ≤ 3% of cold time",
      met: warm.sent <= 0.01 * cold.sent && warm.ms <= 0.03 * cold.ms,
    });
  }
  await agent?.stop();
  for (const root of roots) await Deno.remove(root, { recursive: true });
  await Deno.remove(dir, { recursive: true });
}

// 6. Memory --------------------------------------------------------------------
if (want("memory")) {
  await using agent = await startAgent();
  const dir = await scratch();
  await writeFiles(dir, 1024, 1024 * 1024);
  await Deno.writeTextFile(
    `${dir}/w.lua`,
    workflow([
      `{ name = "big", delegate_to = "${agent.address}", command = "du -sm . | cut -f1" }`,
    ]),
  );
  const r = await sloth(["run", "-f", "w.lua"], dir);
  if (r.code !== 0) throw new Error(r.stdout + r.stderr);
  const master = (r.maxRssKb ?? 0) * 1024;
  const agentPeak = agentRss(agent);
  rows.push({
    name: "Peak RSS while a 1 GiB workspace syncs (master / agent)",
    subject: `${mb(master)} / ${mb(agentPeak)}`,
    baseline: "-",
    target: "≤ 200 MB each",
    met: master <= 200e6 && agentPeak <= 200e6,
  });
  await Deno.remove(dir, { recursive: true });
}

// 7. Start-up ------------------------------------------------------------------
if (want("startup")) {
  const dir = await scratch();
  const tasks = Array.from(
    { length: 100 },
    (_, i) => `{ name = "t${i}", command = "true"${i ? `, depends_on = "t${i - 1}"` : ""} }`,
  );
  await Deno.writeTextFile(`${dir}/w.lua`, workflow(tasks));
  const time = async (args: string[]) => {
    const runs: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, ...args],
        cwd: dir,
        stdout: "null",
        stderr: "null",
      }).output();
      if (out.code !== 0) throw new Error(`${args.join(" ")} failed`);
      runs.push(performance.now() - started);
    }
    return median(runs);
  };
  const empty = `${dir}/empty.ts`;
  await Deno.writeTextFile(empty, "");
  const baseline = await (async () => {
    const runs: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      await new Deno.Command(Deno.execPath(), { args: ["run", empty], stdout: "null" }).output();
      runs.push(performance.now() - started);
    }
    return median(runs);
  })();
  const version = await time(["version"]);
  const validate = await time(["validate", "-f", "w.lua"]);
  rows.push({
    name: "Start-up: `version`",
    subject: ms(version),
    baseline: `${ms(baseline)} (deno run of an empty file)`,
    ratio: version / baseline,
    target: "≤ 100 ms",
    met: version <= 100,
  });
  rows.push({
    name: "Start-up: `validate` of 100 tasks",
    subject: ms(validate),
    baseline: `${ms(baseline)} (deno run of an empty file)`,
    ratio: validate / baseline,
    target: "≤ 300 ms",
    met: validate <= 300,
  });
  await Deno.remove(dir, { recursive: true });
}

// 8. Ansible ---------------------------------------------------------------------
if (want("ansible")) {
  const hasAnsible = await new Deno.Command("sh", {
    args: ["-c", "command -v ansible-playbook"],
    stdout: "null",
  })
    .output().then((o) => o.code === 0);
  if (!hasAnsible) {
    rows.push({
      name: "Ansible: 100 no-op tasks on localhost",
      subject: "-",
      baseline: "-",
      note: "skipped: ansible-core is not installed (apt-get install ansible-core)",
    });
  } else {
    await using agent = await startAgent({ args: ["--sandbox", "none"] });
    const dir = await scratch();
    const plays = Array.from(
      { length: 100 },
      (_, i) => `    - name: t${i}\n      command: /bin/true`,
    ).join("\n");
    await Deno.writeTextFile(
      `${dir}/play.yml`,
      `- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n${plays}\n`,
    );
    const started = performance.now();
    const out = await new Deno.Command("ansible-playbook", {
      args: ["-i", "localhost,", "play.yml"],
      cwd: dir,
      env: { ANSIBLE_NOCOLOR: "1", ANSIBLE_LOCALHOST_WARNING: "false" },
      stdout: "null",
      stderr: "null",
    }).output();
    const ansibleMs = (performance.now() - started) / 100;
    const tasks = Array.from(
      { length: 100 },
      (_, i) => `{ name = "t${i}", delegate_to = "${agent.address}", command = "true" }`,
    );
    await Deno.writeTextFile(`${dir}/w.lua`, workflow(tasks));
    const r = await sloth(["run", "-f", "w.lua", "-o", "json"], dir);
    const slothMs = runDuration(r.stdout) / 100;
    rows.push({
      name: "100 no-op tasks delegated to localhost, per task",
      subject: `${ms(slothMs)} (sloth-runner agent)`,
      baseline: `${ms(ansibleMs)} (Ansible, connection local${out.code ? ", FAILED" : ""})`,
      ratio: slothMs / ansibleMs,
    });
    await Deno.remove(dir, { recursive: true });
  }
}

// 9. Fleet (issue 14) --------------------------------------------------------------
if (want("fleet")) {
  // 30 agents on 127.0.0.2 ... 127.0.0.31, one port, `--sandbox none` as in the
  // throughput row (the targets are about the master, and a pool's throughput is
  // compared with that row's). Each idle agent is two Deno processes of about 85 MB.
  const SIZE = 30;
  const hosts = Array.from({ length: SIZE }, (_, i) => `127.0.0.${i + 2}`);
  const names = hosts.map((_, i) => `a${String(i + 1).padStart(2, "0")}`);
  const root = await scratch();
  const dir = await scratch();
  const agents: TestAgent[] = [];
  try {
    const port = freePortOn(hosts);
    // Four at a time: an agent's start-up is ~0.4 s of CPU, and there are two cores.
    for (let i = 0; i < SIZE; i += 4) {
      const batch = await Promise.allSettled(
        hosts.slice(i, i + 4).map((host) =>
          startAgent({
            port,
            args: ["--bind", host, "--sandbox", "none", "--work-root", root],
          })
        ),
      );
      for (const b of batch) if (b.status === "fulfilled") agents.push(b.value);
      const failed = batch.find((b) => b.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
    await Deno.writeTextFile(
      `${dir}/fleet.yaml`,
      "agents:\n" +
        names.map((n, i) => `  ${n}: { address: "${hosts[i]}:${port}", labels: [bench] }\n`)
          .join("") +
        "pools:\n  all: { labels: [bench] }\n  two: { members: [a01, a02] }\n",
    );
    const inv = ["-i", "fleet.yaml"];
    /** One run of the CLI in `dir`, which must exit 0 and pass `check`. */
    const ok = async (args: string[], check?: (r: SlothRun) => void) => {
      const r = await sloth(args, dir);
      if (r.code !== 0) throw new Error(`${args.join(" ")} (${r.code}):\n${r.stdout}${r.stderr}`);
      check?.(r);
      return r;
    };
    const wall = (runs: SlothRun[]) => median(runs.map((r) => r.wallMs));

    // (1) `agents` over 30, against `version` (Deno's and the CLI's start-up) and
    // `agent ping` of one of them (the gRPC modules, one connection, one ping).
    // Interleaved (version, ping, agents, ...).
    const version: SlothRun[] = [];
    const ping: SlothRun[] = [];
    const listing: SlothRun[] = [];
    for (let i = 0; i < 7; i++) {
      version.push(await ok(["version"]));
      ping.push(await ok(["agent", "ping", `${hosts[0]}:${port}`]));
      listing.push(
        await ok(["agents", ...inv, "-o", "json"], (r) => {
          const list: { reachable: boolean }[] = JSON.parse(r.stdout);
          if (list.length !== SIZE || !list.every((a) => a.reachable)) {
            throw new Error(`agents: not all ${SIZE} reachable:\n${r.stdout}`);
          }
        }),
      );
    }
    const rtts = listing.map((r) =>
      Math.max(...JSON.parse(r.stdout).map((a: { rtt_ms: number }) => a.rtt_ms))
    );
    rows.push({
      name: `Fleet: \`agents\` over ${SIZE} agents, wall time`,
      subject: `${ms(wall(listing))} (${ms(wall(listing) - wall(version))} over \`version\`; ` +
        `slowest ping ${ms(median(rtts))})`,
      baseline: `${ms(wall(version))} (\`version\`); ${ms(wall(ping))} (\`agent ping\` of a01)`,
      ratio: wall(listing) / wall(version),
      target: "≤ 1 s",
      met: wall(listing) <= 1000,
    });

    // (2) A fan-out of a no-op to all 30 (-j 30: every copy at once), against the same
    // workflow with one local no-op task (start-up, loading), and with that task on a01
    // (the remote runner's modules and one connection too). One unmeasured fan-out
    // first: an agent's first job makes what it then keeps (job directories, the kept
    // workspace). Interleaved (local, one remote, fan-out, ...).
    const noop = (where = "") => workflow([`{ name = "noop", ${where}command = "true" }`]);
    await Deno.writeTextFile(`${dir}/each.lua`, noop(`delegate_to = { each = "all" }, `));
    await Deno.writeTextFile(`${dir}/one.lua`, noop());
    await Deno.writeTextFile(`${dir}/remote.lua`, noop(`delegate_to = "a01", `));
    const fan = ["-j", String(SIZE), "-o", "json", ...inv];
    const succeeded = (count: number) => (r: SlothRun) => {
      if (finished(r.stdout).filter((e) => e.status === "success").length !== count) {
        throw new Error(`not every task succeeded:\n${r.stdout}`);
      }
    };
    const first = await ok(["run", "-f", "each.lua", ...fan], succeeded(SIZE));
    const fanRuns: SlothRun[] = [];
    const oneRuns: SlothRun[] = [];
    const remoteRuns: SlothRun[] = [];
    for (let i = 0; i < 5; i++) {
      oneRuns.push(await ok(["run", "-f", "one.lua", ...fan], succeeded(1)));
      remoteRuns.push(await ok(["run", "-f", "remote.lua", ...fan], succeeded(1)));
      fanRuns.push(await ok(["run", "-f", "each.lua", ...fan], succeeded(SIZE)));
    }
    const inRun = median(fanRuns.map((r) => runDuration(r.stdout)));
    const cpu = (runs: SlothRun[]) => median(runs.map((r) => r.cpu!.userMs + r.cpu!.sysMs));
    rows.push({
      name: `Fleet: fan-out of a no-op shell task to ${SIZE} agents ` +
        `(delegate_to = { each = "all" }, -j ${SIZE}), run wall time`,
      subject: `${ms(wall(fanRuns))} (${ms(inRun)} from run_started to run_finished; ` +
        `master CPU ${ms(cpu(fanRuns))}; first run ${ms(first.wallMs)})`,
      baseline: `${ms(wall(oneRuns))} (the same run of one local no-op task; ` +
        `${ms(wall(remoteRuns))}, CPU ${ms(cpu(remoteRuns))}, with it on a01)`,
      ratio: wall(fanRuns) / wall(oneRuns),
      target: "≤ 1 s",
      met: wall(fanRuns) <= 1000,
    });
    const exec = (target: string) => ["exec", target, ...inv, "-j", String(SIZE), "--", "true"];
    const execOne: SlothRun[] = [];
    const execEach: SlothRun[] = [];
    for (let i = 0; i < 5; i++) {
      execOne.push(await ok(exec("a01")));
      execEach.push(await ok([...exec("all"), "--each"]));
    }
    rows.push({
      name: `Fleet: \`exec all --each -- true\` on ${SIZE} agents (-j ${SIZE}), wall time`,
      subject: ms(wall(execEach)),
      baseline: `${ms(wall(execOne))} (\`exec a01 -- true\`, one agent)`,
      ratio: wall(execEach) / wall(execOne),
      target: "≤ 1 s",
      met: wall(execEach) <= 1000,
    });

    // (3) 2,000 no-op tasks over a pool of 30, against the same 2,000 tasks in the
    // throughput row's workflow (alternating between two agents, here a01 and a02), and,
    // to tell the pool's own cost from that of spreading, over a pool of those two.
    // Interleaved (two agents, pool of two, pool of 30, ...).
    const POOLED = 2000;
    const pooled = (pool: string) =>
      workflow(noopTasks(POOLED, () => `delegate_to = { pool = "${pool}" }, `));
    await Deno.writeTextFile(`${dir}/pool.lua`, pooled("all"));
    await Deno.writeTextFile(`${dir}/pool2.lua`, pooled("two"));
    await Deno.writeTextFile(
      `${dir}/two.lua`,
      twoAgentWorkflow(POOLED, `${hosts[0]}:${port}`, `${hosts[1]}:${port}`),
    );
    const poolRuns: Throughput[] = [];
    const pool2Runs: Throughput[] = [];
    const twoRuns: Throughput[] = [];
    for (let i = 0; i < 3; i++) {
      twoRuns.push(await throughput(dir, "two.lua", POOLED, { agents: agents.slice(0, 2) }));
      pool2Runs.push(
        await throughput(dir, "pool2.lua", POOLED, { agents: agents.slice(0, 2), args: inv }),
      );
      poolRuns.push(await throughput(dir, "pool.lua", POOLED, { agents, args: inv }));
    }
    const rate = (runs: Throughput[]) => median(runs.map((r) => r.rate));
    const poolRate = rate(poolRuns);
    const twoRate = rate(twoRuns);
    // The master's CPU a task without its start-up and loading (`validate`), to show
    // whether it grows with the number of agents; the agents' (their serving processes
    // and the commands they reaped).
    const masterPerTask = async (runs: Throughput[], file: string, args: string[] = []) =>
      (median(runs.map((r) => r.cpuMs)) - await validateCpuMs(dir, file, args)) / POOLED;
    const agentsPerTask = (runs: Throughput[]) => median(runs.map((r) => r.agentsMs)) / POOLED;
    const cpuText = async (runs: Throughput[], file: string, args: string[] = []) =>
      `CPU a task: master ${ms(await masterPerTask(runs, file, args))} without start-up, ` +
      `agents ${ms(agentsPerTask(runs))}; ${mb(median(runs.map((r) => r.sentBytes)))} sent`;
    const poolCpu = await cpuText(poolRuns, "pool.lua", inv);
    const pool2Cpu = await cpuText(pool2Runs, "pool2.lua", inv);
    const twoCpu = await cpuText(twoRuns, "two.lua");
    const earlier = twoAgentRate === undefined
      ? ""
      : `; the throughput part's 1,000: ${twoAgentRate.toFixed(0)} tasks/s`;
    rows.push({
      name: `Fleet: ${POOLED.toLocaleString("en")} no-op shell tasks over a pool of ${SIZE} ` +
        `(delegate_to = { pool = "all" }), -j ${THROUGHPUT_JOBS}`,
      subject: `${poolRate.toFixed(0)} tasks/s on ${median(poolRuns.map((r) => r.hosts))} ` +
        `members (${poolCpu})`,
      baseline: `${twoRate.toFixed(0)} tasks/s (the same tasks as in the throughput row, ` +
        `on a01 and a02; ${twoCpu}${earlier})`,
      ratio: poolRate / twoRate,
      target: "≥ the 2-agent throughput",
      met: poolRate >= twoRate,
    });
    rows.push({
      name: `Fleet: the same ${POOLED.toLocaleString("en")} tasks over a pool of two ` +
        `(a01, a02), -j ${THROUGHPUT_JOBS}`,
      subject: `${rate(pool2Runs).toFixed(0)} tasks/s (${pool2Cpu})`,
      baseline: `${twoRate.toFixed(0)} tasks/s (on a01 and a02 by name, above)`,
      ratio: rate(pool2Runs) / twoRate,
      note: "for information",
    });
    const peak = Math.max(...poolRuns.map((r) => r.maxRssBytes));
    const twoPeak = Math.max(...twoRuns.map((r) => r.maxRssBytes));
    rows.push({
      name: "Fleet: the master's peak RSS in the pool runs (largest of 3)",
      subject: mb(peak),
      baseline: `${mb(twoPeak)} (the same tasks on a01 and a02)`,
      target: "≤ 300 MB",
      met: peak <= 300e6,
    });
  } finally {
    // Whatever happened: no agent outlives the bench.
    await Promise.allSettled(agents.map((a) => stopWithin(a, 10_000)));
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(root, { recursive: true });
  }
}

// Report ---------------------------------------------------------------------------
const deno = Deno.version.deno;
const cpus = navigator.hardwareConcurrency;
const memGb =
  (Number(/MemTotal:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))![1]) / 1024 / 1024)
    .toFixed(0);
const kernel = Deno.osRelease();
// A "|" inside a cell (the tar pipeline) would end the cell.
const cell = (text: string) => text.replaceAll("|", "\\|");
const table = [
  "| benchmark | sloth-runner | baseline | ratio | target | met |",
  "|---|---|---|---|---|---|",
  ...rows.map((r) =>
    "| " + [
      r.name,
      r.subject,
      r.baseline,
      r.ratio === undefined ? "-" : r.ratio.toFixed(2) + "×",
      r.target ?? "-",
      r.met === undefined ? (r.note ?? "-") : r.met ? "yes" : "**no**",
    ].map(cell).join(" | ") + " |"
  ),
].join("\n");
console.log(table);
if (!only) {
  const doc = `# Benchmarks

Measured by \`deno task bench\` (scripts/bench.ts) on ${new Date().toISOString().slice(0, 10)}:
${cpus} CPUs, ${memGb} GiB, Linux ${kernel}, Deno ${deno}. Medians over repeated runs
(5 for local tasks, shell and Lua interleaved; 200 dispatches; 5 chains each way,
local and remote interleaved, after one unmeasured pair; 3 throughput runs each way,
interleaved; 3 warm syncs; 5 cold syncs each interleaved with its baseline; 10 for
start-up; for the fleet, 7 \`agents\` runs, 5 fan-outs and 5 \`exec --each\` runs, 3 pool runs,
each interleaved with its baselines), all back-to-back (no pauses; see MACHINE-NOTES.md
on memory give-back).
Baselines run in the same invocation, on the same data; issue 13's targets are ratios
to them. Dispatch, chain, throughput and fleet targets are for sloth-runner's own
overhead, so their agents run with \`--sandbox none\`; the bubblewrap figures are rows of
their own. The fleet is 30 agents on 127.0.0.2 ... 127.0.0.31 sharing one port, on the
same two cores as the master.

${table}

Reproduce: \`deno task bench\` (about 10 minutes;
\`-- --only=local,dispatch,chain,throughput,sync,warm,memory,startup,ansible,fleet\` runs those
parts and prints the table without writing this file). Chains are 100 tasks, each
\`depends_on\` the one before, timed from start to exit of
\`sloth-runner run -f workflow.lua\`; "extra a task" is (remote − local)
divided by 100. CPU per task is the master's user + system time (getrusage via
/usr/bin/time) over the 1,000 tasks. The Ansible row appears when ansible-core is
installed (\`apt-get install ansible-core\`); it runs the
same no-op commands with \`connection: local\`, which is Ansible's cheapest path (no SSH).

${await Deno.readTextFile(`${ROOT}/scripts/bench_notes.md`).catch(() => "")}`;
  await Deno.writeTextFile(`${ROOT}/BENCHMARKS.md`, doc);
  // Formatted as the rest of the repository, so `deno fmt --check` stays clean.
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", `${ROOT}/BENCHMARKS.md`] })
    .output();
  console.log("\nwrote BENCHMARKS.md");
}

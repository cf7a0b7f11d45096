/** `agents` (who is in the fleet and who answers) and `exec` (an ad hoc command on it). */
import { relative } from "node:path";
import { ExitCode, SlothError } from "../errors.ts";
import {
  expandFanOut,
  findInventory,
  Fleet,
  loadInventory,
  type Member,
  type PingInfo,
  poolMembers,
  staticMembers,
} from "../fleet/mod.ts";
import type { RunEvent } from "../log/mod.ts";
import {
  findAgent,
  findPool,
  hasAddressShape,
  type Inventory,
  parseAddress,
  parseDuration,
  type Target,
  type Task,
  type TlsPaths,
  type Workflow,
} from "../model/mod.ts";
import { loadPingAgent, loadRemoteRunner, PoolRunner } from "../runner/mod.ts";
import { planRun, runPlan, type TaskExecutor } from "../scheduler/mod.ts";
import type { Io } from "./io.ts";

/** How long `agents` waits for each agent: they are asked at once, so this bounds the whole. */
export const AGENTS_DEADLINE_MS = 1_000;

async function requireInventory(io: Io, flag: string | undefined): Promise<Inventory> {
  const path = findInventory(flag, io.cwd);
  if (!path) {
    throw new SlothError("usage", "no inventory: nothing names the fleet's agents", {
      hint: "give -i FILE, set SLOTH_INVENTORY, or create ./sloth-inventory.yaml " +
        '(agents: { web-1: { address: "10.0.0.11:50051", labels: [web] } })',
    });
  }
  return await loadInventory(path, relative(io.cwd, path) || path);
}

interface AgentRow {
  name: string;
  address: string;
  labels: string[];
  pools: string[];
  reachable: boolean;
  error?: string;
  version?: string;
  protocol?: number;
  running?: number;
  queued?: number;
  max_concurrent?: number;
  rtt_ms?: number;
}

export interface AgentsOptions {
  inventory?: string;
  output: "text" | "json";
  tls?: TlsPaths;
  timeoutMs?: number;
}

/** One row per agent of the inventory and of its DNS pools; exit 1 when any does not answer. */
export async function agentsCommand(io: Io, options: AgentsOptions): Promise<number> {
  const inventory = await requireInventory(io, options.inventory);
  const deadlineMs = options.timeoutMs ?? AGENTS_DEADLINE_MS;
  const rows = new Map<string, AgentRow>();
  const poolsOf = (name: string) =>
    Object.keys(inventory.pools).filter((pool) => {
      try {
        return staticMembers(inventory, pool)?.some((m) => m.name === name) ?? false;
      } catch {
        return false;
      }
    });
  // Keyed by row: a DNS member is a row of each pool that finds it (each pool has its
  // own token and TLS name for it).
  const members = new Map<string, Member>();
  for (const [name, agent] of Object.entries(inventory.agents)) {
    members.set(name, {
      name,
      labels: agent.labels,
      target: { kind: "remote", agent: name, ...agent },
    });
    rows.set(name, {
      name,
      address: agent.address,
      labels: agent.labels,
      pools: poolsOf(name),
      reachable: false,
    });
  }
  // DNS pools: their members, found now, are agents too; a look-up that fails is a row.
  const dnsPools = Object.entries(inventory.pools).filter(([, p]) => p.source.kind === "dns");
  await Promise.all(dnsPools.map(async ([pool, def]) => {
    try {
      for (const member of await poolMembers(inventory, pool)) {
        const key = `${pool}\0${member.name}`;
        members.set(key, member);
        rows.set(key, {
          name: member.name,
          address: member.target.address,
          labels: [],
          pools: [pool],
          reachable: false,
        });
      }
    } catch (error) {
      rows.set(`${pool}\0`, {
        name: `pool ${pool}`,
        address: def.source.kind === "dns" ? def.source.dns : "",
        labels: [],
        pools: [pool],
        reachable: false,
        error: (error as Error).message,
      });
    }
  }));

  const pingAgent = await loadPingAgent();
  await Promise.all([...members].map(async ([key, member]) => {
    const row = rows.get(key)!;
    try {
      const info: PingInfo = await pingAgent(member.target, { deadlineMs, tls: options.tls });
      Object.assign(row, {
        reachable: true,
        version: info.version,
        protocol: info.protocol,
        running: info.running,
        queued: info.queued,
        max_concurrent: info.maxConcurrent,
        rtt_ms: Math.round(info.rttMs * 10) / 10,
      });
    } catch (error) {
      row.error = (error as Error).message;
    }
  }));

  const list = [...rows.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  if (options.output === "json") io.out(JSON.stringify(list) + "\n");
  else io.out(agentsTable(list));
  return list.every((r) => r.reachable) ? ExitCode.ok : ExitCode.taskFailed;
}

function agentsTable(rows: AgentRow[]): string {
  const header = ["NAME", "ADDRESS", "LABELS", "VERSION", "JOBS", "RTT", "STATUS"];
  const cells = rows.map((r) => [
    r.name,
    r.address,
    r.labels.join(",") || "-",
    r.version ?? "-",
    r.reachable ? `${r.running! + r.queued!}/${r.max_concurrent}` : "-",
    r.rtt_ms !== undefined ? `${r.rtt_ms} ms` : "-",
    // Last: a reason may be long.
    r.reachable ? "ok" : notReachable(r),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd() + "\n";
  // A DNS pool that could not be looked up is a row of its own, not an agent.
  const unresolved = rows.filter((r) => r.name.startsWith("pool ")).length;
  const agents = rows.filter((r) => !r.name.startsWith("pool "));
  const down = agents.filter((r) => !r.reachable).length;
  return [header, ...cells].map(line).join("") +
    `${agents.length} agent${agents.length === 1 ? "" : "s"}: ${agents.length - down} reachable` +
    (down ? `, ${down} not` : "") +
    (unresolved ? `; ${unresolved} DNS pool${unresolved === 1 ? "" : "s"} not looked up` : "") +
    "\n";
}

/** The reason without the agent's address, which its row already shows. */
function notReachable(row: AgentRow): string {
  const reason = (row.error ?? "no answer").replace(`agent ${row.address} `, "");
  return reason.startsWith("unreachable") ? reason : `unreachable: ${reason}`;
}

export interface ExecOptions {
  inventory?: string;
  each?: boolean;
  sync?: string;
  maxParallel: number;
  timeout?: string;
  tls?: TlsPaths;
  compress?: boolean;
}

/**
 * Runs `command` on an agent, on one member of a pool, or (`--each`) on every
 * member, its output prefixed with the agent's name. Exit 0 only when every host
 * succeeded; Ctrl-C cancels it everywhere.
 */
export async function execCommand(
  io: Io,
  targetName: string,
  command: string[],
  options: ExecOptions,
): Promise<number> {
  if (command.length === 0 || command.every((part) => part.trim() === "")) {
    throw new SlothError("usage", "exec needs a command after the target", {
      hint: 'sloth-runner exec web -- uptime   (or one quoted shell line: -- "df -h | tail -1")',
    });
  }
  const timeoutMs = options.timeout === undefined ? undefined : parseDuration(options.timeout);
  if (options.timeout !== undefined && timeoutMs === undefined) {
    throw new SlothError("usage", `--timeout ${options.timeout} is not a duration`, {
      hint: 'use "500ms", "30s", "2m"',
    });
  }
  const inventory = hasAddressShape(targetName) && parseAddress(targetName)
    ? undefined
    : await requireInventory(io, options.inventory);
  const target = execTarget(targetName, inventory, options.each ?? false);

  let scratch: string | undefined;
  let workdir: string;
  if (options.sync !== undefined) {
    workdir = options.sync.startsWith("/") ? options.sync : `${io.cwd}/${options.sync}`;
    try {
      if (!Deno.statSync(workdir).isDirectory) throw new Error("not a directory");
    } catch (error) {
      throw new SlothError("usage", `--sync ${options.sync}: ${(error as Error).message}`);
    }
  } else {
    // Nothing is sent: the command runs in an empty directory on the agent.
    workdir = scratch = await Deno.makeTempDir({ prefix: "sloth-exec-" });
  }
  const script = command.length === 1 ? command[0] : command.map(shellQuote).join(" ");
  const task: Task = {
    id: "exec.exec",
    name: "exec",
    group: "exec",
    description: "",
    command: { kind: "shell", script },
    dependsOn: [],
    nextIfFail: [],
    retries: 0,
    timeoutMs,
    async: false,
    workdir,
    params: {},
    target,
    syncBack: "never",
  };
  let workflow: Workflow = {
    file: `${io.cwd}/exec`,
    groups: [{ name: "exec", description: "", tasks: [task], agents: {} }],
  };
  if (target.kind === "each") {
    workflow = expandFanOut(
      workflow,
      new Map([[target.pool, await poolMembers(inventory!, target.pool)]]),
    );
  }
  const plan = planRun(workflow);

  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);
  const RemoteRunner = await loadRemoteRunner();
  const emit = (event: RunEvent) => execOutput(io, event);
  const remote = new RemoteRunner({
    source: { file: workflow.file, cwd: io.cwd, values: {} },
    files: [],
    emit,
    tls: options.tls,
    compress: options.compress,
  });
  const pool = inventory && target.kind === "pool"
    ? new PoolRunner({
      fleet: new Fleet(inventory, (m, deadlineMs) => remote.ping(m.target, deadlineMs)),
      remote,
      emit,
    })
    : undefined;
  const executor: TaskExecutor = {
    gate: () => Promise.resolve({ action: "run" }),
    attempt: (t, ctx) => t.target.kind === "pool" ? pool!.attempt(t, ctx) : remote.attempt(t, ctx),
  };
  try {
    const outcome = await runPlan(plan, executor, {
      maxParallel: options.maxParallel,
      signal: interrupt.signal,
    });
    for (
      const { task, result } of outcome.results.map((r, i) => ({
        task: plan.tasks[i].task,
        result: r,
      }))
    ) {
      const host = hostOf(task, result.where);
      const how = result.status === "success"
        ? "ok"
        : `${result.status}${result.error ? `: ${result.error}` : ""}`;
      io.err(`${host}: ${how} (${Math.round(result.durationMs)} ms)\n`);
    }
    if (outcome.interrupted) return ExitCode.interrupted;
    return outcome.results.every((r) => r.status === "success") ? ExitCode.ok : ExitCode.taskFailed;
  } finally {
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
    remote.close();
    if (scratch) await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/** An agent's name, a pool's name, or `host:port`; `each` asks for every member. */
function execTarget(name: string, inventory: Inventory | undefined, each: boolean): Target {
  if (!inventory) return { kind: "remote", address: name };
  const agent = findAgent(inventory, name);
  if (agent) return { kind: "remote", agent: name, ...agent };
  if (findPool(inventory, name)) {
    // A pool with no member is said now, as a usage error, not as a failed host.
    staticMembers(inventory, name);
    return each ? { kind: "each", pool: name } : { kind: "pool", pool: name };
  }
  const known = [
    ...Object.keys(inventory.agents).map((n) => `${n} (agent)`),
    ...Object.keys(inventory.pools).map((n) => `${n} (pool)`),
  ];
  throw new SlothError("unknown_agent", `no agent or pool named "${name}" in the inventory`, {
    hint: known.length ? `known: ${known.join(", ")}` : "the inventory names no agents",
  });
}

/** The agent a row ran on: the fan-out's member, else the agent's name or address. */
function hostOf(task: Task, where: string): string {
  if (task.fanOut) return task.fanOut.host;
  if (task.target.kind === "remote") return task.target.agent ?? task.target.address;
  // A pool's member: "agent web-1 (10.0.0.11:50051), pool web".
  return /^agent (\S+)/.exec(where)?.[1] ?? where;
}

function execOutput(io: Io, event: RunEvent): void {
  if (event.type !== "log") return;
  const who = event.agent ?? "";
  if (event.stream === "stdout") io.out(`${who}: ${event.line}\n`);
  else if (event.stream === "stderr") io.err(`${who}: ${event.line}\n`);
  else if (event.level !== "debug") io.err(`${who}: ${event.level ?? "info"}: ${event.line}\n`);
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

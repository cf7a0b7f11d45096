/**
 * The plain values that flow through sloth-runner: a Lua file becomes a `Workflow`,
 * the scheduler plans its `Task`s and every runner returns a `TaskResult`.
 * Nothing here does I/O.
 */

export type { ExitReason, ExitStatus, TaskResult, TaskStatus, Transfer } from "./result.ts";
export { exitStatusText, isFailure } from "./result.ts";
export { formatDuration, MAX_TIMEOUT_MS, parseDuration } from "./duration.ts";
export { formatSize, parseSize } from "./size.ts";
export { hasAddressShape, isLoopbackHost, parseAddress } from "./address.ts";

export type {
  FanOut,
  Inventory,
  InventoryAgent,
  PoolDef,
  PoolSource,
  PoolTarget,
} from "./fleet.ts";
export { agentNameProblem, FAN_OUT_MARK, findAgent, findPool, poolSourceText } from "./fleet.ts";
import type { FanOut, PoolTarget } from "./fleet.ts";
export type { GroupDir, GuardedDir } from "./group_dir.ts";
export { guardedDirs, removalRefusal } from "./group_dir.ts";
import type { GroupDir } from "./group_dir.ts";

/** Where a task runs. */
export type Target =
  | { kind: "local" }
  | RemoteTarget
  /** One member of an inventory pool, chosen per attempt. */
  | PoolTarget
  /**
   * Every member of an inventory pool: replaced, before the run is planned, by one
   * task per member (fleet/expand.ts); never reaches a runner.
   */
  | {
    kind: "each";
    pool: string;
    /** Hosts started at a time, each batch after the previous one finished. */
    batch?: number;
    /** After this many hosts failed, no more are started. */
    maxFailures?: number;
  };

/** One agent, by address. */
export interface RemoteTarget {
  kind: "remote";
  /** `host:port` of the agent. */
  address: string;
  /** Its name (the group's `agents` table, the inventory, a DNS pool), when it has one. */
  agent?: string;
  /** Environment variable holding the agent's token. */
  tokenEnv?: string;
  /** TLS files for this agent (absolute paths). */
  tls?: TlsPaths;
  /**
   * With TLS, the name its certificate must carry when that is not the address's host:
   * a DNS pool's member, dialled by the address DNS gave for this name.
   */
  tlsName?: string;
  /** gzip the workspace and the change set (for slow links). */
  compress?: boolean;
}

export interface TlsPaths {
  ca?: string;
  cert?: string;
  key?: string;
}

/** A Lua function in the workflow; `where` is its definition as `file:line`. */
export interface LuaRef {
  kind: "lua";
  where: string;
}

export interface ShellScript {
  kind: "shell";
  script: string;
}

export type Command = ShellScript | LuaRef;
export type Condition = ShellScript | LuaRef;

export interface AgentDef {
  address: string;
  tokenEnv?: string;
  tls?: TlsPaths;
  compress?: boolean;
}

export interface Task {
  /** `group.task`, unique in the workflow. */
  id: string;
  name: string;
  group: string;
  description: string;
  /** Absent for a task that only gathers its dependencies. */
  command?: Command;
  /** Names of tasks in the same group. */
  dependsOn: string[];
  /** Names of tasks in the same group; the task runs only if one of them failed. */
  nextIfFail: string[];
  /** Extra attempts after the first. */
  retries: number;
  /** Per attempt; absent means no limit. */
  timeoutMs?: number;
  async: boolean;
  preExec?: LuaRef;
  postExec?: LuaRef;
  runIf?: Condition;
  abortIf?: Condition;
  /**
   * Absolute path; "" for a task that inherits its group's temporary directory
   * (`Group.dir` without a path) until the run has made it.
   */
  workdir: string;
  params: Record<string, unknown>;
  target: Target;
  /** For remote tasks: when the agent's changes come back to this machine. */
  syncBack: SyncBack;
  /** Set on the per-host tasks a fan-out (`delegate_to = { each = POOL }`) became. */
  fanOut?: FanOut;
  /** How long to wait between attempts; exponential when absent. */
  retryStrategy?: RetryStrategy;
  /** Run on this machine after the task's last attempt: it succeeded. */
  onSuccess?: LuaRef;
  /** Run on this machine after the task's last attempt: it failed (timed out too). */
  onFailure?: LuaRef;
  /** Run on this machine after the task's last attempt: it timed out. */
  onTimeout?: LuaRef;
  /** Paths or patterns (relative to the workdir) the task must leave behind when it succeeds. */
  artifacts?: string[];
  /** Paths or patterns inside the workdir that must be there before the task starts. */
  consumes?: string[];
  /** The user the task's commands must run as where it runs (a name or uid). */
  user?: string;
  /** At most this many tasks of its group run at once (a workflow's max_parallel_tasks). */
  groupMaxParallel?: number;
  /** Its failure stops the run, as abort_if does (a workflow's fail_fast). */
  stopRunOnFailure?: boolean;
}

export type RetryStrategy = "exponential" | "linear" | "fixed";

export type SyncBack = "on_success" | "always" | "never";

export interface Group {
  name: string;
  description: string;
  /** A workflow's version (workflow.define), shown by `list`. */
  version?: string;
  tasks: Task[];
  agents: Record<string, AgentDef>;
  /** Run on this machine before the run's first task. */
  onStart?: LuaRef;
  /** Run on this machine after the run's last task: `function(success, results)`. */
  onComplete?: LuaRef;
  /** Set when the group asks for its directory to be made or removed around the run. */
  dir?: GroupDir;
}

export interface Workflow {
  /** Absolute path of the main file. */
  file: string;
  groups: Group[];
}

export function targetText(target: Target): string {
  switch (target.kind) {
    case "local":
      return "local";
    case "pool":
      return `pool ${target.pool}`;
    case "each":
      return `each of pool ${target.pool}`;
    default:
      return target.agent && target.agent !== target.address
        ? `agent ${target.agent} (${target.address})`
        : `agent ${target.address}`;
  }
}

export function allTasks(workflow: Workflow): Task[] {
  return workflow.groups.flatMap((group) => group.tasks);
}

/**
 * The directory in a task's working directory where the master journals a change
 * set from an agent while it applies it (sync/journal.ts); never sent to agents.
 * Here, not in sync/, so that a run can look for one without loading sync/.
 */
export const JOURNAL_DIR = ".sloth-apply";

/**
 * Runs tasks on this machine: shell strings with `/bin/sh -c`, Lua functions in
 * a fresh Lua state on a pooled worker, with their hooks around them.
 */
import {
  type CallKind,
  type CallResult,
  GROUP_FUNCTIONS,
  type LuaPool,
  type LuaSession,
  openGroupSession,
  openTaskSession,
  taskEnv,
  type WorkflowSource,
} from "../dsl/mod.ts";
import { commandUser, runShell, type Sandbox } from "../exec/mod.ts";
import type { EmitEvent, LogLevel } from "../log/mod.ts";
import type { Condition, Group, Task } from "../model/mod.ts";
import { exitStatusText } from "../model/mod.ts";
import type {
  AttemptContext,
  AttemptResult,
  Gate,
  Settled,
  TaskExecutor,
} from "../scheduler/mod.ts";
import { SlothError } from "../errors.ts";
import { missingArtifacts } from "./artifacts.ts";

export interface LocalRunnerOptions {
  /** Lua workers; needed only by tasks with Lua functions. */
  pool?: LuaPool;
  source: WorkflowSource;
  emit: EmitEvent;
  /** Where shell commands run (the agent's sandbox); directly when absent. */
  sandbox?: Sandbox;
  /** Added to every command's environment. */
  env?: Record<string, string>;
  /**
   * A state with the workflow loaded for the (one) task this runner is given,
   * used for its functions instead of opening another (an agent's job).
   */
  session?: LuaSession;
}

type Inputs = AttemptContext["inputs"];

export class LocalRunner implements TaskExecutor {
  #pool?: LuaPool;
  #source: WorkflowSource;
  #emit: EmitEvent;
  #sandbox?: Sandbox;
  #env: Record<string, string>;
  #session?: LuaSession;

  constructor(options: LocalRunnerOptions) {
    this.#pool = options.pool;
    this.#source = options.source;
    this.#emit = options.emit;
    this.#sandbox = options.sandbox;
    this.#env = options.env ?? {};
    this.#session = options.session;
  }

  #taskEnv(task: Task): Record<string, string> {
    return { ...this.#env, ...taskEnv(task) };
  }

  async gate(task: Task, inputs: Inputs, signal: AbortSignal): Promise<Gate> {
    if (!task.abortIf && !task.runIf) return { action: "run" };
    let session: LuaSession | undefined;
    const needsLua = task.abortIf?.kind === "lua" || task.runIf?.kind === "lua";
    try {
      if (needsLua) session = await this.#open(task);
      const check = async (field: "abort_if" | "run_if", condition: Condition) => {
        if (condition.kind === "shell") {
          const { exit } = await runShell(condition.script, {
            cwd: task.workdir,
            env: this.#taskEnv(task),
            signal,
            capture: true,
            sandbox: this.#sandbox,
          });
          if (exit.reason === "spawn_failed") throw new Error(`${field}: ${exitStatusText(exit)}`);
          return exit.reason === "exited" && exit.code === 0;
        }
        const result = await session!.call(
          "condition",
          { group: task.group, task: task.name, field },
          [this.#params(task), inputs],
          signal,
        );
        if (result.error !== undefined) throw new Error(`${field}: ${result.error}`);
        return result.value === true;
      };
      if (task.abortIf && await check("abort_if", task.abortIf)) {
        return { action: "abort", reason: "abort_if was true" };
      }
      if (task.runIf && !await check("run_if", task.runIf)) {
        return { action: "skip", reason: "run_if was false" };
      }
      return { action: "run" };
    } catch (error) {
      return { action: "fail", error: error instanceof Error ? error.message : String(error) };
    } finally {
      session?.release();
    }
  }

  async attempt(task: Task, ctx: AttemptContext): Promise<AttemptResult> {
    const needsLua = task.command?.kind === "lua" || task.preExec || task.postExec;
    let session: LuaSession | undefined;
    try {
      if (task.user !== undefined) {
        const wrongUser = await userMismatch(task.user, this.#sandbox !== undefined);
        if (wrongUser) return { ok: false, error: wrongUser };
      }
      if (task.consumes?.length) {
        const missing = await missingArtifacts(task.workdir, task.consumes);
        if (missing.length > 0) {
          return {
            ok: false,
            error: `consumes: nothing matches ${
              missing.map((m) => JSON.stringify(m)).join(", ")
            } in the task's workdir (an earlier task's artifacts?)`,
          };
        }
      }
      if (needsLua) session = await this.#open(task);
      const params = this.#params(task);
      const call = (kind: CallKind, field: string, args: unknown[]) =>
        session!.call(kind, { group: task.group, task: task.name, field }, args, ctx.signal);

      if (task.preExec) {
        const failed = hookFailure(
          "pre_exec",
          await call("hook", "pre_exec", [params, ctx.inputs]),
        );
        if (failed) return failed;
      }

      let result: AttemptResult = { ok: true, outputs: {} };
      if (task.command?.kind === "shell") {
        const { exit } = await runShell(task.command.script, {
          cwd: task.workdir,
          env: this.#taskEnv(task),
          sandbox: this.#sandbox,
          signal: ctx.signal,
          onLine: (stream, line) => this.#log(task, stream, line),
        });
        const ok = exit.reason === "exited" && exit.code === 0;
        result = { ok, exit, outputs: {}, error: ok ? undefined : exitStatusText(exit) };
      } else if (task.command?.kind === "lua") {
        const r = await call("command", "command", [params, ctx.inputs]);
        if (r.error !== undefined) result = { ok: false, error: r.error };
        else {
          result = {
            ok: r.ok === true,
            message: r.message,
            outputs: r.outputs ?? {},
            error: r.ok ? undefined : r.message ?? "the task function returned false",
          };
        }
      }
      if (!result.ok) return result;

      if (task.postExec) {
        const failed = hookFailure(
          "post_exec",
          await call("hook", "post_exec", [params, result.outputs ?? {}, ctx.inputs]),
        );
        if (failed) return failed;
      }
      if (task.artifacts?.length) {
        const missing = await missingArtifacts(task.workdir, task.artifacts);
        if (missing.length > 0) {
          return {
            ok: false,
            error: `artifacts: nothing matches ${
              missing.map((m) => JSON.stringify(m)).join(", ")
            } in the task's workdir`,
          };
        }
      }
      return result;
    } catch (error) {
      const message = error instanceof SlothError || error instanceof Error
        ? error.message
        : String(error);
      return { ok: false, error: message };
    } finally {
      if (ctx.signal.aborted) session?.kill();
      else session?.release();
    }
  }

  /**
   * The task's outcome hooks, on this machine, in a state of their own: the task's
   * own may be gone (a timeout kills it, or it ran on an agent).
   */
  async settle(
    task: Task,
    outcome: Settled,
    inputs: Inputs,
    signal: AbortSignal,
  ): Promise<{ error?: string }> {
    type Hook = ["on_success" | "on_failure" | "on_timeout", unknown];
    const hooks: Hook[] = outcome.status === "success"
      ? [["on_success", outcome.outputs]]
      : outcome.status === "timeout"
      ? [["on_timeout", outcome.error], ["on_failure", outcome.error]]
      : [["on_failure", outcome.error]];
    const present = hooks.filter(([field]) => task[HOOK_FIELD[field]] !== undefined);
    if (present.length === 0) return {};
    // Each hook has the task's timeout, as an attempt has.
    const session = await this.#open(task);
    const errors: string[] = [];
    try {
      for (const [field, value] of present) {
        const timer = task.timeoutMs === undefined
          ? undefined
          : AbortSignal.timeout(task.timeoutMs);
        const result = await session.call(
          "outcome",
          { group: task.group, task: task.name, field },
          [this.#params(task), value, inputs],
          timer ? AbortSignal.any([signal, timer]) : signal,
        );
        if (timer?.aborted && !signal.aborted) {
          errors.push(`${field} timed out after ${task.timeoutMs}ms`);
          this.#log(task, "log", `${field} timed out after ${task.timeoutMs}ms`, "error");
          break;
        }
        const failed = hookFailure(field, result);
        if (failed?.error) {
          errors.push(failed.error);
          if (field !== "on_success") this.#log(task, "log", failed.error, "error");
        }
      }
    } finally {
      // A hook stopped by its timeout is still running: its state goes with it.
      if (signal.aborted || errors.some((e) => e.includes(" timed out after "))) session.kill();
      else session.release();
    }
    return errors.length ? { error: errors.join("; ") } : {};
  }

  /**
   * A group's `on_start` or `on_complete`, on this machine, in a state of its own;
   * what it logs goes to `log`.
   */
  async callGroup(
    group: Group,
    field: "on_start" | "on_complete",
    args: unknown[],
    signal: AbortSignal,
    log: (level: string, line: string) => void,
  ): Promise<{ error?: string }> {
    if (!this.#pool) throw new Error("this workflow needs Lua, and no Lua workers were given");
    const workdir = group.tasks[0]?.workdir || this.#source.cwd;
    const session = await openGroupSession(
      this.#pool,
      this.#source,
      { name: group.name, workdir },
      {
        onLog: (level, message) =>
          // Said with the workflow's name: the line is the run's, not a task's.
          log(
            level === "print" || level === "stderr" ? "info" : level,
            `${group.name}: ${message}`,
          ),
      },
    );
    try {
      const result = await session.call(
        "outcome",
        { group: group.name, task: GROUP_FUNCTIONS, field },
        args,
        signal,
      ).catch((error) => ({ error: (error as Error).message }));
      if (signal.aborted) return { error: "stopped by Ctrl-C" };
      return { error: hookFailure(field, result)?.error };
    } finally {
      if (signal.aborted) session.kill();
      else session.release();
    }
  }

  #open(task: Task): Promise<LuaSession> {
    const hooks = {
      onLog: (level: string, message: string) => {
        // print() is stdout, marked as said on purpose (the live view shows it, like log.info).
        if (level === "print") this.#log(task, "stdout", message, "info");
        else if (level === "stderr") this.#log(task, "stderr", message); // io.stderr:write
        else this.#log(task, "log", message, level as LogLevel);
      },
    };
    const ready = this.#session;
    this.#session = undefined;
    if (ready) {
      ready.setHooks(hooks);
      return Promise.resolve(ready);
    }
    if (!this.#pool) throw new Error("this task needs Lua, and no Lua workers were given");
    return openTaskSession(this.#pool, this.#source, task, hooks);
  }

  #params(task: Task): Record<string, unknown> {
    return { ...task.params, task_name: task.name, group_name: task.group, workdir: task.workdir };
  }

  #log(
    task: Task,
    stream: "stdout" | "stderr" | "log",
    line: string,
    level?: LogLevel,
  ): void | Promise<void> {
    return this.#emit({ type: "log", id: task.id, task: task.name, stream, level, line });
  }
}

const HOOK_FIELD = {
  on_success: "onSuccess",
  on_failure: "onFailure",
  on_timeout: "onTimeout",
} as const;

/**
 * Why a task that must run as `wanted` cannot run here, or undefined when it can:
 * commands are never started as someone else than asked.
 */
async function userMismatch(wanted: string, onAgent: boolean): Promise<string | undefined> {
  const actual = await commandUser();
  if (wanted === actual.name || (actual.uid !== null && wanted === String(actual.uid))) {
    return undefined;
  }
  return `user "${wanted}": this task must run as ${wanted}, and commands here run as ` +
    `${actual.name} (${
      onAgent
        ? `start the agent as root with --task-user ${wanted}`
        : `run sloth-runner as ${wanted}, or delegate the task to an agent started with --task-user ${wanted}`
    })`;
}

function hookFailure(field: string, result: CallResult): AttemptResult | undefined {
  if (result.error !== undefined) return { ok: false, error: `${field}: ${result.error}` };
  if (result.ok) return undefined;
  return {
    ok: false,
    error: `${field} returned false${result.message ? `: ${result.message}` : ""}`,
  };
}

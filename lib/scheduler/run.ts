/**
 * Runs a plan over a `TaskExecutor`, with bounded parallelism.
 *
 * The ordering rule (also in the README): tasks are taken in plan order. A task
 * without `async = true` waits until every task before it has finished, and no
 * task after it starts until it has finished. An `async` task starts as soon as
 * its `depends_on` and `next_if_fail` tasks have finished and no earlier
 * non-async task is still pending or running, as long as fewer than
 * `maxParallel` tasks are running.
 */
import type {
  ExitStatus,
  RetryStrategy,
  Task,
  TaskResult,
  TaskStatus,
  Transfer,
} from "../model/mod.ts";
import { exitStatusText, isFailure, targetText } from "../model/mod.ts";
import type { Plan, PlannedTask } from "./plan.ts";

export type Gate =
  | { action: "run" }
  | { action: "skip"; reason: string }
  | { action: "abort"; reason: string }
  | { action: "fail"; error: string };

export interface AttemptContext {
  attempt: number;
  /**
   * Outputs of each `depends_on` task, by task name; a fan-out's by task name, then
   * by member (`inputs.deploy["web-1"]`).
   */
  inputs: Record<string, Record<string, unknown>>;
  /** Aborted with reason `"timeout"` or `"cancelled"`; the executor must stop the attempt. */
  signal: AbortSignal;
}

export interface AttemptResult {
  ok: boolean;
  /** Why it failed, in one line. */
  error?: string;
  message?: string;
  outputs?: Record<string, unknown>;
  exit?: ExitStatus;
  transfer?: Transfer;
  /**
   * Set when the attempt failed because of the agent it was sent to (it could not be
   * reached, or the connection to it was lost), not because of the task.
   */
  agentFault?: "unreachable" | "lost";
  /** Set with `agentFault` when the agent cannot have started the task (nothing ran). */
  beforeStart?: boolean;
  /** Where it ran, when the task's target did not say (a pool's member). */
  where?: string;
}

/** What runs a task: locally, or on an agent. */
export interface TaskExecutor {
  /** Evaluates `abort_if` and `run_if`. */
  gate(task: Task, inputs: AttemptContext["inputs"], signal: AbortSignal): Promise<Gate>;
  attempt(task: Task, ctx: AttemptContext): Promise<AttemptResult>;
  /**
   * Asked before retrying a failed attempt: something to wait for instead of the
   * back-off (an agent that was lost, until it answers again), or undefined for the
   * back-off. The retry starts as soon as the wait settles.
   */
  beforeRetry?(task: Task, failed: AttemptResult, signal: AbortSignal): RetryWait | undefined;
  /**
   * Called once after a task's last attempt (its `on_success`, `on_failure`,
   * `on_timeout`); an error returned makes a success a failure.
   */
  settle?(
    task: Task,
    outcome: Settled,
    inputs: AttemptContext["inputs"],
    signal: AbortSignal,
  ): Promise<{ error?: string }>;
}

/** How a task ended, for `TaskExecutor.settle`. */
export interface Settled {
  status: "success" | "failed" | "timeout";
  outputs: Record<string, unknown>;
  error?: string;
}

/** A wait before a retry, chosen by the executor. */
export interface RetryWait {
  /** What is awaited, for people: `agent 10.0.0.5:50051 to answer (up to 10s)`. */
  waitingFor: string;
  /**
   * Settles when the retry may start: what was awaited came, the executor's bound
   * passed, or the signal given to `beforeRetry` aborted (then at once). Never rejects.
   */
  ready: Promise<void>;
}

/** How a retry waits: a back-off delay, or for what the executor named. */
export type RetryPause = { delayMs: number } | { waitingFor: string };

export interface RunHooks {
  onTaskStart?(task: Task, attempt: number): void;
  onRetry?(task: Task, failedAttempt: number, error: string, pause: RetryPause): void;
  onTaskFinish?(task: Task, result: TaskResult): void;
}

export interface RunOptions extends RunHooks {
  maxParallel: number;
  /** Aborting it interrupts the run: running tasks are cancelled, nothing new starts. */
  signal?: AbortSignal;
  /** Delay before retry `n` (1-based); the task's `retryStrategy` by default. */
  retryDelayMs?: (attempt: number) => number;
}

export interface RunOutcome {
  /** In plan order. */
  results: TaskResult[];
  /** Set when an `abort_if` stopped the run. */
  aborted?: string;
  interrupted: boolean;
}

/**
 * The wait before retry `attempt` (1-based), capped at 10 s: exponential 250 ms,
 * 500 ms, 1 s, …; linear 1 s, 2 s, 3 s, …; fixed 1 s each time.
 */
export function backoff(attempt: number, strategy: RetryStrategy = "exponential"): number {
  const ms = strategy === "fixed"
    ? 1_000
    : strategy === "linear"
    ? 1_000 * attempt
    : 250 * 2 ** (attempt - 1);
  return Math.min(ms, 10_000);
}

export function runPlan(
  plan: Plan,
  executor: TaskExecutor,
  options: RunOptions,
): Promise<RunOutcome> {
  return new Scheduler(plan, executor, options).run();
}

type State = "pending" | "running" | "done";

class Scheduler {
  #plan: Plan;
  #executor: TaskExecutor;
  #options: RunOptions;
  #state = new Map<string, State>();
  #tasks = new Map<string, Task>();
  #results = new Map<string, TaskResult>();
  /** Tasks that failed, or were skipped because something they needed failed. */
  #blocked = new Set<string>();
  #running = 0;
  #stop: { reason: string; interrupted: boolean } | undefined;
  #cancel = new AbortController();
  #finished!: (outcome: RunOutcome) => void;

  constructor(plan: Plan, executor: TaskExecutor, options: RunOptions) {
    this.#plan = plan;
    this.#executor = executor;
    this.#options = options;
    for (const { task } of plan.tasks) {
      this.#state.set(task.id, "pending");
      this.#tasks.set(task.id, task);
    }
  }

  run(): Promise<RunOutcome> {
    const { signal } = this.#options;
    const onInterrupt = () => this.#halt("run interrupted", true);
    signal?.addEventListener("abort", onInterrupt, { once: true });
    const done = new Promise<RunOutcome>((resolve) => this.#finished = resolve);
    if (signal?.aborted) onInterrupt();
    this.#schedule();
    return done.finally(() => signal?.removeEventListener("abort", onInterrupt));
  }

  #halt(reason: string, interrupted: boolean): void {
    this.#stop ??= { reason, interrupted };
    this.#cancel.abort("cancelled");
  }

  #schedule(): void {
    const tasks = this.#plan.tasks;
    let earlierAllDone = true;
    let full = false;
    // A unit is a task, or a fan-out's copies (consecutive in the plan): these run side
    // by side, and a non-async unit waits for, and holds back, the rest as one task does.
    for (let i = 0; i < tasks.length && !full;) {
      const end = unitEnd(tasks, i);
      const unit = tasks.slice(i, end);
      i = end;
      const async = unit[0].task.async;
      if (!async && !earlierAllDone) break;
      let unitDone = true;
      for (const planned of unit) {
        const state = this.#state.get(planned.task.id)!;
        if (state === "done") continue;
        unitDone = false;
        if (state === "running") continue;
        if (this.#stop) {
          this.#skip(planned, this.#stop.reason, false);
          continue;
        }
        if (!async && this.#running > this.#runningIn(unit)) break;
        const decision = this.#readiness(planned);
        if (decision === "wait") continue;
        if (decision !== "ready") {
          this.#skip(planned, decision.reason, decision.blocked);
          continue;
        }
        if (this.#running >= this.#options.maxParallel) {
          full = true;
          break;
        }
        const cap = planned.task.groupMaxParallel;
        if (cap !== undefined && this.#runningOfGroup(planned.task.group) >= cap) continue;
        this.#start(planned);
      }
      if (!unitDone && unit.some((p) => this.#state.get(p.task.id) !== "done")) {
        earlierAllDone = false;
        if (!async) break;
      }
    }
    if (this.#running === 0 && [...this.#state.values()].every((s) => s === "done")) {
      this.#finished({
        results: this.#plan.tasks.map(({ task }) => this.#results.get(task.id)!),
        aborted: this.#stop && !this.#stop.interrupted ? this.#stop.reason : undefined,
        interrupted: this.#stop?.interrupted ?? false,
      });
    }
  }

  #runningOfGroup(group: string): number {
    let n = 0;
    for (const [id, state] of this.#state) {
      if (state === "running" && this.#tasks.get(id)!.group === group) n++;
    }
    return n;
  }

  #runningIn(unit: PlannedTask[]): number {
    return unit.filter((p) => this.#state.get(p.task.id) === "running").length;
  }

  #readiness(
    planned: PlannedTask,
  ): "ready" | "wait" | { reason: string; blocked: boolean } {
    const waitFor = [...planned.deps, ...planned.watches, ...planned.after];
    if (waitFor.some((id) => this.#state.get(id) !== "done" && this.#state.has(id))) return "wait";
    const fanOut = planned.task.fanOut;
    if (fanOut?.maxFailures !== undefined) {
      const failed = fanOut.siblings.filter((id) => {
        const result = this.#results.get(id);
        return result !== undefined && isFailure(result.status);
      }).length;
      if (failed >= fanOut.maxFailures) {
        return {
          reason: `not started: ${failed} host${failed === 1 ? "" : "s"} of "${fanOut.task}" ` +
            `failed (max_failures = ${fanOut.maxFailures})`,
          blocked: true,
        };
      }
    }
    for (const id of planned.deps) {
      if (this.#blocked.has(id)) {
        const dep = this.#results.get(id)!;
        const name = id.slice(planned.task.group.length + 1);
        const why = dep.status === "skipped" ? "was skipped" : statusPhrase(dep);
        return { reason: `dependency "${name}" ${why}`, blocked: true };
      }
    }
    if (planned.task.nextIfFail.length > 0) {
      const failed = planned.watches.some((id) => isFailure(this.#results.get(id)!.status));
      if (!failed) {
        return {
          reason: `none of next_if_fail (${planned.task.nextIfFail.join(", ")}) failed`,
          blocked: false,
        };
      }
    }
    return "ready";
  }

  #skip(planned: PlannedTask, reason: string, blocked: boolean): void {
    const { task } = planned;
    if (blocked) this.#blocked.add(task.id);
    this.#finish(task, {
      id: task.id,
      status: "skipped",
      attempts: 0,
      durationMs: 0,
      where: targetText(task.target),
      error: reason,
      outputs: {},
    });
  }

  #finish(task: Task, result: TaskResult): void {
    this.#state.set(task.id, "done");
    this.#results.set(task.id, result);
    if (isFailure(result.status)) this.#blocked.add(task.id);
    if (isFailure(result.status) && task.stopRunOnFailure && result.status !== "cancelled") {
      this.#halt(`run stopped: task "${task.name}" failed and its workflow has fail_fast`, false);
    }
    this.#options.onTaskFinish?.(task, result);
  }

  #start(planned: PlannedTask): void {
    const { task } = planned;
    this.#state.set(task.id, "running");
    this.#running++;
    this.#runTask(planned)
      .catch((error): TaskResult => ({
        id: task.id,
        status: "failed",
        attempts: 1,
        durationMs: 0,
        where: targetText(task.target),
        error: `internal error: ${error instanceof Error ? error.message : String(error)}`,
        outputs: {},
      }))
      .then((result) => {
        this.#running--;
        this.#finish(task, result);
        this.#schedule();
      });
  }

  async #runTask(planned: PlannedTask): Promise<TaskResult> {
    const { task } = planned;
    const started = performance.now();
    const where = targetText(task.target);
    const result = (
      status: TaskStatus,
      attempts: number,
      extra: Partial<TaskResult> = {},
    ): TaskResult => ({
      id: task.id,
      status,
      attempts,
      durationMs: performance.now() - started,
      where,
      outputs: {},
      ...extra,
    });

    const inputs: AttemptContext["inputs"] = {};
    for (const id of planned.deps) {
      const outputs = this.#results.get(id)?.outputs ?? {};
      const fanOut = this.#tasks.get(id)?.fanOut;
      if (fanOut) {
        const byHost = (inputs[fanOut.task] ??= {});
        byHost[fanOut.host] = outputs;
      } else {
        inputs[id.slice(task.group.length + 1)] = outputs;
      }
    }

    const gate = await this.#executor.gate(task, inputs, this.#cancel.signal);
    if (gate.action === "skip") {
      return result("skipped", 0, { error: gate.reason });
    }
    if (gate.action === "fail") return result("failed", 0, { error: gate.error });
    if (gate.action === "abort") {
      this.#halt(`run aborted by task "${task.name}": ${gate.reason}`, false);
      return result("skipped", 0, { error: gate.reason });
    }

    const attempts = task.retries + 1;
    let last: AttemptResult = { ok: false, error: "did not run" };
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (this.#cancel.signal.aborted) {
        return result("cancelled", attempt - 1, { error: this.#stop?.reason ?? "cancelled" });
      }
      this.#options.onTaskStart?.(task, attempt);
      last = await this.#attempt(task, attempt, inputs);
      const ranOn = last.where ? { where: last.where } : {};
      if (last.ok) {
        const settled = await this.#settle(
          task,
          { status: "success", outputs: last.outputs ?? {} },
          inputs,
        );
        if (settled.error !== undefined) {
          return result("failed", attempt, {
            error: settled.error,
            transfer: last.transfer,
            ...ranOn,
          });
        }
        return result("success", attempt, {
          outputs: last.outputs ?? {},
          message: last.message,
          transfer: last.transfer,
          ...ranOn,
        });
      }
      const status = attemptStatus(last);
      if (status === "cancelled") {
        return result("cancelled", attempt, {
          error: this.#stop?.reason ?? "cancelled",
          exit: last.exit,
          ...ranOn,
        });
      }
      if (attempt < attempts) {
        const error = last.error ?? status;
        const wait = this.#executor.beforeRetry?.(task, last, this.#cancel.signal);
        if (wait) {
          this.#options.onRetry?.(task, attempt, error, { waitingFor: wait.waitingFor });
          await wait.ready;
        } else {
          const delayMs = this.#options.retryDelayMs?.(attempt) ??
            backoff(attempt, task.retryStrategy);
          this.#options.onRetry?.(task, attempt, error, { delayMs });
          await sleep(delayMs, this.#cancel.signal);
        }
      } else {
        if (status === "failed" || status === "timeout") {
          const error = last.error ?? status;
          const settled = await this.#settle(task, { status, outputs: {}, error }, inputs);
          if (settled.error !== undefined) last = { ...last, error: `${error}; ${settled.error}` };
        }
        return result(status, attempt, {
          error: last.error,
          message: last.message,
          exit: last.exit,
          transfer: last.transfer,
          ...ranOn,
        });
      }
    }
    return result("failed", attempts, { error: last.error });
  }

  /** The task's outcome hooks, if it has any; never rejects. */
  async #settle(
    task: Task,
    outcome: Settled,
    inputs: AttemptContext["inputs"],
  ): Promise<{ error?: string }> {
    if (!this.#executor.settle || (!task.onSuccess && !task.onFailure && !task.onTimeout)) {
      return {};
    }
    try {
      return await this.#executor.settle(task, outcome, inputs, this.#cancel.signal);
    } catch (error) {
      return { error: error instanceof Error ? error.message : String(error) };
    }
  }

  async #attempt(task: Task, attempt: number, inputs: AttemptContext["inputs"]) {
    const controller = new AbortController();
    const cancel = () => controller.abort("cancelled");
    this.#cancel.signal.addEventListener("abort", cancel, { once: true });
    const timer = task.timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort("timeout"), task.timeoutMs);
    try {
      const outcome = await this.#executor.attempt(task, {
        attempt,
        inputs,
        signal: controller.signal,
      });
      if (!outcome.ok && controller.signal.aborted) {
        // Whatever the executor saw, the reason we stopped it is the one to report.
        const reason = controller.signal.reason === "timeout" ? "timeout" : "cancelled";
        const exit: ExitStatus = { code: null, signal: null, ...outcome.exit, reason };
        const error = reason === "timeout"
          ? `timed out after ${task.timeoutMs}ms`
          : outcome.error ?? "cancelled";
        return { ...outcome, exit, error };
      }
      return outcome;
    } finally {
      clearTimeout(timer);
      this.#cancel.signal.removeEventListener("abort", cancel);
    }
  }
}

/** Where the unit starting at `start` ends: after a fan-out's last consecutive copy. */
function unitEnd(tasks: PlannedTask[], start: number): number {
  const family = tasks[start].task.fanOut?.siblings[0];
  let end = start + 1;
  while (family && tasks[end]?.task.fanOut?.siblings[0] === family) end++;
  return end;
}

function attemptStatus(outcome: AttemptResult): TaskStatus {
  switch (outcome.exit?.reason) {
    case "timeout":
      return "timeout";
    case "cancelled":
      return "cancelled";
    default:
      return "failed";
  }
}

function statusPhrase(result: TaskResult): string {
  if (result.status === "timeout") return "timed out";
  if (result.status === "cancelled") return "was cancelled";
  return result.exit?.reason === "exited" && result.exit.code !== null
    ? `failed with ${exitStatusText(result.exit)}`
    : "failed";
}

/** Waits `ms`, or less if `signal` aborts first (never rejects). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

import { targetText, type Task } from "../model/mod.ts";
import type { AttemptContext, Gate, TaskExecutor } from "../scheduler/mod.ts";

/**
 * Conditions always run here, on the master; an attempt runs where the task's
 * target says: here, on an agent, or on a pool's member.
 */
export function routeByTarget(
  local: TaskExecutor,
  remote?: TaskExecutor,
  pool?: TaskExecutor,
): TaskExecutor {
  const executorFor = (task: Task) =>
    task.target.kind === "local" ? local : task.target.kind === "pool" ? pool : remote;
  return {
    gate: (task: Task, inputs: AttemptContext["inputs"], signal: AbortSignal): Promise<Gate> =>
      local.gate(task, inputs, signal),
    attempt: (task, ctx) => {
      const executor = executorFor(task);
      if (executor) return executor.attempt(task, ctx);
      return Promise.resolve({
        ok: false,
        error: `remote execution is not available in this build (task wants ${
          targetText(task.target)
        })`,
      });
    },
    beforeRetry: (task, failed, signal) => executorFor(task)?.beforeRetry?.(task, failed, signal),
    // Outcome hooks run here, like run_if and abort_if, wherever the task ran.
    settle: local.settle?.bind(local),
  };
}

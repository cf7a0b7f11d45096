import type { Task } from "../model/mod.ts";
import type { AttemptContext, Gate, TaskExecutor } from "../scheduler/mod.ts";

/**
 * Conditions always run here, on the master; an attempt runs where the task's
 * target says.
 */
export function routeByTarget(local: TaskExecutor, remote?: TaskExecutor): TaskExecutor {
  return {
    gate: (task: Task, inputs: AttemptContext["inputs"], signal: AbortSignal): Promise<Gate> =>
      local.gate(task, inputs, signal),
    attempt: (task, ctx) => {
      if (task.target.kind === "local") return local.attempt(task, ctx);
      if (remote) return remote.attempt(task, ctx);
      return Promise.resolve({
        ok: false,
        error:
          `remote execution is not available in this build (task wants ${task.target.address})`,
      });
    },
    beforeRetry: (task, failed, signal) => {
      const executor = task.target.kind === "local" ? local : remote;
      return executor?.beforeRetry?.(task, failed, signal);
    },
  };
}

export type TaskStatus = "success" | "failed" | "skipped" | "timeout" | "cancelled";

export type ExitReason = "exited" | "timeout" | "cancelled" | "spawn_failed" | "agent_lost";

/** How a process (or a Lua function standing in for one) ended. */
export interface ExitStatus {
  reason: ExitReason;
  /** Exit code when the process exited by itself. */
  code: number | null;
  /** Signal name when a signal ended it. */
  signal: string | null;
  /** Why it could not start, or what was lost. */
  message?: string;
}

export interface TaskResult {
  id: string;
  status: TaskStatus;
  attempts: number;
  durationMs: number;
  /** `local`, or the agent it ran on. */
  where: string;
  /** One line saying why the task did not succeed, or why it was skipped. */
  error?: string;
  /** The message a Lua function returned. */
  message?: string;
  outputs: Record<string, unknown>;
  exit?: ExitStatus;
  /** For a remote task: what its last attempt moved over the network. */
  transfer?: Transfer;
}

/** Bytes of workspace content moved for a remote task, each way. */
export interface Transfer {
  /** To the agent: file content (and tar framing) it did not have. */
  sentBytes: number;
  /** Back from the agent: the change set. */
  receivedBytes: number;
}

/** Statuses after which dependents must not run. */
export function isFailure(status: TaskStatus): boolean {
  return status === "failed" || status === "timeout" || status === "cancelled";
}

export function exitStatusText(exit: ExitStatus): string {
  switch (exit.reason) {
    case "exited":
      // A signal ends a process without an exit code: say which signal.
      if (exit.code !== null) return `exit code ${exit.code}`;
      return exit.signal ? `killed by ${exit.signal}` : "ended without an exit code";
    case "timeout":
      return "timed out";
    case "cancelled":
      return "cancelled";
    case "spawn_failed":
      return `could not start: ${exit.message ?? "unknown error"}`;
    case "agent_lost":
      return `agent lost: ${exit.message ?? "connection closed"}`;
  }
}

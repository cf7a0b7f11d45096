import type { TaskResult, TaskStatus } from "../model/mod.ts";

export type LogStream = "stdout" | "stderr" | "log";
export type LogLevel = "debug" | "info" | "warn" | "error";

/** The run as a stream of events; `--output json` prints exactly these, one per line. */
export type RunEvent =
  | {
    type: "run_started";
    file: string;
    tasks: { id: string; task: string; group: string; where: string }[];
  }
  | {
    type: "task_started";
    id: string;
    task: string;
    group: string;
    attempt: number;
    where: string;
  }
  | {
    type: "log";
    /** Absent for lines from the workflow's top level. */
    id?: string;
    task?: string;
    /** The agent it came from, for a remote task. */
    agent?: string;
    stream: LogStream;
    /**
     * Set for `log.*` lines and sloth-runner's own notes about a task, and ("info")
     * for Lua's `print`; absent for a command's own output.
     */
    level?: LogLevel;
    line: string;
  }
  | { type: "task_finished"; task: string; group: string; result: TaskResult }
  | {
    type: "run_finished";
    status: "success" | "failed" | "aborted" | "interrupted";
    exit_code: number;
    duration_ms: number;
    counts: Record<TaskStatus, number>;
    /** Why the run stopped early, when it did. */
    reason?: string;
  };

/** Takes an event; a promise back means "slow down" (see pumpLines). */
export type EmitEvent = (event: RunEvent) => void | Promise<void>;

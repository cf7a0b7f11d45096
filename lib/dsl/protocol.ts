/** Messages between the main thread and a Lua worker. One session per worker at a time. */
import type { ErrorData } from "../errors.ts";
import type { ExecReply, ExecRequest } from "./host.ts";

/** Set in the environment of a process started as a Lua worker (the entry points check it). */
export const LUA_WORKER_ENV = "SLOTH_LUA_WORKER";

export type CallKind = "command" | "hook" | "condition" | "outcome";

export interface OpenRequest {
  op: "open";
  /** Absolute path of the main workflow file. */
  file: string;
  /** Display names are relative to this directory. */
  cwd: string;
  /** Relative paths of `fs`, `exec` and `net.download` start here. */
  workdir: string;
  values: unknown;
  /** Seen by `os.getenv` and `exec.run` before the real environment. */
  env: Record<string, string>;
  /** Drop `log` and `print` from the top-level chunk (already shown when the plan was made). */
  quiet: boolean;
  /** Bytes of Lua memory the state may use. */
  memoryLimit: number;
  /** Bytes one value may carry between Lua and the host (HostContext.dataLimit). */
  dataLimit: number;
  /** The workflow's files by absolute path, when they come from a master instead of the disk. */
  bundle?: Record<string, string>;
  /** Where `fs.tmpname` makes files; the OS temp dir when absent. */
  tmpdir?: string;
  /** The only directory `fs` may touch (symlinks resolved), when confined. */
  confine?: string;
  /**
   * Register only this task's functions, and describe nothing (a state for one
   * task); with `describe`, describe that task alone (its group holding only it),
   * or the whole workflow when there is no such group.
   */
  only?: { group: string; task: string; describe?: boolean };
}

export interface CallRequest {
  op: "call";
  id: number;
  kind: CallKind;
  group: string;
  task: string;
  field: string;
  args: unknown[];
}

export type ToWorker =
  | OpenRequest
  | CallRequest
  | { op: "exec_done"; id: number; reply?: ExecReply; error?: string }
  | { op: "close" }
  /**
   * The job is over (a worker reused across jobs): close the state, forget
   * everything of the job, and say whether anything it started is still running.
   */
  | { op: "reset" };

/** What `__sloth_call` returns. */
export interface CallResult {
  error?: string;
  ok?: boolean;
  message?: string;
  outputs?: Record<string, unknown>;
  value?: boolean;
}

export type FromWorker =
  | {
    op: "opened";
    description: unknown;
    warnings: string[];
    files: string[];
    /** The state's global names after the main chunk ran (none for a state of one task). */
    globals: string[];
  }
  | { op: "open_failed"; error: ErrorData }
  | { op: "called"; id: number; result: CallResult }
  | { op: "log"; level: string; message: string }
  | { op: "exec"; id: number; request: ExecRequest }
  /** `clean`: no host call of the job (a fetch, a download, a command) is still in flight. */
  | { op: "reset_done"; clean: boolean };

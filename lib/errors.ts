/**
 * Errors people can act on: every failure that is not a task's own failure is a
 * `SlothError` with a stable code, the process exit code it maps to and, where it
 * helps, a one-line hint. Only `cli/` and the entry points print them.
 */

/** Process exit codes. The README's table is generated from the same words. */
export const ExitCode = {
  ok: 0,
  /** A task failed or timed out, or the run was aborted by `abort_if`. */
  taskFailed: 1,
  /** Bad command line, or a workflow that does not load or validate. */
  usage: 2,
  /** SIGINT or SIGTERM. */
  interrupted: 130,
} as const;
export type ExitCode = typeof ExitCode[keyof typeof ExitCode];

export type ErrorCode =
  | "usage"
  | "workflow_not_found"
  | "lua_syntax"
  | "lua_runtime"
  | "lua_timeout"
  | "workflow_invalid"
  | "unknown_group"
  | "unknown_task"
  | "unknown_dependency"
  | "unknown_agent"
  | "inventory_invalid"
  | "dns_failed"
  | "dependency_cycle"
  | "values_invalid"
  | "remote_unsupported"
  | "internal";

const exitCodes: Record<ErrorCode, ExitCode> = {
  usage: ExitCode.usage,
  workflow_not_found: ExitCode.usage,
  lua_syntax: ExitCode.usage,
  lua_runtime: ExitCode.usage,
  lua_timeout: ExitCode.usage,
  workflow_invalid: ExitCode.usage,
  unknown_group: ExitCode.usage,
  unknown_task: ExitCode.usage,
  unknown_dependency: ExitCode.usage,
  unknown_agent: ExitCode.usage,
  inventory_invalid: ExitCode.usage,
  // A name server that does not answer is the environment's fault, not the command line's.
  dns_failed: ExitCode.taskFailed,
  dependency_cycle: ExitCode.usage,
  values_invalid: ExitCode.usage,
  remote_unsupported: ExitCode.usage,
  internal: ExitCode.taskFailed,
};

export interface SlothErrorOptions {
  hint?: string;
  /** Extra lines shown under the message, such as the Lua source around an error. */
  detail?: string;
  cause?: unknown;
}

export class SlothError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
  readonly hint?: string;
  readonly detail?: string;

  constructor(code: ErrorCode, message: string, options: SlothErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "SlothError";
    this.code = code;
    this.exitCode = exitCodes[code];
    this.hint = options.hint;
    this.detail = options.detail;
  }
}

/** The plain shape of a `SlothError`, for crossing a worker or the wire. */
export interface ErrorData {
  code: ErrorCode;
  message: string;
  hint?: string;
  detail?: string;
}

export function toErrorData(error: unknown): ErrorData {
  if (error instanceof SlothError) {
    return { code: error.code, message: error.message, hint: error.hint, detail: error.detail };
  }
  return { code: "internal", message: error instanceof Error ? error.message : String(error) };
}

export function fromErrorData(data: ErrorData): SlothError {
  return new SlothError(data.code, data.message, { hint: data.hint, detail: data.detail });
}

/**
 * The candidate the user most likely meant: one the name abbreviates (`cmd` for
 * `command`), or the closest by edit distance when that is close enough to be a typo.
 */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  const lower = name.toLowerCase();
  const scored = [...candidates].map((c) => ({ c, d: editDistance(lower, c.toLowerCase()) }));
  const byDistance = (a: { d: number }, b: { d: number }) => a.d - b.d;
  const prefixed = scored.filter(({ c }) => c.toLowerCase().startsWith(lower)).sort(byDistance);
  if (lower.length >= 3 && prefixed.length > 0) return prefixed[0].c;
  const abbreviated = scored.filter(({ c }) => isSubsequence(lower, c.toLowerCase())).sort(
    byDistance,
  );
  if (lower.length >= 3 && abbreviated.length > 0) return abbreviated[0].c;
  const best = scored.sort(byDistance)[0];
  const limit = Math.max(2, Math.floor(name.length / 3));
  return best && best.d <= limit ? best.c : undefined;
}

/** `Did you mean "x"?`, or an empty string when nothing is close. */
export function didYouMean(name: string, candidates: Iterable<string>): string {
  const match = closest(name, candidates);
  return match === undefined ? "" : ` Did you mean "${match}"?`;
}

/**
 * Edits between two names, a swap of two neighbouring letters counting as one
 * (optimal string alignment): "wbe" is one edit from "web", two from "db".
 */
export function editDistance(a: string, b: string): number {
  const rows = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i === 0 ? j : j === 0 ? i : 0),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
      }
    }
  }
  return rows[a.length][b.length];
}

function isSubsequence(short: string, long: string): boolean {
  let i = 0;
  for (const ch of long) if (ch === short[i]) i++;
  return i === short.length && short[0] === long[0];
}

/**
 * The wire messages as TypeScript types, and zod schemas for everything that
 * arrives: an agent never trusts a master's message, nor a master an agent's.
 */
import { z } from "zod";
import { ProtocolError } from "./handlers.ts";

/** 3: many task attempts on one RunTasks call per connection. */
export const PROTOCOL_VERSION = 3;
/**
 * 2: manifests and content-addressed sync, one RunTask call per attempt. Still
 * spoken both ways: by agents to masters that only know it, by masters to agents
 * that only know it.
 */
export const OLDEST_PROTOCOL = 2;

/**
 * Messages of one job either side may send ahead of what the other has taken
 * (RunTasks). Bounds what a job waiting on its consumer holds in memory: at most
 * 32 chunks (8 MiB) or manifest batches.
 */
export const JOB_WINDOW = 32;
/** Jobs one RunTasks call may have open at once on an agent. */
export const MAX_OPEN_JOBS = 1024;

/** Bytes per workspace or change-set chunk message. */
export const CHUNK_BYTES = 256 * 1024;
/** Largest message either side accepts (TaskStart carries the workflow's files). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const MAX_TEXT = 16 * 1024 * 1024;
const jsonText = z.string().max(MAX_TEXT);

export const taskStartSchema = z.object({
  protocol: z.number().int().min(1),
  group: z.string().min(1).max(1024),
  task: z.string().min(1).max(1024),
  files: z.array(z.object({
    path: z.string().min(1).max(4096),
    content: z.string().max(MAX_TEXT),
  })).max(1000),
  main_file: z.string().min(1).max(4096),
  master_cwd: z.string().max(4096),
  values_json: jsonText,
  params_json: jsonText,
  inputs_json: jsonText,
  timeout_ms: z.number().int().min(0),
  attempt: z.number().int().min(0),
  sync_back: z.enum(["on_success", "always", "never"]),
  shell_command: z.string().max(1024 * 1024),
  workspace_key: z.string().max(64),
  compression: z.enum(["", "gzip"]),
  /** Optional, so an older master's start (without it) still parses; "" = a whole manifest. */
  manifest_base: z.string().regex(/^([0-9a-f]{64})?$/, "expected a hex SHA-256").optional(),
  /** Optional, for an older master; checked where it is read (agent/service.ts). */
  requirements_json: z.string().max(1024 * 1024).optional(),
});
export type TaskStart = z.infer<typeof taskStartSchema>;

const insidePath = z.string().min(1).max(4096).refine(
  (p) => !p.startsWith("/") && !p.split("/").includes(".."),
  "must be a path inside the task's workdir",
);
const requirementsSchema = z.object({
  user: z.string().min(1).max(256).optional(),
  artifacts: z.array(insidePath).max(1000).optional(),
  consumes: z.array(insidePath).max(1000).optional(),
}).strict();
/** What a task requires where it runs (TaskStart.requirements_json). */
export type TaskRequirements = z.infer<typeof requirementsSchema>;

/**
 * TaskStart.requirements_json, checked; undefined when the field is absent (an
 * older master: the agent keeps what its own load of the workflow found).
 */
export function parseRequirements(text: string | undefined): TaskRequirements | undefined {
  if (text === undefined) return undefined;
  if (text === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError("invalid", "requirements_json is not JSON");
  }
  const parsed = requirementsSchema.safeParse(value);
  if (!parsed.success) {
    throw new ProtocolError("invalid", `requirements_json: ${parsed.error.issues[0].message}`);
  }
  return parsed.data;
}

const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes");

const digest = z.string().regex(/^[0-9a-f]{64}$/, "expected a hex SHA-256");

export const entrySchema = z.object({
  path: z.string().min(1).max(4096),
  type: z.enum(["file", "dir", "symlink"]),
  mode: z.number().int().min(0).max(0o7777),
  size: z.number().int().min(0),
  sha256: z.string().max(64),
  target: z.string().max(4096),
  mtime_ms: z.number().int().min(0),
});
export type WireEntry = z.infer<typeof entrySchema>;

export const runTaskRequestSchema = z.union([
  z.object({ start: taskStartSchema }),
  z.object({ manifest: z.object({ entries: z.array(entrySchema).max(10_000) }) }),
  z.object({
    manifest_end: z.object({
      entries: z.number().int().min(0),
      // Bounded here as a whole; the agent holds it to its own entry limit.
      deleted: z.array(z.string().min(1).max(4096)).max(10_000_000).optional(),
      sha256: z.string().regex(/^([0-9a-f]{64})?$/, "expected a hex SHA-256").optional(),
    }),
  }),
  z.object({ workspace_chunk: bytes.refine((b) => b.length <= 4 * CHUNK_BYTES, "chunk too big") }),
  z.object({ workspace_end: z.object({ bytes: z.number().int().min(0) }) }),
]);
export type RunTaskRequest = z.infer<typeof runTaskRequestSchema>;

export const logLineSchema = z.object({
  stream: z.enum(["stdout", "stderr", "log"]),
  level: z.string().max(16),
  line: z.string().max(1024 * 1024),
});
export type LogLine = z.infer<typeof logLineSchema>;

export const taskResultSchema = z.object({
  ok: z.boolean(),
  error: z.string().max(MAX_TEXT),
  message: z.string().max(MAX_TEXT),
  outputs_json: jsonText,
  exit_reason: z.enum(["", "exited", "timeout", "cancelled", "spawn_failed", "agent_lost"]),
  exit_code: z.number().int(),
  has_exit_code: z.boolean(),
  exit_signal: z.string().max(64),
  duration_ms: z.number().min(0),
  changes_follow: z.boolean(),
});
export type TaskResultMessage = z.infer<typeof taskResultSchema>;

export const runTaskResponseSchema = z.union([
  z.object({ log: logLineSchema }),
  z.object({ result: taskResultSchema }),
  z.object({
    changes_begin: z.object({
      deleted: z.array(z.string().max(4096)).max(10_000_000),
      entries: z.number().int().min(0),
      copies: z.array(z.object({
        path: z.string().min(1).max(4096),
        sha256: digest,
        mode: z.number().int().min(0).max(0o7777),
      })).max(10_000_000),
    }),
  }),
  z.object({
    need: z.object({
      paths: z.array(z.string().max(4096)).max(10_000),
      whole_manifest: z.boolean().optional(),
    }),
  }),
  z.object({ need_end: z.object({}) }),
  z.object({ changes_chunk: bytes.refine((b) => b.length <= 4 * CHUNK_BYTES, "chunk too big") }),
  z.object({
    changes_end: z.object({
      bytes: z.number().int().min(0),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  }),
]);
export type RunTaskResponse = z.infer<typeof runTaskResponseSchema>;

const jobId = z.number().int().min(0).max(2 ** 32 - 1);
const credit = z.number().int().min(1).max(JOB_WINDOW);

/** A RunTasks message from the master; `request` is checked by runTaskRequestSchema. */
export const runTasksRequestSchema = z.union([
  z.object({ job: z.literal(0), open: z.object({ protocol: z.number().int().min(0) }) }),
  z.object({ job: jobId.min(1), request: z.record(z.string(), z.unknown()) }),
  z.object({ job: jobId.min(1), cancel: z.object({}) }),
  z.object({ job: jobId.min(1), credit }),
]);
export type RunTasksRequest =
  | { job: 0; open: { protocol: number } }
  | { job: number; request: RunTaskRequest }
  | { job: number; cancel: Record<string, never> }
  | { job: number; credit: number };

export const jobEndSchema = z.object({
  code: z.enum(["", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE", "INTERNAL"]),
  message: z.string().max(64 * 1024),
});
export type JobEnd = z.infer<typeof jobEndSchema>;

/** A RunTasks message from the agent; `response` is checked by runTaskResponseSchema. */
export const runTasksResponseSchema = z.union([
  z.object({ job: jobId.min(1), response: z.record(z.string(), z.unknown()) }),
  z.object({ job: jobId.min(1), job_end: jobEndSchema }),
  z.object({ job: jobId.min(1), credit }),
]);
export type RunTasksResponse =
  | { job: number; response: RunTaskResponse }
  | { job: number; job_end: JobEnd }
  | { job: number; credit: number };

export const pingResponseSchema = z.object({
  version: z.string().max(256),
  protocol: z.number().int(),
  running_jobs: z.number().int().min(0),
  queued_jobs: z.number().int().min(0),
  max_concurrent: z.number().int().min(0),
  manifest_delta: z.boolean().optional(),
});
export type PingResponse = z.infer<typeof pingResponseSchema>;

/**
 * proto-loader with `oneofs: true` sets the oneof's name (`msg`) and leaves the
 * other members unset; this keeps only the set member, so the schemas above see
 * exactly one key.
 */
export function pickOneof(message: Record<string, unknown>): Record<string, unknown> {
  const key = message.msg;
  if (typeof key !== "string") return {};
  return { [key]: message[key] };
}

/** As pickOneof, for a RunTasks message: its job number and its set member. */
export function pickJobOneof(message: Record<string, unknown>): Record<string, unknown> {
  return { job: message.job, ...pickOneof(message) };
}

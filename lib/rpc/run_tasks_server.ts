/**
 * The agent's side of protocol 3: one RunTasks call carrying many jobs, each
 * handed to the agent as the same IncomingJob a RunTask call makes. The call's
 * messages are read as they come, never paused for one job: each job's own
 * window (jobs.ts) bounds what it can queue. A master that breaks the protocol
 * loses the call (all its jobs), nothing more.
 */
import * as grpc from "@grpc/grpc-js";
import { type AgentHandlers, ProtocolError } from "./handlers.ts";
import { Credit, Inbox } from "./jobs.ts";
import {
  type JobEnd,
  MAX_OPEN_JOBS,
  OLDEST_PROTOCOL,
  pickJobOneof,
  pickOneof,
  PROTOCOL_VERSION,
  type RunTaskRequest,
  runTaskRequestSchema,
  runTasksRequestSchema,
  type RunTasksResponse,
} from "./messages.ts";
import { send } from "./stream.ts";

export interface RunTasksOptions {
  peer: string;
  client: string;
  idleTimeoutMs: number;
  onInternalError?(error: unknown): void;
}

interface Job {
  inbox: Inbox<RunTaskRequest>;
  credit: Credit;
  controller: AbortController;
}

type Call = grpc.ServerDuplexStream<Record<string, unknown>, unknown>;

/** Serves one RunTasks call until it ends; every job it started has ended by then. */
export function serveRunTasks(
  call: Call,
  handlers: AgentHandlers,
  options: RunTasksOptions,
): Promise<void> {
  const jobs = new Map<number, Job>();
  const over = new AbortController();
  let opened = false;
  let last = 0;
  let masterDone = false;
  let finished = false;
  let resolveAll!: () => void;
  const all = new Promise<void>((resolve) => resolveAll = resolve);

  const write = (message: RunTasksResponse): Promise<void> =>
    send(call, message, over.signal).catch(() => {});
  const finishIfIdle = () => {
    if (finished || jobs.size > 0 || !(masterDone || over.signal.aborted)) return;
    finished = true;
    if (!over.signal.aborted) call.end();
    resolveAll();
  };
  /** Ends the call for all its jobs: the master broke the protocol, or went away. */
  const stop = (refusal?: grpc.ServiceError) => {
    if (over.signal.aborted) return;
    over.abort("cancelled");
    for (const job of jobs.values()) {
      job.controller.abort("cancelled");
      job.inbox.fail(new ProtocolError("invalid", "the call ended"));
      job.credit.release();
    }
    if (refusal) call.emit("error", refusal);
    finishIfIdle();
  };
  const violation = (message: string) => stop(status(grpc.status.INVALID_ARGUMENT, message));

  const begin = (id: number, request: RunTaskRequest) => {
    if (!("start" in request)) return violation(`job ${id} did not begin with start`);
    last = id;
    if (jobs.size >= MAX_OPEN_JOBS) {
      void write({
        job: id,
        job_end: {
          code: "UNAVAILABLE",
          message: `more than ${MAX_OPEN_JOBS} tasks at once on one connection`,
        },
      });
      return;
    }
    const job: Job = {
      inbox: new Inbox((credit) => void write({ job: id, credit })),
      credit: new Credit(),
      controller: new AbortController(),
    };
    jobs.set(id, job);
    const next = async (): Promise<RunTaskRequest> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(
            new ProtocolError("invalid", `nothing received for ${options.idleTimeoutMs}ms`),
          );
        }, options.idleTimeoutMs);
      });
      try {
        const { value, done } = await Promise.race([job.inbox.next(), idle]);
        if (done) throw new ProtocolError("invalid", "the job ended early");
        return value;
      } finally {
        clearTimeout(timer);
      }
    };
    const ended = (end: JobEnd) => {
      jobs.delete(id);
      job.inbox.end();
      void write({ job: id, job_end: end }).finally(finishIfIdle);
    };
    handlers.runTask({
      peer: options.peer,
      client: options.client,
      start: request.start,
      next,
      send: async (response) => {
        await job.credit.take(job.controller.signal);
        await send(call, { job: id, response }, over.signal);
      },
      signal: job.controller.signal,
    }).then(
      () => ended({ code: "", message: "" }),
      (error) => {
        if (error instanceof ProtocolError) {
          const code = error.status === "not_found"
            ? "NOT_FOUND"
            : error.status === "unavailable"
            ? "UNAVAILABLE"
            : "INVALID_ARGUMENT";
          ended({ code, message: error.message });
        } else {
          options.onInternalError?.(error);
          ended({ code: "INTERNAL", message: "internal error on the agent (see its log)" });
        }
      },
    );
  };

  // Every job waiting for the call to drain listens on it.
  call.setMaxListeners(0);
  call.on("data", (raw: Record<string, unknown>) => {
    if (over.signal.aborted) return;
    const parsed = runTasksRequestSchema.safeParse(pickJobOneof(raw));
    if (!parsed.success) {
      return violation(`bad message: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    }
    const message = parsed.data;
    if ("open" in message) {
      if (opened) return violation("open sent twice");
      opened = true;
      const spoken = message.open.protocol;
      if (spoken !== PROTOCOL_VERSION) {
        return stop(status(
          grpc.status.FAILED_PRECONDITION,
          `the master speaks protocol ${spoken}, this agent ${PROTOCOL_VERSION} ` +
            `(and ${OLDEST_PROTOCOL} on RunTask)`,
        ));
      }
      return;
    }
    if (!opened) return violation("the first message must be open");
    const job = jobs.get(message.job);
    if ("request" in message) {
      const request = runTaskRequestSchema.safeParse(pickOneof(message.request));
      if (!request.success) {
        const why = `bad message: ${request.error.issues[0]?.message ?? "invalid"}`;
        if (!job) return violation(`job ${message.job}: ${why}`);
        job.inbox.fail(new ProtocolError("invalid", why));
        return;
      }
      if (job) {
        if (!job.inbox.push(request.data)) {
          violation(`job ${message.job} sent more than its window`);
        }
        return;
      }
      // What was in flight for a job that has ended is dropped.
      if (message.job <= last) return;
      return begin(message.job, request.data);
    }
    if ("cancel" in message) {
      job?.controller.abort("cancelled");
      job?.inbox.fail(new ProtocolError("invalid", "cancelled"));
      return;
    }
    if (job && !job.credit.add(message.credit)) {
      violation(`job ${message.job} gave more credit than it was sent`);
    }
  });
  call.on("end", () => {
    masterDone = true;
    finishIfIdle();
  });
  call.on("cancelled", () => stop());
  call.on("error", () => stop());
  return all;
}

function status(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

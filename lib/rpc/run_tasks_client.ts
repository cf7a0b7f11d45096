/**
 * The master's side of protocol 3: one RunTasks call to an agent carrying many
 * jobs, each presented as the same RemoteCall a RunTask call gives. The call's
 * messages are read as they come and sorted by job; each job's window (jobs.ts)
 * bounds what waits for a reader. When the call fails, every job on it fails
 * with the same error (an agent lost, as a lost connection would say).
 */
import type * as grpc from "@grpc/grpc-js";
import { Credit, Inbox } from "./jobs.ts";
import {
  pickJobOneof,
  pickOneof,
  type RunTaskRequest,
  type RunTaskResponse,
  runTaskResponseSchema,
  type RunTasksRequest,
  runTasksResponseSchema,
} from "./messages.ts";
import { messages, send } from "./stream.ts";
import type { RemoteCall } from "./client.ts";

/** How a failure reads: the client's own description of gRPC errors. */
export type Describe = (error: unknown) => Error;

interface Job {
  inbox: Inbox<RunTaskResponse>;
  credit: Credit;
  cancelled: boolean;
}

type Call = grpc.ClientDuplexStream<RunTasksRequest, Record<string, unknown>>;

export class TaskStream {
  #call: Call;
  #describe: Describe;
  #jobs = new Map<number, Job>();
  /** Jobs whose start has not gone yet (so they have no number). */
  #unnumbered = new Set<Job>();
  #spoken: number;
  #next = 1;
  #failure?: Error;
  #over = new AbortController();

  /** `call` is a RunTasks call just made; `done` is called once when it has ended. */
  #cancelled: () => Error;

  /**
   * `call` is a RunTasks call just made; `done` is called once when it has ended;
   * `cancelled` is the error a job cancelled here ends its responses with;
   * `protocol` the one agreed through Ping (3 or more).
   */
  constructor(
    call: Call,
    options: { describe: Describe; cancelled: () => Error; done: () => void; protocol: number },
  ) {
    this.#call = call;
    this.#spoken = options.protocol;
    this.#describe = options.describe;
    this.#cancelled = options.cancelled;
    // Errors reach the jobs through `#fail`; an 'error' event must not be unhandled.
    call.on("error", () => {});
    // Every job waiting for the call to drain listens on it.
    call.setMaxListeners(0);
    void this.#write({ job: 0, open: { protocol: this.#spoken } });
    void this.#read().finally(options.done);
  }

  /** Whether new jobs can still go on this call. */
  get usable(): boolean {
    return this.#failure === undefined;
  }

  /** Jobs open on the call now. */
  get open(): number {
    return this.#jobs.size + this.#unnumbered.size;
  }

  /** A new job on the call; its first message must be `start`. */
  job(): RemoteCall {
    // The job's number is taken when its start message goes, not now: the agent
    // requires each new job's number to be higher than the last one it saw, and
    // jobs made in one order may send their starts in another (one waits to read
    // the workflow's files, another has nothing to read).
    let id: number | undefined;
    const job: Job = {
      inbox: new Inbox((credit) => {
        if (id !== undefined) void this.#write({ job: id, credit });
      }),
      credit: new Credit(),
      cancelled: false,
    };
    this.#unnumbered.add(job);
    if (this.#failure) job.inbox.fail(this.#failure);
    const over = this.#over.signal;
    const failure = () => this.#failure;
    const write = (message: RunTasksRequest) => this.#write(message);
    const number = () => {
      if (id !== undefined) return id;
      this.#unnumbered.delete(job);
      id = this.#next++;
      this.#jobs.set(id, job);
      return id;
    };
    const forget = () => {
      this.#unnumbered.delete(job);
      if (id !== undefined) this.#jobs.delete(id);
    };
    async function* responses(): AsyncIterable<RunTaskResponse> {
      while (true) {
        const { value, done } = await job.inbox.next();
        if (done) return;
        yield value;
      }
    }
    return {
      protocol: this.#spoken,
      send: async (request: RunTaskRequest) => {
        const failed = failure();
        if (failed) throw failed;
        if (job.cancelled || job.inbox.over) return;
        try {
          await job.credit.take(over);
        } catch {
          throw failure() ?? new Error("the call is over");
        }
        if (id === undefined && !("start" in request)) {
          throw new Error("a job's first message must be its start");
        }
        // Numbered and written in one step: no other job's start can come between.
        await write({ job: number(), request });
      },
      end: () => {},
      responses: responses(),
      cancel: () => {
        if (job.cancelled || job.inbox.over) return;
        job.cancelled = true;
        job.inbox.fail(this.#cancelled());
        job.credit.release();
        // The agent answers a started job's cancel with its end, which forgets it.
        if (id !== undefined && !this.#failure) void write({ job: id, cancel: {} });
        else forget();
      },
    };
  }

  #write(message: RunTasksRequest): Promise<void> {
    return send(this.#call, message, this.#over.signal).catch((error) => {
      this.#fail(error);
      throw this.#failure;
    });
  }

  async #read(): Promise<void> {
    try {
      for await (const raw of messages<Record<string, unknown>>(this.#call)) {
        const parsed = runTasksResponseSchema.safeParse(pickJobOneof(raw));
        if (!parsed.success) {
          throw this.#badMessage(parsed.error.issues[0]?.message ?? "invalid");
        }
        const message = parsed.data;
        const job = this.#jobs.get(message.job);
        if (!job) continue;
        if ("response" in message) {
          const response = runTaskResponseSchema.safeParse(pickOneof(message.response));
          if (!response.success) {
            throw this.#badMessage(response.error.issues[0]?.message ?? "invalid");
          }
          if (!job.inbox.push(response.data)) {
            throw this.#badMessage(`job ${message.job} went past its window`);
          }
        } else if ("job_end" in message) {
          this.#jobs.delete(message.job);
          const { code, message: details } = message.job_end;
          if (code === "") job.inbox.end();
          else job.inbox.fail(this.#describe({ code: STATUS[code], details }));
        } else if (!job.credit.add(message.credit)) {
          throw this.#badMessage(`job ${message.job} was given more credit than it sent`);
        }
      }
      this.#fail(this.#describe({ code: UNAVAILABLE, details: "the agent ended the call" }));
    } catch (error) {
      this.#fail(error);
      this.#call.cancel();
    }
  }

  #badMessage(details: string): Error {
    return this.#describe({ code: INVALID, details: `agent sent a bad message: ${details}` });
  }

  #fail(error: unknown): void {
    if (this.#failure) return;
    this.#failure = this.#describe(error);
    this.#over.abort();
    for (const job of [...this.#jobs.values(), ...this.#unnumbered]) {
      job.inbox.fail(this.#failure);
      job.credit.release();
    }
    this.#jobs.clear();
    this.#unnumbered.clear();
  }

  /** Ends the call (and every job on it). */
  close(): void {
    this.#fail(this.#cancelled());
    this.#call.cancel();
  }
}

// grpc-js status codes, as numbers (this file only needs its types).
const INVALID = 3;
const NOT_FOUND = 5;
const UNAVAILABLE = 14;
const INTERNAL = 13;
const STATUS: Record<string, number> = {
  INVALID_ARGUMENT: INVALID,
  NOT_FOUND,
  UNAVAILABLE,
  INTERNAL,
};

/** What the agent's gRPC server hands to the agent: jobs, one per task attempt. */
import type { PingResponse, RunTaskRequest, RunTaskResponse, TaskStart } from "./messages.ts";

export interface IncomingJob {
  /** `host:port` of the master, as the agent sees it. */
  peer: string;
  /**
   * Who called, as an opaque digest: of the token the call carried and, with
   * mutual TLS, of the client certificate (empty when the call carried neither).
   * Two callers with another token or certificate never share one.
   */
  client: string;
  start: TaskStart;
  /** The next message from the master (checked against its schema), within the idle timeout. */
  next(): Promise<RunTaskRequest>;
  send(response: RunTaskResponse): Promise<void>;
  /** Aborted when the master cancels the call or goes away. */
  signal: AbortSignal;
}

/** An error whose message may be shown to the master: no stack, no host paths. */
export class ProtocolError extends Error {
  constructor(readonly status: "invalid" | "not_found" | "unavailable", message: string) {
    super(message);
  }
}

export interface AgentHandlers {
  runTask(job: IncomingJob): Promise<void>;
  ping(): PingResponse;
}

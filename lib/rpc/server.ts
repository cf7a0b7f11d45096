/**
 * The agent's gRPC server: the AgentService and the standard health service,
 * every call checked against the token, every message checked against its schema.
 */
import * as grpc from "@grpc/grpc-js";
import { createHash, timingSafeEqual } from "node:crypto";
import {
  MAX_MESSAGE_BYTES,
  pickOneof,
  type PingResponse,
  type RunTaskResponse,
} from "./messages.ts";
import { type RunTaskRequest, runTaskRequestSchema, type TaskStart } from "./messages.ts";
import { protos } from "./proto.ts";
import { messages, send } from "./stream.ts";
import { serverCredentials, type ServerTlsFiles } from "./tls.ts";

export interface IncomingJob {
  /** `host:port` of the master, as the agent sees it. */
  peer: string;
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

export interface ServeOptions {
  host: string;
  port: number;
  /** The token calls must carry, if any (asked for each call: it may be set after binding). */
  token?: string | (() => string | undefined);
  /** Serve TLS (mutual TLS with `clientCa`); plaintext when absent. */
  tls?: ServerTlsFiles;
  /** Longest wait for the next message of an upload (IDLE_TIMEOUT_MS by default). */
  idleTimeoutMs?: number;
  /** Called for errors that are not the master's fault, with what they were. */
  onInternalError?(error: unknown): void;
}

export interface AgentServer {
  port: number;
  /** Stops accepting calls; gives running calls `graceMs`, then cuts them. */
  close(graceMs?: number): Promise<void>;
  /**
   * Waits (at most `graceMs`) for running calls to end, closing nothing: for a
   * process about to exit, whose exit then ends the connections without a GOAWAY.
   * Deno 2.9 can crash a peer that receives a GOAWAY (denoland/deno#36788), and
   * `close` sends one to every connected master.
   */
  settle(graceMs: number): Promise<void>;
}

const serverOptions: grpc.ServerOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  // Find a master that vanished without closing its connection.
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  // One connection cannot open streams without end.
  "grpc.max_concurrent_streams": 64,
};

/** By default, a master must send each message of the upload within this time, or the call ends. */
export const IDLE_TIMEOUT_MS = 30_000;

export async function serveAgent(
  handlers: AgentHandlers,
  options: ServeOptions,
): Promise<AgentServer> {
  const { agent, health } = protos();
  const server = new grpc.Server(serverOptions);
  const authorized = tokenCheck(options.token);
  const denied = (metadata: grpc.Metadata): grpc.ServiceError | undefined => {
    if (authorized(metadata)) return undefined;
    return status(grpc.status.UNAUTHENTICATED, "missing or wrong token");
  };

  let running = 0;
  server.addService(agent.service, {
    Ping: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const refusal = denied(call.metadata);
      if (refusal) return callback(refusal);
      callback(null, handlers.ping());
    },
    RunTask: (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
      const refusal = denied(call.metadata);
      if (refusal) return call.emit("error", refusal);
      running++;
      runTask(call, handlers, options.idleTimeoutMs ?? IDLE_TIMEOUT_MS).catch((error) => {
        if (error instanceof ProtocolError) {
          const code = error.status === "not_found"
            ? grpc.status.NOT_FOUND
            : error.status === "unavailable"
            ? grpc.status.UNAVAILABLE
            : grpc.status.INVALID_ARGUMENT;
          call.emit("error", status(code, error.message));
        } else {
          options.onInternalError?.(error);
          call.emit(
            "error",
            status(grpc.status.INTERNAL, "internal error on the agent (see its log)"),
          );
        }
      }).finally(() => running--);
    },
  });

  server.addService(health.service, {
    Check: (
      call: grpc.ServerUnaryCall<{ service: string }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const refusal = denied(call.metadata);
      if (refusal) return callback(refusal);
      const known = ["", "sloth.v1.AgentService"].includes(call.request.service);
      if (!known) return callback(status(grpc.status.NOT_FOUND, "unknown service"));
      callback(null, { status: "SERVING" });
    },
    Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
      const refusal = denied(call.metadata);
      if (refusal) return call.emit("error", refusal);
      call.write({ status: "SERVING" });
    },
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`,
      options.tls ? serverCredentials(options.tls) : grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    )
  );
  return {
    port,
    close: (graceMs = 2000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
    settle: async (graceMs) => {
      const deadline = Date.now() + graceMs;
      while (running > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
  };
}

async function runTask(
  call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>,
  handlers: AgentHandlers,
  idleTimeoutMs: number,
): Promise<void> {
  const controller = new AbortController();
  call.on("cancelled", () => controller.abort("cancelled"));
  call.on("error", () => controller.abort("cancelled"));
  const incoming = messages<Record<string, unknown>>(call);
  const next = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new ProtocolError("invalid", `nothing received for ${idleTimeoutMs}ms`));
      }, idleTimeoutMs);
    });
    let result: IteratorResult<Record<string, unknown>>;
    try {
      result = await Promise.race([incoming.next(), idle]);
    } finally {
      clearTimeout(timer);
    }
    const { value, done } = result;
    if (done) throw new ProtocolError("invalid", "the stream ended early");
    const parsed = runTaskRequestSchema.safeParse(pickOneof(value));
    if (!parsed.success) {
      throw new ProtocolError(
        "invalid",
        `bad message: ${parsed.error.issues[0]?.message ?? "invalid"}`,
      );
    }
    return parsed.data;
  };
  const first = await next();
  if (!("start" in first)) throw new ProtocolError("invalid", "the first message must be start");
  await handlers.runTask({
    peer: peerAddress(call.getPeer()),
    start: first.start,
    next,
    send: (response) => send(call, response, controller.signal),
    signal: controller.signal,
  });
  if (!controller.signal.aborted) call.end();
}

function peerAddress(peer: string): string {
  return peer.replace(/^ipv[46]:/, "");
}

function status(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** Compares in constant time: both sides are hashed to the same length first. */
function tokenCheck(token: ServeOptions["token"]): (metadata: grpc.Metadata) => boolean {
  const current = typeof token === "function" ? token : () => token;
  let cached: { token: string; digest: Uint8Array } | undefined;
  return (metadata) => {
    const expected = current();
    if (expected === undefined) return true;
    if (cached?.token !== expected) {
      cached = {
        token: expected,
        digest: createHash("sha256").update(`Bearer ${expected}`).digest(),
      };
    }
    const given = metadata.get("authorization")[0];
    if (typeof given !== "string") return false;
    return timingSafeEqual(createHash("sha256").update(given).digest(), cached.digest);
  };
}

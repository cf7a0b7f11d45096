/**
 * The agent's gRPC server: the AgentService and the standard health service,
 * every call checked against the token, every message checked against its schema.
 */
import * as grpc from "@grpc/grpc-js";
import type * as http2 from "node:http2";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { createServer as createTlsServer, TLSSocket } from "node:tls";
import { createHash, timingSafeEqual } from "node:crypto";
import { ConnectionGate, descriptorLimit } from "./gate.ts";
import { MAX_MESSAGE_BYTES, pickOneof } from "./messages.ts";
import { runTaskRequestSchema } from "./messages.ts";
import { protos } from "./proto.ts";
import { type AgentHandlers, ProtocolError } from "./handlers.ts";
import { messages, send } from "./stream.ts";
import { serveRunTasks } from "./run_tasks_server.ts";
import { type ServerTlsFiles, serverTlsOptions } from "./tls.ts";

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
  /** Notable refusals (wrong tokens, by peer), summarized. */
  log?(line: string): void;
  /** Time a new connection has to make an authorized call (10 s by default). */
  authDeadlineMs?: number;
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
  // One connection cannot open streams without end (see gate.ts for the lifetime limit).
  "grpc.max_concurrent_streams": 32,
};

/**
 * Calls one connection carries before the agent sends GOAWAY and refuses more
 * (gate.ts). Masters move to a new connection after 32 (CALLS_PER_CHANNEL), so
 * only other clients meet this limit.
 */
export const STREAMS_PER_CONNECTION = 48;

const PATHS = new Set([
  "/sloth.v1.AgentService/RunTask",
  "/sloth.v1.AgentService/RunTasks",
  "/sloth.v1.AgentService/Ping",
  "/grpc.health.v1.Health/Check",
  "/grpc.health.v1.Health/Watch",
]);

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
    const given = metadata.get("authorization")[0];
    if (authorized(typeof given === "string" ? given : undefined)) return undefined;
    return status(grpc.status.UNAUTHENTICATED, "missing or wrong token");
  };

  let running = 0;
  const counted: AgentHandlers = {
    ping: () => handlers.ping(),
    runTask: (job) => {
      running++;
      return handlers.runTask(job).finally(() => running--);
    },
  };
  const identify = (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
    const given = call.metadata.get("authorization")[0];
    return clientIdentity(
      typeof given === "string" ? given : undefined,
      certificates.get(call.getPeer()),
    );
  };
  server.addService(agent.service, {
    Ping: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const refusal = denied(call.metadata);
      if (refusal) return callback(refusal);
      callback(null, handlers.ping());
    },
    RunTasks: (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
      const refusal = denied(call.metadata);
      if (refusal) return call.emit("error", refusal);
      void serveRunTasks(call, counted, {
        peer: peerAddress(call.getPeer()),
        client: identify(call),
        idleTimeoutMs: options.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
        onInternalError: options.onInternalError,
      });
    },
    RunTask: (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
      const refusal = denied(call.metadata);
      if (refusal) return call.emit("error", refusal);
      runTask(call, counted, identify(call), options.idleTimeoutMs ?? IDLE_TIMEOUT_MS).catch(
        (error) => {
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
        },
      );
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

  // grpc-js serves connections we accept (and decrypt) ourselves, so that the
  // gate and its frame filter see each one first.
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const fds = descriptorLimit();
  // Room is kept for jobs' pipes and files: a quarter of the limit, at most 256.
  const maxConnections = fds ? Math.max(16, Math.min(fds - Math.min(256, fds / 4), 16_384)) : 4096;
  const gate = new ConnectionGate({
    maxConnections,
    maxPerPeer: Math.min(maxConnections, 512),
    maxUntrusted: Math.min(maxConnections, 256),
    maxUntrustedPerPeer: 64,
    authDeadlineMs: options.authDeadlineMs ?? 10_000,
    streamsPerConnection: STREAMS_PER_CONNECTION,
    maxMessageBytes: MAX_MESSAGE_BYTES,
    paths: PATHS,
    authorized: (header) => authorized(header),
    log: options.log ?? (() => {}),
  });
  gate.guard(newestHttp2Server(server));
  // Client certificates by connection (`address:port`, as grpc-js names a call's peer):
  // grpc-js sees the filtered plaintext, not the TLS socket.
  const certificates = new Map<string, string>();
  const serve = (socket: Socket) => {
    const filtered = gate.filter(socket);
    if (!filtered) return;
    const certificate = socket instanceof TLSSocket ? socket.getPeerCertificate() : undefined;
    if (certificate?.raw) {
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      certificates.set(peer, createHash("sha256").update(certificate.raw).digest("hex"));
      socket.once("close", () => certificates.delete(peer));
    }
    injector.injectConnection(filtered);
  };
  let listener: NetServer;
  if (options.tls) {
    listener = createTlsServer(serverTlsOptions(options.tls), serve);
    // Counted (or refused) before the handshake costs anything.
    listener.prependListener("connection", (socket: Socket) => gate.admit(socket));
    listener.on("tlsClientError", () => {});
  } else {
    listener = createServer({ noDelay: true }, (socket) => {
      if (gate.admit(socket)) serve(socket);
    });
  }
  const port = await listen(listener, options.host, options.port);
  return {
    port,
    close: (graceMs = 2000) =>
      new Promise<void>((resolve) => {
        listener.close();
        injector.drain(graceMs);
        const timer = setTimeout(() => {
          injector.destroy();
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          injector.destroy();
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
  client: string,
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
    client,
    start: first.start,
    next,
    send: (response) => send(call, response, controller.signal),
    signal: controller.signal,
  });
  if (!controller.signal.aborted) call.end();
}

/**
 * A digest of what identifies a caller: the authorization header it sent (the
 * token) and the SHA-256 of its client certificate, either of them absent.
 */
function clientIdentity(
  authorization: string | undefined,
  certificate: string | undefined,
): string {
  if (authorization === undefined && certificate === undefined) return "";
  return createHash("sha256")
    .update(`sloth-client\0${authorization ?? ""}\0${certificate ?? ""}`)
    .digest("hex");
}

function peerAddress(peer: string): string {
  return peer.replace(/^ipv[46]:/, "");
}

function status(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** Compares in constant time: both sides are hashed to the same length first. */
function tokenCheck(token: ServeOptions["token"]): (authorization: string | undefined) => boolean {
  const current = typeof token === "function" ? token : () => token;
  let cached: { token: string; digest: Uint8Array } | undefined;
  return (given) => {
    const expected = current();
    if (expected === undefined) return true;
    if (cached?.token !== expected) {
      cached = {
        token: expected,
        digest: createHash("sha256").update(`Bearer ${expected}`).digest(),
      };
    }
    if (given === undefined) return false;
    return timingSafeEqual(createHash("sha256").update(given).digest(), cached.digest);
  };
}

/**
 * The HTTP/2 server grpc-js made for the connection injector just created. grpc-js
 * does not expose it; the gate must see its streams before grpc-js does. (Pinned
 * grpc-js version; the hostile-client tests fail if this ever finds nothing.)
 */
function newestHttp2Server(server: grpc.Server): http2.Http2Server {
  const servers = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> })
    .http2Servers;
  const newest = servers ? [...servers.keys()].at(-1) : undefined;
  if (!newest) throw new Error("grpc-js changed: no HTTP/2 server to guard");
  return newest;
}

function listen(listener: NetServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    listener.once("error", reject);
    listener.listen({ host, port }, () => {
      listener.off("error", reject);
      const address = listener.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

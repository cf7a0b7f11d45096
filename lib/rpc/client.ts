/** The master's side: one channel per agent, and errors people can read. */
import * as grpc from "@grpc/grpc-js";
import {
  MAX_MESSAGE_BYTES,
  OLDEST_PROTOCOL,
  pickOneof,
  type PingResponse,
  pingResponseSchema,
  PROTOCOL_VERSION,
  type RunTaskRequest,
  type RunTaskResponse,
  runTaskResponseSchema,
  type RunTasksRequest,
} from "./messages.ts";
import { protos } from "./proto.ts";
import { messages, send } from "./stream.ts";
import { TaskStream } from "./run_tasks_client.ts";
import { clientCredentials, diagnoseTls, looksLikeTls, servesTls, type TlsFiles } from "./tls.ts";

export type RpcErrorKind = "unreachable" | "auth" | "lost" | "protocol" | "cancelled";

export class RpcError extends Error {
  constructor(readonly kind: RpcErrorKind, message: string) {
    super(message);
    this.name = "RpcError";
  }
}

/** How long connecting to an agent may take before it counts as unreachable. */
export const CONNECT_TIMEOUT_MS = 5000;

const channelOptions: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  // An agent that dies without closing the connection is noticed within ~15 s.
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  // A restarted agent is reached within about half a second (the longest back-off
  // between attempts to connect, plus up to 20% jitter): a master waiting to retry on
  // it is not held back by a long back-off; a closed port costs two refused SYNs a second.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 500,
  // Each channel connects for itself: one in back-off (an agent that was down) must not
  // hold back a new channel to the same agent (a new token after its restart), and a new
  // channel sharing a failed connection reports "Last error: null".
  "grpc.use_local_subchannel_pool": 1,
  // An idle channel would close its connection, which sends a GOAWAY (see `close`).
  "grpc.client_idle_timeout_ms": 2 ** 31 - 1,
};

export interface RemoteCall {
  /** The protocol the call speaks: what the task's start message must say. */
  protocol: number;
  send(request: RunTaskRequest): Promise<void>;
  /** No more requests. */
  end(): void;
  responses: AsyncIterable<RunTaskResponse>;
  cancel(): void;
}

/**
 * Calls one channel (one connection) carries before the master opens a new one.
 * No connection may carry the hundred-odd streams after which Deno's HTTP/2 can
 * crash the process at either end (SECURITY.md). The agent enforces its own limit
 * (48, then a GOAWAY from its side); moving on here first avoids that GOAWAY, which
 * races grpc-js on Deno: a call that completes just before its connection closes
 * can be reported as "Connection dropped". A retired channel is closed once its
 * last call has ended.
 */
export const CALLS_PER_CHANNEL = 32;

type GrpcClient = grpc.Client & Record<string, (...args: never[]) => unknown>;

interface Channel {
  client: GrpcClient;
  calls: number;
  active: number;
  retired: boolean;
}

export class AgentClient {
  readonly address: string;
  #token?: string;
  #tls?: TlsFiles;
  #current?: Channel;
  #channels = new Set<Channel>();
  /** The highest protocol both sides speak, known from the last ping. */
  #protocol = OLDEST_PROTOCOL;
  #newest: number;
  #stream?: TaskStream;
  #streamsOpened = 0;

  /**
   * `tls` set: talk TLS (with a client certificate when it has one); else plaintext.
   * `protocol`: the newest this client may speak (PROTOCOL_VERSION; lower for tests
   * of older masters).
   */
  constructor(
    address: string,
    options: { token?: string; tls?: TlsFiles; protocol?: number } = {},
  ) {
    this.address = address;
    this.#token = options.token;
    this.#tls = options.tls;
    this.#newest = options.protocol ?? PROTOCOL_VERSION;
    this.#current = this.#open();
  }

  /** RunTasks calls made so far (protocol 3: one at a time, each carrying many tasks). */
  get streamsOpened(): number {
    return this.#streamsOpened;
  }

  #open(): Channel {
    const { agent } = protos();
    const { credentials, options: extra } = channelFor(this.address, this.#tls);
    const client = new agent(this.address, credentials, {
      ...channelOptions,
      ...extra,
    }) as GrpcClient;
    const channel = { client, calls: 0, active: 0, retired: false };
    this.#channels.add(channel);
    return channel;
  }

  /** The channel for the next call; `done` must be called when the call has ended. */
  #take(): { client: GrpcClient; done: () => void } {
    let channel = this.#current!;
    if (channel.calls >= CALLS_PER_CHANNEL) {
      this.#retire(channel);
      channel = this.#current = this.#open();
    }
    channel.calls++;
    channel.active++;
    let ended = false;
    return {
      client: channel.client,
      done: () => {
        if (ended) return;
        ended = true;
        channel.active--;
        if (channel.retired && channel.active === 0) this.#closeChannel(channel);
      },
    };
  }

  #retire(channel: Channel): void {
    channel.retired = true;
    if (channel.active === 0) this.#closeChannel(channel);
  }

  #closeChannel(channel: Channel): void {
    this.#channels.delete(channel);
    channel.client.close();
  }

  #metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.#token !== undefined) metadata.set("authorization", `Bearer ${this.#token}`);
    return metadata;
  }

  /**
   * Checks reachability, the token and the protocol, within `timeoutMs`. With
   * `waitForReady`, a channel that is (re)connecting does not fail the call at once:
   * it is answered as soon as a connection is made within the time.
   */
  ping(
    timeoutMs = CONNECT_TIMEOUT_MS,
    options: { waitForReady?: boolean } = {},
  ): Promise<PingResponse> {
    return new Promise((resolve, reject) => {
      const { client, done } = this.#take();
      const ping = client.Ping as unknown as (
        request: unknown,
        metadata: grpc.Metadata,
        options: grpc.CallOptions,
        callback: (error: grpc.ServiceError | null, response: unknown) => void,
      ) => void;
      ping.call(
        client,
        {},
        this.#metadata(),
        { deadline: Date.now() + timeoutMs, waitForReady: options.waitForReady ?? false },
        (error, response) => {
          done();
          if (error?.code === grpc.status.DEADLINE_EXCEEDED) {
            // Said with the deadline this ping had, not the default.
            return reject(
              new RpcError(
                "unreachable",
                `agent ${this.address} unreachable: no answer within ${
                  timeoutMs < 1000 ? `${timeoutMs}ms` : `${timeoutMs / 1000}s`
                } (check the address, the agent's --bind and any firewall between)`,
              ),
            );
          }
          if (error) {
            return this.#describeFirstContact(error).then(
              reject,
              () => reject(this.describe(error)),
            );
          }
          const parsed = pingResponseSchema.safeParse(response);
          if (!parsed.success) {
            return reject(new RpcError("protocol", `agent ${this.address} sent a bad ping reply`));
          }
          this.#protocol = Math.min(parsed.data.protocol, this.#newest);
          resolve(parsed.data);
        },
      );
    });
  }

  /**
   * A call for one task attempt: a job on the RunTasks call this client keeps
   * open (protocol 3), or, with an agent that speaks only protocol 2 (as the last
   * ping said), a RunTask call of its own.
   */
  runTask(): RemoteCall {
    if (this.#protocol < 3) return this.#runTaskCall();
    if (!this.#stream?.usable) {
      const { client, done } = this.#take();
      const call = (client.RunTasks as unknown as (m: grpc.Metadata) => grpc.ClientDuplexStream<
        RunTasksRequest,
        Record<string, unknown>
      >).call(client, this.#metadata());
      this.#streamsOpened++;
      this.#stream = new TaskStream(call, {
        describe: (error) => this.describe(error),
        cancelled: () => new RpcError("cancelled", "cancelled"),
        done,
        protocol: this.#protocol,
      });
    }
    return this.#stream.job();
  }

  #runTaskCall(): RemoteCall {
    const { client, done } = this.#take();
    const call = (client.RunTask as unknown as (m: grpc.Metadata) => grpc.ClientDuplexStream<
      unknown,
      Record<string, unknown>
    >).call(client, this.#metadata());
    call.once("status", done);
    call.once("close", done);
    // The call's error reaches the caller through `responses` or `send`; a call
    // abandoned before its responses are read (the request could not be made) must
    // not take the process down with an unhandled 'error' event.
    call.on("error", () => {});
    const address = this.address;
    const describe = (error: unknown) => this.describe(error);
    let cancelled = false;
    async function* responses(): AsyncIterable<RunTaskResponse> {
      try {
        for await (const raw of messages<Record<string, unknown>>(call)) {
          const parsed = runTaskResponseSchema.safeParse(pickOneof(raw));
          if (!parsed.success) {
            call.cancel();
            throw new RpcError(
              "protocol",
              `agent ${address} sent a bad message: ${
                parsed.error.issues[0]?.message ?? "invalid"
              }`,
            );
          }
          yield parsed.data;
        }
      } catch (error) {
        if (cancelled) throw new RpcError("cancelled", "cancelled");
        throw describe(error);
      }
    }
    return {
      protocol: OLDEST_PROTOCOL,
      send: (request) => send(call, request).catch((error) => Promise.reject(describe(error))),
      end: () => call.end(),
      responses: responses(),
      cancel: () => {
        cancelled = true;
        call.cancel();
      },
    };
  }

  /** The first call to an agent is where TLS problems show: say which certificate and why. */
  async #describeFirstContact(error: grpc.ServiceError): Promise<RpcError> {
    const details = error.details ?? error.message;
    if (error.code !== grpc.status.UNAVAILABLE) return this.describe(error);
    if (this.#tls && looksLikeTls(details)) {
      return new RpcError(
        "unreachable",
        await diagnoseTls(this.address, this.#tls, cleanDetails(details)),
      );
    }
    if (!this.#tls && (looksLikeTls(details) || /ECONNRESET|EPIPE|Protocol error/.test(details))) {
      // Something answered, but not in plaintext gRPC: a TLS agent, or not an agent at all.
      if (await servesTls(this.address)) {
        return new RpcError(
          "unreachable",
          `agent ${this.address} unreachable: it serves TLS and this master talked plaintext ` +
            "(pass --tls-ca with the CA that signed its certificate)",
        );
      }
      return new RpcError(
        "unreachable",
        `agent ${this.address} unreachable: ${cleanDetails(details)} ` +
          "(is a sloth-runner agent listening there? if it serves TLS, pass --tls-ca)",
      );
    }
    return this.describe(error);
  }

  /** A gRPC failure as one line a person can act on. */
  describe(error: unknown): RpcError {
    if (error instanceof RpcError) return error;
    const e = (error ?? {}) as Partial<grpc.ServiceError>;
    const raw = e.details || e.message || (typeof error === "string" ? error : "");
    const details = cleanDetails(raw);
    if (e.code === undefined && STREAM_ENDED.test(raw)) {
      // Our own stream wrappers (stream.ts) when the call ended under a write: the
      // connection went away, which the responses side reports with its status.
      return this.#lost("the connection closed");
    }
    switch (e.code) {
      case grpc.status.UNAVAILABLE: {
        if (/Name resolution failed/.test(raw)) {
          const host = this.address.replace(/:\d+$/, "");
          return new RpcError(
            "unreachable",
            `agent ${this.address} unreachable: cannot resolve the host name ${host}`,
          );
        }
        const never = /No connection established|ECONNREFUSED/.test(raw);
        const port = this.address.split(":").at(-1);
        const next = /ECONNREFUSED/.test(raw)
          ? ` (is an agent running there? start one with: sloth-runner agent -p ${port})`
          : "";
        if (never) {
          return new RpcError(
            "unreachable",
            `agent ${this.address} unreachable: ${details}${next}`,
          );
        }
        return this.#lost(details);
      }
      case grpc.status.DEADLINE_EXCEEDED:
        return new RpcError(
          "unreachable",
          `agent ${this.address} unreachable: no answer within ${
            CONNECT_TIMEOUT_MS / 1000
          }s (check the address, the agent's --bind and any firewall between)`,
        );
      case grpc.status.UNAUTHENTICATED:
        return new RpcError(
          "auth",
          this.#token === undefined
            ? `agent ${this.address} requires a token; set SLOTH_AGENT_TOKEN ` +
              "(or token_env in the agent's definition; agent ping: --token-file)"
            : `agent ${this.address} refused the token (the master's SLOTH_AGENT_TOKEN, or the ` +
              "agent definition's token_env, must match the agent's --token-file)",
        );
      case grpc.status.CANCELLED:
        // Our own cancellations never get here (see runTask): the agent ended the call.
        return new RpcError(
          "lost",
          `agent ${this.address} lost: it cancelled the task (is it stopping?)`,
        );
      case grpc.status.INTERNAL:
        // grpc-js reports a connection the peer closed under a call (the agent died
        // between our write and its answer) as an internal error.
        if (CONNECTION_GONE.test(raw)) return this.#lost(details);
        return new RpcError("protocol", `agent ${this.address}: ${details}`);
      default:
        return new RpcError("protocol", `agent ${this.address}: ${details}`);
    }
  }

  #lost(details: string): RpcError {
    return new RpcError(
      "lost",
      `agent ${this.address} lost: ${details} ` +
        "(did the agent stop or restart? its log says why; the task's retries apply)",
    );
  }

  /**
   * Closes the connection with a GOAWAY. Deno 2.9's HTTP/2 (nghttp2) can abort the
   * process that receives a GOAWAY on a connection that carried streams
   * (denoland/deno#36788; seen here after 100-130 calls, and sooner under load), so
   * a master does not call this at the end of a run: its connections end with the
   * process, which sends none. For short-lived clients (a ping, tests).
   */
  close(): void {
    this.#stream?.close();
    this.#stream = undefined;
    for (const channel of this.#channels) channel.client.close();
    this.#channels.clear();
    this.#current = undefined;
  }
}

function channelFor(address: string, tls: TlsFiles | undefined) {
  if (!tls) return { credentials: grpc.credentials.createInsecure(), options: {} };
  return clientCredentials(address, tls);
}

/**
 * What grpc-js says (as INTERNAL) when the connection under a call was closed by the
 * other side, or the agent ended the call's stream without a status (a connection it
 * closed while the call ran).
 */
const CONNECTION_GONE =
  /ended by the other party|ECONNRESET|EPIPE|Connection dropped|socket hang up|GOAWAY|stream closed|Call ended without gRPC status/i;
/** stream.ts's errors for a write to a call that is already over. */
const STREAM_ENDED = /^(the call is over|the stream closed)$/;

/**
 * grpc-js's details as one readable clause, never empty, "null" or "undefined": a new
 * channel to an address whose connection just failed says "Last error: null".
 */
export function cleanDetails(details: string | null | undefined): string {
  const text = String(details ?? "").trim();
  const last = /Last error: (?:Error: )?(.*?)(?:\. Resolution note:.*)?$/s.exec(text);
  // grpc-js stamps some errors with the time, "(2026-11-23T20:03:07.212Z)": noise here.
  const clean = (last ? last[1] : text)
    // "Received RST_STREAM with code 2 triggered by internal client error: write EPIPE":
    // the socket's own error says it.
    .replace(/^Received RST_STREAM with code \d+ triggered by internal client error: /, "")
    .replace(/\s*\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\)/g, "")
    .trim().replace(/\.$/, "");
  if (/^(null|undefined)?$/i.test(clean)) {
    return last ? "no connection could be made" : "the call failed without details";
  }
  return clean;
}

/** The standard gRPC health check of an agent: "SERVING", or an `RpcError`. */
export async function healthCheck(
  address: string,
  options: { token?: string } = {},
): Promise<string> {
  const { health } = protos();
  const client = new health(address, grpc.credentials.createInsecure(), channelOptions);
  const describer = new AgentClient(address, options);
  const metadata = new grpc.Metadata();
  if (options.token !== undefined) metadata.set("authorization", `Bearer ${options.token}`);
  try {
    return await new Promise<string>((resolve, reject) => {
      const check = (client as unknown as Record<string, (...args: unknown[]) => void>).Check;
      check.call(
        client,
        { service: "" },
        metadata,
        { deadline: Date.now() + CONNECT_TIMEOUT_MS },
        (error: grpc.ServiceError | null, reply: { status: string }) =>
          error ? reject(describer.describe(error)) : resolve(reply.status),
      );
    });
  } finally {
    client.close();
    describer.close();
  }
}

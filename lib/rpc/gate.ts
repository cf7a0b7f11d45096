/**
 * Who may talk to an agent, and how much, decided before gRPC sees anything.
 *
 * Deno 2.9's HTTP/2 server crashes the process on some frame sequences any
 * peer can send (see frame_filter.ts and SECURITY.md). Every connection goes
 * through a `FrameFilter`, and this gate decides what the filter lets through:
 *
 * - Connections are bounded in total (below the descriptor limit) and per
 *   peer address, and untrusted ones more tightly, so idle sockets cannot
 *   exhaust descriptors and wedge the listener.
 * - A connection is untrusted until its first call carries the right token;
 *   until then nothing after that call's headers reaches the server. A refused
 *   or malformed first call is answered (so a master with a wrong token is told
 *   so) and ends the connection; nothing the peer sent after it is read.
 *   Untrusted connections must make their first call within `authDeadlineMs`.
 * - A trusted connection carries `streamsPerConnection` calls, then the agent
 *   sends GOAWAY (safe in that direction, with so few streams) and the filter
 *   refuses later calls, which the master's client retries on a new connection;
 *   so no connection ever carries the hundred-odd streams that can crash Deno.
 * - Each refused token makes that peer's next refusals slower to come (a
 *   growing wait, per address) and is logged, summarized per peer.
 * - A message that declares more than `maxMessageBytes` resets its stream at
 *   once, before its body is read.
 */
import type * as http2 from "node:http2";
import type { Socket } from "node:net";
import { FrameFilter } from "./frame_filter.ts";

export interface GateOptions {
  /** Connections open at once, trusted or not. */
  maxConnections: number;
  /** Connections open at once from one address. */
  maxPerPeer: number;
  /** Untrusted connections open at once, in total and from one address. */
  maxUntrusted: number;
  maxUntrustedPerPeer: number;
  /** Time a new connection has to make an authorized call. */
  authDeadlineMs: number;
  /** Calls a trusted connection may carry before it is asked to reconnect. */
  streamsPerConnection: number;
  /** Largest gRPC message accepted (its 5-byte prefix declares the length). */
  maxMessageBytes: number;
  /** The methods served, as `/package.Service/Method`. */
  paths: ReadonlySet<string>;
  /** Whether the call's `authorization` header is right. */
  authorized(authorization: string | undefined): boolean;
  log(line: string): void;
  /** For tests: the clock. */
  now?: () => number;
}

/** Calls a peer may open after the GOAWAY (each refused) before the filter cuts it. */
const MAX_REFUSED = 256;

const NGHTTP2_NO_ERROR = 0x0;
const NGHTTP2_ENHANCE_YOUR_CALM = 0xb;

interface Connection {
  peer: string;
  /** The TCP connection. */
  socket: Socket;
  filter?: FrameFilter;
  trusted: boolean;
  /** Whether it still counts among the untrusted connections (for the limits). */
  countedUntrusted: boolean;
  /** Calls seen (streams the server was given). */
  calls: number;
  session?: http2.ServerHttp2Session;
  deadline?: ReturnType<typeof setTimeout>;
  /** The call whose arrival sends the GOAWAY that moves the peer to a new connection. */
  rotateAt?: number;
  rotateTimer?: ReturnType<typeof setTimeout>;
}

export class ConnectionGate {
  #o: GateOptions;
  #byKey = new Map<string, Connection>();
  #perPeer = new Map<string, { all: number; untrusted: number }>();
  #untrusted = 0;
  readonly penalties: PeerPenalties;
  /** Connections refused over the limits, and cut by the filter: summarized in the log. */
  #overLimits: Summary;
  #cut: Summary;

  constructor(options: GateOptions) {
    this.#o = options;
    this.penalties = new PeerPenalties({ now: options.now, log: options.log });
    this.#overLimits = new Summary(options, "refused connections over the limits");
    this.#cut = new Summary(options, "closed connections that broke the rules");
  }

  /**
   * A new TCP connection: false (and destroyed) over the limits; else it is
   * counted until it closes, and must make an authorized call in time.
   */
  admit(socket: Socket): boolean {
    socket.on("error", () => {});
    const peer = socket.remoteAddress ?? "?";
    const counts = this.#perPeer.get(peer) ?? { all: 0, untrusted: 0 };
    if (
      this.#byKey.size >= this.#o.maxConnections || counts.all >= this.#o.maxPerPeer ||
      this.#untrusted >= this.#o.maxUntrusted || counts.untrusted >= this.#o.maxUntrustedPerPeer
    ) {
      this.#overLimits.add(
        counts.untrusted >= this.#o.maxUntrustedPerPeer || counts.all >= this.#o.maxPerPeer
          ? `too many from ${peer}`
          : "too many in all",
      );
      socket.destroy();
      return false;
    }
    const key = keyOf(socket);
    const connection: Connection = {
      peer,
      socket,
      trusted: false,
      countedUntrusted: true,
      calls: 0,
    };
    this.#byKey.set(key, connection);
    counts.all++;
    counts.untrusted++;
    this.#untrusted++;
    this.#perPeer.set(peer, counts);
    connection.deadline = setTimeout(() => socket.destroy(), this.#o.authDeadlineMs);
    socket.once("close", () => {
      clearTimeout(connection.deadline);
      clearTimeout(connection.rotateTimer);
      this.#byKey.delete(key);
      const c = this.#perPeer.get(peer)!;
      c.all--;
      this.#countTrusted(connection, c);
      if (c.all === 0) this.#perPeer.delete(peer);
    });
    return true;
  }

  /**
   * What the HTTP/2 server should read from, for an admitted connection: its
   * bytes (after TLS, if the agent serves TLS) through a frame filter.
   */
  filter(stream: Socket): FrameFilter | undefined {
    const connection = this.#byKey.get(keyOf(stream));
    if (!connection) {
      stream.destroy();
      return undefined;
    }
    connection.filter = new FrameFilter(stream, {
      rotateAfter: this.#o.streamsPerConnection,
      maxRefused: MAX_REFUSED,
      onRotate: (last) => this.#rotate(connection, last),
      onGoaway: () => {},
      onCut: (why) => this.#cut.add(`${why}, from ${connection.peer}`),
    });
    return connection.filter;
  }

  /**
   * Puts the gate in front of an HTTP/2 server's streams: its existing 'stream'
   * listeners (grpc-js's) only see streams the gate lets through.
   */
  guard(server: http2.Http2Server): void {
    const listeners = server.listeners("stream") as ((...args: unknown[]) => void)[];
    server.removeAllListeners("stream");
    server.prependListener("session", (session: http2.ServerHttp2Session) => {
      session.on("error", () => {});
      const connection = this.#byKey.get(keyOf(session.socket));
      if (!connection) {
        // Not one of ours (cannot happen: every socket is admitted first).
        session.destroy();
        return;
      }
      connection.session = session;
    });
    server.on("stream", (...args: unknown[]) => {
      const [stream, headers] = args as [http2.ServerHttp2Stream, http2.IncomingHttpHeaders];
      if (this.#allow(stream, headers)) {
        for (const listener of listeners) listener.apply(server, args);
      }
    });
  }

  #allow(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    stream.on("error", () => {});
    const connection = this.#byKey.get(keyOf(stream.session?.socket ?? {}));
    if (!connection?.filter) {
      stream.close(NGHTTP2_ENHANCE_YOUR_CALM);
      return false;
    }
    connection.calls++;
    const authorization = headers["authorization"];
    const wellFormed = headers[":method"] === "POST" &&
      this.#o.paths.has(String(headers[":path"])) &&
      String(headers["content-type"] ?? "").startsWith("application/grpc");
    const ok = wellFormed &&
      this.#o.authorized(typeof authorization === "string" ? authorization : undefined);
    if (!ok) {
      // Nothing more from this peer is read; the answer goes out, then the connection ends.
      const filter = connection.filter;
      filter.condemn();
      const answer = () => {
        refuse(
          stream,
          wellFormed ? 16 : 12,
          wellFormed ? "missing or wrong token" : "unknown method",
        );
        setTimeout(() => connection.socket.destroy(), 200);
      };
      if (wellFormed) {
        // The answer to a wrong token comes later each time (per peer address).
        const wait = this.penalties.failed(connection.peer);
        if (wait > 0) {
          const timer = setTimeout(answer, wait);
          connection.socket.once("close", () => clearTimeout(timer));
        } else answer();
      } else answer();
      return false;
    }
    if (!connection.trusted) {
      connection.trusted = true;
      clearTimeout(connection.deadline);
      this.#countTrusted(connection, this.#perPeer.get(connection.peer));
      connection.filter.trust();
    }
    if (connection.rotateAt !== undefined && (stream.id ?? 0) >= connection.rotateAt) {
      this.#goaway(connection);
    }
    guardMessageSizes(stream, this.#o.maxMessageBytes);
    return true;
  }

  /**
   * The connection's last call went through the filter: once the server has taken
   * it (its 'stream' event; a second at most), a GOAWAY naming it goes out.
   */
  #rotate(connection: Connection, last: number): void {
    connection.rotateAt = last;
    connection.rotateTimer = setTimeout(() => this.#goaway(connection), 1000);
  }

  #goaway(connection: Connection): void {
    if (connection.rotateAt === undefined) return;
    clearTimeout(connection.rotateTimer);
    const last = connection.rotateAt;
    connection.rotateAt = undefined;
    try {
      connection.session?.goaway(NGHTTP2_NO_ERROR, last);
    } catch {
      // The session is ending anyway.
    }
  }

  #countTrusted(connection: Connection, counts: { untrusted: number } | undefined): void {
    if (!connection.countedUntrusted) return;
    connection.countedUntrusted = false;
    if (counts) counts.untrusted--;
    this.#untrusted--;
  }
}

/**
 * Per peer address: the answer to a refused token comes at once the first time,
 * then after 100 ms, doubling to at most 5 s; a minute without failures forgets
 * the peer. With at most `maxUntrustedPerPeer` connections waiting, one address
 * gets a few answers a second instead of thousands.
 */
export class PeerPenalties {
  #now: () => number;
  #log: (line: string) => void;
  #peers = new Map<
    string,
    { failures: number; last: number; until: number; logged: number; unlogged: number }
  >();

  constructor(options: { now?: () => number; log(line: string): void }) {
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
  }

  /** Counts a refused token; returns how long its answer should wait. */
  failed(peer: string): number {
    const now = this.#now();
    let p = this.#peers.get(peer);
    if (!p || now - p.last > FORGET_MS) {
      p = { failures: 0, last: now, until: now, logged: 0, unlogged: 0 };
      this.#peers.set(peer, p);
    }
    p.failures++;
    p.last = now;
    p.until = p.failures === 1 ? now : now + Math.min(100 * 2 ** (p.failures - 2), MAX_WAIT_MS);
    p.unlogged++;
    // One line per peer at most every 10 s, with the count since the last one.
    if (now - p.logged >= LOG_EVERY_MS || p.failures === 1) {
      this.#log(
        `refused a missing or wrong token from ${peer}` +
          (p.unlogged > 1 ? ` (${p.unlogged} times since the last report)` : "") +
          `; its answer waits ${p.until - now} ms`,
      );
      p.logged = now;
      p.unlogged = 0;
    }
    if (this.#peers.size > MAX_PEERS) this.#forgetOld(now);
    return p.until - now;
  }

  #forgetOld(now: number): void {
    for (const [peer, p] of this.#peers) {
      if (now - p.last > FORGET_MS || p.until <= now) this.#peers.delete(peer);
    }
  }
}

const FORGET_MS = 60_000;
const MAX_WAIT_MS = 5_000;
const LOG_EVERY_MS = 10_000;
/** Peers remembered at most (an attacker with many addresses cannot grow this without end). */
const MAX_PEERS = 10_000;

/** Events of one kind, logged at most every 10 s: the count, and the latest one's detail. */
class Summary {
  #o: { log(line: string): void; now?: () => number };
  #what: string;
  #count = 0;
  #logged = -Infinity;

  constructor(options: { log(line: string): void; now?: () => number }, what: string) {
    this.#o = options;
    this.#what = what;
  }

  add(detail: string): void {
    this.#count++;
    const now = (this.#o.now ?? Date.now)();
    if (now - this.#logged < LOG_EVERY_MS) return;
    this.#o.log(`${this.#what}: ${this.#count} since the last report (latest: ${detail})`);
    this.#logged = now;
    this.#count = 0;
  }
}

/** A trailers-only gRPC answer: the status, and the stream ends. */
function refuse(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  try {
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc+proto",
      "grpc-status": String(code),
      "grpc-message": message,
    }, { endStream: true });
  } catch {
    // The stream is already gone.
  }
}

/**
 * Reads the 5-byte prefix of each message as it arrives (beside grpc-js, which
 * reads the same bytes): a declared length over the limit resets the stream at
 * once, so its body is never read.
 */
function guardMessageSizes(stream: http2.ServerHttp2Stream, maxBytes: number): void {
  let header = 0; // Prefix bytes seen of the current message.
  let length = 0;
  let remaining = 0; // Body bytes left of the current message.
  stream.on("data", (chunk: Uint8Array) => {
    let i = 0;
    while (i < chunk.length) {
      if (remaining > 0) {
        const take = Math.min(remaining, chunk.length - i);
        remaining -= take;
        i += take;
        continue;
      }
      if (header > 0) length = length * 256 + chunk[i];
      header++;
      i++;
      if (header === 5) {
        header = 0;
        if (length > maxBytes) {
          stream.close(NGHTTP2_ENHANCE_YOUR_CALM);
          return;
        }
        remaining = length;
        length = 0;
      }
    }
  });
}

function keyOf(socket: { remoteAddress?: string; remotePort?: number }): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

/** The process's soft limit on open descriptors (Linux), or undefined. */
export function descriptorLimit(): number | undefined {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (!match || match[1] === "unlimited") return undefined;
    return Number(match[1]);
  } catch {
    return undefined;
  }
}

/**
 * The HTTP/2 frames a peer sends, read before the HTTP/2 server sees them.
 *
 * Deno 2.9's HTTP/2 server (nghttp2 inside Deno) aborts or crashes the whole
 * process when it receives a GOAWAY while a stream is open (one is enough) or
 * after some hundred streams, and when a connection that carried a few hundred
 * streams closes (denoland/deno#36788; SECURITY.md has the reproduction). No
 * handler can catch it: it happens inside the frame parser. So the parser never
 * gets those frames:
 *
 * - GOAWAY from the peer is never passed on: the peer is leaving, and the
 *   connection is ended from this side once its calls are over (`onGoaway`).
 * - New streams are counted here; past `maxStreams` the connection is cut at
 *   the socket, before the parser sees the stream.
 * - Until `trust()` (the first call carried the right token), only frames up to
 *   and including the first call's headers go through; the rest waits. After
 *   `condemn()` nothing more goes through: a burst of pipelined calls and a
 *   GOAWAY behind a refused call never reach the parser.
 * - PRIORITY frames (which make idle streams), PUSH_PROMISE (a client may not
 *   send it), frames over the size limit, header blocks over 64 KiB, a bad
 *   preface, and too many frames before the first call end the connection or are
 *   dropped, as noted below.
 *
 * Frames are only read (9-byte headers); their bytes are passed on unchanged,
 * so HPACK state and flow control stay the parser's business.
 */
import { Duplex } from "node:stream";
import type { Socket } from "node:net";

export interface FrameFilterOptions {
  /** New streams one connection may open; one more cuts it. */
  maxStreams: number;
  /** The peer sent GOAWAY (not passed on). */
  onGoaway(): void;
  /** The connection was cut here, and why (for counts and tests). */
  onCut(reason: string): void;
}

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** SETTINGS_MAX_FRAME_SIZE as the server advertises it (the HTTP/2 default). */
const MAX_FRAME = 16_384;
const MAX_HEADER_BLOCK = 64 * 1024;
/** Frames an untrusted peer may send before its first call (a real client sends 2 or 3). */
const MAX_FRAMES_BEFORE_CALL = 32;
/** Bytes held for an untrusted connection while its first call is checked. */
const MAX_HELD = 256 * 1024;

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const PUSH_PROMISE = 0x5;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_HEADERS = 0x4;

type Mode = "untrusted" | "holding" | "trusted" | "condemned";

export class FrameFilter extends Duplex {
  readonly socket: Socket;
  #o: FrameFilterOptions;
  #mode: Mode = "untrusted";
  #pending: Uint8Array = new Uint8Array(0);
  #prefaceSeen = false;
  #framesBeforeCall = 0;
  #highestStream = 0;
  #streams = 0;
  /** Stream id of a header block still waiting for its CONTINUATION frames. */
  #openBlock = 0;
  #blockBytes = 0;
  #held: Uint8Array[] = [];
  #heldBytes = 0;

  constructor(socket: Socket, options: FrameFilterOptions) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    this.#o = options;
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on("end", () => this.push(null));
    socket.on("close", () => this.destroy());
    socket.on("error", () => {});
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  get remoteFamily(): string | undefined {
    return this.socket.remoteFamily;
  }

  /** The first call carried the right token: what waited goes through, and all that follows. */
  trust(): void {
    if (this.#mode === "condemned" || this.#mode === "trusted") return;
    this.#mode = "trusted";
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const frame of held) if (!this.#forward(frame)) return;
  }

  /** Nothing more from this peer reaches the server (its answers still go out). */
  condemn(): void {
    this.#mode = "condemned";
    this.#held = [];
    this.#heldBytes = 0;
  }

  get streams(): number {
    return this.#streams;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(
    chunk: Uint8Array,
    _encoding: string,
    callback: (error?: Error | null) => void,
  ): void {
    if (this.socket.destroyed) return callback();
    this.socket.write(chunk, (error) => callback(error ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }

  #cut(reason: string): void {
    this.#mode = "condemned";
    this.#o.onCut(reason);
    this.socket.destroy();
  }

  #receive(chunk: Uint8Array): void {
    if (this.#mode === "condemned") return;
    let data = this.#pending.length ? concat(this.#pending, chunk) : chunk;
    if (!this.#prefaceSeen) {
      const n = Math.min(data.length, PREFACE.length);
      for (let i = 0; i < n; i++) {
        if (data[i] !== PREFACE[i]) return this.#cut("bad preface");
      }
      if (data.length < PREFACE.length) {
        this.#pending = data;
        return;
      }
      this.#prefaceSeen = true;
      if (!this.#pass(data.subarray(0, PREFACE.length))) return;
      data = data.subarray(PREFACE.length);
    }
    let offset = 0;
    while (data.length - offset >= 9) {
      const length = (data[offset] << 16) | (data[offset + 1] << 8) | data[offset + 2];
      if (length > MAX_FRAME) return this.#cut("frame over the size limit");
      if (data.length - offset < 9 + length) break;
      const frame = data.subarray(offset, offset + 9 + length);
      offset += 9 + length;
      if (!this.#frame(frame)) return;
    }
    // A partial frame waits for the rest (copied: the socket may reuse its buffer).
    this.#pending = offset === data.length ? new Uint8Array(0) : data.slice(offset);
  }

  /** One whole frame from the peer; false when the connection was cut. */
  #frame(frame: Uint8Array): boolean {
    if (this.#mode === "condemned") return false;
    if (this.#mode === "holding") {
      if (frame[3] === GOAWAY) return this.#goaway();
      this.#held.push(frame);
      this.#heldBytes += frame.length;
      if (this.#heldBytes > MAX_HELD) {
        this.#cut("too much sent before the first call was answered");
        return false;
      }
      return true;
    }
    return this.#forward(frame);
  }

  /** Applies the rules to a frame and passes it on; false when the connection was cut. */
  #forward(frame: Uint8Array): boolean {
    const type = frame[3];
    const flags = frame[4];
    const stream = ((frame[5] & 0x7f) << 24 | frame[6] << 16 | frame[7] << 8 | frame[8]) >>> 0;
    if (this.#openBlock !== 0 && type !== CONTINUATION) {
      this.#cut("header block interrupted");
      return false;
    }
    switch (type) {
      case GOAWAY:
        return this.#goaway();
      case PRIORITY:
        return true; // Dropped: gRPC does not use priorities, and they make idle streams.
      case PUSH_PROMISE:
        this.#cut("PUSH_PROMISE from a client");
        return false;
      case HEADERS: {
        if (stream > this.#highestStream) {
          this.#highestStream = stream;
          if (++this.#streams > this.#o.maxStreams) {
            this.#cut("too many streams on one connection");
            return false;
          }
        }
        this.#blockBytes = frame.length - 9;
        this.#openBlock = flags & END_HEADERS ? 0 : stream;
        if (!this.#pass(frame)) return false;
        if (this.#mode === "untrusted" && this.#openBlock === 0) this.#mode = "holding";
        return true;
      }
      case CONTINUATION: {
        if (this.#openBlock === 0 || stream !== this.#openBlock) {
          this.#cut("CONTINUATION out of place");
          return false;
        }
        this.#blockBytes += frame.length - 9;
        if (this.#blockBytes > MAX_HEADER_BLOCK) {
          this.#cut("header block over the size limit");
          return false;
        }
        if (flags & END_HEADERS) this.#openBlock = 0;
        if (!this.#pass(frame)) return false;
        if (this.#mode === "untrusted" && this.#openBlock === 0) this.#mode = "holding";
        return true;
      }
      case DATA:
        if (this.#mode === "untrusted") {
          this.#cut("data before any call");
          return false;
        }
        return this.#pass(frame);
      default:
        if (type > CONTINUATION) return true; // Unknown types are ignored (RFC 9113 §4.1).
        if (this.#mode === "untrusted" && ++this.#framesBeforeCall > MAX_FRAMES_BEFORE_CALL) {
          this.#cut("too many frames before the first call");
          return false;
        }
        return this.#pass(frame);
    }
  }

  #goaway(): boolean {
    if (this.#mode !== "trusted") {
      this.#cut("GOAWAY from an untrusted peer");
      return false;
    }
    this.#o.onGoaway();
    return true;
  }

  #pass(bytes: Uint8Array): boolean {
    if (!this.push(bytes)) this.socket.pause();
    return this.#mode !== "condemned";
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

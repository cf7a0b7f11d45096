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
 * - Until `trust()` (the first call carried the right token), only frames up to
 *   and including the first call's headers go through; the rest waits. After
 *   `condemn()` nothing more goes through: a burst of pipelined calls and a
 *   GOAWAY behind a refused call never reach the parser.
 * - A connection carries `rotateAfter` calls. After that call's headers, what
 *   the peer sends waits until the server's GOAWAY (asked for by `onRotate`) has
 *   gone out; calls the peer opens after it are refused here with RST_STREAM
 *   (REFUSED_STREAM), which gRPC clients retry on a new connection. (The parser
 *   ignores them silently once its GOAWAY is out, and Deno's HTTP/2 client does
 *   not fail such calls by itself: without the RST they would hang.) Refused
 *   calls past `maxRefused` cut the connection.
 * - PRIORITY frames (which make idle streams), PUSH_PROMISE (a client may not
 *   send it), frames over the size limit, header blocks over 64 KiB, a bad
 *   preface, and too many frames before the first call end the connection or are
 *   dropped, as noted below.
 *
 * Frames are only read (9-byte headers; a GOAWAY's last stream id); their bytes
 * are passed on unchanged, so HPACK state and flow control stay the parser's.
 */
import { Duplex } from "node:stream";
import type { Socket } from "node:net";

export interface FrameFilterOptions {
  /** Calls a connection carries; the server is then asked to send GOAWAY (`onRotate`). */
  rotateAfter: number;
  /** Calls refused after the GOAWAY before the connection is cut (a peer ignoring it). */
  maxRefused: number;
  /** The `rotateAfter`-th call's headers went through: send GOAWAY naming `lastStream`. */
  onRotate(lastStream: number): void;
  /** The peer sent GOAWAY (not passed on). */
  onGoaway(): void;
  /** The connection was cut here, and why (for counts and tests). */
  onCut(reason: string): void;
}

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const EMPTY = new Uint8Array(0);
/** SETTINGS_MAX_FRAME_SIZE as the server advertises it (the HTTP/2 default). */
const MAX_FRAME = 16_384;
const MAX_HEADER_BLOCK = 64 * 1024;
/** Frames an untrusted peer may send before its first call (a real client sends 2 or 3). */
const MAX_FRAMES_BEFORE_CALL = 32;
/** Bytes held while a first call is checked, or while the server's GOAWAY goes out. */
const MAX_HELD = 256 * 1024;

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const PUSH_PROMISE = 0x5;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_HEADERS = 0x4;
const REFUSED_STREAM = 0x7;

/**
 * untrusted: until its first call's headers; waiting-trust: then, until trust();
 * open: trusted; waiting-goaway: after the last call's headers, until the
 * server's GOAWAY is out; going-away: after it; condemned: nothing more is read.
 */
type Mode = "untrusted" | "waiting-trust" | "open" | "waiting-goaway" | "going-away" | "condemned";

export class FrameFilter extends Duplex {
  readonly socket: Socket;
  #o: FrameFilterOptions;
  #mode: Mode = "untrusted";
  #pending: Uint8Array = EMPTY;
  /** Bytes passed on but not yet pushed: adjacent frames of one read, pushed together. */
  #run?: Uint8Array;
  #prefaceSeen = false;
  #framesBeforeCall = 0;
  #highestStream = 0;
  #streams = 0;
  #refused = 0;
  /** The last stream the server's GOAWAY let in. */
  #lastStream = 0;
  /** Stream id of a header block still waiting for its CONTINUATION frames. */
  #openBlock = 0;
  #blockBytes = 0;
  /** Whether that header block opens a stream the server will not take. */
  #blockRefused = false;
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  /** Outbound framing: bytes left of the frame being written, and a header read so far. */
  #outLeft = 0;
  #outHeader = new Uint8Array(9);
  #outHeaderLength = 0;
  /** Frames of ours to write at the next frame boundary of the server's output. */
  #inject: Uint8Array[] = [];

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

  /** Calls the peer opened (including refused ones). */
  get streams(): number {
    return this.#streams;
  }

  /** The first call carried the right token: what waited goes through, and all that follows. */
  trust(): void {
    if (this.#mode !== "untrusted" && this.#mode !== "waiting-trust") return;
    this.#mode = "open";
    if (this.#streams >= this.#o.rotateAfter) {
      this.#mode = "waiting-goaway";
      this.#o.onRotate(this.#highestStream);
    }
    this.#release();
  }

  /** Nothing more from this peer reaches the server (its answers still go out). */
  condemn(): void {
    this.#mode = "condemned";
    this.#held = [];
    this.#heldBytes = 0;
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
    this.socket.write(this.#outbound(chunk), (error) => callback(error ?? null));
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
    let data = chunk;
    if (!this.#prefaceSeen) {
      data = this.#pending.length ? concat(this.#pending, chunk) : chunk;
      this.#pending = EMPTY;
      const n = Math.min(data.length, PREFACE.length);
      for (let i = 0; i < n; i++) {
        if (data[i] !== PREFACE[i]) return this.#cut("bad preface");
      }
      if (data.length < PREFACE.length) {
        this.#pending = data.slice();
        return;
      }
      this.#prefaceSeen = true;
      if (!this.#pass(data.subarray(0, PREFACE.length))) return;
      data = data.subarray(PREFACE.length);
    } else if (this.#pending.length) {
      // Complete the frame cut by the last read, copying only that frame's bytes.
      let pending = this.#pending;
      let taken = 0;
      if (pending.length < 9) {
        taken = Math.min(9 - pending.length, data.length);
        pending = concat(pending, data.subarray(0, taken));
        if (pending.length < 9) {
          this.#pending = pending;
          return;
        }
      }
      const length = (pending[0] << 16) | (pending[1] << 8) | pending[2];
      if (length > MAX_FRAME) return this.#cut("frame over the size limit");
      const more = Math.min(9 + length - pending.length, data.length - taken);
      pending = concat(pending, data.subarray(taken, taken + more));
      taken += more;
      if (pending.length < 9 + length) {
        this.#pending = pending;
        return;
      }
      this.#pending = EMPTY;
      if (!this.#frame(pending)) return;
      data = data.subarray(taken);
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
    this.#flush();
    // A partial frame waits for the rest (copied: the socket may reuse its buffer).
    if (offset < data.length) this.#pending = data.slice(offset);
  }

  /** One whole frame from the peer; false when the connection was cut. */
  #frame(frame: Uint8Array): boolean {
    if (this.#mode === "condemned") return false;
    if (this.#mode === "waiting-trust" || this.#mode === "waiting-goaway") {
      if (frame[3] === GOAWAY) return this.#goaway();
      this.#held.push(frame.slice());
      this.#heldBytes += frame.length;
      if (this.#heldBytes > MAX_HELD) {
        this.#cut("too much sent while a call was being checked");
        return false;
      }
      return true;
    }
    return this.#forward(frame);
  }

  /** What waited goes through the rules, in order, until something makes it wait again. */
  #release(): void {
    while (this.#held.length && (this.#mode === "open" || this.#mode === "going-away")) {
      const frame = this.#held.shift()!;
      this.#heldBytes -= frame.length;
      if (!this.#forward(frame)) return;
    }
    this.#flush();
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
        this.#blockRefused = false;
        if (stream > this.#highestStream) {
          this.#highestStream = stream;
          this.#streams++;
          if (this.#mode === "going-away" && stream > this.#lastStream) {
            this.#blockRefused = true;
            if (++this.#refused > this.#o.maxRefused) {
              this.#cut("calls opened after GOAWAY, again and again");
              return false;
            }
          }
        }
        this.#blockBytes = frame.length - 9;
        this.#openBlock = flags & END_HEADERS ? 0 : stream;
        // Passed on even when refused: the parser must read every header block (HPACK).
        if (!this.#pass(frame)) return false;
        if (this.#openBlock === 0) this.#headerBlockDone(stream);
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
        if (this.#openBlock === 0) this.#headerBlockDone(stream);
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

  /** A whole header block went through: the next frames may have to wait. */
  #headerBlockDone(stream: number): void {
    if (this.#blockRefused) {
      this.#queueOutbound(rstStream(stream, REFUSED_STREAM));
      return;
    }
    if (this.#mode === "untrusted") {
      this.#mode = "waiting-trust";
    } else if (this.#mode === "open" && this.#streams === this.#o.rotateAfter) {
      this.#mode = "waiting-goaway";
      this.#o.onRotate(stream);
    }
  }

  #goaway(): boolean {
    if (this.#mode === "untrusted" || this.#mode === "waiting-trust") {
      this.#cut("GOAWAY from an untrusted peer");
      return false;
    }
    this.#o.onGoaway();
    return true;
  }

  /**
   * Passes bytes on to the server. Frames that lie next to each other in one read
   * go as one chunk (`#flush`, at the end of the read or before anything else).
   */
  #pass(bytes: Uint8Array): boolean {
    const run = this.#run;
    if (
      run && run.buffer === bytes.buffer &&
      run.byteOffset + run.length === bytes.byteOffset
    ) {
      this.#run = new Uint8Array(bytes.buffer, run.byteOffset, run.length + bytes.length);
    } else {
      this.#flush();
      this.#run = bytes;
    }
    return this.#mode !== "condemned";
  }

  #flush(): void {
    const run = this.#run;
    if (!run) return;
    this.#run = undefined;
    if (this.#mode === "condemned") return;
    if (!this.push(run)) this.socket.pause();
  }

  /**
   * Follows the server's frames as they are written: notes its GOAWAY (then what
   * waited is let through), and puts frames of ours in at frame boundaries.
   */
  #outbound(chunk: Uint8Array): Uint8Array {
    const parts: Uint8Array[] = [];
    let start = 0;
    let i = 0;
    let sawGoaway = false;
    const atBoundary = () => this.#outLeft === 0 && this.#outHeaderLength === 0;
    while (i < chunk.length) {
      if (atBoundary() && this.#inject.length) {
        parts.push(chunk.subarray(start, i), ...this.#inject);
        this.#inject = [];
        start = i;
      }
      if (this.#outLeft > 0) {
        const take = Math.min(this.#outLeft, chunk.length - i);
        if (this.#outHeader[3] === GOAWAY) this.#collectGoaway(chunk.subarray(i, i + take));
        this.#outLeft -= take;
        i += take;
        if (this.#outLeft === 0 && this.#outHeader[3] === GOAWAY) sawGoaway = true;
        continue;
      }
      this.#outHeader[this.#outHeaderLength++] = chunk[i++];
      if (this.#outHeaderLength === 9) {
        this.#outHeaderLength = 0;
        const h = this.#outHeader;
        this.#outLeft = (h[0] << 16) | (h[1] << 8) | h[2];
        this.#goawayBytes = [];
        if (this.#outLeft === 0 && h[3] === GOAWAY) sawGoaway = true;
      }
    }
    parts.push(chunk.subarray(start));
    if (atBoundary() && this.#inject.length) {
      parts.push(...this.#inject);
      this.#inject = [];
    }
    if (sawGoaway) queueMicrotask(() => this.#serverWentAway());
    return parts.length === 1 ? parts[0] : concat(...parts);
  }

  /** Bytes of the GOAWAY being written, up to its last stream id. */
  #goawayBytes: number[] = [];

  #collectGoaway(bytes: Uint8Array): void {
    for (let j = 0; j < bytes.length && this.#goawayBytes.length < 4; j++) {
      this.#goawayBytes.push(bytes[j]);
    }
    if (this.#goawayBytes.length === 4) {
      const [a, b, c, d] = this.#goawayBytes;
      this.#lastStream = (((a & 0x7f) << 24) | (b << 16) | (c << 8) | d) >>> 0;
    }
  }

  /** The server's GOAWAY is out: it takes no new call now; later ones are refused here. */
  #serverWentAway(): void {
    if (this.#mode === "condemned" || this.#mode === "untrusted") return;
    if (this.#mode === "waiting-trust") return; // Its answer went out; trust() never comes.
    this.#mode = "going-away";
    this.#release();
  }

  /** A frame of ours for the peer, written between the server's frames. */
  #queueOutbound(frame: Uint8Array): void {
    if (this.#outLeft === 0 && this.#outHeaderLength === 0 && !this.socket.destroyed) {
      this.socket.write(frame);
    } else {
      this.#inject.push(frame);
    }
  }
}

function rstStream(stream: number, code: number): Uint8Array {
  const frame = new Uint8Array(13);
  frame[2] = 4;
  frame[3] = RST_STREAM;
  const view = new DataView(frame.buffer);
  view.setUint32(5, stream);
  view.setUint32(9, code);
  return frame;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

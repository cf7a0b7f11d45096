import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { FrameFilter } from "./frame_filter.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, flags: number, stream: number, length = 0): Uint8Array {
  const bytes = new Uint8Array(9 + length);
  bytes[0] = (length >> 16) & 0xff;
  bytes[1] = (length >> 8) & 0xff;
  bytes[2] = length & 0xff;
  bytes[3] = type;
  bytes[4] = flags;
  new DataView(bytes.buffer).setUint32(5, stream);
  return bytes;
}

const SETTINGS = frame(4, 0, 0);
const headers = (stream: number) => frame(1, 0x4 | 0x1, stream, 3);
const data = (stream: number) => frame(0, 0x1, stream, 5);
const GOAWAY = frame(7, 0, 0, 8);

/** A filter over a fake socket; what it passes on, what it wrote back, and what it reported. */
function harness(rotateAfter = 64, maxRefused = 8) {
  const written: Uint8Array[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Uint8Array, _encoding, callback) {
      written.push(chunk);
      callback();
    },
  });
  socket.on("error", () => {});
  const passed: number[] = []; // Frame types passed on (-1 for the preface).
  const events = { goaways: 0, cuts: [] as string[], rotations: [] as number[] };
  const filter = new FrameFilter(socket as unknown as Socket, {
    rotateAfter,
    maxRefused,
    onRotate: (last) => events.rotations.push(last),
    onGoaway: () => events.goaways++,
    onCut: (why) => events.cuts.push(why),
  });
  filter.on("data", (chunk: Uint8Array) => {
    if (chunk.length === PREFACE.length && chunk[0] === 0x50) passed.push(-1);
    else passed.push(chunk[3]);
  });
  filter.on("error", () => {});
  const send = async (...frames: Uint8Array[]) => {
    for (const f of frames) socket.push(f);
    await new Promise((resolve) => setTimeout(resolve, 0));
  };
  /** The server writes through the filter (a whole frame at a time, or split). */
  const serverWrites = async (...chunks: Uint8Array[]) => {
    for (const c of chunks) filter.write(c);
    await new Promise((resolve) => setTimeout(resolve, 0));
  };
  return { socket, filter, passed, written, events, send, serverWrites };
}

function goawayFrame(last: number): Uint8Array {
  const f = frame(7, 0, 0, 8);
  new DataView(f.buffer).setUint32(9, last);
  return f;
}

Deno.test("FrameFilter holds what follows an untrusted peer's first call until it is trusted", async () => {
  const h = harness();
  await h.send(PREFACE, SETTINGS, headers(1), data(1), headers(3), data(3));
  assert.deepEqual(h.passed, [-1, 4, 1]);
  h.filter.trust();
  await h.send(headers(5));
  assert.deepEqual(h.passed, [-1, 4, 1, 0, 1, 0, 1]);
  assert.equal(h.written.length, 0);
  h.socket.destroy();
});

Deno.test("FrameFilter passes nothing more from a condemned peer, not even a GOAWAY", async () => {
  const h = harness();
  await h.send(PREFACE, SETTINGS, headers(1));
  h.filter.condemn();
  await h.send(data(1), headers(3), GOAWAY);
  assert.deepEqual(h.passed, [-1, 4, 1]);
  assert.equal(h.events.goaways, 0);
  h.socket.destroy();
});

Deno.test("FrameFilter cuts an untrusted peer that sends GOAWAY, even within a burst", async () => {
  const h = harness();
  await h.send(PREFACE, SETTINGS, headers(1), data(1), GOAWAY, headers(3));
  assert.deepEqual(h.passed, [-1, 4, 1]);
  assert.deepEqual(h.events.cuts, ["GOAWAY from an untrusted peer"]);
  assert.equal(h.socket.destroyed, true);
});

Deno.test("FrameFilter never passes a trusted peer's GOAWAY on, and reports it", async () => {
  const h = harness();
  await h.send(PREFACE, SETTINGS, headers(1));
  h.filter.trust();
  await h.send(data(1), GOAWAY, headers(3));
  assert.deepEqual(h.passed, [-1, 4, 1, 0, 1]);
  assert.equal(h.events.goaways, 1);
  assert.deepEqual(h.events.cuts, []);
  h.socket.destroy();
});

Deno.test("FrameFilter: after its last call a connection waits for the server's GOAWAY, then later calls are refused to the peer", async () => {
  const h = harness(3);
  await h.send(PREFACE, headers(1));
  h.filter.trust();
  await h.send(headers(3), headers(5), data(5), headers(7), data(7));
  // The third call is the last: what follows waits, and the server is asked for a GOAWAY.
  assert.deepEqual(h.passed, [-1, 1, 1, 1]);
  assert.deepEqual(h.events.rotations, [5]);
  // The server's output, split mid-frame, with its GOAWAY naming stream 5.
  const settings = frame(4, 0, 0, 6);
  await h.serverWrites(settings.subarray(0, 4), settings.subarray(4), goawayFrame(5));
  // Stream 7 is passed on (the parser must read its headers) and refused to the peer,
  // after the server's GOAWAY, at a frame boundary.
  assert.deepEqual(h.passed, [-1, 1, 1, 1, 0, 1, 0]);
  const out = concatAll(h.written);
  const rst = out.subarray(out.length - 13);
  assert.equal(rst[3], 3); // RST_STREAM
  assert.equal(new DataView(rst.buffer, rst.byteOffset).getUint32(5), 7);
  assert.equal(new DataView(rst.buffer, rst.byteOffset).getUint32(9), 7); // REFUSED_STREAM
  assert.equal(out.length, settings.length + 17 + 13);
  h.socket.destroy();
});

Deno.test("FrameFilter cuts a peer that keeps opening calls after the GOAWAY", async () => {
  const h = harness(1, 2);
  await h.send(PREFACE, headers(1));
  h.filter.trust();
  assert.deepEqual(h.events.rotations, [1]);
  await h.serverWrites(goawayFrame(1));
  await h.send(headers(3), headers(5), headers(7));
  assert.deepEqual(h.events.cuts, ["calls opened after GOAWAY, again and again"]);
  assert.equal(h.filter.streams, 4);
});

Deno.test("FrameFilter cuts a bad preface, an oversized frame and a PUSH_PROMISE", async () => {
  const bad = harness();
  await bad.send(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  assert.deepEqual(bad.events.cuts, ["bad preface"]);
  assert.deepEqual(bad.passed, []);

  const big = harness();
  const header = frame(0, 0, 1, 0);
  header[0] = 0x01; // 65,536 bytes declared.
  await big.send(PREFACE, header);
  assert.deepEqual(big.events.cuts, ["frame over the size limit"]);

  const push = harness();
  await push.send(PREFACE, headers(1));
  push.filter.trust();
  await push.send(frame(5, 0x4, 1, 4));
  assert.deepEqual(push.events.cuts, ["PUSH_PROMISE from a client"]);
});

Deno.test("FrameFilter drops PRIORITY frames and cuts floods before the first call", async () => {
  const h = harness();
  await h.send(PREFACE, frame(2, 0, 9, 5));
  assert.deepEqual(h.passed, [-1]);
  const pings = Array.from({ length: 40 }, () => frame(6, 0, 0, 8));
  await h.send(...pings);
  assert.deepEqual(h.events.cuts, ["too many frames before the first call"]);
  assert.equal(h.passed.length, 1 + 32);
});

Deno.test("FrameFilter passes frames split across reads whole, and the preface in pieces", async () => {
  const h = harness();
  const bytes = new Uint8Array([...PREFACE, ...SETTINGS, ...headers(1)]);
  for (const piece of [bytes.subarray(0, 10), bytes.subarray(10, 30), bytes.subarray(30)]) {
    await h.send(piece);
  }
  assert.deepEqual(h.passed, [-1, 4, 1]);
  h.socket.destroy();
});

function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

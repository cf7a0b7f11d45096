/**
 * Optional gzip for the tar streams on slow links. Off by default: on loopback or a
 * fast network it costs more CPU time than it saves in transfer time.
 */
import { Buffer } from "node:buffer";
import { createGunzip, createGzip } from "node:zlib";
import { SyncError } from "./paths.ts";

export type Compression = "" | "gzip";

/** Compresses a stream (level 1: most of the gain at a fraction of the cost). */
export async function* gzip(source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  yield* through(createGzip({ level: 1 }), source, Infinity);
}

/**
 * Decompresses a stream, refusing more than `maxBytes` of output. Input is fed in
 * small slices, so a small message that expands a thousandfold stays small in memory.
 */
export async function* gunzip(
  source: AsyncIterable<Uint8Array>,
  maxBytes: number,
): AsyncIterable<Uint8Array> {
  yield* through(createGunzip(), source, maxBytes);
}

const SLICE = 8 * 1024;

/**
 * Pull-based: each input slice is written and its output taken before the next
 * is read, so memory stays bounded and stopping early closes `source`.
 */
async function* through(
  zlib: ReturnType<typeof createGzip>,
  source: AsyncIterable<Uint8Array>,
  maxBytes: number,
): AsyncIterable<Uint8Array> {
  const ready: Buffer[] = [];
  let failure: Error | undefined;
  let ended = false;
  zlib.on("data", (chunk: Buffer) => ready.push(chunk));
  zlib.on("error", (error: Error) => failure ??= error);
  const finished = new Promise<void>((resolve) => {
    zlib.on("end", () => (ended = true, resolve()));
    zlib.on("close", resolve);
  });
  let out = 0;
  function* take(): Generator<Uint8Array> {
    if (failure) {
      throw new SyncError(`refused a damaged compressed stream (${failure.message})`);
    }
    for (const chunk of ready.splice(0)) {
      out += chunk.length;
      if (out > maxBytes) {
        throw new SyncError(`refused a compressed stream that expands beyond ${maxBytes} bytes`);
      }
      yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
  }
  try {
    for await (const chunk of source) {
      for (let at = 0; at < chunk.length; at += SLICE) {
        const piece = chunk.subarray(at, Math.min(at + SLICE, chunk.length));
        await new Promise<void>((resolve) => {
          zlib.write(
            Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength),
            () => resolve(),
          );
        });
        yield* take();
      }
    }
    zlib.end();
    await finished;
    yield* take();
    if (!ended) throw new SyncError("refused a compressed stream that was cut short");
  } finally {
    zlib.destroy();
  }
}

/**
 * The most tar bytes an archive within `limits` can take: content, padding, and
 * per entry a header with an extended header (long names) of a few blocks.
 */
export function tarBound(contentBytes: number, entries: number): number {
  return contentBytes + entries * (512 + 4096 + 1024) + 1024;
}

/**
 * Packing workspace entries into a tar stream. node-tar's Header and Pax encode
 * each header; reading and batching is done here, with synchronous reads into
 * 1 MiB chunks: node-tar's own `create` costs ~0.4 ms a file, which is most of
 * a sync of many small files (measured; see BENCHMARKS.md).
 */
import { Buffer } from "node:buffer";
import { Header, Pax } from "tar";
import { readSync } from "node:fs";
import { closeFd, openForRead } from "./nofollow.ts";
import { SyncError } from "./paths.ts";
import type { Entry } from "./walk.ts";

/** Bytes per chunk handed on (and per gRPC message). */
export const CHUNK = 256 * 1024;

const BLOCK = 512;

/** The tar stream of `entries` (relative to `root`, in the order given). No bytes for none. */
export async function* packEntries(
  root: string,
  entries: Pick<Entry, "path" | "type" | "mode" | "size" | "target" | "mtimeMs">[],
): AsyncIterable<Uint8Array> {
  if (entries.length === 0) return;
  let chunk = new Uint8Array(CHUNK);
  let used = 0;
  const room = () => CHUNK - used;
  async function* flush(): AsyncIterable<Uint8Array> {
    if (used === 0) return;
    yield chunk.subarray(0, used);
    chunk = new Uint8Array(CHUNK);
    used = 0;
  }
  async function* put(bytes: Uint8Array): AsyncIterable<Uint8Array> {
    let offset = 0;
    while (offset < bytes.length) {
      if (room() === 0) yield* flush();
      const n = Math.min(room(), bytes.length - offset);
      chunk.set(bytes.subarray(offset, offset + n), used);
      used += n;
      offset += n;
    }
  }

  for (const entry of entries) {
    const fields = {
      path: entry.type === "dir" ? `${entry.path}/` : entry.path,
      mode: entry.mode,
      size: entry.type === "file" ? entry.size : 0,
      mtime: new Date(entry.mtimeMs),
      type: entry.type === "file" ? "File" : entry.type === "dir" ? "Directory" : "SymbolicLink",
      linkpath: entry.target,
    } as const;
    const header = Buffer.alloc(BLOCK);
    const needPax = new Header(fields).encode(header, 0);
    if (needPax) yield* put(new Uint8Array(new Pax(fields).encode()));
    yield* put(new Uint8Array(header));
    if (entry.type !== "file") continue;

    // Never through a symlink swapped in since the walk, never waiting on a FIFO.
    const fd = openForRead(`${root}/${entry.path}`, entry.path);
    try {
      let remaining = entry.size;
      while (remaining > 0) {
        if (room() === 0) yield* flush();
        const want = Math.min(room(), remaining);
        const n = readSync(fd, chunk, used, want, null);
        if (n === 0) {
          throw new SyncError(`${entry.path} changed while it was being sent (it got shorter)`);
        }
        used += n;
        remaining -= n;
      }
    } finally {
      closeFd(fd);
    }
    const padding = (BLOCK - (entry.size % BLOCK)) % BLOCK;
    if (padding) yield* put(new Uint8Array(padding));
  }
  yield* put(new Uint8Array(2 * BLOCK));
  yield* flush();
}

/** Re-cuts a stream into chunks of at most `size` bytes, for gRPC messages. */
export async function* rechunk(
  source: AsyncIterable<Uint8Array>,
  size: number,
): AsyncIterable<Uint8Array> {
  for await (const chunk of source) {
    for (let offset = 0; offset < chunk.length; offset += size) {
      yield chunk.subarray(offset, Math.min(offset + size, chunk.length));
    }
  }
}

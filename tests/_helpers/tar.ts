/** Hand-made tar archives, for feeding hostile input to the unpacker. */
import { Buffer } from "node:buffer";
import { Header } from "tar";

export interface RawEntry {
  path: string;
  type?: "File" | "Directory" | "SymbolicLink" | "Link" | "FIFO" | "CharacterDevice";
  data?: string | Uint8Array;
  linkpath?: string;
  mode?: number;
  /** Size to claim in the header, when it should differ from the data. */
  size?: number;
}

/** Encodes entries as a tar stream, with no checks at all on what they say. */
export function rawTar(entries: RawEntry[], options: { end?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const data = typeof entry.data === "string"
      ? new TextEncoder().encode(entry.data)
      : entry.data ?? new Uint8Array();
    const header = new Header({
      path: entry.path,
      type: entry.type ?? "File",
      mode: entry.mode ?? 0o644,
      size: entry.size ?? data.length,
      linkpath: entry.linkpath,
      mtime: new Date(0),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    parts.push(new Uint8Array(block));
    if (data.length > 0) {
      const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
      padded.set(data);
      parts.push(padded);
    }
  }
  if (options.end !== false) parts.push(new Uint8Array(1024));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export async function* streamOf(...chunks: Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

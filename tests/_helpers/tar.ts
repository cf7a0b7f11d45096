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
  /** Put the path in a PAX extended header (long names, NUL bytes). */
  pax?: boolean;
}

const encoder = new TextEncoder();

function block(fields: ConstructorParameters<typeof Header>[0]): Uint8Array {
  const buffer = Buffer.alloc(512);
  new Header(fields).encode(buffer, 0);
  return new Uint8Array(buffer);
}

function padded(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.length / 512) * 512);
  out.set(data);
  return out;
}

/** A PAX 'x' header carrying `path` exactly, bytes and all. */
function paxHeader(path: string): Uint8Array[] {
  const record = (length: number) => encoder.encode(`${length} path=${path}\n`);
  let length = record(0).length;
  while (record(length).length !== length) length = record(length).length;
  const body = record(length);
  return [
    block({
      path: "PaxHeader",
      type: "ExtendedHeader",
      size: body.length,
      mode: 0o644,
      mtime: new Date(0),
    }),
    padded(body),
  ];
}

/** Encodes entries as a tar stream, with no checks at all on what they say. */
export function rawTar(entries: RawEntry[], options: { end?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const data = typeof entry.data === "string"
      ? encoder.encode(entry.data)
      : entry.data ?? new Uint8Array();
    if (entry.pax) parts.push(...paxHeader(entry.path));
    parts.push(block({
      path: entry.pax ? "pax-placeholder" : entry.path,
      type: entry.type ?? "File",
      mode: entry.mode ?? 0o644,
      size: entry.size ?? data.length,
      linkpath: entry.linkpath,
      mtime: new Date(0),
    }));
    if (data.length > 0) parts.push(padded(data));
  }
  if (options.end !== false) parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The bytes a hostile case sends: its archive, cut short, or garbage instead. */
export function hostileBytes(
  c: { entries: RawEntry[]; cutAt?: number; garbage?: Uint8Array },
): Uint8Array {
  if (c.garbage) return c.garbage;
  const archive = rawTar(c.entries);
  return c.cutAt === undefined ? archive : archive.subarray(0, c.cutAt);
}

export async function* streamOf(...chunks: Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

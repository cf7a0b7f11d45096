/**
 * The file work of Lua's `fs` and `net.download`: nothing here opens what is
 * not a regular file in a way that could block (a FIFO opened for reading waits
 * for a writer, forever, and no worker can be stopped inside that call), and
 * nothing is read into memory beyond a size limit, checked on the opened file
 * before the read.
 *
 * Uses node:fs: Deno's own open cannot ask for O_NONBLOCK or O_NOFOLLOW.
 */
import fs from "node:fs";
import { formatSize } from "../model/mod.ts";
import { DATA_LIMIT_ENV } from "./limits.ts";

const { O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_APPEND } = fs.constants;
const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;
const O_NOCTTY = fs.constants.O_NOCTTY ?? 0;

/**
 * A refusal about a file; `fsError` (host.ts) puts the path as the user wrote
 * it before `reason`, joined by `joiner`: `big.bin is 16 GiB, more than …`.
 */
export class FileRefused extends Error {
  constructor(readonly reason: string, readonly joiner = ": ") {
    super(reason);
  }
}

export interface OpenOptions {
  /**
   * Refuse a symlink at the last component (ELOOP): for paths already resolved
   * (an agent's confinement), where a symlink there means one was swapped in.
   */
  noFollow?: boolean;
}

/** `the 64 MiB limit (SLOTH_LUA_DATA_LIMIT)` */
export function limitText(limit: number): string {
  return `the ${formatSize(limit)} limit (${DATA_LIMIT_ENV})`;
}

/** `150 MiB, more than the 64 MiB limit (SLOTH_LUA_DATA_LIMIT)`, for a size over `limit`. */
export function overLimit(size: number, limit: number, text = limitText(limit)): string {
  return `${sizeOver(size, limit)}, more than ${text}`;
}

/** A size over `limit` that does not read as the limit itself (`67108865 bytes`, not `64 MiB`). */
function sizeOver(size: number, limit: number): string {
  const shown = formatSize(size);
  return shown === formatSize(limit) ? `${size} bytes` : shown;
}

/** Reads a regular file of at most `limit` bytes as UTF-8 text. */
export function readText(path: string, limit: number, options: OpenOptions = {}): string {
  const fd = openRegular(path, O_RDONLY, options);
  try {
    const size = fs.fstatSync(fd).size;
    if (size > limit) throw new FileRefused(overLimit(size, limit), " is ");
    // One more byte than expected notices a file that grows while it is read; files
    // that report no size (/proc) grow the buffer as they are read.
    let buffer = new Uint8Array(Math.max(Math.min(size, limit) + 1, 4096));
    let used = 0;
    while (true) {
      if (used === buffer.length) {
        if (used > limit) break;
        const bigger = new Uint8Array(Math.min(buffer.length * 2, limit + 1));
        bigger.set(buffer);
        buffer = bigger;
      }
      const n = fs.readSync(fd, buffer, used, buffer.length - used, null);
      if (n === 0) break;
      used += n;
    }
    if (used > limit) {
      throw new FileRefused(`more than ${limitText(limit)}`, " is ");
    }
    return new TextDecoder().decode(buffer.subarray(0, used));
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes (or appends) text to a regular file, made if missing. */
export function writeText(
  path: string,
  text: string,
  options: OpenOptions & { append?: boolean } = {},
): void {
  const fd = openRegular(path, O_WRONLY | O_CREAT | (options.append ? O_APPEND : O_TRUNC), options);
  try {
    writeAll(fd, new TextEncoder().encode(text));
  } finally {
    fs.closeSync(fd);
  }
}

/** Copies a regular file's content and mode, in 1 MiB pieces. */
export function copyFile(from: string, to: string, options: OpenOptions = {}): void {
  const source = openRegular(from, O_RDONLY, options);
  try {
    const target = openRegular(to, O_WRONLY | O_CREAT | O_TRUNC, options, "to");
    try {
      const buffer = new Uint8Array(1024 * 1024);
      let n: number;
      while ((n = fs.readSync(source, buffer, 0, buffer.length, null)) > 0) {
        writeAll(target, buffer.subarray(0, n));
      }
      fs.fchmodSync(target, fs.fstatSync(source).mode & 0o7777);
    } finally {
      fs.closeSync(target);
    }
  } finally {
    fs.closeSync(source);
  }
}

/** Opens a regular file to write a stream into (`net.download`); close it with `fs.closeSync`. */
export function openForWriting(path: string, options: OpenOptions = {}): number {
  return openRegular(path, O_WRONLY | O_CREAT | O_TRUNC, options);
}

export function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += fs.writeSync(fd, bytes, done, bytes.length - done);
  }
}

export function closeFile(fd: number): void {
  fs.closeSync(fd);
}

/**
 * Opens without blocking (O_NONBLOCK: a FIFO does not wait for its other end)
 * and keeps the descriptor only if it is a regular file. O_TRUNC does nothing
 * to a FIFO or a device, so nothing is changed before the check.
 */
function openRegular(path: string, flags: number, options: OpenOptions, which?: "to"): number {
  let fd: number;
  try {
    fd = fs.openSync(
      path,
      flags | O_NONBLOCK | O_NOCTTY | (options.noFollow ? O_NOFOLLOW : 0),
      0o666,
    );
  } catch (error) {
    throw which ? new TargetError(error) : error;
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      const what = stat.isDirectory()
        ? "is a directory"
        : `not a regular file (${
          stat.isFIFO()
            ? "a FIFO"
            : stat.isSocket()
            ? "a socket"
            : stat.isCharacterDevice() || stat.isBlockDevice()
            ? "a device"
            : "a special file"
        })`;
      throw which ? new TargetError(new FileRefused(what)) : new FileRefused(what);
    }
    return fd;
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

/** An error about the second path of a call (`fs.copy`'s target), so it is named in the message. */
export class TargetError extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

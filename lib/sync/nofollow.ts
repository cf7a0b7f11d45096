/**
 * File work in a directory someone else's code ran in (an agent's job
 * workspace, kept between jobs): nothing here follows a symlink at the last
 * component, and nothing opens what is not a regular file (or directory) in a
 * way that could block.
 *
 * - Reads open with O_NOFOLLOW | O_NONBLOCK, after an lstat said "regular
 *   file": a symlink swapped in is refused (ELOOP), a FIFO swapped in is not
 *   waited on.
 * - Writes create with O_CREAT | O_EXCL | O_NOFOLLOW (a name already taken,
 *   symlink or not, is refused), and mode and times are set on the descriptor.
 * - Mode and times of what exists are set on a descriptor opened the same way;
 *   only where it cannot be opened at all (no read permission for a non-root
 *   agent) an lstat checks the type and the path is used.
 *
 * Parent directories are the caller's: they are checked with lstat (see
 * `ensureParents`). Nobody else writes in a workspace while the agent does (its
 * task's processes are dead by then), so these are defenses, not a race.
 *
 * Large files are read in 1 MiB pieces, yielding to the event loop every 16 MiB,
 * so that a big file never keeps an agent from answering other masters.
 *
 * Uses node:fs: Deno's own open cannot ask for O_NOFOLLOW or O_NONBLOCK, nor
 * change the mode of an open file.
 */
import {
  closeSync,
  constants,
  fchmodSync,
  futimesSync,
  openSync,
  readSync,
  writeSync,
} from "node:fs";
import { createHash, type Hash } from "node:crypto";
import { SyncError } from "./paths.ts";

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
const O_DIRECTORY = constants.O_DIRECTORY ?? 0;
const READ = constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW;

/** Bytes read between two yields to the event loop. */
const YIELD_EVERY = 16 * 1024 * 1024;

/**
 * One buffer for every read: a piece is read and used (hashed, written) with no
 * await in between, so concurrent callers never see each other's bytes.
 */
const buffer = new Uint8Array(1024 * 1024);

/** Lets timers and I/O (other masters' calls) run. */
export function yieldNow(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function code(error: unknown): string | undefined {
  return (error as { code?: string })?.code;
}

/** The lstat of `path` if it is a regular file; else a `SyncError` saying what it is. */
export function lstatRegular(path: string, name = path): Deno.FileInfo {
  const info = Deno.lstatSync(path);
  if (!info.isFile) throw new SyncError(`"${name}" is ${describe(info)}, not a regular file`);
  return info;
}

export function describe(info: Deno.FileInfo): string {
  if (info.isSymlink) return "a symlink";
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO";
  if (info.isSocket) return "a socket";
  if (info.isCharDevice || info.isBlockDevice) return "a device";
  return "not a regular file";
}

/** Opens an existing regular file for reading: never through a symlink, never waiting on a FIFO. */
function openRead(path: string, name: string): number {
  try {
    return openSync(path, READ);
  } catch (error) {
    if (code(error) === "ELOOP") throw new SyncError(`"${name}" is a symlink, not a regular file`);
    throw error;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}

function readInto(fd: number, length: number): number {
  try {
    return readSync(fd, buffer, 0, Math.min(length, buffer.length), null);
  } catch (error) {
    // EISDIR, EAGAIN (a FIFO swapped in): not a regular file's bytes.
    if (code(error) === "EISDIR" || code(error) === "EAGAIN") return -1;
    throw error;
  }
}

export interface HashOptions {
  /** Refuse (before reading anything) a file larger than this: its logical size counts. */
  maxBytes?: number;
  /** What it printed as, in errors (a path relative to the workspace). */
  name?: string;
}

/**
 * SHA-256 of a regular file at `path`, checked with lstat first (a symlink, FIFO,
 * socket or device is refused without being opened), its size against
 * `maxBytes` before anything is read. A file that changes size while it is read
 * is refused.
 */
export async function hashFile(path: string, options: HashOptions = {}): Promise<string> {
  const name = options.name ?? path;
  const info = lstatRegular(path, name);
  if (options.maxBytes !== undefined && info.size > options.maxBytes) {
    throw new SyncError(
      `"${name}" is ${info.size} bytes, over the ${options.maxBytes}-byte file limit`,
    );
  }
  const hash = createHash("sha256");
  const fd = openRead(path, name);
  try {
    await pump(fd, info.size, name, hash);
  } finally {
    closeQuietly(fd);
  }
  return hash.digest("hex");
}

/** Reads exactly `size` bytes (then expects the end) into `hash` and/or `target`. */
async function pump(
  fd: number,
  size: number,
  name: string,
  hash?: Hash,
  target?: number,
): Promise<void> {
  let left = size;
  let sinceYield = 0;
  while (true) {
    // One byte more than expected: a file that grew is noticed.
    const n = readInto(fd, left > 0 ? left : 1);
    if (n < 0) throw new SyncError(`"${name}" is not a regular file`);
    if (n === 0) break;
    if (n > left) throw new SyncError(`"${name}" changed while it was read (it grew)`);
    const piece = buffer.subarray(0, n);
    hash?.update(piece);
    if (target !== undefined) {
      for (let offset = 0; offset < n;) offset += writeSync(target, piece, offset, n - offset);
    }
    left -= n;
    sinceYield += n;
    if (sinceYield >= YIELD_EVERY) {
      sinceYield = 0;
      await yieldNow();
    }
  }
  if (left > 0) throw new SyncError(`"${name}" changed while it was read (it got shorter)`);
}

export interface CopyOptions {
  /** The source's size: exactly this many bytes are copied, or the copy is refused. */
  size: number;
  /** Permission bits of the copy. */
  mode: number;
  /** The copy's mtime (and atime), if set. */
  mtimeMs?: number;
  /** Its atime, if other than the mtime. */
  atimeMs?: number;
  /** Hash what is copied: the result is its SHA-256. */
  hash?: boolean;
  /** What it is called in errors. */
  name?: string;
}

/**
 * Copies the regular file `source` to `target`, a name that must not exist (a
 * symlink there is not followed: the copy is refused). The source is checked
 * with lstat and opened without following a symlink or waiting on a FIFO. Mode
 * and times are set on the new file's descriptor. On any failure the partial
 * copy is removed. With `hash`, returns the SHA-256 of what was copied.
 */
export async function copyFile(
  source: string,
  target: string,
  options: CopyOptions,
): Promise<string | undefined> {
  const name = options.name ?? source;
  const info = lstatRegular(source, name);
  if (info.size !== options.size) {
    throw new SyncError(`"${name}" is ${info.size} bytes, not the ${options.size} expected`);
  }
  const from = openRead(source, name);
  let to: number | undefined;
  try {
    try {
      to = openSync(target, CREATE, 0o600);
    } catch (error) {
      if (code(error) === "EEXIST" || code(error) === "ELOOP") {
        throw new SyncError(`refused to write "${target}": something is already there`);
      }
      throw error;
    }
    const hash = options.hash ? createHash("sha256") : undefined;
    await pump(from, options.size, name, hash, to);
    fchmodSync(to, options.mode);
    if (options.mtimeMs !== undefined) {
      futimesSync(
        to,
        exactSeconds(options.atimeMs ?? options.mtimeMs),
        exactSeconds(options.mtimeMs),
      );
    }
    closeSync(to);
    to = undefined;
    return hash?.digest("hex");
  } catch (error) {
    if (to !== undefined) {
      closeQuietly(to);
      try {
        Deno.removeSync(target);
      } catch {
        // Never made.
      }
    }
    throw error;
  } finally {
    closeQuietly(from);
  }
}

/**
 * A time in ms as the seconds `futimesSync` takes: they cross as a double and
 * are cut to nanoseconds, so a whole millisecond could land a hair below itself
 * and read back as the millisecond before (then the next run sets it again, and
 * again). Half a millisecond more lands inside the millisecond meant.
 */
function exactSeconds(ms: number): number {
  return (Math.floor(ms) + 0.5) / 1000;
}

/**
 * Sets the mode and/or mtime of the regular file (or, with `directory`, the
 * directory) at `path`, never through a symlink.
 */
export function setModeAndTime(
  path: string,
  options: { mode?: number; mtimeMs?: number; directory?: boolean },
): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, READ | (options.directory ? O_DIRECTORY : 0));
  } catch (error) {
    if (code(error) === "ELOOP") throw new SyncError(`refused to change "${path}": a symlink`);
    if (code(error) === "ENOTDIR") {
      throw new SyncError(`refused to change "${path}": not a directory`);
    }
    if (code(error) !== "EACCES") throw error;
  }
  if (fd === undefined) {
    // Unreadable to a non-root agent (mode 0o000, say); only its owner's chmod works
    // here, and an lstat says what it is (no task runs at this point).
    const info = Deno.lstatSync(path);
    if (options.directory ? !info.isDirectory : !info.isFile) {
      throw new SyncError(`refused to change "${path}": it is ${describe(info)}`);
    }
    if (options.mode !== undefined) Deno.chmodSync(path, options.mode);
    if (options.mtimeMs !== undefined) {
      Deno.utimeSync(path, new Date(options.mtimeMs), new Date(options.mtimeMs));
    }
    return;
  }
  try {
    if (options.mode !== undefined) fchmodSync(fd, options.mode);
    if (options.mtimeMs !== undefined) {
      futimesSync(fd, exactSeconds(options.mtimeMs), exactSeconds(options.mtimeMs));
    }
  } finally {
    closeQuietly(fd);
  }
}

/**
 * Reads a regular file (checked with lstat, opened without following a symlink
 * or waiting on a FIFO) of at most `maxBytes`, for small files the agent keeps.
 */
export function readSmallFile(path: string, maxBytes: number): Uint8Array {
  const info = lstatRegular(path);
  if (info.size > maxBytes) {
    throw new SyncError(`"${path}" is ${info.size} bytes, over ${maxBytes}`);
  }
  const fd = openRead(path, path);
  try {
    const out = new Uint8Array(info.size);
    let got = 0;
    while (got < out.length) {
      const n = readSync(fd, out, got, out.length - got, null);
      if (n === 0) break;
      got += n;
    }
    return out.subarray(0, got);
  } finally {
    closeQuietly(fd);
  }
}

/** A descriptor of the regular file at `path`, opened as every read here is (see above). */
export function openForRead(path: string, name = path): number {
  return openRead(path, name);
}

export { closeQuietly as closeFd };

/**
 * The disk as the agent's budget sees it: what a file takes, how a full disk
 * shows itself, and how much is free.
 */
import { statfsSync } from "node:fs";

/** Disks hand out whole blocks: a 10-byte file takes 4 KiB on ext4 and tmpfs alike. */
const BLOCK = 4096;
/** The inode and directory entry each file costs besides its blocks. */
const ENTRY_OVERHEAD = 256;
const MB = 1024 * 1024;

/** What a file of `size` bytes takes on disk, as the budget counts it. */
export function footprint(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK + ENTRY_OVERHEAD;
}

/**
 * Whether an error is the disk (or the user's quota) being full. Deno 2 throws a
 * plain `Error` with `code` "ENOSPC" and "No space left on device (os error 28)".
 */
export function isNoSpace(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return code === "ENOSPC" || code === "EDQUOT" ||
    /No space left on device|Disk quota exceeded/.test(error.message);
}

/** A job's workspace does not fit, even with everything evictable gone. */
export class NoSpaceError extends Error {
  readonly freeBytes: number | undefined;
  readonly neededBytes: number;

  constructor(where: string, options: { freeBytes: number | undefined; neededBytes: number }) {
    const free = options.freeBytes === undefined ? undefined : Math.floor(options.freeBytes / MB);
    // Rounded, unless that would read as if it fitted (or as nothing at all).
    let needed = Math.round(options.neededBytes / MB);
    if (needed <= (free ?? 0)) needed = Math.ceil(options.neededBytes / MB);
    super(
      `no space left in ${where} (${
        free === undefined ? "free space unknown" : `${free} MB free`
      }, ${needed} MB needed)`,
    );
    this.name = "NoSpaceError";
    this.freeBytes = options.freeBytes;
    this.neededBytes = options.neededBytes;
  }
}

/** Something kept that may go: its size as counted, and when it was last used (ms). */
export interface Evictable {
  id: string;
  bytes: number;
  used: number;
}

/** The bytes available to this user on the file system holding `path`, if it can be read. */
export function freeBytes(path: string): number | undefined {
  try {
    const fs = statfsSync(path);
    return Number(fs.bavail) * Number(fs.bsize);
  } catch {
    return undefined;
  }
}

/**
 * Safe unpacking of workspace archives, in both directions. npm `tar` only parses
 * here; every entry is checked and written by this file: relative paths only, no
 * `..`, no absolute or NUL-bearing names, only files, directories and symlinks that
 * stay inside, never written through a symlink, each path once, within limits.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Parser, type ReadEntry } from "tar";
import {
  checkRelativePath,
  parentOf,
  symlinkStaysInside,
  symlinkTargetOnDisk,
  SyncError,
} from "./paths.ts";
import type { EntryType } from "./walk.ts";
import { refuseReserved } from "./journal.ts";
import { parseSize } from "../model/mod.ts";

export interface Limits {
  /** Entries in one archive. */
  maxEntries: number;
  /** Bytes in one file. */
  maxFileBytes: number;
  /** Bytes of file content in one archive. */
  maxTotalBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxEntries: 1_000_000,
  maxFileBytes: 16 * 1024 ** 3,
  maxTotalBytes: 64 * 1024 ** 3,
};

/**
 * The master's limits on change sets coming back from agents: the defaults,
 * or SLOTH_SYNC_MAX_BYTES, SLOTH_SYNC_MAX_ENTRIES and SLOTH_SYNC_MAX_FILE_BYTES.
 */
export function limitsFromEnv(): Limits {
  const read = (name: string, fallback: number) => {
    const value = Deno.env.get(name);
    if (value === undefined || value === "") return fallback;
    const n = name === "SLOTH_SYNC_MAX_ENTRIES" ? Number(value) : parseSize(value);
    if (n === undefined || !Number.isInteger(n) || n < 0) {
      throw new SyncError(
        `${name}=${value} is not ${
          name === "SLOTH_SYNC_MAX_ENTRIES"
            ? "a whole number"
            : "a size such as 64G, 512M or 1048576"
        }`,
      );
    }
    return n;
  };
  return {
    maxTotalBytes: read("SLOTH_SYNC_MAX_BYTES", DEFAULT_LIMITS.maxTotalBytes),
    maxEntries: read("SLOTH_SYNC_MAX_ENTRIES", DEFAULT_LIMITS.maxEntries),
    maxFileBytes: read("SLOTH_SYNC_MAX_FILE_BYTES", DEFAULT_LIMITS.maxFileBytes),
  };
}

export interface UnpackedEntry {
  path: string;
  type: EntryType;
  mode: number;
  size: number;
  /** Hex SHA-256 of a file's content. */
  sha256?: string;
  target?: string;
}

/**
 * `fresh`: the root is a new empty directory; nothing may exist before it is written.
 * `replace`: entries replace what is there, each through a temporary name and a
 * rename, so a reader never sees half a file.
 * `check`: write nothing; only check every entry.
 * `stage`: check every entry against `root` as `check` does, and write it as
 * `fresh` would into `into`, a new empty directory (a change set staged before it
 * is applied); directories there stay 0700, for what is moved out of them.
 */
export type UnpackMode = "fresh" | "replace" | "check" | "stage";

export interface UnpackOptions {
  mode: UnpackMode;
  limits?: Limits;
  /**
   * For `check` and `stage`: paths that will be deleted before the archive is
   * applied; a directory emptied by them may be replaced by a file or a symlink.
   */
  deleting?: Set<string>;
  /** For `stage`: where entries are written. */
  into?: string;
}

/** Reads a tar stream into `root` and returns what it held, by path. */
export async function unpack(
  root: string,
  chunks: AsyncIterable<Uint8Array>,
  options: UnpackOptions,
): Promise<Map<string, UnpackedEntry>> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const entries = new Map<string, UnpackedEntry>();
  const dirModes: [string, number][] = [];
  let totalBytes = 0;
  let failure: Error | undefined;
  const fail = (error: unknown) => {
    failure ??= error instanceof Error ? error : new SyncError(String(error));
  };

  const parser = new Parser({ strict: true });
  parser.on("error", (error: Error) => fail(new SyncError(`bad archive: ${error.message}`)));
  parser.on(
    "warn",
    (_code: string, message: string | Error) =>
      fail(new SyncError(`bad archive: ${message instanceof Error ? message.message : message}`)),
  );
  // node-tar cuts names at a NUL byte; a name that goes on after one is an attack, not a name.
  parser.on("meta", (meta: string) => {
    if (/\0[^\0]/.test(meta)) {
      fail(new SyncError("refused an entry whose name contains a NUL byte"));
    }
  });
  parser.on("entry", (entry: ReadEntry) => {
    if (failure) return entry.resume();
    try {
      const path = checkRelativePath(entry.path);
      refuseReserved(path);
      if (entries.has(path)) {
        throw new SyncError(`refused "${path}": it appears twice in the archive`);
      }
      // Parents as this archive leaves them; those it does not hold, as they are on disk.
      const holder = parentInArchive(path, entries);
      if (holder && holder.type !== "dir") {
        throw new SyncError(
          `refused "${path}": ${holder.path} is ${
            holder.type === "symlink" ? "a symlink" : "not a directory"
          }, and nothing is written through it`,
        );
      }
      if (!holder) ensureParents(root, path, { create: false });
      const checking = options.mode === "check" || options.mode === "stage";
      if (checking && entry.type !== "Directory") {
        refuseReplacingFullDirectory(root, path, options.deleting ?? new Set());
      }
      if (entries.size >= limits.maxEntries) {
        throw new SyncError(`refused the archive: more than ${limits.maxEntries} entries`);
      }
      const mode = (entry.mode ?? 0o644) & 0o777;
      // Where entries are written; checks are always against `root`.
      const base = options.mode === "stage" ? options.into! : root;
      const writeMode = options.mode === "stage" ? "fresh" : options.mode;
      const full = `${base}/${path}`;
      switch (entry.type) {
        case "File":
        case "OldFile":
        case "ContiguousFile": {
          const size = entry.size ?? 0;
          if (size > limits.maxFileBytes) {
            throw new SyncError(
              `refused "${path}": ${size} bytes is over the ${limits.maxFileBytes}-byte file limit`,
            );
          }
          totalBytes += size;
          if (totalBytes > limits.maxTotalBytes) {
            throw new SyncError(
              `refused the archive: more than ${limits.maxTotalBytes} bytes of files`,
            );
          }
          const record: UnpackedEntry = { path, type: "file", mode, size };
          entries.set(path, record);
          writeFile(base, path, full, mode, entry, writeMode, record, fail);
          return;
        }
        case "Directory": {
          entries.set(path, { path, type: "dir", mode, size: 0 });
          if (options.mode === "stage") {
            ensureParents(base, path);
            stageDirectory(full);
          } else if (options.mode !== "check") {
            ensureParents(root, path);
            ensureDirectory(full, path, options.mode);
            dirModes.push([full, mode]);
          }
          entry.resume();
          return;
        }
        case "SymbolicLink": {
          const target = entry.linkpath ?? "";
          const linked = (p: string) =>
            entries.has(p) ? entries.get(p)!.target : symlinkTargetOnDisk(root, p);
          if (!symlinkStaysInside(path, target, linked)) {
            throw new SyncError(
              `refused "${path}": symlink to "${target}" points outside the workspace ` +
                "(or through another symlink)",
            );
          }
          entries.set(path, { path, type: "symlink", mode, size: 0, target });
          if (options.mode !== "check") {
            ensureParents(base, path);
            placeSymlink(full, path, target, writeMode);
          }
          entry.resume();
          return;
        }
        case "Link":
          throw new SyncError(`refused "${path}": hard links are not allowed`);
        case "CharacterDevice":
        case "BlockDevice":
          throw new SyncError(`refused "${path}": device entries are not allowed`);
        case "FIFO":
          throw new SyncError(`refused "${path}": FIFO entries are not allowed`);
        default:
          throw new SyncError(`refused "${path}": ${entry.type} entries are not allowed`);
      }
    } catch (error) {
      fail(error);
      entry.resume();
      parser.abort(failure!);
    }
  });

  const ended = new Promise<void>((resolve) => {
    parser.on("end", resolve);
    parser.on("close", resolve);
    parser.on("abort", resolve);
  });
  let fed = 0;
  try {
    for await (const chunk of chunks) {
      if (failure) break;
      // node-tar would quietly decompress: a small bomb must not become a large archive.
      if (fed === 0 && isCompressed(chunk)) {
        fail(new SyncError("refused a compressed archive: only plain tar is accepted"));
        break;
      }
      fed += chunk.length;
      // node-tar reads its input as Buffers; this is a view, not a copy.
      if (!parser.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
        await new Promise<void>((resolve) => parser.once("drain", resolve));
      }
    }
  } catch (error) {
    fail(error);
  }
  if (fed === 0 && !failure) return entries;
  if (!failure) parser.end();
  else parser.abort(failure);
  await ended;
  if (failure) throw failure;
  if (options.mode !== "check") {
    // Last, so a read-only directory could still be filled.
    for (const [full, mode] of dirModes.reverse()) Deno.chmodSync(full, mode);
  }
  return entries;
}

function isCompressed(chunk: Uint8Array): boolean {
  const gzip = chunk[0] === 0x1f && chunk[1] === 0x8b;
  const zstd = chunk[0] === 0x28 && chunk[1] === 0xb5 && chunk[2] === 0x2f && chunk[3] === 0xfd;
  return gzip || zstd;
}

/** The nearest parent of `path` that the archive itself holds, if any. */
function parentInArchive(
  path: string,
  entries: Map<string, UnpackedEntry>,
): UnpackedEntry | undefined {
  let parent = parentOf(path);
  while (parent !== "") {
    const entry = entries.get(parent);
    if (entry) return entry;
    parent = parentOf(parent);
  }
  return undefined;
}

/**
 * A file or symlink may take a directory's place only if nothing would be
 * lost: the directory is empty once `deleting` is done. (Files the other side
 * never saw, such as .slothignore'd ones, are never thrown away.)
 */
function refuseReplacingFullDirectory(root: string, path: string, deleting: Set<string>): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(`${root}/${path}`);
  } catch {
    return;
  }
  if (!info.isDirectory) return;
  const stack = [path];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const child of Deno.readDirSync(`${root}/${dir}`)) {
      const childPath = `${dir}/${child.name}`;
      if (!deleting.has(childPath)) {
        throw new SyncError(
          `refused "${path}": it would replace a directory that still holds ${childPath}`,
        );
      }
      if (child.isDirectory) stack.push(childPath);
    }
  }
}

/**
 * Creates missing parent directories (or, with `create: false`, only checks);
 * refuses to go through anything that is not a real directory.
 */
export function ensureParents(
  root: string,
  path: string,
  options: { create?: boolean } = {},
): void {
  let current = root;
  const parent = parentOf(path);
  if (parent === "") return;
  for (const part of parent.split("/")) {
    current = `${current}/${part}`;
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.lstatSync(current);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (!info) {
      if (options.create === false) return;
      Deno.mkdirSync(current, { mode: 0o755 });
    } else if (!info.isDirectory) {
      throw new SyncError(
        `refused "${path}": ${current.slice(root.length + 1)} is ${
          info.isSymlink ? "a symlink" : "not a directory"
        }, and nothing is written through it`,
      );
    }
  }
}

/** A directory in staging: made 0700, or kept if an earlier entry's parent made it. */
function stageDirectory(full: string): void {
  try {
    Deno.mkdirSync(full, { mode: 0o700 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    if (!Deno.lstatSync(full).isDirectory) throw error;
  }
  Deno.chmodSync(full, 0o700);
}

function ensureDirectory(full: string, path: string, mode: UnpackMode): void {
  try {
    const info = Deno.lstatSync(full);
    if (info.isDirectory && mode === "replace") return;
    if (mode === "replace") {
      // A file or symlink becomes a directory.
      Deno.removeSync(full);
    } else {
      throw new SyncError(`refused "${path}": it already exists`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  Deno.mkdirSync(full, { mode: 0o755 });
}

function placeSymlink(full: string, path: string, target: string, mode: UnpackMode): void {
  if (mode === "fresh") {
    try {
      Deno.symlinkSync(target, full);
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) {
        throw new SyncError(`refused "${path}": it already exists`);
      }
      throw error;
    }
    return;
  }
  const temp = tempName(full);
  Deno.symlinkSync(target, temp);
  replaceWith(temp, full);
}

function writeFile(
  root: string,
  path: string,
  full: string,
  mode: number,
  entry: ReadEntry,
  unpackMode: UnpackMode,
  record: UnpackedEntry,
  fail: (error: unknown) => void,
): void {
  const hash = createHash("sha256");
  if (unpackMode === "check") {
    entry.on("data", (chunk: Uint8Array) => hash.update(chunk));
    entry.on("end", () => record.sha256 = hash.digest("hex"));
    return;
  }
  ensureParents(root, path);
  const target = unpackMode === "fresh" ? full : tempName(full);
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(target, { write: true, createNew: true, mode: 0o600 });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new SyncError(`refused "${path}": it already exists`);
    }
    throw error;
  }
  let written = 0;
  entry.on("data", (chunk: Uint8Array) => {
    try {
      for (let rest = chunk; rest.length > 0;) rest = rest.subarray(file.writeSync(rest));
      hash.update(chunk);
      written += chunk.length;
    } catch (error) {
      fail(error);
    }
  });
  entry.on("end", () => {
    try {
      file.close();
      if (written !== record.size) {
        throw new SyncError(`"${path}" ended after ${written} of ${record.size} bytes`);
      }
      Deno.chmodSync(target, mode);
      if (target !== full) replaceWith(target, full);
      record.sha256 = hash.digest("hex");
    } catch (error) {
      fail(error);
    }
  });
}

/** Renames `temp` over `full`; a directory in the way is removed first if empty. */
function replaceWith(temp: string, full: string): void {
  try {
    Deno.renameSync(temp, full);
  } catch (error) {
    const isDir = (() => {
      try {
        return Deno.lstatSync(full).isDirectory;
      } catch {
        return false;
      }
    })();
    if (!isDir) {
      Deno.removeSync(temp);
      throw error;
    }
    // Only an empty directory gives way (the check pass made sure it would be).
    try {
      Deno.removeSync(full);
    } catch {
      Deno.removeSync(temp);
      throw new SyncError(`cannot replace the directory ${full}: it is not empty`);
    }
    Deno.renameSync(temp, full);
  }
}

function tempName(full: string): string {
  const slash = full.lastIndexOf("/");
  const random = crypto.getRandomValues(new Uint32Array(2)).join("");
  return `${full.slice(0, slash)}/.sloth-${random}.tmp`;
}

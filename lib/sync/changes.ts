/**
 * Applying a change set from an agent to the master's directory, once it has
 * arrived whole and been checked: a tar stream of what the master has not got,
 * files to copy from content the master already has, and deletions.
 */
import { createHash } from "node:crypto";
import { checkRelativePath, parentOf, SyncError } from "./paths.ts";
import { gunzip, tarBound } from "./compress.ts";
import {
  applyOps,
  clearStaging,
  discardJournalDir,
  kindOf,
  type Op,
  openJournalDir,
  refuseReserved,
  type Step,
} from "./journal.ts";
import {
  DEFAULT_LIMITS,
  ensureParents,
  type Limits,
  unpack,
  type UnpackedEntry,
} from "./unpack.ts";
import type { Entry } from "./walk.ts";

/** A file whose content the master already has (it sent it): copied, not sent back. */
export interface Copy {
  path: string;
  digest: string;
  mode: number;
}

export interface ApplyOptions {
  /** What the master sent, for telling whether a path changed here meanwhile. */
  sent: Map<string, Entry>;
  /** Paths `.slothignore` excludes: they were not sent, so they cannot conflict. */
  ignored(path: string, isDir?: boolean): boolean;
  limits?: Limits;
  /** Files to make from content the master has, and where it has each digest. */
  copies?: Copy[];
  localContent?: Map<string, string>;
  /** The archive is gzip-compressed. */
  compressed?: boolean;
  /**
   * The journal directory to stage in (the one the archive was spooled to, from
   * `openJournalDir`); the caller discards it. Without it, one is made and removed.
   */
  journal?: string;
}

/**
 * Applies a change set whose tar stream is in `archive` (a file). Everything is
 * checked (paths, entry types, limits, and that nothing it touches changed here
 * since the workspace was sent) while it is staged in a journal directory; only
 * then is the workspace changed, by renames, undone on any error (journal.ts).
 */
export async function applyChanges(
  root: string,
  archive: string,
  deletedRaw: string[],
  options: ApplyOptions,
): Promise<{ written: number; deleted: number }> {
  return await applyChangesStepwise(root, archive, deletedRaw, options);
}

/**
 * `applyChanges`, calling `step` after every step that changes the disk. For
 * tests only (a crash test stops the process there); not exported by mod.ts.
 */
export async function applyChangesStepwise(
  root: string,
  archive: string,
  deletedRaw: string[],
  options: ApplyOptions,
  step: Step = () => {},
): Promise<{ written: number; deleted: number }> {
  const deleted = deletedRaw.map(checkRelativePath);
  const read = () => {
    if (!options.compressed) return readFile(archive);
    const limits = options.limits ?? DEFAULT_LIMITS;
    return gunzip(readFile(archive), tarBound(limits.maxTotalBytes, limits.maxEntries));
  };
  const copies = (options.copies ?? []).map((c) => ({ ...c, path: checkRelativePath(c.path) }));
  for (const path of [...deleted, ...copies.map((c) => c.path)]) refuseReserved(path);
  const own = options.journal === undefined;
  const dir = options.journal ?? openJournalDir(root).dir;
  // Until the operations are applied, only the journal directory is written: a
  // refusal or a failure (a full disk, a copy whose source changed) changes nothing.
  const staging = (error: unknown) =>
    error instanceof SyncError ? error : new SyncError(
      `could not stage the change set in ${dir}: ${
        error instanceof Error ? error.message : error
      }; nothing was changed`,
    );
  let entries: Map<string, UnpackedEntry>;
  try {
    try {
      Deno.mkdirSync(`${dir}/new`);
      // Checked against the workspace and written into staging, in one pass.
      entries = await unpack(root, read(), {
        mode: "stage",
        into: `${dir}/new`,
        limits: options.limits,
        deleting: new Set(deleted),
      });
    } catch (error) {
      throw staging(error);
    }
    step("unpacked");
    for (const copy of copies) {
      if (entries.has(copy.path)) {
        throw new SyncError(`refused "${copy.path}": it is both sent and copied`);
      }
      if (!options.localContent?.has(copy.digest)) {
        throw new SyncError(
          `refused "${copy.path}": the agent asked to copy content this machine never sent`,
        );
      }
      ensureParents(root, copy.path, { create: false });
      checkUnchanged(root, copy.path, false, options);
    }
    for (const path of deleted) ensureParents(root, path, { create: false });
    for (const [path, entry] of entries) checkUnchanged(root, path, entry.type === "dir", options);
    for (const path of deleted) checkUnchanged(root, path, undefined, options);
    try {
      Deno.mkdirSync(`${dir}/copies`);
      for (const [i, copy] of copies.entries()) {
        stageCopy(root, copy, options.localContent!.get(copy.digest)!, `${dir}/copies/${i}`);
      }
    } catch (error) {
      throw staging(error);
    }
    step("copied");
    applyOps(root, dir, plan(root, entries, copies, deleted), step);
  } finally {
    try {
      if (own) discardJournalDir(dir);
      else clearStaging(dir);
    } catch {
      // Litter the next run's recovery removes; the outcome above stands.
    }
  }
  return { written: entries.size + copies.length, deleted: deleted.length };
}

/**
 * The operations that turn the workspace into what the change set says, in
 * order: deletions (deepest first, as sent), then entries in archive order
 * (parents first) and copies, then directory modes (deepest first). Tracks what
 * each path will be as it goes, so later operations see earlier ones.
 */
function plan(
  root: string,
  entries: Map<string, UnpackedEntry>,
  copies: Copy[],
  deleted: string[],
): Op[] {
  const ops: Op[] = [];
  const modes: Op[] = [];
  const planned = new Map<string, ReturnType<typeof kindOf>>();
  const now = (path: string) => planned.get(path) ?? kindOf(`${root}/${path}`);
  const aside = () => `old/${ops.length}`;
  // A directory this change set makes is not empty: things are planned into it.
  const emptied = (path: string) =>
    planned.get(path) !== "dir" &&
    [...Deno.readDirSync(`${root}/${path}`)].every((c) => now(`${path}/${c.name}`) === "none");
  const parents = (path: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const kind = now(parent);
      if (kind === "dir") continue;
      if (kind !== "none") {
        throw new SyncError(`refused "${path}": ${parent} is not a directory`);
      }
      ops.push({ op: "mkdir", path: parent, mode: 0o755 });
      planned.set(parent, "dir");
    }
  };
  const put = (path: string, staged: string, type: "file" | "symlink") => {
    parents(path);
    const kind = now(path);
    // A directory gives way only once emptied (the check made sure it would be).
    if (kind === "dir" && !emptied(path)) {
      throw new SyncError(`refused "${path}": it would replace a directory that is not empty`);
    }
    ops.push({ op: "put", path, staged, aside: kind === "none" ? undefined : aside() });
    planned.set(path, type);
  };

  const copied = new Set(copies.map((c) => c.path));
  for (const path of deleted) {
    if (entries.has(path) || copied.has(path)) continue;
    const kind = now(path);
    if (kind === "none") continue;
    // Files the agent never saw (.slothignore) may still be in it: keep them.
    if (kind === "dir" && !emptied(path)) continue;
    ops.push({ op: "remove", path, aside: aside() });
    planned.set(path, "none");
  }
  const dirs: [string, number][] = [];
  // New directories placed whole, with what is staged in them: one rename, not one a file.
  const whole = new Set<string>();
  const inWhole = (path: string) => {
    for (let p = parentOf(path); p !== ""; p = parentOf(p)) if (whole.has(p)) return true;
    return false;
  };
  for (const [path, entry] of entries) {
    if (inWhole(path)) {
      // Staging holds it (directories there are 0700) and it travels with its directory.
      planned.set(path, entry.type);
      if (entry.type === "dir" && entry.mode !== 0o700) dirs.push([path, 0o700]);
      continue;
    }
    if (entry.type !== "dir") {
      put(path, `new/${path}`, entry.type);
      continue;
    }
    parents(path);
    const kind = now(path);
    let from = 0o700;
    if (kind === "dir") from = (Deno.lstatSync(`${root}/${path}`).mode ?? 0) & 0o777;
    else if (kind === "none") {
      ops.push({ op: "put", path, staged: `new/${path}` });
      planned.set(path, "dir");
      whole.add(path);
    } else {
      ops.push({ op: "mkdir", path, mode: 0o700, aside: aside() });
      planned.set(path, "dir");
    }
    if (from !== entry.mode) dirs.push([path, from]);
  }
  for (const [i, copy] of copies.entries()) put(copy.path, `copies/${i}`, "file");
  for (const [path, from] of dirs.reverse()) {
    modes.push({ op: "chmod", path, from, to: entries.get(path)!.mode });
  }
  return [...ops, ...modes];
}

/**
 * Copies the local file that had `copy.digest` when it was sent to `temp` (in
 * the journal directory), checking the digest again (that file may have changed since).
 */
function stageCopy(root: string, copy: Copy, source: string, temp: string): void {
  Deno.copyFileSync(`${root}/${source}`, temp);
  const hash = createHash("sha256");
  using file = Deno.openSync(temp, { read: true });
  const buffer = new Uint8Array(1 << 20);
  for (let n = file.readSync(buffer); n; n = file.readSync(buffer)) {
    hash.update(buffer.subarray(0, n));
  }
  if (hash.digest("hex") !== copy.digest) {
    throw new SyncError(
      `${source} changed here while the task ran remotely; ${copy.path} was not written`,
    );
  }
  Deno.chmodSync(temp, copy.mode & 0o777);
}

/** The identity a path had when it was sent must be the one it has now. */
function checkUnchanged(
  root: string,
  path: string,
  isDir: boolean | undefined,
  options: ApplyOptions,
): void {
  const ignored = isDir === undefined
    ? options.ignored(path, false) || options.ignored(path, true)
    : options.ignored(path, isDir);
  const sent = options.sent.get(path);
  let now: Deno.FileInfo | undefined;
  try {
    now = Deno.lstatSync(`${root}/${path}`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory)) {
      throw error;
    }
  }
  if (ignored) {
    // Never sent, so the task never saw it: what is here must not be replaced unseen.
    // (A directory that is here already takes the task's new files as it is.)
    if (now === undefined || (isDir === true && now.isDirectory)) return;
    throw new SyncError(
      `conflict on ${path}: this machine has it but did not send it (.slothignore excludes it), ` +
        "so the task's version was not written (remove it here, or stop excluding it, " +
        "to let a remote task replace it)",
    );
  }
  const same = sent === undefined ? now === undefined : now !== undefined &&
    (sent.type === "dir" ? now.isDirectory : now.ino === sent.ino && now.size === sent.size &&
      (now.mtime?.getTime() ?? 0) === sent.mtimeMs);
  if (!same) {
    throw new SyncError(
      `conflict on ${path}: it changed here while the task ran remotely (another task wrote it)`,
    );
  }
}

async function* readFile(path: string): AsyncIterable<Uint8Array> {
  const file = await Deno.open(path);
  yield* file.readable;
}

/**
 * Applying a change set from an agent to the master's directory, once it has
 * arrived whole and been checked: a tar stream of what the master has not got,
 * files to copy from content the master already has, and deletions.
 */
import { createHash } from "node:crypto";
import { checkRelativePath, SyncError } from "./paths.ts";
import { gunzip, tarBound } from "./compress.ts";
import { DEFAULT_LIMITS, ensureParents, type Limits, unpack } from "./unpack.ts";
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
}

/**
 * Applies a change set whose tar stream is in `archive` (a file). Everything is
 * checked first (paths, entry types, limits, and that nothing it touches changed
 * here since the workspace was sent); only then is anything written.
 */
export async function applyChanges(
  root: string,
  archive: string,
  deletedRaw: string[],
  options: ApplyOptions,
): Promise<{ written: number; deleted: number }> {
  const deleted = deletedRaw.map(checkRelativePath);
  const read = () => {
    if (!options.compressed) return readFile(archive);
    const limits = options.limits ?? DEFAULT_LIMITS;
    return gunzip(readFile(archive), tarBound(limits.maxTotalBytes, limits.maxEntries));
  };
  const entries = await unpack(root, read(), {
    mode: "check",
    limits: options.limits,
    deleting: new Set(deleted),
  });
  const copies = (options.copies ?? []).map((c) => ({ ...c, path: checkRelativePath(c.path) }));
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
  // Copies are made (and checked) first: their sources may be among the deletions.
  const staged: { temp: string; copy: Copy }[] = [];
  try {
    for (const copy of copies) {
      staged.push({ temp: stageCopy(root, copy, options.localContent!.get(copy.digest)!), copy });
    }
  } catch (error) {
    for (const { temp } of staged) Deno.removeSync(temp);
    throw error;
  }
  for (const path of deleted) {
    if (entries.has(path)) continue;
    removePath(root, path);
  }
  await unpack(root, read(), { mode: "replace", limits: options.limits });
  for (const { temp, copy } of staged) {
    ensureParents(root, copy.path);
    Deno.renameSync(temp, `${root}/${copy.path}`);
  }
  return { written: entries.size + copies.length, deleted: deleted.length };
}

/**
 * Copies the local file that had `copy.digest` when it was sent to a temporary
 * file in `root`, checking the digest again (that file may have changed since).
 */
function stageCopy(root: string, copy: Copy, source: string): string {
  const temp = `${root}/.sloth-${crypto.randomUUID()}.tmp`;
  Deno.copyFileSync(`${root}/${source}`, temp);
  const hash = createHash("sha256");
  using file = Deno.openSync(temp, { read: true });
  const buffer = new Uint8Array(1 << 20);
  for (let n = file.readSync(buffer); n; n = file.readSync(buffer)) {
    hash.update(buffer.subarray(0, n));
  }
  if (hash.digest("hex") !== copy.digest) {
    Deno.removeSync(temp);
    throw new SyncError(
      `${source} changed here while the task ran remotely; ${copy.path} was not written`,
    );
  }
  Deno.chmodSync(temp, copy.mode & 0o777);
  return temp;
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
  if (ignored) return;
  const sent = options.sent.get(path);
  let now: Deno.FileInfo | undefined;
  try {
    now = Deno.lstatSync(`${root}/${path}`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory)) {
      throw error;
    }
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

function removePath(root: string, path: string): void {
  ensureParents(root, path);
  const full = `${root}/${path}`;
  try {
    const info = Deno.lstatSync(full);
    if (info.isDirectory) {
      // Files the agent never saw (.slothignore) may still be in it: keep them.
      if ([...Deno.readDirSync(full)].length === 0) Deno.removeSync(full);
    } else {
      Deno.removeSync(full);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

async function* readFile(path: string): AsyncIterable<Uint8Array> {
  const file = await Deno.open(path);
  yield* file.readable;
}

/**
 * Change sets: what a task changed in its workspace on the agent, and applying
 * that to the master's directory once it has arrived whole and been checked.
 */
import { createHash } from "node:crypto";
import { checkRelativePath, SyncError } from "./paths.ts";
import { ensureParents, type Limits, unpack, type UnpackedEntry } from "./unpack.ts";
import { type Entry, walkWorkspace } from "./walk.ts";

export interface ChangeSet {
  /** Added or modified: files, directories and symlinks, sent as a tar stream. */
  changed: string[];
  /** Gone: files, symlinks and directories, deepest first. */
  deleted: string[];
}

/**
 * Compares the workspace now with what was unpacked into it. A file counts as
 * modified when its size, mode or content hash differs.
 */
export async function diffWorkspace(
  root: string,
  before: Map<string, UnpackedEntry>,
): Promise<ChangeSet> {
  const { entries } = await walkWorkspace(root, { useIgnoreFile: false });
  const changed: string[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    seen.add(entry.path);
    const old = before.get(entry.path);
    if (!old || old.type !== entry.type || old.mode !== entry.mode) {
      changed.push(entry.path);
    } else if (entry.type === "file") {
      if (old.size !== entry.size || old.sha256 !== await hashFile(`${root}/${entry.path}`)) {
        changed.push(entry.path);
      }
    } else if (entry.type === "symlink" && old.target !== entry.target) {
      changed.push(entry.path);
    }
  }
  const deleted = [...before.keys()].filter((path) => !seen.has(path));
  deleted.sort((a, b) => b.split("/").length - a.split("/").length || (a < b ? 1 : -1));
  return { changed, deleted };
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

export interface ApplyOptions {
  /** What the master sent, for telling whether a path changed here meanwhile. */
  sent: Map<string, Entry>;
  /** Paths `.slothignore` excludes: they were not sent, so they cannot conflict. */
  ignored(path: string, isDir?: boolean): boolean;
  limits?: Limits;
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
  const entries = await unpack(root, readFile(archive), {
    mode: "check",
    limits: options.limits,
    deleting: new Set(deleted),
  });
  for (const path of deleted) ensureParents(root, path, { create: false });
  for (const [path, entry] of entries) checkUnchanged(root, path, entry.type === "dir", options);
  for (const path of deleted) checkUnchanged(root, path, undefined, options);
  for (const path of deleted) {
    if (entries.has(path)) continue;
    removePath(root, path);
  }
  await unpack(root, readFile(archive), { mode: "replace", limits: options.limits });
  return { written: entries.size, deleted: deleted.length };
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

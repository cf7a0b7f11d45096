/**
 * The agent's side of a workspace: made to match a master's manifest (from the
 * content store, fetching only what is missing), compared with it after the
 * task ran, and kept between jobs of the same master directory so that a
 * second run touches only what changed.
 *
 * A kept workspace is where a task ran, so nothing in it is taken on trust:
 * - what the walker cannot represent (symlinks pointing out, FIFOs, sockets,
 *   devices) is removed before the workspace is used again, never followed or
 *   opened; every write, copy, chmod and utime here is done without following a
 *   symlink (nofollow.ts), into parents checked with lstat;
 * - a kept file is reused without reading it only while its inode, ctime, size
 *   and mtime are what the agent recorded when it last wrote or hashed it. A task
 *   can restore size and mtime, never the ctime; but Deno reads ctimes in whole
 *   seconds, so a file whose recorded ctime falls in the second its task started
 *   (the agent had just written it) is marked unverified after the job, and
 *   hashed again before it is trusted (`markUnverified`).
 */
import type { BlobStore } from "./blobs.ts";
import { type Evictable, footprint } from "./disk.ts";
import type { ManifestEntry } from "./manifest.ts";
import { copyFile, hashFile, readSmallFile, setModeAndTime } from "./nofollow.ts";
import { SyncError } from "./paths.ts";
import { ensureParents } from "./unpack.ts";
import { type Entry, walkWorkspace } from "./walk.ts";

/** What a file was when sloth-runner last wrote or checked it. */
export interface FileState {
  size: number;
  mtimeMs: number;
  mode: number;
  digest: string;
  /** Its inode and ctime then; without them the file is hashed before it is trusted. */
  ino?: number;
  ctimeMs?: number;
  /** When the agent last wrote it or hashed it (ms since the epoch). */
  checkedMs?: number;
  /** A task may have changed it unseen: hash it before trusting `digest`. */
  unverified?: boolean;
}

export type WorkspaceState = Map<string, FileState>;

/**
 * A ctime is compared in whole seconds, and the kernel stamps it from a clock
 * that may lag by a tick: a file whose ctime is in the second that began
 * `RACY_MARGIN_MS` before a task started may have been changed by that task
 * without its ctime showing it.
 */
const RACY_MARGIN_MS = 50;

/** Whether `known` still vouches for the file `have` (from a walk): nothing about it changed. */
export function trusted(known: FileState | undefined, have: Entry): known is FileState {
  return known !== undefined && !known.unverified && have.type === "file" && have.nlink === 1 &&
    known.ino === have.ino && known.ctimeMs === have.ctimeMs && known.size === have.size &&
    known.mtimeMs === have.mtimeMs;
}

/** The state of a regular file the agent just wrote or hashed, from its lstat. */
function stateOf(info: Deno.FileInfo, digest: string, mode: number): FileState {
  return {
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
    mode,
    digest,
    ino: info.ino ?? 0,
    ctimeMs: info.ctime?.getTime() ?? 0,
    checkedMs: Date.now(),
  };
}

export interface ReconcileOptions {
  /** Files larger than this are never hashed (the agent's --max-file-bytes). */
  maxFileBytes?: number;
}

/**
 * Makes `ws` match the manifest, except for files whose content must still
 * come: those are returned (the content store lacks their digest) with the
 * files to fill in once it has come. `touched`: kept files whose mode or mtime
 * the agent changed. `ours`: the directories and symlinks it made, and what its
 * walk found owned by this process's user: with `fill`, all in `ws` that may be
 * the agent's once it is filled (the rest is as a task left it), so that handing
 * the workspace over need not walk it again.
 */
export async function reconcile(
  ws: string,
  manifest: Map<string, ManifestEntry>,
  state: WorkspaceState,
  blobs: BlobStore,
  options: ReconcileOptions = {},
): Promise<
  { fill: ManifestEntry[]; missing: ManifestEntry[]; touched: string[]; ours: string[] }
> {
  const walk = await walkWorkspace(ws, { useIgnoreFile: false });
  const me = Deno.uid();
  const ours = walk.entries.filter((e) => e.uid === me).map((e) => e.path);
  // What a walk cannot represent goes first: unlinked, never followed or opened.
  for (const path of walk.strays) removeEntry(`${ws}/${path}`);
  const existing = new Map(walk.entries.map((e) => [e.path, e]));
  const doomed = [...existing.values()].filter((e) => {
    const m = manifest.get(e.path);
    return !m || m.type !== e.type || (e.type === "symlink" && m.target !== e.target);
  }).map((e) => e.path).sort((a, b) => b.length - a.length);
  for (const path of doomed) {
    removeEntry(`${ws}/${path}`);
    for (const other of existing.keys()) {
      if (other === path || other.startsWith(`${path}/`)) existing.delete(other);
    }
  }

  const fill: ManifestEntry[] = [];
  const dirs: ManifestEntry[] = [];
  const touched: string[] = [];
  for (const entry of manifest.values()) {
    const full = `${ws}/${entry.path}`;
    const have = existing.get(entry.path);
    if (entry.type === "dir") {
      if (!have) {
        ensureParents(ws, entry.path);
        Deno.mkdirSync(full);
        ours.push(entry.path);
      }
      dirs.push(entry);
    } else if (entry.type === "symlink") {
      if (!have) {
        ensureParents(ws, entry.path);
        Deno.symlinkSync(entry.target!, full);
        ours.push(entry.path);
      }
    } else {
      const known = state.get(entry.path);
      let intact = false;
      // A file with other links is never changed in place: it is replaced.
      if (have && have.size === entry.size && have.nlink === 1) {
        if (trusted(known, have)) {
          intact = known.digest === entry.digest;
        } else {
          // Changed since the agent last looked, or not known: its content decides.
          const digest = await hashFile(full, { maxBytes: options.maxFileBytes, name: entry.path })
            .catch(() => undefined);
          if (digest === entry.digest) {
            intact = true;
            state.set(entry.path, stateOf(Deno.lstatSync(full), entry.digest!, have.mode));
          }
        }
      }
      if (intact) {
        const mode = have!.mode !== entry.mode ? entry.mode : undefined;
        const mtimeMs = have!.mtimeMs !== entry.mtimeMs ? entry.mtimeMs : undefined;
        if (mode !== undefined || mtimeMs !== undefined) {
          setModeAndTime(full, { mode, mtimeMs });
          state.set(entry.path, stateOf(Deno.lstatSync(full), entry.digest!, entry.mode));
          touched.push(entry.path);
        }
      } else {
        // Content comes below; whatever is there now is stale.
        if (have) removeEntry(full);
        state.delete(entry.path);
        fill.push(entry);
      }
    }
  }
  // Writable until filled; `finishDirectories` gives them their modes.
  for (const dir of dirs) {
    setModeAndTime(`${ws}/${dir.path}`, { mode: dir.mode | 0o700, directory: true });
  }
  for (const path of state.keys()) if (!manifest.has(path)) state.delete(path);

  const seen = new Set<string>();
  const missing = fill.filter((e) => {
    if (seen.has(e.digest!) || blobs.has(e.digest!, e.size)) return false;
    seen.add(e.digest!);
    return true;
  });
  return { fill, missing, touched, ours };
}

/**
 * Fills in the files `reconcile` left: those whose content just arrived (already
 * written in place, listed in `arrived`) get their mtime; the rest are copied,
 * from an arrived file with the same content or from the store, into names that
 * must not exist. Each copy runs through `retryOnFull` (budget.ts), which may
 * make room on a full disk and run it again.
 */
export async function fillIn(
  ws: string,
  fill: ManifestEntry[],
  arrived: Set<string>,
  state: WorkspaceState,
  blobs: BlobStore,
  options: { retryOnFull?: <T>(step: () => Promise<T>, bytes: number) => Promise<T> } = {},
): Promise<void> {
  const retryOnFull = options.retryOnFull ?? (<T>(step: () => Promise<T>) => step());
  const local = new Map<string, string>();
  for (const entry of fill) if (arrived.has(entry.path)) local.set(entry.digest!, entry.path);
  for (const entry of fill) {
    const full = `${ws}/${entry.path}`;
    if (!arrived.has(entry.path)) {
      ensureParents(ws, entry.path);
      const source = local.get(entry.digest!);
      const target = { mode: entry.mode, mtimeMs: entry.mtimeMs };
      await retryOnFull(async () => {
        // What a copy cut short by a full disk left.
        removeIfThere(full);
        if (source) {
          await copyFile(`${ws}/${source}`, full, { ...target, size: entry.size, name: source });
        } else {
          await blobs.copyTo(entry.digest!, full, target);
        }
      }, footprint(entry.size));
    } else {
      setModeAndTime(full, { mtimeMs: entry.mtimeMs });
    }
    state.set(entry.path, stateOf(Deno.lstatSync(full), entry.digest!, entry.mode));
  }
}

/**
 * Records the identity the files at `paths` have now, after the agent itself
 * changed them once more (handing them over to the task user changes ctimes).
 */
export function restat(ws: string, state: WorkspaceState, paths: Iterable<string>): void {
  for (const path of paths) {
    const known = state.get(path);
    if (!known) continue;
    try {
      const info = Deno.lstatSync(`${ws}/${path}`);
      if (!info.isFile) {
        state.delete(path);
        continue;
      }
      state.set(path, { ...known, ino: info.ino ?? 0, ctimeMs: info.ctime?.getTime() ?? 0 });
    } catch {
      state.delete(path);
    }
  }
}

/**
 * After a task ran (it started at `taskStartMs`): a file the agent wrote or
 * hashed before, whose ctime is in the second the task started (or later),
 * cannot vouch for itself (the task may have changed it in that same second),
 * so it is marked to be hashed again before it is trusted. Returns how many.
 */
export function markUnverified(state: WorkspaceState, taskStartMs: number): number {
  const racyFrom = Math.floor((taskStartMs - RACY_MARGIN_MS) / 1000) * 1000;
  let marked = 0;
  for (const known of state.values()) {
    if (known.unverified || (known.checkedMs ?? 0) >= taskStartMs) continue;
    if (known.ctimeMs === undefined || known.ctimeMs >= racyFrom) {
      known.unverified = true;
      marked++;
    }
  }
  return marked;
}

/**
 * Hashes a kept file again, if it is still what `known` recorded (lstat before
 * and after). Its state when the digest matched, else undefined.
 */
export async function verifyKept(
  full: string,
  known: FileState,
  options: { maxFileBytes?: number; hashed?: (full: string) => Promise<string | undefined> } = {},
): Promise<FileState | undefined> {
  const same = (info: Deno.FileInfo) =>
    info.isFile && info.nlink === 1 && info.ino === known.ino &&
    info.ctime?.getTime() === known.ctimeMs && info.size === known.size &&
    info.mtime?.getTime() === known.mtimeMs;
  try {
    if (!same(Deno.lstatSync(full))) return undefined;
    const digest = options.hashed
      ? await options.hashed(full)
      : await hashFile(full, { maxBytes: options.maxFileBytes });
    const after = Deno.lstatSync(full);
    if (digest !== known.digest || !same(after)) return undefined;
    return { ...stateOf(after, known.digest, known.mode), unverified: undefined };
  } catch {
    return undefined;
  }
}

/** Unlinks a file, symlink or special file, or removes a directory tree: never through a symlink. */
function removeEntry(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (error) {
    // A parent may have gone already, with what it held.
    if (error instanceof Deno.errors.NotFound) return;
    removeTree(path);
  }
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

export interface WorkspaceDiff {
  /** Added or changed: files (with digests), directories and symlinks, parents first. */
  changed: ManifestEntry[];
  /** Gone, deepest first. */
  deleted: string[];
}

/**
 * What the task changed. A file is unchanged when it is as sloth-runner left
 * it (see `trusted`) and its mode is; otherwise its content is hashed and
 * compared. Sizes are checked against `limits` before anything is read: a file
 * over the file limit, more bytes than the total, or more entries than allowed
 * is a `SyncError` (nothing is sent back). (A task that rewrites a file and sets
 * its size and mtime back within the second the agent wrote it is not noticed
 * here; `markUnverified` makes sure the next run does not reuse it.)
 */
export async function diff(
  ws: string,
  manifest: Map<string, ManifestEntry>,
  state: WorkspaceState,
  limits: { maxEntries: number; maxFileBytes: number; maxTotalBytes: number },
): Promise<WorkspaceDiff> {
  const { entries } = await walkWorkspace(ws, {
    useIgnoreFile: false,
    maxEntries: limits.maxEntries,
  }).catch((error) => {
    if (!(error instanceof SyncError)) throw error;
    throw new SyncError(`the task left ${error.message} in its workspace`);
  });
  // What must be read, checked against the limits before any of it is.
  const toHash = new Set<string>();
  let total = 0;
  for (const e of entries) {
    if (e.type !== "file" || trusted(state.get(e.path), e)) continue;
    if (e.size > limits.maxFileBytes) {
      throw new SyncError(
        `the task left "${e.path}" of ${e.size} bytes, over this agent's ` +
          `${limits.maxFileBytes}-byte file limit`,
      );
    }
    total += e.size;
    if (total > limits.maxTotalBytes) {
      throw new SyncError(
        `the task left more than this agent's ${limits.maxTotalBytes} bytes of new or changed files`,
      );
    }
    toHash.add(e.path);
  }
  const changed: ManifestEntry[] = [];
  const present = new Set<string>();
  for (const e of entries) {
    present.add(e.path);
    const m = manifest.get(e.path);
    const entry: ManifestEntry = {
      path: e.path,
      type: e.type,
      mode: e.mode,
      size: e.type === "file" ? e.size : 0,
      mtimeMs: e.mtimeMs,
      target: e.target,
    };
    if (e.type === "file") {
      const known = state.get(e.path);
      if (!toHash.has(e.path)) {
        entry.digest = known!.digest;
        state.set(e.path, { ...known!, mode: e.mode });
      } else {
        const full = `${ws}/${e.path}`;
        entry.digest = await hashFile(full, { maxBytes: limits.maxFileBytes, name: e.path });
        const after = Deno.lstatSync(full);
        const now = stateOf(after, entry.digest, e.mode);
        // Changed while it was hashed: the digest is not the file's (and no task runs now).
        if (now.ino !== e.ino || now.ctimeMs !== e.ctimeMs || now.size !== e.size) {
          now.unverified = true;
        }
        state.set(e.path, now);
      }
      if (m && m.type === "file" && m.digest === entry.digest && m.mode === e.mode) continue;
    } else if (e.type === "dir") {
      if (m && m.type === "dir" && m.mode === e.mode) continue;
    } else if (m && m.type === "symlink" && m.target === e.target) {
      continue;
    }
    changed.push(entry);
  }
  for (const path of state.keys()) if (!present.has(path)) state.delete(path);
  const deleted = [...manifest.keys()].filter((p) => !present.has(p))
    .sort((a, b) => b.split("/").length - a.split("/").length || (a < b ? 1 : -1));
  return { changed, deleted };
}

/** What a `<key>.size` file holds at most: a decimal number and a newline. */
const SIZE_FILE_BYTES = 17;

/** Files whose states the shelf holds in memory, all workspaces together (~30 MB). */
const MAX_HELD_STATES = 100_000;

/** State files up to this many characters are remembered, not written again unchanged. */
const MAX_REMEMBERED_STATE = 64 * 1024;

/** A state file larger than this is not read (the workspace starts from nothing). */
const MAX_STATE_BYTES = 1024 ** 3;

/**
 * Workspaces kept between jobs, one per master directory (the master names it
 * with a key). A workspace in use by one job is not given to another: that job
 * starts from an empty directory instead. On disk: `<key>/` (the files),
 * `<key>.json` (their states; its mtime is when the workspace was last kept) and
 * `<key>.size` (the bytes it takes, as the budget counts them, so that a restart
 * need not measure again). Which go when is the disk budget's choice (budget.ts);
 * the shelf itself only keeps at most `max` of them.
 */
export class WorkspaceShelf {
  #dir: string;
  #max: number;
  #busy = new Set<string>();
  /**
   * On the shelf now (not taken): bytes as counted, last kept (ms since the epoch),
   * and the state as this process kept it (then `take` need not read it back).
   */
  #kept = new Map<string, { bytes: number; used: number; state?: WorkspaceState }>();
  /**
   * What this process last wrote to `<key>.json` (when small) and `<key>.size`:
   * a job that changed nothing need not write them again (each write of a file
   * that exists costs a truncation and, on ext4, a flush started at close).
   */
  #written = new Map<string, { json?: string; size?: number }>();
  /** Files in the states held in memory, at most `MAX_HELD_STATES`. */
  #heldFiles = 0;
  #total = 0;

  constructor(dir: string, max: number) {
    this.#dir = dir;
    this.#max = max;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const names = new Set([...Deno.readDirSync(dir)].map((e) => e.name));
    for (const name of names) {
      const key = name.replace(/\.(json|size)$/, "");
      if (names.has(`${key}.json`)) continue;
      // A workspace (or its size) whose state is gone: nothing would ever use it.
      removeTree(`${dir}/${name}`);
    }
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      const key = name.slice(0, -5);
      const used = Deno.statSync(`${dir}/${name}`).mtime?.getTime() ?? 0;
      let bytes = Number.parseInt(readOr(`${dir}/${key}.size`, ""), 10);
      if (!Number.isSafeInteger(bytes) || bytes < 0) {
        // Kept by an older agent, or a crash came between the state and the size.
        bytes = this.#measure(key);
        this.#writeSize(key, bytes);
      }
      this.#add(key, bytes, used);
    }
    this.#trim();
  }

  /** Moves the kept workspace for `key` to `target`; its state, or an empty one. */
  take(key: string, target: string): { state: WorkspaceState; taken: boolean } {
    if (!/^[0-9a-f]{16,64}$/.test(key) || this.#busy.has(key)) {
      return { state: new Map(), taken: false };
    }
    this.#busy.add(key);
    const held = this.#kept.get(key)?.state;
    // From here its bytes are the job's, not the shelf's: never evicted while taken.
    this.#remove(key);
    try {
      Deno.renameSync(`${this.#dir}/${key}`, target);
    } catch {
      return { state: new Map(), taken: true };
    }
    // What this process kept (and verified since): the file holds the same, or older.
    if (held) return { state: held, taken: true };
    try {
      const saved = JSON.parse(
        new TextDecoder().decode(readSmallFile(`${this.#dir}/${key}.json`, MAX_STATE_BYTES)),
      );
      return { state: new Map(Object.entries(saved) as [string, FileState][]), taken: true };
    } catch {
      return { state: new Map(), taken: true };
    }
  }

  /**
   * The kept workspace of `key` while it stays on the shelf: its directory, and
   * a handle that `isHeld` and `saveState` check (it is stale once the workspace
   * was taken, even if it has been kept again since).
   */
  hold(key: string): { dir: string; handle: object } | undefined {
    const kept = this.#kept.get(key);
    return kept ? { dir: `${this.#dir}/${key}`, handle: kept } : undefined;
  }

  isHeld(key: string, handle: object): boolean {
    return this.#kept.get(key) === handle;
  }

  /** Writes the state of a kept workspace anew (it was verified), if it is still held. */
  saveState(key: string, handle: object, state: WorkspaceState): void {
    const kept = this.#kept.get(key);
    if (kept !== handle) return;
    const file = `${this.#dir}/${key}.json`;
    this.#writeState(key, JSON.stringify(Object.fromEntries(state)));
    // Its mtime says when the workspace was kept, for the budget after a restart.
    Deno.utimeSync(file, new Date(kept.used), new Date(kept.used));
  }

  /**
   * Keeps `ws` (moved, not copied) for the next job of `key`; returns where it
   * now is. Its size is counted from `state` until `measure` has walked it.
   */
  keep(key: string, ws: string, state: WorkspaceState): string {
    const slot = `${this.#dir}/${key}`;
    // The state and size files count too; the files the task wrote come with `measure`.
    const bytes = [...state.values()].reduce((sum, f) => sum + footprint(f.size), 0) +
      footprint(0) + 2 * footprint(SIZE_FILE_BYTES);
    try {
      this.#writeState(key, JSON.stringify(Object.fromEntries(state)));
      // A size from the last `measure` stands until the next one: a restart in between
      // counts what the workspace took last time, not nothing.
      if (this.#written.get(key)?.size === undefined) this.#writeSize(key, bytes);
      Deno.renameSync(ws, slot);
      Deno.utimeSync(`${slot}.json`, new Date(), new Date());
    } catch (error) {
      // A full disk, say: nothing is kept, and no state is left without its workspace.
      this.release(key);
      throw error;
    } finally {
      this.#busy.delete(key);
    }
    this.#add(key, bytes, Date.now());
    this.#hold(key, state);
    this.#trim();
    return slot;
  }

  /**
   * Counts what the kept workspace of `key` takes on disk, the task's own new files
   * included: the sum of its entries' footprints. Nothing if it was taken meanwhile.
   */
  measure(key: string): void {
    const kept = this.#kept.get(key);
    if (!kept) return;
    const bytes = this.#measure(key);
    // Taken (and perhaps kept again) while it was walked: what was walked is stale.
    if (this.#kept.get(key) !== kept) return;
    this.#total += bytes - kept.bytes;
    kept.bytes = bytes;
    this.#writeSize(key, bytes);
  }

  /** Gives the key back without keeping anything (the job failed half way). */
  release(key: string): void {
    this.#busy.delete(key);
    this.#remove(key);
    this.#written.delete(key);
    for (const suffix of [".json", ".size"]) {
      try {
        Deno.removeSync(`${this.#dir}/${key}${suffix}`);
      } catch {
        // Nothing kept.
      }
    }
  }

  /** Workspaces on the shelf (none is taken by a job), which the budget may drop. */
  evictable(): Evictable[] {
    return [...this.#kept].map(([id, { bytes, used }]) => ({ id, bytes, used }));
  }

  /** Removes a kept workspace: the next run of its directory starts from the store. */
  drop(key: string): void {
    if (!this.#kept.has(key) || this.#busy.has(key)) return;
    this.#remove(key);
    this.#written.delete(key);
    // The state first: a workspace without one is removed at the next start.
    for (const suffix of [".json", ".size"]) {
      try {
        Deno.removeSync(`${this.#dir}/${key}${suffix}`);
      } catch {
        // Already gone.
      }
    }
    removeTree(`${this.#dir}/${key}`);
  }

  /** Bytes the kept workspaces take on disk, as the budget counts them. */
  get totalBytes(): number {
    return this.#total;
  }

  #add(key: string, bytes: number, used: number): void {
    this.#remove(key);
    this.#kept.set(key, { bytes, used });
    this.#total += bytes;
  }

  #remove(key: string): void {
    const kept = this.#kept.get(key);
    if (!kept) return;
    this.#kept.delete(key);
    this.#total -= kept.bytes;
    if (kept.state) this.#heldFiles -= kept.state.size;
  }

  /** Holds a kept workspace's state in memory, as room allows (least recently kept go first). */
  #hold(key: string, state: WorkspaceState): void {
    const kept = this.#kept.get(key);
    if (!kept || state.size > MAX_HELD_STATES) return;
    kept.state = state;
    this.#heldFiles += state.size;
    for (const other of this.#kept.values()) {
      if (this.#heldFiles <= MAX_HELD_STATES) break;
      if (other === kept || !other.state) continue;
      this.#heldFiles -= other.state.size;
      other.state = undefined;
    }
  }

  /** The workspace, its state and its size file, as the budget counts them. */
  #measure(key: string): number {
    let bytes = measureTree(`${this.#dir}/${key}`) + footprint(SIZE_FILE_BYTES);
    try {
      bytes += footprint(Deno.statSync(`${this.#dir}/${key}.json`).size);
    } catch {
      // Taken meanwhile, or released.
    }
    return bytes;
  }

  #writeSize(key: string, bytes: number): void {
    const written = this.#written.get(key) ?? {};
    if (written.size === bytes) return;
    written.size = undefined;
    Deno.writeTextFileSync(`${this.#dir}/${key}.size`, `${bytes}\n`);
    written.size = bytes;
    this.#written.set(key, written);
  }

  #writeState(key: string, json: string): void {
    const written = this.#written.get(key) ?? {};
    if (written.json === json) return;
    written.json = undefined;
    Deno.writeTextFileSync(`${this.#dir}/${key}.json`, json);
    // Only small ones are remembered: a big state is written each time.
    if (json.length <= MAX_REMEMBERED_STATE) written.json = json;
    this.#written.set(key, written);
  }

  /** At most `max` kept: the least recently kept go. */
  #trim(): void {
    const byAge = [...this.#kept].sort((a, b) => a[1].used - b[1].used);
    for (const [key] of byAge.slice(0, Math.max(0, byAge.length - this.#max))) this.drop(key);
  }
}

/**
 * What a directory tree takes on disk, as the budget counts it: each entry's
 * footprint (size in whole blocks, plus its inode). 0 if it is not there.
 */
export function measureTree(dir: string): number {
  let bytes = 0;
  const walk = (path: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(path)];
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = `${path}/${entry.name}`;
      try {
        bytes += footprint(Deno.lstatSync(full).size);
      } catch {
        continue;
      }
      if (entry.isDirectory) walk(full);
    }
  };
  try {
    bytes += footprint(Deno.lstatSync(dir).size);
  } catch {
    return 0;
  }
  walk(dir);
  return bytes;
}

/**
 * Removes a tree a task may have left without write permission on some of its
 * directories: permission is granted, then it goes. Quiet if it is not there.
 */
export function removeTree(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
    return;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
  }
  const grant = (dir: string) => {
    try {
      grantDir(dir);
      for (const entry of Deno.readDirSync(dir)) {
        if (entry.isDirectory) grant(`${dir}/${entry.name}`);
      }
    } catch {
      // Gone meanwhile, or not ours: the removal below says so.
    }
  };
  grant(path);
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Gives the directory at `dir` (never a symlink's target) to its owner whole. */
function grantDir(dir: string): void {
  setModeAndTime(dir, { mode: 0o700, directory: true });
}

function readOr(path: string, fallback: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return fallback;
  }
}

/** Directory modes last, deepest first: a read-only directory had to be filled first. */
export function finishDirectories(ws: string, manifest: Map<string, ManifestEntry>): void {
  const dirs = [...manifest.values()].filter((e) => e.type === "dir").reverse();
  for (const dir of dirs) {
    setModeAndTime(`${ws}/${dir.path}`, { mode: dir.mode, directory: true });
  }
}

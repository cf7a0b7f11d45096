/**
 * The agent's side of a workspace: made to match a master's manifest (from the
 * content store, fetching only what is missing), compared with it after the
 * task ran, and kept between jobs of the same master directory so that a
 * second run touches only what changed.
 */
import type { BlobStore } from "./blobs.ts";
import { type Evictable, footprint } from "./disk.ts";
import { hashFileSync, type ManifestEntry } from "./manifest.ts";
import { ensureParents } from "./unpack.ts";
import { walkWorkspace } from "./walk.ts";

/** What a file was when sloth-runner last wrote or checked it. */
export interface FileState {
  size: number;
  mtimeMs: number;
  mode: number;
  digest: string;
}

export type WorkspaceState = Map<string, FileState>;

/**
 * Makes `ws` match the manifest, except for files whose content must still
 * come: those are returned (the content store lacks their digest) with the
 * files to fill in once it has come.
 */
export async function reconcile(
  ws: string,
  manifest: Map<string, ManifestEntry>,
  state: WorkspaceState,
  blobs: BlobStore,
): Promise<{ fill: ManifestEntry[]; missing: ManifestEntry[] }> {
  const existing = new Map(
    (await walkWorkspace(ws, { useIgnoreFile: false })).entries.map((e) => [e.path, e]),
  );
  const doomed = [...existing.values()].filter((e) => {
    const m = manifest.get(e.path);
    return !m || m.type !== e.type || (e.type === "symlink" && m.target !== e.target);
  }).map((e) => e.path).sort((a, b) => b.length - a.length);
  for (const path of doomed) {
    try {
      Deno.removeSync(`${ws}/${path}`, { recursive: true });
    } catch (error) {
      // A parent may have gone already, with what it held.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    for (const other of existing.keys()) {
      if (other === path || other.startsWith(`${path}/`)) existing.delete(other);
    }
  }

  const fill: ManifestEntry[] = [];
  const dirs: ManifestEntry[] = [];
  for (const entry of manifest.values()) {
    const full = `${ws}/${entry.path}`;
    const have = existing.get(entry.path);
    if (entry.type === "dir") {
      if (!have) {
        ensureParents(ws, entry.path);
        Deno.mkdirSync(full);
      }
      dirs.push(entry);
    } else if (entry.type === "symlink") {
      if (!have) {
        ensureParents(ws, entry.path);
        Deno.symlinkSync(entry.target!, full);
      }
    } else {
      const known = state.get(entry.path);
      const intact = have && known && known.digest === entry.digest && have.size === known.size &&
        have.mtimeMs === known.mtimeMs;
      if (intact) {
        if (have.mode !== entry.mode) Deno.chmodSync(full, entry.mode);
        if (have.mtimeMs !== entry.mtimeMs) setMtime(full, entry.mtimeMs);
        state.set(entry.path, { ...known, mode: entry.mode, mtimeMs: mtimeOf(full) });
      } else {
        // Content comes below; whatever is there now is stale.
        if (have) Deno.removeSync(full);
        fill.push(entry);
      }
    }
  }
  // Writable until filled; `finishDirectories` gives them their modes.
  for (const dir of dirs) Deno.chmodSync(`${ws}/${dir.path}`, dir.mode | 0o700);
  for (const path of state.keys()) if (!manifest.has(path)) state.delete(path);

  const seen = new Set<string>();
  const missing = fill.filter((e) => {
    if (seen.has(e.digest!) || blobs.has(e.digest!, e.size)) return false;
    seen.add(e.digest!);
    return true;
  });
  return { fill, missing };
}

/**
 * Fills in the files `reconcile` left: those whose content just arrived (already
 * written in place, listed in `arrived`) get their mtime; the rest are copied,
 * from an arrived file with the same content or from the store. Each copy runs
 * through `retryOnFull` (budget.ts), which may make room on a full disk and run it again.
 */
export function fillIn(
  ws: string,
  fill: ManifestEntry[],
  arrived: Set<string>,
  state: WorkspaceState,
  blobs: BlobStore,
  options: { retryOnFull?: <T>(step: () => T, bytes: number) => T } = {},
): void {
  const retryOnFull = options.retryOnFull ?? (<T>(step: () => T) => step());
  const local = new Map<string, string>();
  for (const entry of fill) if (arrived.has(entry.path)) local.set(entry.digest!, entry.path);
  for (const entry of fill) {
    const full = `${ws}/${entry.path}`;
    if (!arrived.has(entry.path)) {
      ensureParents(ws, entry.path);
      const source = local.get(entry.digest!);
      retryOnFull(() => {
        // What a copy cut short by a full disk left (read-only, if its source was).
        removeIfThere(full);
        if (source) {
          Deno.copyFileSync(`${ws}/${source}`, full);
          Deno.chmodSync(full, entry.mode);
        } else {
          blobs.copyTo(entry.digest!, full, entry.mode);
        }
      }, footprint(entry.size));
    }
    setMtime(full, entry.mtimeMs);
    state.set(entry.path, {
      size: entry.size,
      mtimeMs: mtimeOf(full),
      mode: entry.mode,
      digest: entry.digest!,
    });
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
 * What the task changed. A file is unchanged when size, mtime and mode are as
 * sloth-runner left them; otherwise its content is hashed and compared. (A task
 * that rewrites a file and then sets its size and mtime back is not noticed.)
 */
export async function diff(
  ws: string,
  manifest: Map<string, ManifestEntry>,
  state: WorkspaceState,
): Promise<WorkspaceDiff> {
  const { entries } = await walkWorkspace(ws, { useIgnoreFile: false });
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
      if (known && known.size === e.size && known.mtimeMs === e.mtimeMs) {
        entry.digest = known.digest;
      } else {
        entry.digest = hashFileSync(`${ws}/${e.path}`);
      }
      state.set(e.path, { size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, digest: entry.digest });
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
  /** On the shelf now (not taken): bytes as counted, last kept (ms since the epoch). */
  #kept = new Map<string, { bytes: number; used: number }>();
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
    // From here its bytes are the job's, not the shelf's: never evicted while taken.
    this.#remove(key);
    try {
      Deno.renameSync(`${this.#dir}/${key}`, target);
    } catch {
      return { state: new Map(), taken: true };
    }
    try {
      const saved = JSON.parse(Deno.readTextFileSync(`${this.#dir}/${key}.json`));
      return { state: new Map(Object.entries(saved) as [string, FileState][]), taken: true };
    } catch {
      return { state: new Map(), taken: true };
    }
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
      Deno.writeTextFileSync(`${slot}.json`, JSON.stringify(Object.fromEntries(state)));
      this.#writeSize(key, bytes);
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
    Deno.writeTextFileSync(`${this.#dir}/${key}.size`, `${bytes}\n`);
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
      Deno.chmodSync(dir, 0o700);
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
  for (const dir of dirs) Deno.chmodSync(`${ws}/${dir.path}`, dir.mode);
}

function setMtime(path: string, mtimeMs: number): void {
  const when = new Date(mtimeMs);
  Deno.utimeSync(path, when, when);
}

function mtimeOf(path: string): number {
  return Deno.lstatSync(path).mtime?.getTime() ?? 0;
}

/**
 * The agent's side of a workspace: made to match a master's manifest (from the
 * content store, fetching only what is missing), compared with it after the
 * task ran, and kept between jobs of the same master directory so that a
 * second run touches only what changed.
 */
import type { BlobStore } from "./blobs.ts";
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
 * from an arrived file with the same content or from the store.
 */
export function fillIn(
  ws: string,
  fill: ManifestEntry[],
  arrived: Set<string>,
  state: WorkspaceState,
  blobs: BlobStore,
): void {
  const local = new Map<string, string>();
  for (const entry of fill) if (arrived.has(entry.path)) local.set(entry.digest!, entry.path);
  for (const entry of fill) {
    const full = `${ws}/${entry.path}`;
    if (!arrived.has(entry.path)) {
      ensureParents(ws, entry.path);
      const source = local.get(entry.digest!);
      if (source) {
        Deno.copyFileSync(`${ws}/${source}`, full);
        Deno.chmodSync(full, entry.mode);
      } else {
        blobs.copyTo(entry.digest!, full, entry.mode);
      }
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

/**
 * Workspaces kept between jobs, one per master directory (the master names it
 * with a key). A workspace in use by one job is not given to another: that job
 * starts from an empty directory instead.
 */
export class WorkspaceShelf {
  #dir: string;
  #max: number;
  #busy = new Set<string>();
  #kept = new Set<string>();

  constructor(dir: string, max: number) {
    this.#dir = dir;
    this.#max = max;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.name.endsWith(".json")) this.#kept.add(entry.name.slice(0, -5));
    }
  }

  /** Moves the kept workspace for `key` to `target`; its state, or an empty one. */
  take(key: string, target: string): { state: WorkspaceState; taken: boolean } {
    if (!/^[0-9a-f]{16,64}$/.test(key) || this.#busy.has(key)) {
      return { state: new Map(), taken: false };
    }
    this.#busy.add(key);
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

  /** Keeps `ws` (moved, not copied) for the next job of `key`; returns where it now is. */
  keep(key: string, ws: string, state: WorkspaceState): string {
    try {
      Deno.writeTextFileSync(`${this.#dir}/${key}.json`, JSON.stringify(Object.fromEntries(state)));
      Deno.renameSync(ws, `${this.#dir}/${key}`);
      Deno.utimeSync(`${this.#dir}/${key}.json`, new Date(), new Date());
    } finally {
      this.#busy.delete(key);
    }
    this.#kept.add(key);
    if (this.#kept.size > this.#max) this.#trim();
    return `${this.#dir}/${key}`;
  }

  /** Gives the key back without keeping anything (the job failed half way). */
  release(key: string): void {
    this.#busy.delete(key);
    this.#kept.delete(key);
    try {
      Deno.removeSync(`${this.#dir}/${key}.json`);
    } catch {
      // Nothing kept.
    }
  }

  #trim(): void {
    const kept = [...Deno.readDirSync(this.#dir)]
      .filter((e) => e.name.endsWith(".json"))
      .map((e) => ({
        key: e.name.slice(0, -5),
        at: Deno.statSync(`${this.#dir}/${e.name}`).mtime?.getTime() ?? 0,
      }))
      .sort((a, b) => b.at - a.at);
    for (const old of kept.slice(this.#max)) {
      if (this.#busy.has(old.key)) continue;
      this.#kept.delete(old.key);
      Deno.removeSync(`${this.#dir}/${old.key}.json`);
      try {
        Deno.removeSync(`${this.#dir}/${old.key}`, { recursive: true });
      } catch {
        // Already gone.
      }
    }
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

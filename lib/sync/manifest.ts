/**
 * Manifests: what a workspace holds, with a SHA-256 for every file. The master
 * sends one instead of the workspace; the agent asks only for the content it
 * lacks. The master remembers digests between runs (keyed by size, mtime and
 * inode), so an unchanged file is not read again.
 */
import { createHash } from "node:crypto";
import { checkRelativePath, parentOf, symlinkStaysInside, SyncError } from "./paths.ts";
import type { Limits } from "./unpack.ts";
import { type Entry, type EntryType, walkWorkspace } from "./walk.ts";
import { refuseReserved } from "./journal.ts";

export interface ManifestEntry {
  path: string;
  type: EntryType;
  mode: number;
  /** Bytes, for files. */
  size: number;
  mtimeMs: number;
  /** Hex SHA-256, for files. */
  digest?: string;
  /** For symlinks. */
  target?: string;
}

export interface Manifest {
  entries: ManifestEntry[];
  /** What was left out, and why. */
  skipped: string[];
  ignored(path: string, isDir?: boolean): boolean;
  /** The identity of each entry on this machine, for telling later whether it changed. */
  identity: Map<string, Entry>;
  /** Writes the digests learned to the cache (see `buildManifest`'s `saveDigests`). */
  saveDigests(): void;
}

/** Where sloth-runner's caches go: `XDG_CACHE_HOME`, else ~/.cache. */
export function userCacheHome(): string {
  return Deno.env.get("XDG_CACHE_HOME") || `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
}

/** One reusable buffer: allocating (and zeroing) 1 MiB per file costs more than hashing it. */
const hashBuffer = new Uint8Array(1024 * 1024);

/** SHA-256 of a file, read synchronously in 1 MiB pieces. */
export function hashFileSync(path: string): string {
  const hash = createHash("sha256");
  using file = Deno.openSync(path, { read: true });
  const buffer = hashBuffer;
  while (true) {
    const n = file.readSync(buffer);
    if (n === null || n === 0) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

/**
 * Digests remembered between runs, in one file per workspace under the user's
 * cache directory. A remembered digest is used only if size, mtime, inode and
 * ctime are unchanged and the file was last changed well before it was hashed
 * (a write in the same millisecond, or the same ctime second, as the one
 * remembered would otherwise go unseen; such files are simply hashed again).
 * The ctime is what catches content rewritten in place with its size and mtime
 * set back: nothing but the clock sets it.
 */
export class DigestCache {
  #file: string;
  #known = new Map<
    string,
    [size: number, mtimeMs: number, ino: number, digest: string, at: number, ctimeMs: number]
  >();
  #dirty = false;

  /** `cacheHome`: instead of the user's cache directory (`XDG_CACHE_HOME`, else ~/.cache). */
  constructor(root: string, options: { cacheHome?: string } = {}) {
    const base = options.cacheHome ?? userCacheHome();
    const key = createHash("sha256").update(root).digest("hex").slice(0, 32);
    this.#file = `${base}/sloth-runner/digests/${key}.json`;
    try {
      const saved = JSON.parse(Deno.readTextFileSync(this.#file));
      if (saved?.root === root && saved.files && typeof saved.files === "object") {
        for (const [path, value] of Object.entries(saved.files)) {
          // Older caches (without the ctime) are not trusted: their files are hashed again.
          if (Array.isArray(value) && value.length === 6) {
            this.#known.set(path, value as [number, number, number, string, number, number]);
          }
        }
      }
    } catch {
      // No cache yet, or an unreadable one: start afresh.
    }
    this.root = root;
  }

  readonly root: string;

  digest(entry: Entry): string {
    const known = this.#known.get(entry.path);
    if (
      known && known[0] === entry.size && known[1] === entry.mtimeMs && known[2] === entry.ino &&
      known[5] === entry.ctimeMs && entry.mtimeMs < known[4] - 2000 &&
      entry.ctimeMs < known[4] - 2000
    ) {
      return known[3];
    }
    const digest = hashFileSync(`${this.root}/${entry.path}`);
    this.#known.set(entry.path, [
      entry.size,
      entry.mtimeMs,
      entry.ino,
      digest,
      Date.now(),
      entry.ctimeMs,
    ]);
    this.#dirty = true;
    return digest;
  }

  /** Forgets what is no longer there, and writes the cache if anything changed. */
  save(present: Set<string>): void {
    for (const path of this.#known.keys()) {
      if (!present.has(path)) {
        this.#known.delete(path);
        this.#dirty = true;
      }
    }
    if (!this.#dirty) return;
    try {
      const dir = this.#file.slice(0, this.#file.lastIndexOf("/"));
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const temp = `${this.#file}.${crypto.randomUUID()}.tmp`;
      Deno.writeTextFileSync(
        temp,
        JSON.stringify({ root: this.root, files: Object.fromEntries(this.#known) }),
        { mode: 0o600 },
      );
      Deno.renameSync(temp, this.#file);
      this.#dirty = false;
    } catch {
      // A cache that cannot be written costs time, not correctness.
    }
  }
}

/**
 * The manifest of a workspace, with digests from (and into) `cache`. With
 * `saveDigests: false` the cache is written only when the caller says (a master
 * does it while the agent works on the manifest).
 */
export async function buildManifest(
  root: string,
  cache: DigestCache,
  options: { saveDigests?: boolean } = {},
): Promise<Manifest> {
  const walk = await walkWorkspace(root);
  const entries: ManifestEntry[] = [];
  for (const e of walk.entries) {
    entries.push({
      path: e.path,
      type: e.type,
      mode: e.mode,
      size: e.type === "file" ? e.size : 0,
      mtimeMs: e.mtimeMs,
      digest: e.type === "file" ? cache.digest(e) : undefined,
      target: e.target,
    });
  }
  const saveDigests = () =>
    cache.save(new Set(walk.entries.filter((e) => e.type === "file").map((e) => e.path)));
  if (options.saveDigests !== false) saveDigests();
  return {
    saveDigests,
    entries,
    skipped: walk.skipped,
    ignored: walk.ignored,
    identity: new Map(walk.entries.map((e) => [e.path, e])),
  };
}

/**
 * Checks a manifest that came over the wire: relative paths, each once, a
 * parent before what it holds and never a file or symlink, symlinks that stay
 * inside, digests where files are, and within the limits. Returns it by path.
 */
export function checkManifest(
  entries: ManifestEntry[],
  limits: Limits,
): Map<string, ManifestEntry> {
  if (entries.length > limits.maxEntries) {
    throw new SyncError(`refused the workspace: more than ${limits.maxEntries} entries`);
  }
  const byPath = new Map<string, ManifestEntry>();
  let total = 0;
  for (const raw of entries) {
    const path = checkRelativePath(raw.path);
    // Never on an agent: it would be a name its walker does not see (and removes).
    refuseReserved(path);
    if (byPath.has(path)) throw new SyncError(`refused "${path}": it appears twice`);
    const parent = parentOf(path);
    if (parent !== "") {
      const holder = byPath.get(parent);
      if (!holder) {
        throw new SyncError(`refused "${path}": its directory ${parent} is not listed before it`);
      }
      if (holder.type !== "dir") {
        throw new SyncError(
          `refused "${path}": ${parent} is not a directory, and nothing is written through it`,
        );
      }
    }
    const entry: ManifestEntry = { ...raw, path, mode: raw.mode & 0o777 };
    if (entry.type === "file") {
      if (!entry.digest || !/^[0-9a-f]{64}$/.test(entry.digest)) {
        throw new SyncError(`refused "${path}": a file without a valid digest`);
      }
      if (entry.size > limits.maxFileBytes) {
        throw new SyncError(
          `refused "${path}": ${entry.size} bytes is over the ${limits.maxFileBytes}-byte file limit`,
        );
      }
      total += entry.size;
      if (total > limits.maxTotalBytes) {
        throw new SyncError(
          `refused the workspace: more than ${limits.maxTotalBytes} bytes of files`,
        );
      }
    } else if (entry.type === "symlink") {
      const target = entry.target ?? "";
      const linked = (p: string) => byPath.get(p)?.target;
      if (!symlinkStaysInside(path, target, linked)) {
        throw new SyncError(
          `refused "${path}": symlink to "${target}" points outside the workspace (or through another symlink)`,
        );
      }
    } else if (entry.type !== "dir") {
      throw new SyncError(`refused "${path}": unknown entry type`);
    }
    byPath.set(path, entry);
  }
  return byPath;
}

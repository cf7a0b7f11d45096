/**
 * The agent's content-addressed store: file contents by SHA-256, so a master
 * sends each content once. Entries are read-only and carry a fixed mtime; an
 * entry whose size or mtime is not what was stored has been tampered with or
 * damaged, is dropped, and is fetched again. What goes when is the agent's disk
 * budget's choice (budget.ts), across this store and the kept workspaces. It
 * lives on disk and outlasts the agent; names are written through a temporary
 * file and a rename, so concurrent jobs never see half an entry.
 */
import { type Evictable, footprint, isNoSpace } from "./disk.ts";
import { hashFileSync } from "./manifest.ts";
import { SyncError } from "./paths.ts";

/** The mtime every stored entry carries (any write changes it). */
const STORED_MTIME = new Date(1_000_000_000);

export class BlobStore {
  readonly dir: string;
  /** Sizes as stored; `used` in ms since the epoch. */
  #entries = new Map<string, { size: number; used: number }>();
  #total = 0;
  /** Digests in use by running jobs: never evicted. */
  #pinned = new Map<string, number>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens (or makes) the store in `dir`, reading what an earlier run left there. */
  static open(dir: string): BlobStore {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const store = new BlobStore(dir);
    for (const entry of Deno.readDirSync(dir)) {
      if (!/^[0-9a-f]{64}$/.test(entry.name)) {
        // A temporary file left by a crash, or something that is not ours.
        Deno.removeSync(`${dir}/${entry.name}`, { recursive: true });
        continue;
      }
      const info = Deno.lstatSync(`${dir}/${entry.name}`);
      store.#entries.set(entry.name, { size: info.size, used: info.atime?.getTime() ?? 0 });
      store.#total += footprint(info.size);
    }
    return store;
  }

  pathOf(digest: string): string {
    return `${this.dir}/${digest}`;
  }

  /** Whether the store holds this content intact (size and mtime as stored). */
  has(digest: string, size: number): boolean {
    const known = this.#entries.get(digest);
    if (!known) return false;
    try {
      const info = Deno.lstatSync(this.pathOf(digest));
      if (info.isFile && info.size === size && info.mtime?.getTime() === STORED_MTIME.getTime()) {
        known.used = Date.now();
        return true;
      }
    } catch {
      // Gone: drop it below.
    }
    this.#drop(digest);
    return false;
  }

  /**
   * Stores a copy of `source` as `digest`, checking the digest on the way (the
   * source may have changed since); false if it did not match or could not be
   * read. A full disk is thrown (the caller may make room and try again), with
   * nothing of the copy left behind. `used`: when it counts as last used (ms), now
   * by default.
   */
  storeCopy(source: string, digest: string, used = Date.now()): boolean {
    if (this.#entries.has(digest)) return true;
    const temp = `${this.dir}/incoming-${crypto.randomUUID()}`;
    let full: unknown;
    try {
      Deno.copyFileSync(source, temp);
      if (hashFileSync(temp) === digest) {
        this.admit(temp, digest, used);
        return true;
      }
    } catch (error) {
      // The source went away: the store simply lacks it.
      if (isNoSpace(error)) full = error;
    }
    try {
      Deno.removeSync(temp);
    } catch {
      // Never made, or admitted.
    }
    if (full) throw full;
    return false;
  }

  /** Moves a file whose content has been checked to be `digest` into the store. */
  admit(file: string, digest: string, used = Date.now()): void {
    const size = Deno.lstatSync(file).size;
    Deno.chmodSync(file, 0o444);
    // The atime says when it was last used, for the budget after a restart.
    Deno.utimeSync(file, new Date(used), STORED_MTIME);
    const existed = this.#entries.get(digest);
    Deno.renameSync(file, this.pathOf(digest));
    if (existed) this.#total -= footprint(existed.size);
    this.#entries.set(digest, { size, used });
    this.#total += footprint(size);
  }

  /** Copies stored content to `target` (which must not exist). */
  copyTo(digest: string, target: string, mode: number): void {
    if (!this.#entries.has(digest)) {
      throw new SyncError(`content ${digest.slice(0, 12)} is not stored`);
    }
    Deno.copyFileSync(this.pathOf(digest), target);
    Deno.chmodSync(target, mode);
  }

  pin(digests: Iterable<string>): void {
    for (const d of digests) this.#pinned.set(d, (this.#pinned.get(d) ?? 0) + 1);
  }

  unpin(digests: Iterable<string>): void {
    for (const d of digests) {
      const n = (this.#pinned.get(d) ?? 1) - 1;
      if (n <= 0) this.#pinned.delete(d);
      else this.#pinned.set(d, n);
    }
  }

  /** Entries no running job uses, which the budget may drop. */
  evictable(): Evictable[] {
    return [...this.#entries].filter(([digest]) => !this.#pinned.has(digest))
      .map(([id, { size, used }]) => ({ id, bytes: footprint(size), used }));
  }

  /** Removes an entry (a later job fetches its content again). */
  drop(digest: string): void {
    this.#drop(digest);
  }

  /** Bytes the entries take on disk, as the budget counts them. */
  get totalBytes(): number {
    return this.#total;
  }

  #drop(digest: string): void {
    const known = this.#entries.get(digest);
    if (!known) return;
    this.#entries.delete(digest);
    this.#total -= footprint(known.size);
    try {
      Deno.removeSync(this.pathOf(digest));
    } catch {
      // Already gone.
    }
  }
}

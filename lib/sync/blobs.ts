/**
 * The agent's content-addressed store: file contents by SHA-256, so a master
 * sends each content once. Entries are read-only and carry a fixed mtime; an
 * entry that is not a regular file, or whose size, mtime, inode or ctime is not
 * what was stored, has been tampered with or damaged, is dropped, and is fetched
 * again. Nothing is copied into it or out of it through a symlink. What goes
 * when is the agent's disk budget's choice (budget.ts), across this store and
 * the kept workspaces. It lives on disk and outlasts the agent; names are
 * written through a temporary file and a rename, so concurrent jobs never see
 * half an entry.
 */
import { type Evictable, footprint, isNoSpace } from "./disk.ts";
import { copyFile } from "./nofollow.ts";
import { SyncError } from "./paths.ts";

/** The mtime every stored entry carries (any write changes it). */
const STORED_MTIME = new Date(1_000_000_000);

export class BlobStore {
  readonly dir: string;
  /**
   * Sizes as stored; `used` in ms since the epoch; `ino` and `ctimeMs` as the
   * agent last saw them (any change to the file changes its ctime).
   */
  #entries = new Map<string, { size: number; used: number; ino: number; ctimeMs: number }>();
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
      const info = Deno.lstatSync(`${dir}/${entry.name}`);
      if (!/^[0-9a-f]{64}$/.test(entry.name) || !info.isFile) {
        // A temporary file left by a crash, or something that is not ours (a
        // symlink is removed, never followed).
        Deno.removeSync(`${dir}/${entry.name}`, { recursive: true });
        continue;
      }
      store.#entries.set(entry.name, {
        size: info.size,
        used: info.atime?.getTime() ?? 0,
        ino: info.ino ?? 0,
        ctimeMs: info.ctime?.getTime() ?? 0,
      });
      store.#total += footprint(info.size);
    }
    return store;
  }

  pathOf(digest: string): string {
    return `${this.dir}/${digest}`;
  }

  /** Whether the store holds this content intact (a regular file, untouched since stored). */
  has(digest: string, size: number): boolean {
    const known = this.#entries.get(digest);
    if (!known) return false;
    try {
      const info = Deno.lstatSync(this.pathOf(digest));
      if (
        info.isFile && info.size === size && info.mtime?.getTime() === STORED_MTIME.getTime() &&
        info.ino === known.ino && info.ctime?.getTime() === known.ctimeMs
      ) {
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
   * Stores a copy of the regular file `source` (never followed if it is a
   * symlink, never opened if it is not a regular file of `size` bytes) as
   * `digest`, hashing what is copied: "stored" when it held that content,
   * "mismatch" when it did not (or could not be read), "present" when the store
   * had it already (the source is then not read). A full disk is thrown (the
   * caller may make room and try again), with nothing of the copy left behind.
   * `used`: when it counts as last used (ms), now by default.
   */
  async storeCopy(
    source: string,
    content: { digest: string; size: number },
    used = Date.now(),
  ): Promise<"stored" | "present" | "mismatch"> {
    const { digest, size } = content;
    if (this.#entries.has(digest)) return "present";
    const temp = `${this.dir}/incoming-${crypto.randomUUID()}`;
    let copied: string | undefined;
    try {
      // Read-only, and the atime says when it was last used, for the budget after a restart.
      copied = await copyFile(source, temp, {
        size,
        mode: 0o444,
        mtimeMs: STORED_MTIME.getTime(),
        atimeMs: used,
        hash: true,
      });
    } catch (error) {
      // The source went away, or is not what was fetched: the store simply lacks it.
      if (isNoSpace(error)) throw error;
      return "mismatch";
    }
    if (copied !== digest || this.#entries.has(digest)) {
      // Stored meanwhile by another job: the source held it all the same.
      removeQuietly(temp);
      return copied === digest ? "stored" : "mismatch";
    }
    Deno.renameSync(temp, this.pathOf(digest));
    // The rename changed its ctime: what `has` compares with from now on.
    const info = Deno.lstatSync(this.pathOf(digest));
    this.#entries.set(digest, {
      size,
      used,
      ino: info.ino ?? 0,
      ctimeMs: info.ctime?.getTime() ?? 0,
    });
    this.#total += footprint(size);
    return "stored";
  }

  /**
   * Copies stored content to `target`, which must not exist (nothing there is
   * followed), with this mode and mtime.
   */
  async copyTo(
    digest: string,
    target: string,
    options: { mode: number; mtimeMs?: number },
  ): Promise<void> {
    const known = this.#entries.get(digest);
    if (!known) throw new SyncError(`content ${digest.slice(0, 12)} is not stored`);
    await copyFile(this.pathOf(digest), target, { size: known.size, ...options });
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

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Never made.
  }
}

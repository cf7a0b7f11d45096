/**
 * The agent's content-addressed store: file contents by SHA-256, so a master
 * sends each content once. Entries are read-only and carry a fixed mtime; an
 * entry whose size or mtime is not what was stored has been tampered with or
 * damaged, is dropped, and is fetched again. Least recently used entries go
 * first when the store is over its size limit. It lives on disk and outlasts
 * the agent; names are written through a temporary file and a rename, so
 * concurrent jobs never see half an entry.
 */
import { hashFileSync } from "./manifest.ts";
import { SyncError } from "./paths.ts";

/** The mtime every stored entry carries (any write changes it). */
const STORED_MTIME = new Date(1_000_000_000);

export class BlobStore {
  readonly dir: string;
  #limit: number;
  #entries = new Map<string, { size: number; used: number }>();
  #total = 0;
  /** Digests in use by running jobs: never evicted. */
  #pinned = new Map<string, number>();

  private constructor(dir: string, limit: number) {
    this.dir = dir;
    this.#limit = limit;
  }

  /** Opens (or makes) the store in `dir`, reading what an earlier run left there. */
  static open(dir: string, limitBytes: number): BlobStore {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const store = new BlobStore(dir, limitBytes);
    for (const entry of Deno.readDirSync(dir)) {
      if (!/^[0-9a-f]{64}$/.test(entry.name)) {
        // A temporary file left by a crash, or something that is not ours.
        Deno.removeSync(`${dir}/${entry.name}`, { recursive: true });
        continue;
      }
      const info = Deno.lstatSync(`${dir}/${entry.name}`);
      store.#entries.set(entry.name, { size: info.size, used: info.atime?.getTime() ?? 0 });
      store.#total += info.size;
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
   * source may have changed since); false if it did not match or could not be read.
   */
  storeCopy(source: string, digest: string): boolean {
    if (this.#entries.has(digest)) return true;
    const temp = `${this.dir}/incoming-${crypto.randomUUID()}`;
    try {
      Deno.copyFileSync(source, temp);
      if (hashFileSync(temp) === digest) {
        this.admit(temp, digest);
        return true;
      }
    } catch {
      // The source went away, or the disk is full: the store simply lacks it.
    }
    try {
      Deno.removeSync(temp);
    } catch {
      // Never made, or admitted.
    }
    return false;
  }

  /** Moves a file whose content has been checked to be `digest` into the store. */
  admit(file: string, digest: string): void {
    const size = Deno.lstatSync(file).size;
    Deno.chmodSync(file, 0o444);
    Deno.utimeSync(file, STORED_MTIME, STORED_MTIME);
    const existed = this.#entries.get(digest);
    Deno.renameSync(file, this.pathOf(digest));
    if (existed) this.#total -= existed.size;
    this.#entries.set(digest, { size, used: Date.now() });
    this.#total += size;
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

  /** Drops least recently used, unpinned entries until the store is within its limit. */
  evict(): void {
    if (this.#total <= this.#limit) return;
    const byAge = [...this.#entries].filter(([d]) => !this.#pinned.has(d))
      .sort((a, b) => a[1].used - b[1].used);
    for (const [digest] of byAge) {
      if (this.#total <= this.#limit * 0.9) break;
      this.#drop(digest);
    }
  }

  get totalBytes(): number {
    return this.#total;
  }

  #drop(digest: string): void {
    const known = this.#entries.get(digest);
    if (!known) return;
    this.#entries.delete(digest);
    this.#total -= known.size;
    try {
      Deno.removeSync(this.pathOf(digest));
    } catch {
      // Already gone.
    }
  }
}

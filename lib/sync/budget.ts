/**
 * One limit for everything an agent keeps between jobs: the content store and
 * the kept workspaces, evicted least recently used first across both. Nothing a
 * running job uses (a pinned digest, a taken workspace) is evicted. The same
 * eviction makes room when the disk itself is full, whatever the limit says.
 */
import { BlobStore } from "./blobs.ts";
import { freeBytes, isNoSpace } from "./disk.ts";
import { WorkspaceShelf } from "./workspace.ts";

export class DiskBudget {
  readonly blobs: BlobStore;
  readonly shelf: WorkspaceShelf;
  readonly limitBytes: number;
  #home: string;

  private constructor(home: string, limitBytes: number, blobs: BlobStore, shelf: WorkspaceShelf) {
    this.#home = home;
    this.limitBytes = limitBytes;
    this.blobs = blobs;
    this.shelf = shelf;
  }

  /**
   * Opens the store (`blobs/`) and the shelf (`workspaces/`) under `home`, with
   * what an earlier run left there, and brings them within the limit (which may
   * have been lowered since).
   */
  static open(home: string, options: { limitBytes: number; keptWorkspaces: number }): DiskBudget {
    const budget = new DiskBudget(
      home,
      options.limitBytes,
      BlobStore.open(`${home}/blobs`),
      new WorkspaceShelf(`${home}/workspaces`, options.keptWorkspaces),
    );
    budget.trim();
    return budget;
  }

  /** Bytes kept, as counted: stored content and kept workspaces (not those taken by a job). */
  get totalBytes(): number {
    return this.blobs.totalBytes + this.shelf.totalBytes;
  }

  /**
   * Least recently used first until what is kept is within the limit; once over
   * it, down to 90% of it, so that not every job that follows evicts again.
   */
  trim(): void {
    if (this.totalBytes <= this.limitBytes) return;
    this.#evictWhile(() => this.totalBytes > this.limitBytes * 0.9);
  }

  /** Bytes that eviction could free now, as counted (what running jobs use is not among them). */
  evictableBytes(): number {
    return [...this.blobs.evictable(), ...this.shelf.evictable()]
      .reduce((sum, e) => sum + e.bytes, 0);
  }

  /** Free bytes on the disk that holds what is kept (undefined where it cannot be read). */
  freeBytes(): number | undefined {
    return freeBytes(this.#home);
  }

  /**
   * Evicts least recently used first until `bytes` are free on the disk, or
   * nothing more may go; returns the free bytes then. Where free space cannot be
   * read, nothing goes (and undefined is returned): a full disk then shows itself
   * as an error, which `retryOnFull` answers.
   */
  makeRoom(bytes: number): number | undefined {
    let free = this.freeBytes();
    if (free === undefined || free >= bytes) return free;
    this.#evictWhile(() => {
      free = this.freeBytes() ?? 0;
      return free < bytes;
    });
    return free;
  }

  /** Evicts everything that may go; returns the free bytes then, if they can be read. */
  evictAll(): number | undefined {
    this.#evictWhile(() => true);
    return this.freeBytes();
  }

  /**
   * Runs `step`; if the disk is full, makes room for `bytes` (everything that may
   * go, by default or where free space cannot be read) and runs it once more. A
   * second full disk is thrown.
   */
  retryOnFull<T>(step: () => T, bytes = Infinity): T {
    try {
      return step();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.#afterFull(bytes);
      return step();
    }
  }

  /** `retryOnFull` for a step that returns a promise. */
  async retryOnFullAsync<T>(step: () => Promise<T>, bytes = Infinity): Promise<T> {
    try {
      return await step();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.#afterFull(bytes);
      return await step();
    }
  }

  #afterFull(bytes: number): void {
    if (bytes === Infinity || this.makeRoom(bytes) === undefined) this.evictAll();
  }

  #evictWhile(more: () => boolean): void {
    const candidates = [
      ...this.blobs.evictable().map((e) => ({ ...e, from: this.blobs })),
      ...this.shelf.evictable().map((e) => ({ ...e, from: this.shelf })),
    ].sort((a, b) => a.used - b.used);
    for (const candidate of candidates) {
      if (!more()) return;
      candidate.from.drop(candidate.id);
    }
  }
}

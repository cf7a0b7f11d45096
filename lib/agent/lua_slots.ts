/**
 * An agent's Lua workers, kept warm and reused across jobs (a new one costs
 * 80-300 ms; a reused one a fresh Lua state, ~2 ms).
 *
 * Each worker is bound to a *slot*: a directory of its own, made by the agent
 * (0711, the agent's), which is all of the host's files the worker can reach:
 * with bubblewrap, the worker is a process whose file system holds the slot
 * directory and nothing else of the host's but the system's programs,
 * read-only (exec/confined.ts); without it, a Web Worker whose Deno permissions
 * name the slot directory only. A Lua job's directory is made inside a free
 * slot, and moved out of it (a rename, same file system) when the job ends,
 * before the slot serves anyone else. So:
 *
 * - At any moment a slot holds at most one job's directory: a worker can reach
 *   the directory of the job it serves and no other job's, not a concurrent one
 *   (in another slot, or in jobs/), not the previous one of its own slot (moved
 *   out; a path kept from it names nothing, as every job directory's name is
 *   new), nor the agent's content store, token or kept workspaces.
 * - Between jobs the worker is reset (`reset`, worker.ts): its Lua state is
 *   closed, and it gets a new Lua runtime (a new wasm instance: memory, files
 *   and references of the last job's states are gone; only the compiled code is
 *   shared). A worker that still has a host call of the job in flight (a fetch,
 *   a download, a command started in a coroutine and left running), that was
 *   killed (a cancel, a timeout), crashed, or does not answer the reset within
 *   a second is not reused: it is killed and the slot gets a new one.
 * - Lua cannot start processes in the worker: `exec.run` commands are the
 *   agent's children (each in a sandbox of its own, bound to the job's directory,
 *   a pid namespace with bubblewrap), stopped when the session ends, so nothing
 *   they leave can be in the slot when the next job's directory comes.
 * - The worker's working directory is the slot (never a job's directory), and
 *   Lua has no way to change it or to open descriptors that outlive a call.
 *
 * Tests: tests/integration/lua_slots_test.ts, lua_race_test.ts, sandbox_test.ts.
 */
import { LuaPool, type LuaPoolOptions, type LuaWorker } from "../dsl/mod.ts";

/** Longest wait for a worker's answer to `reset` before it is killed instead. */
const RESET_TIMEOUT_MS = 1000;
/** Idle workers beyond one are let go (35-50 MB each) after this long without a new idle one. */
const IDLE_MS = 30_000;

export interface LuaSlotsOptions {
  /** Where slot directories are made (emptied by the agent at its start). */
  dir: string;
  /** Slots in use at once beyond which a job waits (the agent's concurrent jobs, and a spare). */
  max: number;
  /** A new worker that reaches `slotDir` and nothing else of the host's files. */
  start(slotDir: string): LuaWorker;
  log(line: string): void;
}

export class LuaSlots {
  #o: LuaSlotsOptions;
  #idle: LuaSlot[] = [];
  #count = 0;
  #waiting: ((slot: LuaSlot) => void)[] = [];
  #closed = false;
  #all = new Set<LuaSlot>();
  #trimTimer?: ReturnType<typeof setTimeout>;

  constructor(options: LuaSlotsOptions) {
    this.#o = options;
  }

  /** The directory holding the slots. */
  get dir(): string {
    return this.#o.dir;
  }

  /**
   * A free slot for a job, its worker warm when one was idle; a new one
   * otherwise. Keeps one more ready (after the first Lua job only, so an agent
   * that runs only shell commands has no worker).
   */
  async take(): Promise<LuaSlot> {
    let slot = this.#idle.pop();
    if (!slot && this.#count < this.#o.max) slot = this.#make();
    if (!slot) slot = await new Promise<LuaSlot>((resolve) => this.#waiting.push(resolve));
    if (this.#idle.length === 0 && this.#count < this.#o.max && !this.#closed) {
      this.#idle.push(this.#make());
    }
    return slot;
  }

  /**
   * The job in `slot` is over (its pool closed): its directory `jobRoot` moves
   * to `into` (a directory outside every slot; its name is kept), the worker is
   * reset or replaced, and the slot is free again. Returns where the job's
   * directory now is, for the caller to remove.
   */
  release(slot: LuaSlot, jobRoot: string | undefined, into: string): string | undefined {
    if (jobRoot === undefined) {
      slot.reset().then(() => this.#free(slot));
      return undefined;
    }
    const moved = `${into}/${jobRoot.slice(jobRoot.lastIndexOf("/") + 1)}`;
    try {
      Deno.renameSync(jobRoot, moved);
    } catch (error) {
      // Never reused while it may hold the job's files: the slot goes with the job.
      this.#o.log(`a Lua slot is dropped: cannot move ${jobRoot} out: ${(error as Error).message}`);
      slot.close();
      this.#all.delete(slot);
      this.#count--;
      if (this.#waiting.length > 0 && !this.#closed) this.#free(this.#make());
      return jobRoot;
    }
    slot.reset().then(() => this.#free(slot));
    return moved;
  }

  #free(slot: LuaSlot): void {
    if (this.#closed) return slot.close();
    const waiter = this.#waiting.shift();
    if (waiter) waiter(slot);
    else {
      this.#idle.push(slot);
      this.#trimLater();
    }
  }

  /** After a burst of jobs, the agent keeps one warm worker, not one per job it ran at once. */
  #trimLater(): void {
    clearTimeout(this.#trimTimer);
    if (this.#idle.length <= 1) return;
    this.#trimTimer = setTimeout(() => {
      while (this.#idle.length > 1) {
        const slot = this.#idle.shift()!;
        slot.close();
        this.#all.delete(slot);
        this.#count--;
        try {
          Deno.removeSync(slot.dir, { recursive: true });
        } catch {
          // Gone with the agent's home, or removed at its next start.
        }
      }
    }, IDLE_MS);
    Deno.unrefTimer(this.#trimTimer);
  }

  #make(): LuaSlot {
    const dir = `${this.#o.dir}/slot-${crypto.randomUUID().slice(0, 13)}`;
    // Passable, not readable, by the task user: it reaches its job's directory inside.
    Deno.mkdirSync(dir, { mode: 0o711 });
    Deno.chmodSync(dir, 0o711);
    this.#count++;
    const slot = new LuaSlot(dir, this.#o);
    this.#all.add(slot);
    return slot;
  }

  /** Terminates every worker; their directories go with the agent's. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#trimTimer);
    for (const slot of this.#all) slot.close();
    this.#idle = [];
  }
}

/** One slot: its directory and the worker bound to it. */
export class LuaSlot {
  readonly dir: string;
  #o: LuaSlotsOptions;
  #worker?: SlotWorker;
  /** Given to the job's pool and not yet given back. */
  #lent = false;
  /** The job's pool used the worker (it has the job's state to forget). */
  #used = false;
  #closed = false;

  constructor(dir: string, options: LuaSlotsOptions) {
    this.dir = dir;
    this.#o = options;
    this.#worker = this.#start();
  }

  #start(): SlotWorker {
    return new SlotWorker(this.#o.start(this.dir));
  }

  /**
   * A pool for the job whose directory is in this slot: its workers are this
   * slot's (one at a time), given back to the slot when the pool closes.
   */
  pool(options: Omit<LuaPoolOptions, "spawn" | "retire" | "permissions">): LuaPool {
    return new LuaPool({
      ...options,
      maxIdle: 1,
      spawn: () => this.#lend(),
      retire: (worker) => this.#giveBack(worker),
    });
  }

  #lend(): LuaWorker {
    // A second worker in one job only after the first was killed (its pool gave it up).
    if (this.#lent || !this.#worker || this.#worker.dead) {
      this.#worker?.terminate();
      this.#worker = this.#start();
    }
    this.#lent = true;
    this.#used = true;
    return this.#worker;
  }

  #giveBack(worker: LuaWorker): void {
    if (worker === this.#worker) this.#lent = false;
    else worker.terminate();
  }

  /** Makes the worker fit for the next job: reset when clean, else replaced. */
  async reset(): Promise<void> {
    const worker = this.#worker;
    const used = this.#used;
    this.#lent = false;
    this.#used = false;
    if (worker && !worker.dead && (!used || await worker.reset())) return;
    if (worker && !worker.dead) {
      this.#o.log(
        `the Lua worker of ${this.dir} is replaced: a call of its last job was still running`,
      );
    }
    worker?.terminate();
    this.#worker = this.#closed ? undefined : this.#start();
  }

  close(): void {
    this.#closed = true;
    this.#worker?.terminate();
    this.#worker = undefined;
  }
}

/** A worker that knows whether it was terminated or failed, and can be asked to reset. */
class SlotWorker implements LuaWorker {
  #inner: LuaWorker;
  #terminated = false;
  #failed = false;
  onerror: LuaWorker["onerror"] = null;

  constructor(inner: LuaWorker) {
    this.#inner = inner;
    inner.onerror = (event) => {
      // A worker that crashed, or whose process ended, is never lent again.
      this.#failed = true;
      if (this.onerror) this.onerror(event);
      else event.preventDefault();
    };
  }

  get dead(): boolean {
    return this.#terminated || this.#failed;
  }

  get onmessage() {
    return this.#inner.onmessage;
  }
  set onmessage(handler) {
    this.#inner.onmessage = handler;
  }

  postMessage(message: Parameters<LuaWorker["postMessage"]>[0]): void {
    this.#inner.postMessage(message);
  }

  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#inner.terminate();
  }

  /** Whether the worker reset itself cleanly (see worker.ts `reset`). */
  reset(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const done = (clean: boolean) => {
        clearTimeout(timer);
        this.onmessage = null;
        this.onerror = null;
        resolve(clean && !this.dead);
      };
      const timer = setTimeout(() => done(false), RESET_TIMEOUT_MS);
      // Whatever else the last job's worker still says is dropped.
      this.onmessage = (event) => {
        if (event.data.op === "reset_done") done(event.data.clean);
      };
      this.onerror = (event) => {
        event.preventDefault();
        done(false);
      };
      this.postMessage({ op: "reset" });
    });
  }
}

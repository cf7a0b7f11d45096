/**
 * Lua workers, kept warm between tasks. Starting a worker costs ~80 ms (module
 * and wasm compile); a fresh Lua state in a warm one ~2 ms. A session owns one
 * worker from `open` to `release`; killing a session terminates its worker, which
 * is the only way to stop Lua code that does not yield, and stops every process
 * its `exec.run` calls started.
 */
import { fromErrorData, SlothError } from "../errors.ts";
import { parseDuration, parseSize } from "../model/mod.ts";
import { runShell, type Sandbox } from "../exec/mod.ts";
import type { ExecReply, ExecRequest } from "./host.ts";
import { DATA_LIMIT_ENV, DEFAULT_DATA_LIMIT } from "./limits.ts";
import type { CallKind, CallResult, FromWorker, OpenRequest, ToWorker } from "./protocol.ts";
import type { LuaWorker } from "./process_worker.ts";

export interface SessionHooks {
  onLog(level: string, message: string): void;
}

export interface Opened {
  description: unknown;
  warnings: string[];
  files: string[];
  globals: string[];
}

/** Time the top-level chunk may take before it is stopped; SLOTH_LUA_TIMEOUT changes it. */
export const LOAD_TIMEOUT_MS = envNumber(
  "SLOTH_LUA_TIMEOUT",
  parseDuration,
  'a duration such as "30s" or "2m"',
) ?? 10_000;
/** Bytes of memory one Lua state may use; SLOTH_LUA_MEMORY (a size: 512M, 1G) changes it. */
export const LUA_MEMORY_LIMIT = envNumber("SLOTH_LUA_MEMORY", (v) => {
  const n = parseSize(v);
  return n !== undefined && n >= 1024 * 1024 ? n : undefined;
}, "a size of at least 1M, such as 512M or 1G; the default is 256M") ??
  256 * 1024 * 1024;
/**
 * Bytes one value may carry between Lua and the host (a JSON text, a file read,
 * a response body): host-side memory is not Lua's. SLOTH_LUA_DATA_LIMIT changes it.
 */
export const LUA_DATA_LIMIT = envNumber(DATA_LIMIT_ENV, (v) => {
  const n = parseSize(v);
  return n !== undefined && n >= 1024 * 1024 ? n : undefined;
}, "a size of at least 1M, such as 16M or 256M; the default is 64M") ?? DEFAULT_DATA_LIMIT;

function envNumber(
  name: string,
  parse: (value: string) => number | undefined,
  expected: string,
): number | undefined {
  const value = Deno.env.get(name);
  if (value === undefined || value === "") return undefined;
  const parsed = parse(value);
  if (parsed === undefined) {
    throw new SlothError("usage", `${name}=${value} is not valid: expected ${expected}`, {
      hint: `fix or unset ${name}`,
    });
  }
  return parsed;
}

const workerUrl = new URL("./worker.ts", import.meta.url);
let prestarted: LuaWorker | undefined;

/** The Lua runtime's own file, which a sandboxed worker must still be able to read. */
export const LUA_WASM_PATH = decodeURIComponent(
  new URL("./glue.wasm", import.meta.resolve("wasmoon")).pathname,
);

export interface LuaPoolOptions {
  /** Idle workers kept for later sessions. */
  maxIdle?: number;
  /**
   * Deno permissions of the workers (the agent's sandbox); the process's own
   * when absent. Needs `--unstable-worker-options`.
   */
  permissions?: Deno.PermissionOptionsObject;
  /** Where `exec.run` commands run (the agent's sandbox); directly when absent. */
  sandbox?: Sandbox;
  /** Added to the environment of `exec.run` commands. */
  env?: Record<string, string>;
  /** Where `fs.tmpname` makes files. */
  tmpdir?: string;
  /** The only directory Lua's `fs` may touch, symlinks resolved (the agent's sandbox). */
  confine?: string;
  /** Starts a worker of another kind than a Web Worker (an agent's confined process). */
  spawn?: () => LuaWorker;
  /**
   * Takes a worker this pool is done with, instead of terminating it (an agent's
   * slot, which resets it for its next job). Never given a killed session's worker.
   */
  retire?: (worker: LuaWorker) => void;
}

/**
 * A Web Worker running Lua, with `permissions` (needs `--unstable-worker-options`)
 * or the process's own.
 */
export function startLuaWorker(permissions?: Deno.PermissionOptionsObject): LuaWorker {
  return new Worker(workerUrl, {
    type: "module",
    ...(permissions ? { deno: { permissions } } : {}),
  } as WorkerOptions) as unknown as LuaWorker;
}

export class LuaPool {
  #idle: LuaWorker[] = [];
  #options: LuaPoolOptions;
  #closed = false;

  constructor(options: LuaPoolOptions = {}) {
    this.#options = options;
    if (prestarted && !options.permissions) {
      this.#idle.push(prestarted);
      prestarted = undefined;
    }
  }

  /**
   * Starts a worker before anything else loads (~100 ms of start-up that then
   * overlaps the rest); the next pool without special permissions adopts it.
   */
  static prestart(): void {
    prestarted ??= new Worker(workerUrl, { type: "module" }) as unknown as LuaWorker;
  }

  get sandbox(): Sandbox | undefined {
    return this.#options.sandbox;
  }

  get env(): Record<string, string> {
    return this.#options.env ?? {};
  }

  #spawn(): LuaWorker {
    if (this.#options.spawn) return this.#options.spawn();
    return startLuaWorker(this.#options.permissions);
  }

  #retire(worker: LuaWorker): void {
    if (this.#options.retire) this.#options.retire(worker);
    else worker.terminate();
  }

  /** Opens a fresh Lua state with the workflow loaded. Throws `SlothError` if it does not load. */
  async open(
    request: Omit<OpenRequest, "op" | "memoryLimit" | "dataLimit">,
    hooks: SessionHooks,
    options: { loadTimeoutMs?: number } = {},
  ): Promise<{ session: LuaSession; opened: Opened }> {
    if (this.#closed) throw new SlothError("internal", "the Lua pool is closed");
    const worker = this.#idle.pop() ?? this.#spawn();
    const session = new LuaSession(this, worker, hooks, request.workdir);
    const opened = await session.open(
      {
        ...request,
        op: "open",
        memoryLimit: LUA_MEMORY_LIMIT,
        dataLimit: LUA_DATA_LIMIT,
        tmpdir: this.#options.tmpdir,
        confine: this.#options.confine,
      },
      options.loadTimeoutMs ?? LOAD_TIMEOUT_MS,
    );
    return { session, opened };
  }

  /** Starts a worker ahead of need, so the first task does not pay for it. */
  warm(): void {
    if (!this.#closed && this.#idle.length === 0) {
      this.#idle.push(this.#spawn());
    }
  }

  giveBack(worker: LuaWorker): void {
    if (this.#closed || this.#idle.length >= (this.#options.maxIdle ?? 4)) this.#retire(worker);
    else this.#idle.push(worker);
  }

  /** Lets idle workers go (about 35 MB each); new sessions start new ones. */
  drain(): void {
    for (const worker of this.#idle) this.#retire(worker);
    this.#idle = [];
  }

  close(): void {
    this.#closed = true;
    this.drain();
  }
}

type Waiter = { resolve(value: FromWorker): void; reject(error: Error): void };

export class LuaSession {
  #pool: LuaPool;
  #worker: LuaWorker | undefined;
  #hooks: SessionHooks;
  #workdir: string;
  #waiters = new Map<number | "open", Waiter>();
  #nextId = 0;
  /** Aborted when the session ends: stops every `exec.run` child still running. */
  #children = new AbortController();

  constructor(pool: LuaPool, worker: LuaWorker, hooks: SessionHooks, workdir: string) {
    this.#pool = pool;
    this.#worker = worker;
    this.#hooks = hooks;
    this.#workdir = workdir;
    worker.onmessage = (event) => this.#receive(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      this.#fail(new Error(`the Lua worker crashed: ${event.message}`));
    };
  }

  async open(request: OpenRequest, timeoutMs: number): Promise<Opened> {
    const reply = await this.#request(
      "open",
      request,
      timeoutMs,
      () =>
        new SlothError("lua_timeout", `the workflow did not finish loading within ${timeoutMs}ms`, {
          hint: "Look for an endless loop or a long-running call at the top level of the file " +
            "(SLOTH_LUA_TIMEOUT sets the limit; default 10s).",
        }),
    );
    if (reply.op === "open_failed") {
      // The worker closed the state itself and is fine for the next session.
      this.release();
      throw fromErrorData(reply.error);
    }
    if (reply.op !== "opened") throw new SlothError("internal", `unexpected reply ${reply.op}`);
    return {
      description: reply.description,
      warnings: reply.warnings,
      files: reply.files,
      globals: reply.globals,
    };
  }

  /**
   * Calls a function of the task. Aborting `signal` terminates the worker at once;
   * the call then returns `{ error }` carrying the abort reason.
   */
  async call(
    kind: CallKind,
    target: { group: string; task: string; field: string },
    args: unknown[],
    signal?: AbortSignal,
  ): Promise<CallResult> {
    const id = ++this.#nextId;
    const onAbort = () => {
      this.kill();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal?.aborted) throw new Error("aborted");
      const reply = await this.#request(id, { op: "call", id, kind, ...target, args });
      if (reply.op !== "called") throw new Error(`unexpected reply ${reply.op}`);
      return reply.result;
    } catch (error) {
      if (signal?.aborted) return { error: String(signal.reason ?? "cancelled") };
      return { error: (error as Error).message };
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Where the state's log lines go from now on. */
  setHooks(hooks: SessionHooks): void {
    this.#hooks = hooks;
  }

  /** Ends the session and keeps the worker for the next one. */
  release(): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#detach();
    worker.postMessage({ op: "close" } satisfies ToWorker);
    this.#pool.giveBack(worker);
  }

  /** Ends the session now: the worker is terminated and its children stopped. */
  kill(): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#detach();
    worker.terminate();
    this.#fail(new Error("the Lua state was stopped"));
  }

  #detach(): void {
    this.#worker!.onmessage = null;
    this.#worker!.onerror = null;
    this.#worker = undefined;
    this.#children.abort("cancelled");
  }

  #request(
    key: number | "open",
    message: ToWorker,
    timeoutMs?: number,
    onTimeout?: () => Error,
  ): Promise<FromWorker> {
    if (!this.#worker) return Promise.reject(new Error("the Lua state is closed"));
    return new Promise<FromWorker>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#waiters.get(key)?.reject(onTimeout?.() ?? new Error("timed out"));
          this.kill();
        }, timeoutMs);
      }
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(key);
      };
      this.#waiters.set(key, {
        resolve: (value) => (done(), resolve(value)),
        reject: (error) => (done(), reject(error)),
      });
      this.#worker!.postMessage(message);
    });
  }

  #fail(error: Error): void {
    for (const waiter of [...this.#waiters.values()]) waiter.reject(error);
  }

  #receive(message: FromWorker): void {
    switch (message.op) {
      case "opened":
      case "open_failed":
        this.#waiters.get("open")?.resolve(message);
        break;
      case "called":
        this.#waiters.get(message.id)?.resolve(message);
        break;
      case "log":
        this.#hooks.onLog(message.level, message.message);
        break;
      case "exec":
        this.#exec(message.request).then(
          (reply) => this.#worker?.postMessage({ op: "exec_done", id: message.id, reply }),
          (error) =>
            this.#worker?.postMessage({ op: "exec_done", id: message.id, error: String(error) }),
        );
        break;
    }
  }

  async #exec(request: ExecRequest): Promise<ExecReply> {
    const controller = new AbortController();
    const stop = () => controller.abort(this.#children.signal.reason);
    this.#children.signal.addEventListener("abort", stop, { once: true });
    const timer = request.timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort("timeout"), request.timeoutMs);
    try {
      const { exit, stdout, stderr, binary } = await runShell(request.cmd, {
        cwd: request.workdir || this.#workdir,
        env: { ...this.#pool.env, ...request.env },
        signal: controller.signal,
        capture: true,
        sandbox: this.#pool.sandbox,
      });
      if (exit.reason === "spawn_failed") throw new Error(exit.message);
      const code = exit.reason === "timeout" ? 124 : exit.code ?? 128;
      const note = exit.reason === "timeout" ? `timed out after ${request.timeoutMs}ms\n` : "";
      return {
        stdout,
        stderr: stderr + note,
        exit_code: code,
        success: code === 0,
        ...(binary && { binary }),
      };
    } finally {
      clearTimeout(timer);
      this.#children.signal.removeEventListener("abort", stop);
    }
  }
}

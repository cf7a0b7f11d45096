/**
 * A Lua worker in a process of its own (worker_process.ts), behind the same face
 * as a Web Worker, for an agent's jobs: the process runs confined to the job's
 * directory (exec/confined.ts), so Lua's file access cannot race out of it.
 */
import { startConfined } from "../exec/mod.ts";
import { type FromWorker, LUA_WORKER_ENV, type ToWorker } from "./protocol.ts";

/** What a Lua session talks to: a Web Worker, or a worker process. */
export interface LuaWorker {
  postMessage(message: ToWorker): void;
  onmessage: ((event: { data: FromWorker }) => void) | null;
  onerror: ((event: { message: string; preventDefault(): void }) => void) | null;
  terminate(): void;
}

const WASM_PATH = decodeURIComponent(
  new URL("./glue.wasm", import.meta.resolve("wasmoon")).pathname,
);

export interface ProcessWorkerOptions {
  /**
   * The only place the process can write, or see of the host's files: a job's
   * directory, or an agent's slot directory that holds one job's at a time.
   */
  jobRoot: string;
  /** Give Lua a network (net.*). */
  network: boolean;
  /** Lines the process writes to its standard error (a crash's last words). */
  onError(line: string): void;
}

export { LUA_WORKER_ENV };

/** Starts a confined Lua worker process for one job. */
export function startProcessWorker(options: ProcessWorkerOptions): LuaWorker {
  const { argv, env, readOnly } = workerCommand(options);
  const proc = startConfined({
    argv,
    env: {
      ...env,
      // Lua's own temp files go where each job says (fs.tmpname); the runtime writes none.
      HOME: options.jobRoot,
      TMPDIR: options.jobRoot,
      NO_COLOR: "1",
    },
    jobRoot: options.jobRoot,
    readOnly,
    network: options.network,
  });
  let terminated = false;
  const worker: LuaWorker = {
    onmessage: null,
    onerror: null,
    postMessage: (message) => proc.send(JSON.stringify(message)),
    terminate: () => {
      terminated = true;
      proc.kill();
    },
  };
  (async () => {
    for await (const line of proc.lines) {
      let message: FromWorker;
      try {
        message = JSON.parse(line);
      } catch {
        // Not the protocol: something wrote to stdout. Shown, never obeyed.
        message = { op: "log", level: "warn", message: line };
      }
      worker.onmessage?.({ data: message });
    }
  })().catch(() => {});
  (async () => {
    for await (const line of proc.errors) options.onError(line);
  })().catch(() => {});
  proc.status.then((status) => {
    if (terminated) return;
    worker.onerror?.({
      message: `the Lua worker process ended (${
        status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`
      })`,
      preventDefault() {},
    });
  });
  return worker;
}

/**
 * How to start a worker process: this executable again (compiled: its modules are
 * inside it), or Deno on worker_process.ts with only the job's directory and the
 * Lua runtime's file allowed (its own files, and Deno's cache, read-only).
 */
function workerCommand(options: ProcessWorkerOptions): {
  argv: string[];
  env: Record<string, string>;
  readOnly: string[];
} {
  const exec = Deno.execPath();
  const name = exec.slice(exec.lastIndexOf("/") + 1);
  const net: Record<string, string> = options.network ? { [`${LUA_WORKER_ENV}_NET`]: "1" } : {};
  if (name !== "deno") {
    return { argv: [exec], env: { [LUA_WORKER_ENV]: "1", ...net }, readOnly: [exec] };
  }
  const entry = new URL("./worker_process.ts", import.meta.url).pathname;
  const root = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
  const denoDir = Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? ""}/.cache`}/deno`;
  return {
    argv: [
      exec,
      "run",
      "--quiet",
      "--no-prompt",
      "--config",
      `${root}/deno.json`,
      `--allow-read=${options.jobRoot},${WASM_PATH}`,
      `--allow-write=${options.jobRoot}`,
      ...(options.network ? ["--allow-net"] : []),
      entry,
    ],
    env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1" },
    readOnly: [exec, denoDir, root],
  };
}

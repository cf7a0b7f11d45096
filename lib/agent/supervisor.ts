/**
 * The agent as two processes: a small supervisor (the process people start,
 * and the one systemd watches) and the serving process it starts, which holds
 * the port, the gRPC server and the jobs.
 *
 * Why: a crash inside the runtime's HTTP/2 code ends a process whatever the
 * JavaScript does (SECURITY.md). The frame filter keeps hostile peers away
 * from the known crashes; for what remains, the supervisor restarts the
 * serving process at once, on the same port with the same token, after killing
 * the process trees of the jobs it was running (their masters see the agent
 * lost, and retry). Restarts that keep failing back off, up to 10 s apart.
 *
 * The two talk over the child's standard input and output:
 * - stdin: one JSON line of `ServeConfig` (the token travels here, never in the
 *   environment); then nothing, until it closes when the supervisor dies, which
 *   the serving process takes as the order to end at once.
 * - stdout: one JSON line `{"ready": {...}}` once it listens.
 * The serving process's stderr is the agent's log, passed straight through.
 */
import { killRecordedTrees, type SelfProcess, startSelf } from "../exec/mod.ts";

/** Set in the serving process's environment; the entry points check it. */
export const SERVE_ENV = "SLOTH_AGENT_SERVE";

/** What the supervisor tells the serving process. */
export interface ServeConfig {
  /** The token masters must send (--token-file or SLOTH_AGENT_TOKEN). */
  token?: string;
  /** The token a loopback agent without one made at its first start, kept across restarts. */
  localToken?: string;
  /** Use this port (a restart after `-p 0` keeps the port it got). */
  port?: number;
  /** The port was picked by the system at first start: its files go when the agent stops. */
  ephemeral?: boolean;
}

/** What the serving process tells the supervisor once it listens. */
export interface ServeReady {
  port: number;
  /** The token it made, for a loopback agent without one. */
  localToken?: string;
  /** The port was picked by the system (`-p 0`). */
  ephemeral: boolean;
  /** Where it records its jobs' process trees. */
  trees: string;
}

export interface SuperviseOptions {
  token?: string;
  /** The serving process's environment (the token is never in it). */
  env: Record<string, string>;
  log(line: string): void;
}

/** Restarts closer together than this count as one crash loop. */
const STABLE_MS = 10_000;
const MAX_BACKOFF_MS = 10_000;
/** Longest wait for a serving process to listen. */
const READY_TIMEOUT_MS = 60_000;
/** Restarts in a row that never got to listen, after which the supervisor gives up. */
const MAX_FAILED_STARTS = 20;

/**
 * Runs the serving process until SIGINT or SIGTERM (passed on to it), restarting
 * it whenever it dies otherwise. Returns the exit code for the agent: the first
 * start's own code if it never listened (a usage error), else 0 when stopped.
 */
export async function superviseAgent(options: SuperviseOptions): Promise<number> {
  let stopping: Deno.Signal | undefined;
  let current: SelfProcess | undefined;
  const onSignal = (signal: Deno.Signal) => () => {
    stopping ??= signal;
    current?.kill("SIGTERM");
  };
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const listener = onSignal(signal);
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  try {
    let config: ServeConfig = { token: options.token };
    let ready: ServeReady | undefined;
    let crashesInARow = 0;
    let failedStarts = 0;
    while (true) {
      const child = startSelf({ env: { ...options.env, [SERVE_ENV]: "1" }, raiseFileLimit: true });
      current = child;
      await child.write(JSON.stringify(config) + "\n");
      if (stopping) child.kill("SIGTERM");
      const started = Date.now();
      const announced = await waitReady(child);
      if (announced) {
        failedStarts = 0;
        if (!ready) {
          config = {
            ...config,
            localToken: announced.localToken,
            port: announced.port,
            ephemeral: announced.ephemeral,
          };
        }
        ready = announced;
      }
      const status = await child.status;
      current = undefined;
      if (stopping) return ready ? 0 : status.code;
      if (!ready) return status.code === 0 ? 1 : status.code; // Never listened: a usage error.
      if (!announced) failedStarts++;
      if (failedStarts >= MAX_FAILED_STARTS) {
        options.log(
          `the serving process failed to start ${failedStarts} times in a row; giving up`,
        );
        return 1;
      }
      const killed = killRecordedTrees(ready.trees, { fresh: true });
      const uptime = Date.now() - started;
      crashesInARow = announced && uptime > STABLE_MS ? 1 : crashesInARow + 1;
      const wait = crashesInARow <= 1
        ? 0
        : Math.min(250 * 2 ** (crashesInARow - 2), MAX_BACKOFF_MS);
      options.log(
        `the serving process (pid ${child.pid}) ${died(status)}` +
          (killed
            ? `; killed the process trees of ${killed} running task${killed === 1 ? "" : "s"}`
            : "") +
          `; restarting${wait ? ` in ${wait} ms` : ""} on port ${ready.port}`,
      );
      if (wait) await sleepUnless(wait, () => stopping !== undefined);
      if (stopping) return 0;
    }
  } finally {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  }
}

/** The ready line, or undefined when the child exits (or hangs) before it. */
async function waitReady(child: SelfProcess): Promise<ServeReady | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(undefined);
    }, READY_TIMEOUT_MS);
  });
  const read = (async () => {
    for await (const line of child.lines) {
      try {
        const message = JSON.parse(line);
        if (message?.ready && typeof message.ready.port === "number") {
          return message.ready as ServeReady;
        }
      } catch {
        // Not ours.
      }
    }
    return undefined;
  })();
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function died(status: Deno.CommandStatus): string {
  if (status.signal) return `was killed by ${status.signal}`;
  if (status.code === 134) return "aborted (exit code 134)";
  return `exited with code ${status.code}`;
}

async function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && !stop()) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(50, until - Date.now())));
  }
}

/**
 * The serving process's side: its configuration (the first line of stdin), and
 * a promise that settles when stdin ends (the supervisor is gone).
 */
export async function readServeConfig(): Promise<{ config: ServeConfig; orphaned: Promise<void> }> {
  const reader = Deno.stdin.readable.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  const end = text.indexOf("\n");
  const line = end < 0 ? text : text.slice(0, end);
  let config: ServeConfig = {};
  try {
    config = JSON.parse(line) ?? {};
  } catch {
    // No supervisor wrote this: serve with the command line's settings.
  }
  const orphaned = (async () => {
    while (!(await reader.read()).done) { /* nothing else is sent */ }
  })().catch(() => {});
  return { config, orphaned };
}

/** The line that tells the supervisor the serving process listens. */
export function readyLine(ready: ServeReady): string {
  return JSON.stringify({ ready }) + "\n";
}

/** Real agent processes on 127.0.0.1, port 0, exactly as users start them. */
import { executable } from "./mod.ts";

export interface TestAgent {
  address: string;
  port: number;
  process: Deno.ChildProcess;
  /** Everything the agent wrote to stderr so far. */
  log(): string;
  /** The pid of the serving process its supervisor (`process`) started, now (Linux). */
  servingPid(): number | undefined;
  /** SIGTERM, then wait for it to exit; returns its exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface AgentOptions {
  args?: string[];
  env?: Record<string, string>;
  /** `main.ts agent`, or `main.ts agent start`, instead of `agent.ts` (sloth-agent). */
  entry?: "main" | "agent" | "start";
  port?: number;
  /**
   * A command to start the agent under, given the agent's own command line as its
   * last arguments: `["unshare", "-m", "sh", "-c", 'mount ... && exec "$@"', "sh"]`.
   */
  prefix?: string[];
}

export async function startAgent(options: AgentOptions = {}): Promise<TestAgent> {
  const args = ["-p", String(options.port ?? 0), ...(options.args ?? [])];
  const run = options.entry === "main"
    ? executable("sloth-runner", ["agent", ...args])
    : options.entry === "start"
    ? executable("sloth-runner", ["agent", "start", ...args])
    : executable("sloth-agent", args);
  const line = [...(options.prefix ?? []), run.command, ...run.args];
  const child = new Deno.Command(line[0], {
    args: line.slice(1),
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...options.env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  const deadline = Date.now() + 20_000;
  let port = 0;
  while (port === 0) {
    const match = /listening on [^\s]+:(\d+) /.exec(text);
    if (match) port = Number(match[1]);
    else if (Date.now() > deadline) throw new Error(`agent did not start:\n${text}`);
    else {
      const exited = await Promise.race([
        child.status.then((s) => s),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 25)),
      ]);
      if (exited) {
        await reading;
        throw new Error(`agent exited with ${exited.code}:\n${text}`);
      }
    }
  }
  let stopped: Promise<number> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") => {
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
      const status = await child.status;
      await reading;
      return status.code;
    })();
    return stopped;
  };
  const args0 = options.args ?? [];
  const bind = args0.includes("--bind") ? args0[args0.indexOf("--bind") + 1] : "127.0.0.1";
  return {
    address: `${bind}:${port}`,
    port,
    process: child,
    log: () => text,
    servingPid: () => childrenOf(child.pid)[0],
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/** The job directories an agent (started with `--work-root root`) has right now. */
export function jobDirs(agent: TestAgent, root: string): string[] {
  try {
    return [...Deno.readDirSync(`${root}/sloth-agent-${agent.port}/jobs`)].map((e) => e.name);
  } catch {
    return [];
  }
}

/** Child pids of a process, from /proc (Linux). */
export function childrenOf(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * The pid of a process running `argv` under this agent's serving process (its
 * jobs' commands), or undefined (Linux /proc).
 */
export function findUnderAgent(agent: TestAgent, argv: string[]): number | undefined {
  const serving = agent.servingPid();
  if (!serving) return undefined;
  const wanted = argv.join("\u0000") + "\u0000";
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmd === wanted && descendsFrom(Number(entry.name), serving)) return Number(entry.name);
    } catch {
      // Gone.
    }
  }
  return undefined;
}

/** Waits (at most `ms`) for `findUnderAgent`; throws if it never appears. */
export async function waitUnderAgent(
  agent: TestAgent,
  argv: string[],
  ms = 15_000,
): Promise<number> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const pid = findUnderAgent(agent, argv);
    if (pid !== undefined) return pid;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no "${argv.join(" ")}" started under the agent within ${ms}ms`);
}

function descendsFrom(pid: number, ancestor: number): boolean {
  for (let p = pid, i = 0; p > 1 && i < 64; i++) {
    if (p === ancestor) return true;
    try {
      const stat = Deno.readTextFileSync(`/proc/${p}/stat`);
      p = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    } catch {
      return false;
    }
  }
  return false;
}

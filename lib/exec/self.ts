/**
 * This program, started again as a child process: the agent's supervisor runs
 * its serving process this way. Under `deno run` that is Deno with the same
 * entry point and the permissions this process has; a compiled executable is
 * simply run again (its permissions are built in).
 */

export interface SelfProcess {
  pid: number;
  /** Writes to the child's standard input (kept open: its end tells the child we are gone). */
  write(text: string): Promise<void>;
  /** Lines the child writes to its standard output. */
  lines: AsyncIterable<string>;
  status: Promise<Deno.CommandStatus>;
  kill(signal: Deno.Signal): void;
}

export interface StartSelfOptions {
  /** The child's whole environment. */
  env: Record<string, string>;
  /**
   * Raise the child's soft limit on open files to the hard limit (through
   * `/bin/sh`'s ulimit: Deno has no setrlimit).
   */
  raiseFileLimit?: boolean;
}

export function startSelf(options: StartSelfOptions): SelfProcess {
  const self = selfCommand();
  const [cmd, args] = options.raiseFileLimit && Deno.build.os !== "windows"
    ? ["/bin/sh", ["-c", RAISE_AND_EXEC, self.cmd, ...self.args, ...Deno.args]]
    : [self.cmd, [...self.args, ...Deno.args]];
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  return {
    pid: child.pid,
    write: (text) => writer.write(new TextEncoder().encode(text)).catch(() => {}),
    lines: lines(child.stdout),
    status: child.status,
    kill: (signal) => {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
    },
  };
}

/** `sh -c` script: the soft open-files limit up to the hard one, then exec "$0" "$@". */
const RAISE_AND_EXEC = 'ulimit -n "$(ulimit -H -n)" 2>/dev/null; exec "$0" "$@"';

/** How this program was started, minus its own arguments. */
export function selfCommand(): { cmd: string; args: string[] } {
  const exec = Deno.execPath();
  const name = exec.slice(exec.lastIndexOf("/") + 1).replace(/\.exe$/, "");
  if (name !== "deno") return { cmd: exec, args: [] };
  return { cmd: exec, args: ["run", "--quiet", ...grantedFlags(), Deno.mainModule] };
}

/** The permission flags that give a `deno run` child what this process has. */
function grantedFlags(): string[] {
  const flags = ["--unstable-worker-options", "--no-prompt"];
  for (const name of ["read", "write", "net", "env", "run", "ffi", "import"] as const) {
    if (Deno.permissions.querySync({ name }).state === "granted") flags.push(`--allow-${name}`);
  }
  if (Deno.permissions.querySync({ name: "sys" }).state === "granted") {
    flags.push("--allow-sys");
  } else {
    const kinds = (["hostname", "uid", "gid", "statfs", "osRelease", "loadavg"] as const).filter(
      (kind) => Deno.permissions.querySync({ name: "sys", kind }).state === "granted",
    );
    if (kinds.length) flags.push(`--allow-sys=${kinds.join(",")}`);
  }
  return flags;
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
    }
  }
  if (pending) yield pending;
}

/**
 * A long-lived helper process confined to one job's directory: the agent runs a
 * job's Lua in one (lib/dsl/worker_process.ts). Inside its bubblewrap sandbox the
 * host's file system is not there at all: only the system's programs and
 * libraries (read-only), the program's own files (read-only), and the job's
 * directory (read-write). So no path the process opens, whatever symlinks a task
 * swaps under it meanwhile, can reach another job's files, the agent's files or
 * the host's: a race between a check and a use has nothing outside to win.
 * It talks over its standard input and output, one line per message; its
 * standard error is read line by line for the agent's log.
 */
import { SETSID, signalGroup } from "./process.ts";
import { BWRAP_TREE_ARGS, passableWay, userArgs } from "./sandbox.ts";
import { switchUserArgv } from "./task_user.ts";
import { treeEnded, treeStarted } from "./trees.ts";

export interface ConfinedOptions {
  /** The program and its arguments, as seen inside the sandbox. */
  argv: string[];
  /** The process's whole environment. */
  env: Record<string, string>;
  /** The job's directory: the only writable place, and the working directory. */
  jobRoot: string;
  /** Files and directories the program needs, made visible read-only at the same paths. */
  readOnly: string[];
  /** Give it a network (false: a new, empty network namespace). */
  network: boolean;
}

export interface ConfinedProcess {
  /** Writes one line (a newline is added). */
  send(line: string): void;
  /** Lines from its standard output. */
  lines: AsyncIterable<string>;
  /** Lines from its standard error. */
  errors: AsyncIterable<string>;
  status: Promise<Deno.CommandStatus>;
  /** SIGKILL to the whole tree. */
  kill(): void;
}

/** System directories every program needs (read-only), where they exist. */
const SYSTEM = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];
/** Single files programs commonly read: name resolution and TLS roots. */
const SYSTEM_FILES = ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl"];

/** The bubblewrap arguments for a confined process (exported for tests). */
export function confinedArgs(options: ConfinedOptions): string[] {
  const args = [
    // One tree that the group `setsid` makes ends (sandbox.ts).
    ...BWRAP_TREE_ARGS,
    // As the task user when there is one (sandbox.ts), like the job's shell commands.
    ...userArgs(),
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    ...(options.network ? [] : ["--unshare-net"]),
  ];
  for (const dir of SYSTEM) {
    const link = readLink(dir);
    if (link !== undefined) args.push("--symlink", link, dir);
    else if (exists(dir)) args.push("--ro-bind", dir, dir);
  }
  if (options.network) {
    for (const file of SYSTEM_FILES) {
      const real = realPath(file);
      if (real) args.push("--ro-bind", real, file);
    }
  }
  args.push("--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp");
  for (const path of options.readOnly) {
    const real = realPath(path);
    if (real) args.push(...passableWay(path), "--ro-bind", real, path);
  }
  args.push(...passableWay(options.jobRoot), "--bind", options.jobRoot, options.jobRoot);
  args.push("--chdir", options.jobRoot, "--clearenv");
  for (const [name, value] of Object.entries(options.env)) args.push("--setenv", name, value);
  return [...args, ...switchUserArgv(), ...options.argv];
}

export function startConfined(options: ConfinedOptions): ConfinedProcess {
  const args = confinedArgs(options);
  const child = new Deno.Command(SETSID ?? "bwrap", {
    args: SETSID ? ["bwrap", ...args] : args,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    detached: SETSID === undefined,
  }).spawn();
  treeStarted(child.pid);
  const status = child.status.finally(() => treeEnded(child.pid));
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  let writing = Promise.resolve();
  return {
    send: (line) => {
      const bytes = encoder.encode(line + "\n");
      writing = writing.then(() => writer.write(bytes)).catch(() => {});
    },
    lines: lines(child.stdout),
    errors: lines(child.stderr),
    status,
    kill: () => {
      // The leader first: right after the spawn, `setsid` may not have made the group yet,
      // and a signal to it would be lost. Anything the leader started is in the group by then.
      try {
        child.kill("SIGKILL");
      } catch {
        // It ended already.
      }
      signalGroup(child.pid, "SIGKILL");
      writer.close().catch(() => {});
    },
  };
}

/**
 * Lines of a stream. A line longer than `MAX_MESSAGE_LINE` ends the stream (a
 * worker's answers are JSON lines well below it; something else is wrong).
 */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let length = 0;
  for await (const chunk of stream) {
    let text = decoder.decode(chunk, { stream: true });
    let newline: number;
    // Only the new text is searched: a long line costs its length once, not squared.
    while ((newline = text.indexOf("\n")) >= 0) {
      parts.push(text.slice(0, newline));
      yield parts.join("");
      parts.length = 0;
      length = 0;
      text = text.slice(newline + 1);
    }
    parts.push(text);
    length += text.length;
    if (length > MAX_MESSAGE_LINE) return;
  }
  const rest = parts.join("") + decoder.decode();
  if (rest) yield rest;
}

/** Longest line read from a confined process (a task's outputs are capped well below it). */
const MAX_MESSAGE_LINE = 512 * 1024 * 1024;

function readLink(path: string): string | undefined {
  try {
    return Deno.readLinkSync(path);
  } catch {
    return undefined;
  }
}

function realPath(path: string): string | undefined {
  try {
    return Deno.realPathSync(path);
  } catch {
    return undefined;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

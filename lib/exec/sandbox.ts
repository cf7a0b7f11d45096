/**
 * The sandbox for shell commands on an agent: bubblewrap (`bwrap`). Inside, the
 * whole file system is read-only, the job's directory is the only writable
 * place, other jobs, users' home directories and the agent's secret files are
 * not there at all, all capabilities are dropped, and the tree dies with the
 * agent. Child processes ignore Deno's permissions; this is what holds them.
 */

export interface SandboxOptions {
  /** The job's own directory (workspace and temp dir); the only writable path. */
  jobRoot: string;
  /** The directory holding every job's directory: hidden but for `jobRoot`. */
  workRoot: string;
  /** Files and directories the task must not see (token, TLS key, ...). */
  hide: string[];
  /** Give the task a network (false: a new, empty network namespace). */
  network: boolean;
}

export interface Sandbox {
  /** What to run instead of `/bin/sh -c script` in `cwd`, with `env` added to a clean environment. */
  command(
    script: string,
    cwd: string,
    env: Record<string, string>,
  ): { cmd: string; args: string[] };
}

/**
 * Directories every sandboxed task sees as empty: homes, temp dirs, and /run
 * (sockets of local services, other users' runtime dirs).
 */
const HIDDEN_DIRS = ["/home", "/root", "/tmp", "/var/tmp", "/run"];

/** What a sandboxed task inherits of the agent's environment; nothing else (no credentials). */
const INHERITED_ENV = [
  "PATH",
  "LANG",
  "LANGUAGE",
  "LC_ALL",
  "LC_CTYPE",
  "TZ",
  "TERM",
  "USER",
  "LOGNAME",
];

export function bwrapSandbox(options: SandboxOptions): Sandbox {
  const args = [
    "--die-with-parent",
    "--new-session",
    "--unshare-user",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    ...(options.network ? [] : ["--unshare-net"]),
    "--cap-drop",
    "ALL",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
  ];
  const hiddenDirs = [...HIDDEN_DIRS, options.workRoot].filter(isDirectory);
  for (const dir of hiddenDirs) args.push("--tmpfs", dir);
  const covered = (path: string) =>
    hiddenDirs.some((dir) => path === dir || path.startsWith(`${dir}/`));
  for (const path of options.hide) {
    if (covered(path)) continue;
    if (isDirectory(path)) args.push("--tmpfs", path);
    else if (exists(path)) args.push("--ro-bind", "/dev/null", path);
  }
  // DNS still works with the network on: resolv.conf often lives under /run.
  const resolv = realPathOrUndefined("/etc/resolv.conf");
  if (options.network && resolv && covered(resolv)) args.push("--ro-bind", resolv, resolv);
  args.push("--bind", options.jobRoot, options.jobRoot);
  // Empty and read-only: the job's directory (mounted above) stays the one writable place.
  for (const dir of hiddenDirs) args.push("--remount-ro", dir);
  args.push("--clearenv");
  for (const name of INHERITED_ENV) {
    const value = Deno.env.get(name);
    if (value !== undefined) args.push("--setenv", name, value);
  }
  args.push("--setenv", "HOME", `${options.jobRoot}/tmp`);
  args.push("--setenv", "TMPDIR", `${options.jobRoot}/tmp`);
  return {
    command: (script, cwd, env) => ({
      cmd: "bwrap",
      args: [
        ...args,
        ...Object.entries(env).flatMap(([name, value]) => ["--setenv", name, value]),
        "--chdir",
        cwd,
        "/bin/sh",
        "-c",
        script,
      ],
    }),
  };
}

/** Whether bwrap is installed and can make its namespaces here; the reason when not. */
export async function probeBwrap(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("bwrap", {
      args: [
        "--unshare-user",
        "--unshare-pid",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "/bin/true",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.code === 0) return undefined;
    return new TextDecoder().decode(out.stderr).trim() || `bwrap exited with ${out.code}`;
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? "bwrap is not installed" : String(error);
  }
}

function realPathOrUndefined(path: string): string | undefined {
  try {
    return Deno.realPathSync(path);
  } catch {
    return undefined;
  }
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
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

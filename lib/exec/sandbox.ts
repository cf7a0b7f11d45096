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
  /** What to run instead of `/bin/sh -c script` in `cwd`. */
  command(script: string, cwd: string): { cmd: string; args: string[] };
}

/** Directories every sandboxed task sees as empty. */
const HIDDEN_DIRS = ["/home", "/root", "/tmp", "/var/tmp", "/run/user"];

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
  args.push("--bind", options.jobRoot, options.jobRoot);
  // Empty and read-only: the job's directory (mounted above) stays the one writable place.
  for (const dir of hiddenDirs) args.push("--remount-ro", dir);
  args.push("--setenv", "TMPDIR", `${options.jobRoot}/tmp`);
  return {
    command: (script, cwd) => ({
      cmd: "bwrap",
      args: [...args, "--chdir", cwd, "/bin/sh", "-c", script],
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

/**
 * The sandbox for shell commands on an agent: bubblewrap (`bwrap`). Inside, the
 * whole file system is read-only, the job's directory is the only writable
 * place, other jobs, users' home directories and the agent's secret files are
 * not there at all, all capabilities are dropped, and the tree dies with the
 * agent. Child processes ignore Deno's permissions; this is what holds them.
 *
 * Who the command runs as: an agent of an ordinary user runs bwrap as itself, in
 * a user namespace of its own. An agent running as root runs bwrap as root
 * without one (so bwrap can mount whatever it must hide, wherever it is), and
 * bwrap runs `setpriv` to the task user as the sandbox's command (task_user.ts):
 * the task is that user outside the sandbox too, so root's files and the limits
 * of that user hold.
 */
import { handOver, switchUserArgv, type TaskUser, taskUser } from "./task_user.ts";

export interface SandboxOptions {
  /** The job's own directory (workspace and temp dir); the only writable path. */
  jobRoot: string;
  /** The directory holding every job's directory: hidden but for `jobRoot`. */
  workRoot: string;
  /** Files and directories the task must not see (token, TLS files, the agent's HOME, ...). */
  hide: string[];
  /** Give the task a network (false: a new, empty network namespace). */
  network: boolean;
}

export interface Sandbox {
  /**
   * What to run instead of `/bin/sh -c script` in `cwd`, with `env` added to a
   * clean environment (bwrap) or to the agent's with `env` of its own over it
   * (`userSandbox`), as the task user (the sandbox switches to it itself).
   */
  command(
    script: string,
    cwd: string,
    env: Record<string, string>,
  ): { cmd: string; args: string[]; env?: Record<string, string> };
  /** Work before each command starts. */
  prepare?(): Promise<void>;
  /**
   * Set when `command()` is `/bin/sh -c script` after `argv` (the user switch),
   * with `env` added to the agent's environment: a shell made ahead for the same
   * `argv` may run it instead (warm.ts).
   */
  shell?: { argv: string[]; env: Record<string, string> };
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

/**
 * How every bubblewrap sandbox of a task (exec/confined.ts too) stays one tree
 * that its process group ends: `setsid` before bwrap makes the group, and a
 * SIGKILL to it ends the sandbox's PID 1 (the one signal a namespace's PID 1
 * cannot ignore), and with it every process of the namespace, however it left
 * the group. So no `--new-session`: with it, bwrap's process inside moved to a
 * session of its own during its setup and set its parent-death signal only
 * after that (bubblewrap 0.8; containers/bubblewrap#633). A stop in between (an
 * abort just after the start: SIGTERM ends the outer bwrap, which the inner one,
 * a PID 1, ignores) left the inner one out of every group the agent signals,
 * re-parented to init, its command running on and holding the output pipes
 * (process_test.ts). What `--new-session` guards against (TIOCSTI into a
 * terminal) cannot happen here: the session `setsid` made has no controlling
 * terminal, only its leader (bwrap, outside) could take one, and the command's
 * descriptors are /dev/null and pipes.
 */
export const BWRAP_TREE_ARGS = ["--die-with-parent", "--unshare-pid"];

export function bwrapSandbox(options: SandboxOptions): Sandbox {
  const user = taskUser();
  const args = [
    ...BWRAP_TREE_ARGS,
    ...userArgs(user),
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    ...(options.network ? [] : ["--unshare-net"]),
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
  ];
  const { dirs: hiddenDirs, files: hiddenFiles } = hiddenPaths(options);
  const covered = (path: string) => hiddenDirs.some((dir) => isWithin(path, dir));
  // Each hidden directory before what lies inside it. For a task user, the way
  // down to the job's directory inside them is made passable (bwrap makes missing
  // parents 0700 and root's: only the user bwrap runs as could pass).
  const way = ancestors(options.jobRoot).filter((dir) => covered(dir) && !hiddenDirs.includes(dir));
  for (const dir of [...hiddenDirs, ...(user ? way : [])].sort(byDepth)) {
    if (hiddenDirs.includes(dir)) args.push("--tmpfs", dir);
    else args.push("--perms", "0755", "--dir", dir);
  }
  for (const file of hiddenFiles) args.push("--ro-bind", "/dev/null", file);
  // DNS still works with the network on: resolv.conf often lives under /run.
  const resolv = realPathOrUndefined("/etc/resolv.conf");
  if (options.network && resolv && covered(resolv)) args.push("--ro-bind", resolv, resolv);
  args.push("--bind", options.jobRoot, options.jobRoot);
  // Empty and read-only: the job's directory (mounted above) stays the one writable place.
  for (const dir of hiddenDirs) args.push("--remount-ro", dir);
  args.push("--clearenv");
  for (const name of INHERITED_ENV) {
    const value = user && (name === "USER" || name === "LOGNAME") ? user.name : Deno.env.get(name);
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
        ...switchUserArgv(user),
        "/bin/sh",
        "-c",
        script,
      ],
    }),
  };
}

/**
 * No confinement, only the task user: an agent running as root without
 * bubblewrap (`--sandbox none`, or `auto` where it cannot run). HOME is the job's
 * temp directory, as in the sandbox. Before each command, what the agent made
 * in the job's directory meanwhile (Lua's `fs` runs in the agent there) is
 * handed over to the task user, so that the command can write it; with
 * `handedOver`, the caller says the agent writes nothing there any more (a
 * shell job, whose directory went to the task user whole before its one
 * command), and the `chown` process each command cost (~1.5 ms) is saved.
 */
export function userSandbox(
  jobRoot: string,
  user: TaskUser,
  options: { handedOver?: boolean } = {},
): Sandbox {
  const argv = switchUserArgv(user);
  const env = { HOME: `${jobRoot}/tmp`, USER: user.name, LOGNAME: user.name };
  return {
    prepare: options.handedOver ? undefined : () => handOver([jobRoot], { recursive: true }),
    command: (script) => ({ cmd: argv[0], args: [...argv.slice(1), "/bin/sh", "-c", script], env }),
    shell: { argv, env },
  };
}

/**
 * bwrap's arguments for who runs the sandbox: as this user, a user namespace of
 * its own and no capabilities; as root for a task user, neither (bwrap runs as
 * root, and `setpriv`, its command, drops every capability with root's ids).
 * Any bwrap sandbox of a task (exec/confined.ts too) takes these, and puts
 * `switchUserArgv(user)` before its command.
 */
export function userArgs(user: TaskUser | undefined = taskUser()): string[] {
  return user ? [] : ["--unshare-user", "--cap-drop", "ALL"];
}

/**
 * For a task user: bwrap arguments making every directory on the way to `path`
 * passable (0755), where bwrap would make them (0700, root's) as it mounts.
 * Nothing without one: the user bwrap runs as may pass its own.
 */
export function passableWay(path: string, user: TaskUser | undefined = taskUser()): string[] {
  return user ? ancestors(path).flatMap((dir) => ["--perms", "0755", "--dir", dir]) : [];
}

/**
 * Whether bwrap is installed and can make its namespaces here, and switch to the
 * task user inside when there is one; the reason when not.
 */
export async function probeBwrap(user?: TaskUser): Promise<string | undefined> {
  const argv = [
    "bwrap",
    ...userArgs(user),
    "--unshare-pid",
    "--ro-bind",
    "/",
    "/",
    ...switchUserArgv(user),
    "/bin/true",
  ];
  try {
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
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

/**
 * What the sandbox covers: directories (made empty) and files (made /dev/null),
 * by their real paths, nothing inside an already hidden directory. The root is
 * never hidden.
 */
function hiddenPaths(options: SandboxOptions): { dirs: string[]; files: string[] } {
  const dirs = new Set<string>();
  const files = new Set<string>();
  for (const dir of [...HIDDEN_DIRS, options.workRoot]) if (isDirectory(dir)) dirs.add(dir);
  for (const path of options.hide) {
    const real = realPathOrUndefined(path);
    if (real === undefined || real === "/") continue;
    if (isDirectory(real)) dirs.add(real);
    else files.add(real);
  }
  const kept: string[] = [];
  for (const dir of [...dirs].sort(byDepth)) {
    if (!kept.some((outer) => isWithin(dir, outer))) kept.push(dir);
  }
  return {
    dirs: kept,
    files: [...files].filter((file) => !kept.some((dir) => isWithin(file, dir))),
  };
}

/** `/a/b/c` → `/a`, `/a/b`. */
function ancestors(path: string): string[] {
  const parts = path.split("/").filter(Boolean);
  return parts.slice(0, -1).map((_, i) => "/" + parts.slice(0, i + 1).join("/"));
}

function byDepth(a: string, b: string): number {
  return a.split("/").length - b.split("/").length || a.localeCompare(b);
}

function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
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

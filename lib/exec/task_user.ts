/**
 * The user an agent's tasks run as. An agent started as root runs its tasks'
 * commands as another user (`nobody` unless told otherwise), so that the kernel's
 * own checks hold them: root's files stay root's, and limits such as
 * `ulimit -u` (RLIMIT_NPROC, which never binds root) apply. The switch is
 * util-linux `setpriv`, right before the shell (inside bubblewrap, see
 * sandbox.ts; else between `setsid` and the shell): real, effective and saved
 * ids, no supplementary groups, no capabilities left in any set, and
 * no_new_privs, so set-user-ID programs cannot lead back to root.
 *
 * The choice is made once, at the agent's start (`runTasksAs`), for every task
 * the process runs after it, like the record of process trees (trees.ts).
 */

import { lchownSync } from "node:fs";
export interface TaskUser {
  /** The name it was given by (or the uid, for a user without an entry). */
  name: string;
  uid: number;
  gid: number;
}

/** What `--task-user` resolved to on this agent. */
export interface TaskUserChoice {
  /** Whom to switch to; undefined: tasks run as the agent's own user. */
  user?: TaskUser;
  /** Who tasks run as, for the agent's log line ("nobody", "root", "builder"). */
  name: string;
  /** A line for the log when the choice gives tasks root. */
  warning?: string;
}

export class TaskUserError extends Error {
  readonly hint?: string;
  constructor(message: string, hint?: string) {
    super(message);
    this.name = "TaskUserError";
    this.hint = hint;
  }
}

/** Where tasks go when an agent runs as root and nothing else was asked for. */
export const DEFAULT_TASK_USER = "nobody";

const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv", "/sbin/setpriv"].find(
  isFile,
);
const CHOWN = ["/usr/bin/chown", "/bin/chown"].find(isFile) ?? "chown";

let current: TaskUser | undefined;

/**
 * From now on, every command `runShell` starts runs as `user` (undefined: as this
 * process's user). Only an agent's serving process calls this; masters never do.
 */
export function runTasksAs(user: TaskUser | undefined): void {
  if (user && !SETPRIV) {
    throw new TaskUserError(
      `cannot run tasks as ${user.name}: setpriv (util-linux) is not installed`,
      "install it (Debian: apt-get install util-linux; Alpine: apk add setpriv), run the " +
        "agent as the user its tasks should run as, or pass --task-user root knowingly",
    );
  }
  current = user;
}

/** The user tasks are switched to, if any. */
export function taskUser(): TaskUser | undefined {
  return current;
}

/**
 * Who the commands this process starts run as: the switched-to user, else this
 * process's own (its name, or `uid N` without an entry).
 */
export async function commandUser(): Promise<{ name: string; uid: number | null }> {
  if (current) return { name: current.name, uid: current.uid };
  const uid = Deno.uid();
  if (uid === null) return { name: "this user", uid: null };
  return { name: (await lookupUser(String(uid)))?.name ?? `uid ${uid}`, uid };
}

/** `setpriv` and its arguments, to put before a command: nothing when no switch is made. */
export function switchUserArgv(user: TaskUser | undefined = current): string[] {
  if (!user) return [];
  return [
    SETPRIV!,
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
    "--",
  ];
}

/**
 * Decides who tasks run as, from `--task-user` (`USER`, `UID`, `USER:GROUP` or
 * `UID:GID`) and the agent's own uid. Only root can switch: an agent of another
 * user runs tasks as itself and refuses to be told otherwise.
 */
export async function chooseTaskUser(
  spec: string | undefined,
  agentUid: number | null = Deno.uid(),
): Promise<TaskUserChoice> {
  if (agentUid === null) {
    // Windows: no users to switch between.
    if (spec !== undefined) throw new TaskUserError("--task-user works on Linux and macOS only");
    return { name: "this user" };
  }
  if (spec === undefined) {
    if (agentUid !== 0) return { name: (await lookupUser(String(agentUid)))?.name ?? "this user" };
    const nobody = await lookupUser(DEFAULT_TASK_USER);
    if (!nobody) {
      throw new TaskUserError(
        `the agent runs as root and there is no user "${DEFAULT_TASK_USER}" to run tasks as`,
        "pass --task-user USER (a user without a login, e.g. made with useradd --system), " +
          "or --task-user root if tasks must run as root",
      );
    }
    return { user: nobody, name: nobody.name };
  }
  const user = await parseTaskUser(spec);
  if (agentUid !== 0) {
    if (user.uid === agentUid) return { name: user.name };
    const self = (await lookupUser(String(agentUid)))?.name ?? `uid ${agentUid}`;
    throw new TaskUserError(
      `--task-user ${spec}: the agent runs as ${self}, not root, so its tasks run as ${self}`,
      "start the agent as root to run tasks as another user, or leave --task-user out",
    );
  }
  if (user.uid === 0) {
    return {
      name: "root",
      warning: "WARNING: --task-user root: tasks' shell commands run as root; every master " +
        "with this agent's token can do what root can on this machine (the sandbox still " +
        "applies, but root's files and limits are root's)",
    };
  }
  return { user, name: user.name };
}

/** `USER[:GROUP]` or `UID[:GID]` against the user and group databases. */
async function parseTaskUser(spec: string): Promise<TaskUser> {
  const [userPart, groupPart, ...rest] = spec.split(":");
  if (userPart === "" || rest.length > 0 || groupPart === "") {
    throw new TaskUserError(
      `--task-user "${spec}" is not USER, UID, USER:GROUP or UID:GID`,
      "e.g. --task-user nobody, --task-user builder:builder or --task-user 2000:2000",
    );
  }
  const found = await lookupUser(userPart);
  let user: TaskUser;
  if (found) user = found;
  else if (/^\d+$/.test(userPart) && groupPart !== undefined) {
    user = { name: userPart, uid: Number(userPart), gid: -1 };
  } else if (/^\d+$/.test(userPart)) {
    throw new TaskUserError(
      `--task-user ${spec}: uid ${userPart} has no entry in the user database`,
      `give its group too: --task-user ${userPart}:GID`,
    );
  } else {
    throw new TaskUserError(`--task-user ${spec}: no such user`, "see getent passwd");
  }
  if (groupPart !== undefined) {
    const gid = /^\d+$/.test(groupPart) ? Number(groupPart) : await lookupGroup(groupPart);
    if (gid === undefined) {
      throw new TaskUserError(`--task-user ${spec}: no such group ${groupPart}`);
    }
    user = { ...user, gid };
  }
  return user;
}

/** A user by name or uid: the system's databases (getent, so LDAP and the like count), else /etc/passwd. */
export async function lookupUser(nameOrUid: string): Promise<TaskUser | undefined> {
  const line = await getent("passwd", nameOrUid) ??
    databaseLine("/etc/passwd", nameOrUid, /^\d+$/.test(nameOrUid) ? 2 : 0);
  if (!line) return undefined;
  const [name, , uid, gid] = line.split(":");
  if (!/^\d+$/.test(uid ?? "") || !/^\d+$/.test(gid ?? "")) return undefined;
  return { name, uid: Number(uid), gid: Number(gid) };
}

async function lookupGroup(name: string): Promise<number | undefined> {
  const line = await getent("group", name) ?? databaseLine("/etc/group", name, 0);
  const gid = line?.split(":")[2];
  return gid && /^\d+$/.test(gid) ? Number(gid) : undefined;
}

/** The entry's line, undefined when there is none; null when getent itself is missing. */
async function getent(database: string, key: string): Promise<string | undefined | null> {
  try {
    const out = await new Deno.Command("getent", {
      args: [database, key],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).split("\n")[0] || undefined;
  } catch {
    return null;
  }
}

function databaseLine(file: string, key: string, field: number): string | undefined {
  try {
    return Deno.readTextFileSync(file).split("\n").find((line) => line.split(":")[field] === key);
  } catch {
    return undefined;
  }
}

/**
 * Gives what the agent made in a job's directory to the task user, so its
 * commands can write there: `paths` in order (a directory after what is in it:
 * once it is the task user's, the task user could swap its entries), with
 * `recursive` everything under them that is still the agent's. Nothing is followed: `chown -R -h -P` changes a symlink itself, never
 * what it points to, and walks by directory descriptors, so an entry swapped for
 * a link meanwhile leads nowhere. (A hard link to a file outside the job cannot be
 * made there: in the sandbox the job's directory is a mount of its own, and
 * without it the kernel's protected_hardlinks stops links to others' files.)
 * Without a task user, nothing is done.
 */
export async function handOver(
  paths: string[],
  options: { recursive?: boolean } = {},
): Promise<void> {
  const user = current;
  if (!user || paths.length === 0) return;
  const out = await new Deno.Command(CHOWN, {
    args: [
      ...(options.recursive ? ["-R"] : []),
      "-h",
      "-P",
      `--from=${Deno.uid()}`,
      `${user.uid}:${user.gid}`,
      "--",
      ...paths,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`cannot give ${paths.join(", ")} to the task user ${user.name}: ${why}`);
  }
}

/**
 * Gives a whole job directory the agent has just filled to the task user, in this
 * process (a `chown` process per job cost ~5 ms). Safe only while nobody but the
 * agent can reach `root`: the job directory is still the agent's (0700) until its
 * own turn, which comes last; every directory is changed after what is in it, and
 * every entry by `lchown`, which never follows a link. So no path walked here runs
 * through a directory the task user could change meanwhile. Entries already the
 * task user's (a kept workspace) are left as they are, ctimes and all.
 */
export function handOverJob(root: string): void {
  const user = current;
  if (!user) return;
  const agent = Deno.uid();
  const give = (path: string) => {
    const info = Deno.lstatSync(path);
    if (info.isDirectory) {
      for (const entry of Deno.readDirSync(path)) give(`${path}/${entry.name}`);
    }
    if (info.uid === agent) lchownSync(path, user.uid, user.gid);
  };
  give(root);
}

/**
 * Whether the kernel refuses hard links to files one may not write
 * (fs.protected_hardlinks = 1); read by `cat`, as Deno asks for --allow-all to
 * read /proc.
 */
export async function hardlinksProtected(): Promise<boolean> {
  if (Deno.build.os !== "linux") return false;
  try {
    const out = await new Deno.Command("cat", {
      args: ["/proc/sys/fs/protected_hardlinks"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).trim() === "1";
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

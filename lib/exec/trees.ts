/**
 * A record on disk of the process trees this process started, so that whoever
 * restarts it after a crash can end them. Each task runs in its own session
 * (`setsid`), whose id is its leader's pid; a file named after that pid exists
 * while the session may have members. A process that died cannot clean up after
 * itself: its supervisor calls `killRecordedTrees` before starting it again.
 */

let recordDir: string | undefined;

/** From now on, record every tree `runShell` starts in `dir` (made if missing). */
export function recordTreesIn(dir: string): void {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  recordDir = dir;
}

/** Notes a new tree whose leader (and session id) is `pid`. */
export function treeStarted(pid: number): void {
  if (!recordDir) return;
  try {
    Deno.writeTextFileSync(`${recordDir}/${pid}`, "");
  } catch {
    // Recording is a safety net for crashes; a task must not fail for it.
  }
}

/** The tree of `pid` has no members left. */
export function treeEnded(pid: number): void {
  if (!recordDir) return;
  try {
    Deno.removeSync(`${recordDir}/${pid}`);
  } catch {
    // Already gone.
  }
}

/**
 * Kills (SIGKILL) every recorded tree still alive and clears the record; returns
 * how many trees were signalled. `fresh`: the recording process was alive a moment
 * ago (its supervisor saw it die), so its groups are signalled as they are: a
 * group id cannot have been reused that soon. Otherwise (a record found at start,
 * maybe from long ago) a group is signalled only when /proc shows a live process
 * in it; where /proc cannot be read (Deno asks for --allow-all to read another
 * process's /proc entries), the record is cleared without signalling anyone.
 */
export function killRecordedTrees(dir: string, options: { fresh?: boolean } = {}): number {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return 0;
  }
  const live = options.fresh ? undefined : liveGroups();
  let killed = 0;
  for (const entry of entries) {
    const pid = Number(entry.name);
    if (Number.isInteger(pid) && pid > 1 && (live === undefined || live.has(pid))) {
      try {
        Deno.kill(-pid, "SIGKILL");
        killed++;
      } catch {
        // Nobody left in that group.
      }
    }
    try {
      Deno.removeSync(`${dir}/${entry.name}`);
    } catch {
      // Already gone.
    }
  }
  return killed;
}

/** Process group and session ids that have a live (not zombie) member, from /proc. */
function liveGroups(): Set<number> {
  const sessions = new Set<number>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        // "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (fields[0] === "Z") continue;
        sessions.add(Number(fields[2]));
        sessions.add(Number(fields[3]));
      } catch {
        // It ended while we looked.
      }
    }
  } catch {
    // No /proc (or not readable): nothing is known to be alive.
  }
  return sessions;
}

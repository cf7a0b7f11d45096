/**
 * A group's own directory around a run (the Go sloth-runner's
 * `create_workdir_before_run` and `clean_workdir_after_run`): made before the first
 * task, and after the last removed when the group says so (its function deciding
 * from how the group's tasks ended). This side of the run is the master's: a group
 * delegated to agents has its directory here too, synchronised to them as any
 * task's working directory is.
 *
 * Only a directory this run made (a temporary one, or a named one that was not
 * there) is ever removed, and only where it was made: never a directory that was
 * there before the run, never through a symbolic link, and never one that is or holds the directory
 * sloth-runner started in, the workflow file's, the home or the temporary directory
 * (model/group_dir.ts), checked on the real path when the run starts and again
 * just before the removal (a task may have swapped the directory for a link).
 */
import {
  GROUP_FUNCTIONS,
  type LuaPool,
  openGroupSession,
  type WorkflowSource,
} from "../dsl/mod.ts";
import { SlothError } from "../errors.ts";
import type { EmitEvent, LogLevel } from "../log/mod.ts";
import {
  type Group,
  type GuardedDir,
  guardedDirs,
  isFailure,
  removalRefusal,
  type Workflow,
} from "../model/mod.ts";
import type { Plan, RunOutcome } from "../scheduler/mod.ts";

/** A group's directory as the run prepared it. */
export interface PreparedDir {
  group: Group;
  /** Absolute path. */
  path: string;
  /** Made by this run (the group has no `workdir`). */
  temporary: boolean;
  /**
   * Its real path when this run made it; absent for a directory that was there
   * before the run, which is never removed.
   */
  made?: string;
}

export interface GroupDirPlaces {
  /** The directory sloth-runner was started in. */
  cwd: string;
  /** The main workflow file (absolute). */
  file: string;
}

/**
 * Makes the directories of the planned groups that ask for one, before any task
 * runs, and gives the tasks that inherit a temporary directory its path. Refuses
 * (SlothError, nothing left behind) a directory that cannot be made, or that
 * `clean_workdir_after_run` could remove and must not.
 */
export async function prepareGroupDirs(
  workflow: Workflow,
  plan: Plan,
  places: GroupDirPlaces,
): Promise<{ plan: Plan; dirs: PreparedDir[] }> {
  const planned = new Set(plan.tasks.map(({ task }) => task.group));
  const dirs: PreparedDir[] = [];
  const guards = await realGuards(places);
  try {
    for (const group of workflow.groups) {
      const dir = group.dir;
      if (!dir || !planned.has(group.name)) continue;
      const problem = (text: string, hint?: string) =>
        new SlothError("workflow_invalid", `group "${group.name}": ${text}`, { hint });
      if (!dir.path) {
        const path = await Deno.makeTempDir({ prefix: `${fileSafe(group.name)}-` });
        dirs.push({ group, path, temporary: true, made: await Deno.realPath(path) });
        continue;
      }
      const path = dir.path;
      let made: string | undefined;
      if (dir.create) {
        const there = await Deno.stat(path).catch(() => undefined);
        if (there && !there.isDirectory) throw problem(`workdir ${path} is not a directory`);
        try {
          if (!there) {
            await Deno.mkdir(path, { recursive: true });
            made = await Deno.realPath(path);
          }
        } catch (error) {
          throw problem(`cannot make workdir ${path}: ${(error as Error).message}`);
        }
      }
      if (dir.clean !== false) {
        const refused = (await checkRemovable(path, guards)).refused;
        if (refused) {
          throw problem(
            `clean_workdir_after_run could remove workdir ${path}, which ${refused}; ` +
              "sloth-runner never removes that",
            "give the group a directory of its own, or leave workdir out for a new temporary one",
          );
        }
      }
      dirs.push({ group, path, temporary: false, made });
    }
  } catch (error) {
    for (const made of dirs) if (made.temporary) await Deno.remove(made.path).catch(() => {});
    throw error;
  }
  const temporary = new Map(dirs.filter((d) => d.temporary).map((d) => [d.group.name, d.path]));
  const tasks = plan.tasks.map((planned) => {
    const path = temporary.get(planned.task.group);
    return path && planned.task.workdir === ""
      ? { ...planned, task: { ...planned.task, workdir: path } }
      : planned;
  });
  return { plan: { ...plan, tasks }, dirs };
}

export interface FinishOptions extends GroupDirPlaces {
  /** The plan the run ran (as `prepareGroupDirs` returned it). */
  plan: Plan;
  outcome: RunOutcome;
  pool: LuaPool;
  source: WorkflowSource;
  emit: EmitEvent;
  /** Stops a `clean_workdir_after_run` function that is still running (Ctrl-C). */
  signal?: AbortSignal;
}

/**
 * After the run: removes each prepared directory its group says to remove. An
 * interrupted run removes nothing; a function that fails, or a directory that must
 * not go, leaves it there, said as an error line (the run's exit code is the
 * tasks').
 */
export async function finishGroupDirs(dirs: PreparedDir[], options: FinishOptions): Promise<void> {
  if (dirs.length === 0) return;
  const guards = await realGuards(options);
  for (const { group, path, temporary, made } of dirs) {
    const note = (level: LogLevel, line: string) =>
      options.emit({ type: "log", stream: "log", level, line: `group "${group.name}": ${line}` });
    const clean = group.dir!.clean;
    // Also when Ctrl-C comes while an earlier group's function runs.
    if (options.outcome.interrupted || options.signal?.aborted) {
      if (temporary || clean !== false) await note("warn", `run interrupted; ${path} is kept`);
      continue;
    }
    let remove: boolean;
    if (typeof clean === "boolean") remove = clean;
    else {
      const decided = await decide(group, path, options);
      if (decided.error !== undefined) {
        await note(
          "error",
          `clean_workdir_after_run (${clean.where}) failed: ${decided.error}; ${path} is kept`,
        );
        continue;
      }
      remove = decided.remove!;
      if (!remove) {
        await note("info", `${path} is kept (clean_workdir_after_run returned false)`);
        continue;
      }
    }
    if (!remove) {
      if (temporary) await note("info", `${path} is kept (clean_workdir_after_run = false)`);
      continue;
    }
    if (made === undefined) {
      await note(
        "warn",
        `${path} is not removed: it was there before this run, and sloth-runner removes only ` +
          "a directory the run made (remove it yourself, or let the next run make it)",
      );
      continue;
    }
    const { real, refused } = await checkRemovable(path, guards).catch((error) => ({
      real: undefined,
      refused: `cannot be looked at: ${(error as Error).message}`,
    }));
    if (refused) {
      await note("error", `${path} is not removed: it ${refused}`);
      continue;
    }
    if (!real) continue;
    if (real !== made) {
      await note(
        "error",
        `${path} is not removed: it is now ${real}, not the directory the run made (${made})`,
      );
      continue;
    }
    try {
      // Deno's recursive removal does not follow the links it meets inside.
      await Deno.remove(real, { recursive: true });
      await note("info", `removed ${path}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        await note("error", `could not remove ${path}: ${(error as Error).message}`);
      }
    }
  }
}

/** Calls the group's `clean_workdir_after_run` in a fresh Lua state. */
async function decide(
  group: Group,
  path: string,
  options: FinishOptions,
): Promise<{ remove?: boolean; error?: string }> {
  const { emit } = options;
  let session;
  try {
    session = await openGroupSession(options.pool, options.source, {
      name: group.name,
      workdir: path,
    }, {
      onLog: (level, line) => {
        if (level === "print") emit({ type: "log", stream: "stdout", level: "info", line });
        else if (level === "stderr") emit({ type: "log", stream: "stderr", line });
        else emit({ type: "log", stream: "log", level: level as LogLevel, line });
      },
    });
  } catch (error) {
    return { error: (error as Error).message };
  }
  try {
    const result = await session.call(
      "condition",
      { group: group.name, task: GROUP_FUNCTIONS, field: "clean_workdir_after_run" },
      [groupResult(group, path, options.plan, options.outcome)],
      options.signal,
    ).catch((error) => ({ error: (error as Error).message, value: undefined }));
    if (options.signal?.aborted) return { error: "stopped by Ctrl-C" };
    if (result.error !== undefined) return { error: result.error };
    return { remove: result.value === true };
  } finally {
    if (options.signal?.aborted) session.kill();
    else session.release();
  }
}

/**
 * What `clean_workdir_after_run` gets: the Go sloth-runner's `{ success, error,
 * output }` (output: the outputs of the group's last task), plus every task's end.
 */
export function groupResult(
  group: Group,
  workdir: string,
  plan: Plan,
  outcome: RunOutcome,
): Record<string, unknown> {
  const tasks: Record<string, unknown> = {};
  const failed: string[] = [];
  let error: string | undefined;
  let output: Record<string, unknown> = {};
  plan.tasks.forEach(({ task }, i) => {
    const result = outcome.results[i];
    if (task.group !== group.name || !result) return;
    tasks[task.name] = { status: result.status, error: result.error, outputs: result.outputs };
    if (isFailure(result.status)) {
      failed.push(task.name);
      error ??= `task "${task.name}" ${result.status}${result.error ? `: ${result.error}` : ""}`;
    }
    output = result.outputs;
  });
  if (outcome.aborted) error ??= outcome.aborted;
  return {
    success: failed.length === 0 && !outcome.aborted,
    group: group.name,
    workdir,
    error,
    failed,
    tasks,
    output,
  };
}

/**
 * Whether the directory at `path` may be removed now: `refused` says why not;
 * `real` is what to remove (absent when there is nothing there).
 */
async function checkRemovable(
  path: string,
  guards: GuardedDir[],
): Promise<{ real?: string; refused?: string }> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw error;
  }
  if (info.isSymlink) {
    return { refused: "is a symbolic link (only a directory itself is ever removed)" };
  }
  if (!info.isDirectory) return { refused: "is not a directory" };
  const real = await Deno.realPath(path);
  const refused = removalRefusal(path, guards) ?? removalRefusal(real, guards);
  return refused ? { refused } : { real };
}

/** The guarded directories as named and, where they exist, as their real paths. */
async function realGuards(places: GroupDirPlaces): Promise<GuardedDir[]> {
  const named = guardedDirs({
    cwd: places.cwd,
    file: places.file,
    home: Deno.env.get("HOME"),
    tmp: Deno.env.get("TMPDIR"),
  });
  const real = await Promise.all(named.map(async (dir) => {
    try {
      return { ...dir, path: await Deno.realPath(dir.path) };
    } catch {
      return undefined;
    }
  }));
  return [...named, ...real.filter((dir) => dir !== undefined)];
}

/** A group name as part of a file name: no slashes, nothing a shell would trip on. */
function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 40) || "group";
}

/**
 * A group's own directory (the Go sloth-runner's `create_workdir_before_run` and
 * `clean_workdir_after_run`), and the one rule for which directories may never be
 * removed. Pure: the run (runner/group_dir.ts) does the file system work.
 */
import type { LuaRef } from "./mod.ts";

export interface GroupDir {
  /**
   * The group's `workdir` (absolute); absent for a new temporary directory made for
   * each run, which the tasks that inherit it get as their `workdir`.
   */
  path?: string;
  /** `create_workdir_before_run`: made, with its parents, before the run's first task. */
  create: boolean;
  /**
   * After the run: remove it (true), keep it (false), or call this function with the
   * group's result and remove it when it returns true.
   */
  clean: boolean | LuaRef;
}

/** A directory that removing the group's must not take with it. */
export interface GuardedDir {
  /** Absolute, without `.`, `..` or a trailing slash. */
  path: string;
  /** What it is, for the message: "your home directory". */
  what: string;
}

/**
 * Why `path` (absolute) must not be removed, as a phrase after "which" ("is your
 * home directory"), or undefined when it may be: the root, a guarded directory or
 * one of its ancestors, or a top-level directory (/tmp, /home, /usr).
 */
export function removalRefusal(path: string, guarded: GuardedDir[]): string | undefined {
  const parts = path.split("/").filter((p) => p && p !== ".");
  if (parts.length === 0) return "is the root directory";
  const norm = "/" + parts.join("/");
  for (const dir of guarded) {
    if (dir.path === norm) return `is ${dir.what}`;
    if (dir.path.startsWith(norm + "/")) return `holds ${dir.what} (${dir.path})`;
  }
  if (parts.length === 1) return "is a top-level directory";
  return undefined;
}

/**
 * The directories no group's directory may be or hold: where sloth-runner started,
 * the workflow file's directory, the home directory and the temporary directory.
 */
export function guardedDirs(
  at: { cwd: string; file: string; home?: string; tmp?: string },
): GuardedDir[] {
  const norm = (path: string) => "/" + path.split("/").filter((p) => p && p !== ".").join("/");
  return [
    { path: norm(at.cwd), what: "the directory sloth-runner was started in" },
    {
      path: norm(at.file.slice(0, at.file.lastIndexOf("/"))),
      what: "the workflow file's directory",
    },
    ...(at.home ? [{ path: norm(at.home), what: "your home directory" }] : []),
    { path: norm(at.tmp || "/tmp"), what: "the temporary directory" },
  ];
}

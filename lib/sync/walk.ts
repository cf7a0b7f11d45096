/**
 * One walker for a workspace: what the master sends (minus `.slothignore` and
 * the reserved `.sloth-apply`), and what a task left behind on the agent.
 */
import ignore, { type Ignore } from "ignore";
import { JOURNAL_DIR } from "./journal.ts";
import { symlinkStaysInside, symlinkTargetOnDisk, SyncError } from "./paths.ts";

export type EntryType = "file" | "dir" | "symlink";

export interface Entry {
  /** Relative, `/`-separated. */
  path: string;
  type: EntryType;
  /** Permission bits only (0o777). */
  mode: number;
  size: number;
  /** Set for symlinks. */
  target?: string;
  /** Identity on this machine, for telling whether a file changed meanwhile. */
  ino: number;
  mtimeMs: number;
  /**
   * When its inode last changed (content, mode, times, links): nothing but the
   * clock sets it. Whole seconds (Deno 2.9 drops the fraction).
   */
  ctimeMs: number;
  /** Hard links to it (a file linked elsewhere is never changed in place). */
  nlink: number;
  /** Its owner (an agent hands what is still its own to the task user). */
  uid: number;
}

export interface Walk {
  /** Sorted; a directory comes before what it holds. */
  entries: Entry[];
  /** Things left out, with why (symlinks that point outside, sockets, ...). */
  skipped: string[];
  /**
   * The paths of what `entries` cannot represent: symlinks that point outside (or
   * through a symlink), FIFOs, sockets, devices, and `.sloth-apply` anywhere. An
   * agent removes them from a kept workspace before it is used again.
   */
  strays: string[];
  /** Whether `.slothignore` excludes this path. */
  ignored(path: string, isDir?: boolean): boolean;
}

export const IGNORE_FILE = ".slothignore";

/**
 * Every entry under `root`. Synchronous file calls on purpose: for thousands of
 * files they are an order of magnitude cheaper than Deno's async ones.
 * `maxEntries`: refuse (a `SyncError`) a tree with more entries, once seen.
 */
// deno-lint-ignore require-await
export async function walkWorkspace(
  root: string,
  options: { useIgnoreFile?: boolean; maxEntries?: number } = {},
) {
  let rules: Ignore | undefined;
  if (options.useIgnoreFile !== false) {
    try {
      rules = ignore().add(Deno.readTextFileSync(`${root}/${IGNORE_FILE}`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  const ignored = (path: string, isDir = false) =>
    rules !== undefined && rules.ignores(isDir ? `${path}/` : path);

  const entries: Entry[] = [];
  const skipped: string[] = [];
  const strays: string[] = [];
  const visit = (dir: string, prefix: string) => {
    const names: string[] = [];
    for (const entry of Deno.readDirSync(dir)) names.push(entry.name);
    names.sort();
    for (const name of names) {
      const path = prefix ? `${prefix}/${name}` : name;
      // The master's journal of a change set being applied (journal.ts): never sent, never diffed.
      if (name === JOURNAL_DIR) {
        strays.push(path);
        continue;
      }
      if (options.maxEntries !== undefined && entries.length >= options.maxEntries) {
        throw new SyncError(`more than ${options.maxEntries} entries`);
      }
      const full = `${dir}/${name}`;
      const info = Deno.lstatSync(full);
      const base = {
        path,
        mode: (info.mode ?? 0) & 0o777,
        size: info.size,
        ino: info.ino ?? 0,
        mtimeMs: info.mtime?.getTime() ?? 0,
        ctimeMs: info.ctime?.getTime() ?? 0,
        nlink: info.nlink ?? 1,
        uid: info.uid ?? 0,
      };
      if (info.isDirectory) {
        if (ignored(path, true)) continue;
        entries.push({ ...base, type: "dir", size: 0 });
        visit(full, path);
      } else if (ignored(path)) {
        continue;
      } else if (info.isFile) {
        entries.push({ ...base, type: "file" });
      } else if (info.isSymlink) {
        const target = Deno.readLinkSync(full);
        if (symlinkStaysInside(path, target, (p) => symlinkTargetOnDisk(root, p))) {
          entries.push({ ...base, type: "symlink", target });
        } else {
          strays.push(path);
          skipped.push(
            `${path}: symlink to ${target} points outside the workspace (or through a symlink)`,
          );
        }
      } else {
        strays.push(path);
        skipped.push(`${path}: not a regular file, directory or symlink`);
      }
    }
  };
  visit(root, "");
  return { entries, skipped, strays, ignored } satisfies Walk;
}

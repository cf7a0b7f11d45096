/**
 * Crash-safe apply of a change set on the master: the workspace ends up exactly
 * as before or exactly as after, whatever point the master is killed at.
 *
 * Design. Everything lives in `<workdir>/.sloth-apply/<owner>/`, on the same file
 * system as the workspace (so renames are atomic), where `<owner>` is
 * `<pid>-<process start time>-<random>`: created with the directory, so no
 * moment exists where a journal directory has no owner.
 *
 * 1. Receive: the change set from the agent is spooled to `changes.tar` there
 *    (not TMPDIR: a killed master's spool must be found and removed).
 * 2. Check (changes.ts): paths, limits, symlinks, conflicts, as before; nothing
 *    is written.
 * 3. Stage: the archive is unpacked into `new/`, copies of local content made
 *    in `copies/`. The workspace is still untouched.
 * 4. Plan and journal: one operation per path (`put`, `mkdir`, `remove`,
 *    `chmod`), each naming where the old thing goes aside (`old/<n>`), written to
 *    `journal.json` (through a temporary name, fsync'd, then renamed).
 * 5. Apply: renames only: the old thing aside into `old/`, the staged one into
 *    place. Every step moves one operation one state forward, and its state can
 *    be read back from the disk alone (see `undo`).
 * 6. Done: `journal.json` is removed (that is the mark), then the rest.
 *
 * Recovery (`recoverWorkspace`, run before a run first touches a workdir): a
 * journal directory whose owner is dead is undone if it still has `journal.json`
 * (each operation rolled back from whatever state it reached; new directories
 * removed; modes restored), then deleted with its spool and staging. The owner
 * is the pid plus its start time (`/proc/<pid>/stat` field 22; `ps` elsewhere),
 * so a reused pid does not count as alive, and a live master's journal in the
 * same directory is left alone.
 *
 * Why `.sloth-apply` and not `.sloth/apply`: `.sloth/` is the user's (it holds
 * `sloth-runner types` output and is synced like any directory). Creating it for
 * a journal would make it appear, conflict with a task that creates it, and stay
 * behind; a directory of our own is created and removed whole. It is reserved at
 * any depth: never walked, never sent, and a change set naming it is refused.
 *
 * Not covered: power loss (staged files are not fsync'd one by one: that would
 * cost more than the apply; the journal itself is), and a workspace with a mount
 * point inside it: a change below the mount point cannot be renamed into place
 * from the journal (EXDEV), so that apply fails and is rolled back.
 */
import { JOURNAL_DIR } from "../model/mod.ts";
import { checkRelativePath, SyncError } from "./paths.ts";

export { JOURNAL_DIR };

/** Whether `path` (relative, `/`-separated) is or is inside the reserved directory. */
export function isReserved(path: string): boolean {
  // Split only what could hold it: a manifest checks every one of its paths here.
  return path.includes(JOURNAL_DIR) && path.split("/").includes(JOURNAL_DIR);
}

/** Refuses a path from another machine that names the reserved directory. */
export function refuseReserved(path: string): void {
  if (isReserved(path)) {
    throw new SyncError(
      `refused "${path}": ${JOURNAL_DIR} is where sloth-runner journals changes on this machine`,
    );
  }
}

export type Op =
  /**
   * From staging into place: a file or a symlink, or a new directory with all it
   * holds; what was there (a file, a symlink, an emptied directory) goes aside.
   */
  | { op: "put"; path: string; staged: string; aside?: string }
  /** A new directory; what was there (file, symlink) aside. */
  | { op: "mkdir"; path: string; mode: number; aside?: string }
  /** A deletion: the file, symlink or emptied directory goes aside. */
  | { op: "remove"; path: string; aside: string }
  /** A directory's mode, last (a read-only directory must be filled first). */
  | { op: "chmod"; path: string; from: number; to: number };

interface JournalFile {
  version: 1;
  ops: Op[];
}

/** Called after every step that changes the disk: crash tests stop here. */
export type Step = (what: string) => void;

const JOURNAL = "journal.json";
const SPOOL = "changes.tar";
const NAME = /^(\d+)-([0-9A-Za-z]+)-[0-9a-f]{16}$/;

/**
 * Creates a journal directory for this process in `root`; its `spool` is where
 * a change set is received.
 */
export function openJournalDir(root: string): { dir: string; spool: string } {
  const random = [...crypto.getRandomValues(new Uint8Array(8))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const dir = `${root}/${JOURNAL_DIR}/${Deno.pid}-${ownStart()}-${random}`;
  // Another master may remove the (empty) parent between the two mkdirs: try again.
  for (let tries = 0;; tries++) {
    try {
      Deno.mkdirSync(`${root}/${JOURNAL_DIR}`, { recursive: true, mode: 0o700 });
      Deno.mkdirSync(dir, { mode: 0o700 });
      return { dir, spool: `${dir}/${SPOOL}` };
    } catch (error) {
      if (
        error instanceof Deno.errors.AlreadyExists || error instanceof Deno.errors.NotADirectory
      ) {
        throw new SyncError(
          `${root}/${JOURNAL_DIR} is in the way: it is where sloth-runner journals the changes ` +
            "it applies, and must be a directory (or absent)",
        );
      }
      if (!(error instanceof Deno.errors.NotFound) || tries > 5) throw error;
    }
  }
}

/**
 * Removes a journal directory that has nothing left to undo (and the reserved
 * directory if that leaves it empty). One whose journal is still there (an apply
 * that failed and could not be undone) is left for recovery.
 */
export function discardJournalDir(dir: string): void {
  if (exists(`${dir}/${JOURNAL}`)) return;
  removeTree(dir);
  removeIfEmpty(dir.slice(0, dir.lastIndexOf("/")));
}

/**
 * Applies `ops` in `dir` (where `new/`, `copies/` and `old/` are), journaled
 * first; on an error, undoes what was done and throws. Leaves `dir` holding only
 * what it held before (the spool).
 */
export function applyOps(root: string, dir: string, ops: Op[], step: Step = () => {}): void {
  try {
    Deno.mkdirSync(`${dir}/old`, { recursive: true });
    writeJournal(dir, ops);
  } catch (error) {
    throw new SyncError(
      `could not write the journal in ${dir}: ${
        error instanceof Error ? error.message : error
      }; nothing was changed`,
    );
  }
  step("journal written");
  try {
    for (const op of ops) doOp(root, dir, op, step);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    try {
      undo(root, dir, ops, step);
      finish(dir, step);
    } catch (undoError) {
      throw new SyncError(
        `could not apply the change set to ${root} (${reason}), nor undo what was applied (${
          undoError instanceof Error ? undoError.message : undoError
        }); the next run there undoes it (journal: ${dir})`,
      );
    }
    throw new SyncError(
      `could not apply the change set to ${root} (${reason}); it was undone, nothing changed`,
    );
  }
  finish(dir, step);
}

export interface Recovery {
  /** Interrupted change sets undone. */
  undone: number;
  /** Journal directories removed (those undone, finished ones, spools, staging). */
  removed: number;
  /** Journal directories of live processes, left alone. */
  busy: number;
}

/**
 * Undoes what dead masters left half done in `root`, and removes their spools and
 * staging. A live process's journal is left alone.
 */
/** What to tell the person running sloth-runner after `recoverWorkspace` undid something. */
export function recoveryNote(recovery: { undone: number }, root: string): string | undefined {
  if (recovery.undone === 0) return undefined;
  const what = recovery.undone === 1 ? "a change set" : `${recovery.undone} change sets`;
  return `undid ${what} that a killed sloth-runner left half applied in ${root}`;
}

export function recoverWorkspace(root: string, options: { step?: Step } = {}): Recovery {
  const base = `${root}/${JOURNAL_DIR}`;
  const recovery: Recovery = { undone: 0, removed: 0, busy: 0 };
  let names: string[];
  try {
    names = [...Deno.readDirSync(base)].map((e) => e.name);
  } catch (error) {
    // Nothing there, or something that is not ours (applying will say it is in the way).
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return recovery;
    }
    throw error;
  }
  for (const name of names.sort()) {
    const owner = NAME.exec(name);
    if (owner && ownerAlive(Number(owner[1]), owner[2])) {
      recovery.busy++;
      continue;
    }
    const dir = `${base}/${name}`;
    const journal = readJournal(dir);
    if (journal) {
      try {
        undo(root, dir, journal.ops, options.step);
      } catch (error) {
        throw new SyncError(
          `cannot undo the change set a killed sloth-runner left half applied in ${root}: ${
            error instanceof Error ? error.message : error
          } (journal: ${dir})`,
        );
      }
      recovery.undone++;
      finish(dir, options.step);
    }
    removeTree(dir);
    options.step?.("removed");
    recovery.removed++;
  }
  removeIfEmpty(base);
  return recovery;
}

function doOp(root: string, dir: string, op: Op, step: Step): void {
  const path = `${root}/${op.path}`;
  switch (op.op) {
    case "put":
      if (op.aside) {
        Deno.renameSync(path, `${dir}/${op.aside}`);
        step(`aside ${op.path}`);
      }
      Deno.renameSync(`${dir}/${op.staged}`, path);
      step(`put ${op.path}`);
      return;
    case "mkdir":
      if (op.aside) {
        Deno.renameSync(path, `${dir}/${op.aside}`);
        step(`aside ${op.path}`);
      }
      Deno.mkdirSync(path, { mode: op.mode });
      step(`mkdir ${op.path}`);
      return;
    case "remove":
      Deno.renameSync(path, `${dir}/${op.aside}`);
      step(`remove ${op.path}`);
      return;
    case "chmod":
      Deno.chmodSync(path, op.to);
      step(`chmod ${op.path}`);
      return;
  }
}

/**
 * Rolls back every operation, last first, from whatever state each reached. The
 * state is read from the disk: a staged file that is no longer in staging was put
 * in place; something aside was moved aside. Each undo step is one rename back,
 * so a crash while undoing leaves a state this reads correctly again.
 */
function undo(root: string, dir: string, ops: Op[], step: Step = () => {}): void {
  for (let i = ops.length - 1; i >= 0; i--) {
    const op = ops[i];
    const path = `${root}/${op.path}`;
    switch (op.op) {
      case "chmod":
        if (kindOf(path) === "dir") Deno.chmodSync(path, op.from);
        break;
      case "put": {
        const aside = op.aside && `${dir}/${op.aside}`;
        // Aside expected but not there: the operation never began.
        if (aside && !exists(aside)) break;
        if (!exists(`${dir}/${op.staged}`) && exists(path)) {
          Deno.renameSync(path, `${dir}/${op.staged}`);
          step(`unput ${op.path}`);
        }
        if (aside) {
          Deno.renameSync(aside, path);
          step(`restore ${op.path}`);
        }
        break;
      }
      case "mkdir": {
        const aside = op.aside && `${dir}/${op.aside}`;
        if (aside && !exists(aside)) break;
        if (kindOf(path) === "dir") {
          Deno.removeSync(path);
          step(`rmdir ${op.path}`);
        }
        if (aside) {
          Deno.renameSync(aside, path);
          step(`restore ${op.path}`);
        }
        break;
      }
      case "remove":
        if (exists(`${dir}/${op.aside}`)) {
          Deno.renameSync(`${dir}/${op.aside}`, path);
          step(`restore ${op.path}`);
        }
        break;
    }
  }
}

/**
 * Marks the journal done (by removing it), then removes staging and what went
 * aside. What cannot be removed then is only litter: the next run's recovery
 * removes it.
 */
function finish(dir: string, step: Step = () => {}): void {
  try {
    Deno.removeSync(`${dir}/${JOURNAL}`);
    step("journal removed");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  try {
    clearStaging(dir);
  } catch {
    // Litter, not damage (see above).
  }
}

/** Removes staging and what went aside, unless a journal still needs them to undo. */
export function clearStaging(dir: string): void {
  if (exists(`${dir}/${JOURNAL}`)) return;
  for (const name of ["new", "copies", "old"]) removeTree(`${dir}/${name}`);
}

function writeJournal(dir: string, ops: Op[]): void {
  const temp = `${dir}/${JOURNAL}.tmp`;
  const body: JournalFile = { version: 1, ops };
  {
    using file = Deno.openSync(temp, { write: true, create: true, truncate: true, mode: 0o600 });
    const bytes = new TextEncoder().encode(JSON.stringify(body));
    for (let rest = bytes; rest.length > 0;) rest = rest.subarray(file.writeSync(rest));
    file.syncSync();
  }
  Deno.renameSync(temp, `${dir}/${JOURNAL}`);
  syncDir(dir);
}

/** The journal in `dir`, checked (it is a file in the user's directory), or none. */
function readJournal(dir: string): JournalFile | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${dir}/${JOURNAL}`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw error;
  }
  const bad = (why: string) => new SyncError(`unreadable journal ${dir}/${JOURNAL}: ${why}`);
  let parsed: JournalFile;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw bad("not JSON");
  }
  if (parsed?.version !== 1 || !Array.isArray(parsed.ops)) throw bad("unknown version");
  const inDir = (name: unknown) =>
    typeof name === "string" && /^(new|copies|old)\//.test(name) &&
    checkRelativePath(name) === name;
  for (const op of parsed.ops) {
    if (typeof op?.path !== "string" || checkRelativePath(op.path) !== op.path) {
      throw bad("a bad path");
    }
    const ok = op.op === "put"
      ? inDir(op.staged) && (op.aside === undefined || inDir(op.aside))
      : op.op === "mkdir"
      ? op.aside === undefined || inDir(op.aside)
      : op.op === "remove"
      ? inDir(op.aside)
      : op.op === "chmod" && Number.isInteger(op.from);
    if (!ok) throw bad(`a bad operation on ${op.path}`);
  }
  return parsed;
}

type Kind = "file" | "dir" | "symlink" | "none";

export function kindOf(full: string): Kind {
  try {
    const info = Deno.lstatSync(full);
    return info.isDirectory ? "dir" : info.isSymlink ? "symlink" : "file";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return "none";
    }
    throw error;
  }
}

function exists(full: string): boolean {
  return kindOf(full) !== "none";
}

function removeTree(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

function removeIfEmpty(dir: string): void {
  try {
    Deno.removeSync(dir);
  } catch {
    // Not empty (another master's journal), or gone.
  }
}

function syncDir(dir: string): void {
  try {
    using handle = Deno.openSync(dir, { read: true });
    handle.syncSync();
  } catch {
    // Not every system lets a directory be opened for fsync; the rename itself is atomic.
  }
}

let own: string | undefined;

function ownStart(): string {
  own ??= processStart(Deno.pid) ?? "0";
  return own;
}

/**
 * When the process started, as a token that tells it from a later process with the
 * same pid: /proc/<pid>/stat field 22 (clock ticks since boot) on Linux, `ps -o
 * lstart=` elsewhere. Undefined when there is no such process (or it is a zombie).
 */
function processStart(pid: number): string | undefined {
  if (Deno.build.os === "linux") {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    } catch {
      return undefined;
    }
    // The name (field 2) may hold spaces and parentheses: count from the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return undefined;
    return fields[19];
  }
  try {
    const ps = new Deno.Command("ps", {
      args: ["-o", "lstart=", "-p", String(pid)],
      stderr: "null",
    })
      .outputSync();
    const text = new TextDecoder().decode(ps.stdout).replace(/[^0-9A-Za-z]/g, "");
    return ps.success && text !== "" ? text : undefined;
  } catch {
    // No `ps` (Windows): only this process is known to be alive.
    return pid === Deno.pid ? "0" : undefined;
  }
}

function ownerAlive(pid: number, start: string): boolean {
  if (pid === Deno.pid) return start === ownStart();
  return processStart(pid) === start;
}

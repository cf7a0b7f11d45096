/**
 * Lua workflows: load a file into a checked `Workflow`, and open fresh Lua
 * states in which a task's functions run.
 */
import { SlothError } from "../errors.ts";
import type { Inventory, Task, Workflow } from "../model/mod.ts";
import type { LuaPool, LuaSession, SessionHooks } from "./pool.ts";
import { displayName, fixModernDsls, resolvePath, skipShebang } from "./source.ts";
import type { LuaFile } from "./globals.ts";

export {
  LOAD_TIMEOUT_MS,
  LUA_DATA_LIMIT,
  LUA_MEMORY_LIMIT,
  LUA_WASM_PATH,
  LuaPool,
  LuaSession,
  startLuaWorker,
} from "./pool.ts";
export type { LuaPoolOptions, SessionHooks } from "./pool.ts";
export type { CallKind, CallResult } from "./protocol.ts";
export { LUA_WORKER_ENV, startProcessWorker } from "./process_worker.ts";
export type { LuaWorker, ProcessWorkerOptions } from "./process_worker.ts";
export { sourceContext } from "./source.ts";
export { luaAnnotations } from "./annotations.ts";

/** Everything needed to load the same workflow again, in another Lua state or on an agent. */
export interface WorkflowSource {
  /** Absolute path of the main file. */
  file: string;
  /** The directory sloth-runner started in. */
  cwd: string;
  values: unknown;
  /** The files by absolute path, when they come from a master instead of the disk. */
  bundle?: Record<string, string>;
}

export interface LoadedWorkflow {
  workflow: Workflow;
  source: WorkflowSource;
  /** Things the user should know, such as the `Modern DSLs` header being read as `TaskDefinitions`. */
  warnings: string[];
  /** Absolute paths of the main file and every file it imported. */
  files: string[];
  /**
   * `file:line: task code reads global "x", which nothing defines`, one for each
   * (globals.ts); none on an agent (`only`, `ignoreTargets`), where it is not checked.
   */
  unknownGlobals: string[];
  /** The state it was loaded in, when asked to keep it (`keep`). */
  session?: LuaSession;
}

export async function loadWorkflow(
  pool: LuaPool,
  options: {
    file: string;
    cwd: string;
    values?: unknown;
    bundle?: Record<string, string>;
    /** Where relative paths of top-level code start; `cwd` by default. */
    workdir?: string;
    /** Drop the top level's `log` and `print` lines. */
    quiet?: boolean;
    /** On an agent: do not look at where tasks would run. */
    ignoreTargets?: boolean;
    /** The fleet's agents and pools, which tasks may name. */
    inventory?: Inventory;
    onLog?: SessionHooks["onLog"];
    /**
     * Keep the state open for the task functions of the one task it is loaded
     * for (an agent's job), with the variables that task sees: a second state
     * would load the same files again.
     */
    keep?: { env: Record<string, string> };
    /** Describe this task only (an agent's job): the master checked the rest. */
    only?: { group: string; task: string };
  },
): Promise<LoadedWorkflow> {
  const file = resolvePath(options.cwd, options.file);
  const source: WorkflowSource = {
    file,
    cwd: options.cwd,
    values: options.values ?? {},
    bundle: options.bundle,
  };
  // An agent's job skips the check of globals: the master made it before sending the job.
  const checking = !options.only && !options.ignoreTargets;
  // luaparse loads, and parses the main file, while the Lua worker starts and runs it.
  const globalsModule = checking ? import("./globals.ts") : undefined;
  const mainScan = globalsModule?.then(({ scanFile }) => {
    const main = readLuaFile(file, source);
    return main ? [scanFile(main)] : [];
  });
  const { session, opened } = await pool.open(
    {
      ...source,
      workdir: options.workdir ?? options.cwd,
      env: options.keep?.env ?? {},
      quiet: options.quiet ?? false,
      only: options.only && { ...options.only, describe: true },
    },
    { onLog: options.onLog ?? (() => {}) },
  );
  if (!options.keep) session.release();
  const warnings = [...opened.warnings];
  let unknownGlobals: string[] = [];
  if (globalsModule) {
    const { checkGlobals } = await globalsModule;
    const read = (path: string) => readLuaFile(path, source);
    const report = checkGlobals(
      opened.files.flatMap((path) => read(path) ?? []),
      { defined: opened.globals, read, scans: await mainScan },
    );
    if (report.modules.length > 0) {
      session.release();
      throw new SlothError(
        "workflow_invalid",
        report.modules.length === 1 ? report.modules[0] : (
          "the workflow uses modules of the Go sloth-runner that sloth-runner does not provide:\n" +
          report.modules.map((line) => `  - ${line}`).join("\n")
        ),
      );
    }
    warnings.push(...report.notes);
    unknownGlobals = report.unknown;
  }
  // zod loads here, while the Lua worker is already starting: see LuaPool.prestart().
  const { normalizeWorkflow } = await import("./normalize.ts");
  const workflow = normalizeWorkflow(opened.description, {
    file,
    fileName: displayName(file, options.cwd),
    cwd: options.cwd,
    ignoreTargets: options.ignoreTargets,
    inventory: options.inventory,
    inventoryName: options.inventory && displayName(options.inventory.file, options.cwd),
    warnings,
  });
  return {
    workflow,
    source,
    warnings,
    files: opened.files,
    unknownGlobals,
    session: options.keep ? session : undefined,
  };
}

/**
 * A workflow file as the Lua worker reads it (source.ts's fix-ups keep its lines);
 * `undefined` when it is not a regular file here (or in the bundle).
 */
function readLuaFile(path: string, source: WorkflowSource): LuaFile | undefined {
  let text = source.bundle?.[path];
  if (!source.bundle) {
    try {
      // stat first: opening a FIFO to read it would wait for a writer.
      if (Deno.statSync(path).isFile) text = Deno.readTextFileSync(path);
    } catch {
      // Gone, or not readable: Lua will say so if it is ever loaded.
    }
  }
  if (text === undefined) return undefined;
  return {
    path,
    name: displayName(path, source.cwd),
    text: fixModernDsls(skipShebang(text)).source,
  };
}

/** The variables a task sees besides the inherited environment. */
export function taskEnv(task: Task): Record<string, string> {
  return { SLOTH_TASK: task.name, SLOTH_GROUP: task.group, SLOTH_WORKDIR: task.workdir };
}

/** A fresh Lua state with the workflow loaded, for running one task's functions. */
export async function openTaskSession(
  pool: LuaPool,
  source: WorkflowSource,
  task: Task,
  hooks: SessionHooks,
): Promise<LuaSession> {
  const { session } = await pool.open(
    {
      ...source,
      workdir: task.workdir,
      env: taskEnv(task),
      quiet: true,
      only: { group: task.group, task: task.name },
    },
    hooks,
  );
  return session;
}

/**
 * The task name a group's own functions (`clean_workdir_after_run`) are called by,
 * in `LuaSession.call`: no task has it.
 */
export const GROUP_FUNCTIONS = "";

/** A fresh Lua state with the workflow loaded, for calling a group's own function. */
export async function openGroupSession(
  pool: LuaPool,
  source: WorkflowSource,
  group: { name: string; workdir: string },
  hooks: SessionHooks,
): Promise<LuaSession> {
  const { session } = await pool.open(
    {
      ...source,
      workdir: group.workdir,
      env: { SLOTH_GROUP: group.name, SLOTH_WORKDIR: group.workdir },
      quiet: true,
      only: { group: group.name, task: GROUP_FUNCTIONS },
    },
    hooks,
  );
  return session;
}

/** Reads a `--values` YAML file. */
export async function readValues(path: string, cwd: string): Promise<unknown> {
  const name = displayName(resolvePath(cwd, path), cwd);
  let text: string;
  try {
    text = await Deno.readTextFile(resolvePath(cwd, path));
  } catch (error) {
    throw new SlothError(
      "values_invalid",
      error instanceof Deno.errors.NotFound
        ? `values file ${name} not found`
        : `cannot read values file ${name}: ${(error as Error).message}`,
      { hint: "-v takes a YAML file, relative to the current directory" },
    );
  }
  const { parse } = await import("yaml");
  try {
    return parse(text) ?? {};
  } catch (error) {
    throw new SlothError(
      "values_invalid",
      `values file ${name} is not valid YAML: ${(error as Error).message.split("\n")[0]}`,
      { hint: "fix the line named above; the whole file becomes the `values` global" },
    );
  }
}

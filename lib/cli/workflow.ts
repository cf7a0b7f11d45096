/** `run`, `list` and `validate`: load a workflow, then plan, show or run it. */
import { ExitCode, SlothError } from "../errors.ts";
import { type LoadedWorkflow, loadWorkflow, LuaPool, readValues } from "../dsl/mod.ts";
import {
  type EmitEvent,
  jsonRenderer,
  jsonReport,
  junitXml,
  type RunEvent,
  RunRecorder,
  TextRenderer,
} from "../log/mod.ts";
import {
  allTasks,
  FAN_OUT_MARK,
  findPool,
  type Group,
  isFailure,
  JOURNAL_DIR,
  targetText,
  type Task,
  type TaskResult,
  type TaskStatus,
} from "../model/mod.ts";
import {
  finishGroupDirs,
  loadRemoteRunner,
  LocalRunner,
  PoolRunner,
  type PreparedDir,
  prepareGroupDirs,
  type RemoteRunner,
} from "../runner/mod.ts";
import {
  checkWorkflow,
  type Plan,
  planRun,
  type RunOutcome,
  runPlan,
  type Selection,
  type TaskExecutor,
} from "../scheduler/mod.ts";
import type { Inventory, TlsPaths, Workflow } from "../model/mod.ts";
import {
  checkPools,
  describeTarget,
  expandFanOut,
  fanOutPools,
  findInventory,
  Fleet,
  loadInventory,
  type Member,
  poolMembers,
  staticMembers,
} from "../fleet/mod.ts";
import { relative } from "node:path";
import type { Io } from "./io.ts";
import { routeByTarget } from "./route.ts";

interface LoadOptions {
  file: string;
  values?: string;
  /** -i: the inventory file (else SLOTH_INVENTORY, else ./sloth-inventory.yaml). */
  inventory?: string;
  /** What to do with globals that task code reads and nothing defines; nothing by default. */
  unknownGlobals?: "warn" | "error";
}

interface Loaded extends LoadedWorkflow {
  inventory?: Inventory;
}

async function load(
  io: Io,
  pool: LuaPool,
  options: LoadOptions,
  onLog?: (level: string, message: string) => void,
): Promise<Loaded> {
  const values = options.values ? await readValues(options.values, io.cwd) : {};
  const inventory = await readInventory(io, options.inventory);
  const loaded = await loadWorkflow(pool, {
    file: options.file,
    cwd: io.cwd,
    values,
    onLog,
    inventory,
  });
  for (const warning of loaded.warnings) io.err(`warning: ${warning}\n`);
  checkPools(loaded.workflow, inventory);
  if (options.unknownGlobals === "warn") {
    for (const line of loaded.unknownGlobals) io.err(`warning: ${line}\n`);
  } else if (options.unknownGlobals === "error" && loaded.unknownGlobals.length > 0) {
    const lines = loaded.unknownGlobals;
    throw new SlothError(
      "workflow_invalid",
      lines.length === 1 ? lines[0] : (
        "task code reads globals that nothing defines:\n" +
        lines.map((line) => `  - ${line}`).join("\n")
      ),
      {
        hint: "a global set where this check cannot see (load, _G[name]) is declared by " +
          'assigning it at the top of a file: name = nil ("run" only warns)',
      },
    );
  }
  return { ...loaded, inventory };
}

/** The inventory, when there is one (fleet/ loads only then). */
export async function readInventory(io: Io, flag?: string): Promise<Inventory | undefined> {
  const path = findInventory(flag, io.cwd);
  if (!path) return undefined;
  return await loadInventory(path, relative(io.cwd, path) || path);
}

/**
 * A fan-out the run selects becomes one task per member, the members of DNS pools
 * looked up now (a pool only other tasks use is not); `staticOnly` (a dry run)
 * leaves a DNS pool's fan-out as it is.
 */
async function expandWorkflow(
  workflow: Workflow,
  inventory: Inventory | undefined,
  selection: Selection,
  staticOnly = false,
): Promise<Workflow> {
  if (!inventory) return workflow;
  const members = new Map<string, Member[]>();
  // `-t deploy@web-1` names a copy that is made below: `deploy` is selected here.
  const selected = planRun(workflow, {
    ...selection,
    tasks: selection.tasks?.map((name) => name.split(FAN_OUT_MARK)[0]),
  });
  const pools = fanOutPools({
    ...workflow,
    groups: [{ name: "", description: "", agents: {}, tasks: selected.tasks.map((p) => p.task) }],
  }).filter((pool) => !staticOnly || findPool(inventory, pool)?.source.kind !== "dns");
  if (pools.length === 0) return workflow;
  await Promise.all(pools.map(async (pool) => {
    members.set(pool, await poolMembers(inventory, pool));
  }));
  return expandFanOut(workflow, members);
}

export interface RunCommandOptions extends LoadOptions {
  groups?: string[];
  tasks?: string[];
  maxParallel: number;
  dryRun?: boolean;
  output: "text" | "json";
  verbose?: boolean;
  /** Plain lines even on a terminal (no live view). */
  plain?: boolean;
  /** Report files to write when the run ends. */
  reports?: Report[];
  /** TLS for agents whose definition has none. */
  tls?: TlsPaths;
  /** gzip for agents whose definition does not say. */
  compress?: boolean;
}

export interface Report {
  format: "junit" | "json";
  file: string;
}

/**
 * A master killed while applying a remote task's changes leaves a journal in that
 * directory (sync/journal.ts); whatever runs there next, local or remote, first
 * sees it undone. Directories without one cost a stat (sync/ is loaded only then).
 */
async function recoverWorkdirs(
  workdirs: string[],
  log: (level: string, line: string) => void,
): Promise<void> {
  for (const workdir of new Set(workdirs)) {
    try {
      if (!Deno.statSync(`${workdir}/${JOURNAL_DIR}`).isDirectory) continue;
    } catch {
      continue;
    }
    const { recoverWorkspace, recoveryNote } = await import("../sync/mod.ts");
    const note = recoveryNote(recoverWorkspace(workdir), workdir);
    if (note) log("warn", note);
  }
}

/**
 * The `on_start` of each group in the run, in order, before its first task; the
 * first that fails (false or an error) stops the run before anything starts.
 */
async function startGroups(
  local: LocalRunner,
  groups: Group[],
  signal: AbortSignal,
  log: (level: string, line: string) => void,
): Promise<string | undefined> {
  for (const group of groups) {
    if (!group.onStart) continue;
    const { error } = await local.callGroup(group, "on_start", [], signal, log);
    if (error !== undefined) {
      const reason = `on_start of workflow "${group.name}" failed: ${error}`;
      log("error", reason);
      return reason;
    }
  }
  return undefined;
}

/** Every task skipped: an `on_start` failed, or Ctrl-C came while one ran. */
function notStarted(plan: Plan, reason: string, interrupted: boolean): RunOutcome {
  return {
    aborted: interrupted ? undefined : reason,
    interrupted,
    results: plan.tasks.map(({ task }) => ({
      id: task.id,
      status: "skipped" as const,
      attempts: 0,
      durationMs: 0,
      where: targetText(task.target),
      error: "not started: an on_start failed",
      outputs: {},
    })),
  };
}

/**
 * The `on_complete(success, results)` of each group in the run, after its last
 * task; true when one of them failed (the run then fails too).
 */
async function completeGroups(
  local: LocalRunner,
  groups: Group[],
  plan: Plan,
  outcome: RunOutcome,
  { signal, log }: { signal: AbortSignal; log: (level: string, line: string) => void },
): Promise<boolean> {
  let failed = false;
  const byId = new Map(outcome.results.map((r) => [r.id, r]));
  for (const group of groups) {
    if (!group.onComplete) continue;
    const results: Record<string, unknown> = {};
    let success = !outcome.interrupted && !outcome.aborted;
    for (const { task } of plan.tasks) {
      const result = byId.get(task.id);
      if (task.group !== group.name || !result) continue;
      if (isFailure(result.status)) success = false;
      results[task.name] = {
        status: result.status,
        success: result.status === "success",
        error: result.error,
        message: result.message,
        outputs: result.outputs,
        attempts: result.attempts,
        duration_ms: Math.round(result.durationMs),
        where: result.where,
      };
    }
    const { error } = await local.callGroup(group, "on_complete", [success, results], signal, log);
    if (error !== undefined) {
      log("error", `on_complete of workflow "${group.name}" failed: ${error}`);
      failed = true;
    }
  }
  return failed;
}

export async function runCommand(io: Io, options: RunCommandOptions): Promise<number> {
  // A report that cannot be written is found now, not after the run.
  if (options.reports?.length && !options.dryRun) await checkReports(io, options.reports);
  const pool = new LuaPool({ maxIdle: Math.min(options.maxParallel, 8) });
  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);
  let remote: RemoteRunner | undefined;
  let text: TextRenderer | undefined;
  let redraw: ReturnType<typeof setInterval> | undefined;
  // Set when reports are asked for; `reported` once they are written.
  let recorder: RunRecorder | undefined;
  let reported = false;
  // Groups' directories made or checked before the run; `ran` once its tasks started.
  let dirs: PreparedDir[] = [];
  let ran = false;
  try {
    let emit: EmitEvent;
    if (options.output === "json") emit = jsonRenderer(io.out);
    else {
      text = new TextRenderer({
        out: io.out,
        err: io.err,
        color: io.color,
        verbose: options.verbose ?? false,
        live: options.plain || options.dryRun ? undefined : io.terminal,
      });
      emit = (event) => text!.handle(event);
    }
    if (options.reports?.length && !options.dryRun) {
      const show = emit;
      const record = recorder = new RunRecorder();
      emit = (event) => {
        record.handle(event);
        return show(event);
      };
    }
    const topLevelLog = (level: string, line: string) => emit(logEvent(undefined, level, line));
    const loaded = await load(io, pool, { ...options, unknownGlobals: "warn" }, topLevelLog);
    const selection = { groups: options.groups, tasks: options.tasks };
    const workflow = await expandWorkflow(
      loaded.workflow,
      loaded.inventory,
      selection,
      options.dryRun,
    );
    let plan = planRun(workflow, selection);
    if (text) text.qualify = new Set(plan.tasks.map((p) => p.task.group)).size > 1;
    if (options.dryRun) {
      showPlan(io, plan, loaded, options.output);
      return ExitCode.ok;
    }
    // A run whose Lua all happens on agents needs no Lua worker here after loading.
    const planned = new Set(plan.tasks.map(({ task }) => task.group));
    const groups = workflow.groups.filter((g) => planned.has(g.name));
    const luaHere = groups.some((g) => g.onStart || g.onComplete) ||
      plan.tasks.some(({ task }) =>
        task.runIf?.kind === "lua" || task.abortIf?.kind === "lua" ||
        task.onSuccess !== undefined || task.onFailure !== undefined ||
        task.onTimeout !== undefined ||
        (task.target.kind === "local" &&
          (task.command?.kind === "lua" || task.preExec !== undefined ||
            task.postExec !== undefined))
      );
    ({ plan, dirs } = await prepareGroupDirs(workflow, plan, {
      cwd: io.cwd,
      file: loaded.workflow.file,
    }));
    if (luaHere) pool.warm();
    else pool.drain();
    if (text && io.terminal && !options.plain) {
      const view = text;
      redraw = setInterval(() => view.tick(), 100);
    }

    const started = performance.now();
    emit({
      type: "run_started",
      file: loaded.workflow.file,
      tasks: plan.tasks.map(({ task }) => ({
        id: task.id,
        task: task.name,
        group: task.group,
        where: targetText(task.target),
      })),
    });
    await recoverWorkdirs(plan.tasks.map(({ task }) => task.workdir), topLevelLog);
    const local = new LocalRunner({ pool, source: loaded.source, emit });
    let poolRunner: TaskExecutor | undefined;
    if (plan.tasks.some(({ task }) => task.target.kind !== "local")) {
      await checkRemoteSettings(plan, options.tls, loaded.inventory);
      const RemoteRunner = await loadRemoteRunner();
      const remoteRunner = remote = new RemoteRunner({
        source: loaded.source,
        files: loaded.files,
        emit,
        tls: options.tls,
        compress: options.compress,
      });
      if (loaded.inventory && plan.tasks.some(({ task }) => task.target.kind === "pool")) {
        const fleet = new Fleet(
          loaded.inventory,
          (member, deadlineMs) => remoteRunner.ping(member.target, deadlineMs),
        );
        poolRunner = new PoolRunner({ fleet, remote: remoteRunner, emit });
        // Pools are looked up (DNS) and their members pinged as the run starts, while the
        // first tasks start; a look-up that fails is said by the tasks that need it.
        const pools = new Set(
          plan.tasks.flatMap(({ task }) => task.target.kind === "pool" ? [task.target.pool] : []),
        );
        for (const name of pools) fleet.members(name).catch(() => {});
      }
    }
    ran = true;
    const startError = await startGroups(local, groups, interrupt.signal, topLevelLog);
    const outcome = startError !== undefined
      ? notStarted(plan, startError, interrupt.signal.aborted)
      : await runPlan(plan, routeByTarget(local, remote, poolRunner), {
        maxParallel: options.maxParallel,
        signal: interrupt.signal,
        onTaskStart: (task, attempt) =>
          emit({
            type: "task_started",
            id: task.id,
            task: task.name,
            group: task.group,
            attempt,
            where: targetText(task.target),
          }),
        onRetry: (task, attempt, error, pause) =>
          emit({
            ...logEvent(
              task,
              "warn",
              `attempt ${attempt} of ${task.retries + 1} failed: ${error}; ` +
                ("delayMs" in pause
                  ? `retrying in ${pause.delayMs}ms`
                  : `waiting for ${pause.waitingFor}, then retrying`),
            ),
          }),
        onTaskFinish: (task, result) =>
          emit({ type: "task_finished", task: task.name, group: task.group, result }),
      });
    // After Ctrl-C, on_complete still runs, for 10 s at most.
    const completeFailed = await completeGroups(local, groups, plan, outcome, {
      signal: interrupt.signal.aborted ? AbortSignal.timeout(10_000) : interrupt.signal,
      log: topLevelLog,
    });

    await finishGroupDirs(dirs, {
      cwd: io.cwd,
      file: loaded.workflow.file,
      plan,
      outcome,
      pool,
      source: loaded.source,
      emit,
      signal: interrupt.signal,
    });

    const counts = countStatuses(outcome.results);
    const failed = completeFailed || counts.failed + counts.timeout + counts.cancelled > 0;
    // Ctrl-C during on_complete or a group's cleanup interrupts the run as well.
    const interrupted = outcome.interrupted || interrupt.signal.aborted;
    const status = interrupted
      ? "interrupted"
      : outcome.aborted
      ? "aborted"
      : failed
      ? "failed"
      : "success";
    const exitCode = interrupted
      ? ExitCode.interrupted
      : status === "success"
      ? ExitCode.ok
      : ExitCode.taskFailed;
    emit({
      type: "run_finished",
      status,
      exit_code: exitCode,
      duration_ms: Math.round(performance.now() - started),
      counts,
      reason: outcome.aborted ?? (interrupted ? "interrupted" : undefined),
    });
    if (text) {
      const tasks = new Map(plan.tasks.map(({ task }) => [task.id, task]));
      text.summary(
        outcome.results.map((result) => ({ task: tasks.get(result.id)!.name, result })),
        footer(counts, outcome.aborted, interrupted),
      );
    }
    if (recorder) {
      reported = true;
      const saved = await saveReports(io, options.reports!, recorder);
      if (!saved && exitCode === ExitCode.ok) return ExitCode.usage;
    }
    return exitCode;
  } catch (error) {
    // A workflow that did not load or plan still gets reports that say so (CI must not
    // read "0 tests, 0 failures" as green).
    if (recorder && !recorder.started) {
      recorder.handle({ type: "run_started", file: options.file, tasks: [] });
      recorder.handle({
        type: "run_finished",
        status: "failed",
        exit_code: error instanceof SlothError ? error.exitCode : ExitCode.taskFailed,
        duration_ms: 0,
        counts: countStatuses([]),
        reason: `the workflow did not load: ${(error as Error).message.replace(/\s*\n\s*/g, " ")}`,
      });
    }
    throw error;
  } finally {
    // Made for a run that then did not start (a TLS file missing): empty, and ours.
    if (!ran) { for (const d of dirs) if (d.temporary) await Deno.remove(d.path).catch(() => {}); }
    clearInterval(redraw);
    text?.stop();
    // Also after a crash: a run that stopped half way still leaves its report.
    if (recorder && !reported) await saveReports(io, options.reports!, recorder);
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
    remote?.close();
    pool.close();
  }
}

/** What remote tasks will need from this side, checked before any task runs. */
async function checkRemoteSettings(
  plan: Plan,
  tls: TlsPaths | undefined,
  inventory: Inventory | undefined,
): Promise<void> {
  // TLS files: --tls-* (or SLOTH_TLS_*) when an agent's definition has none, else its own.
  const { checkMasterTls } = await import("../rpc/mod.ts");
  const checked = new Set<string>();
  const targets = plan.tasks.flatMap(({ task }): { tls?: TlsPaths }[] => {
    if (task.target.kind === "remote") return [task.target];
    if (task.target.kind !== "pool" || !inventory) return [];
    const def = findPool(inventory, task.target.pool)!;
    return staticMembers(inventory, task.target.pool)?.map((m) => m.target) ??
      [{ tls: def.tls }];
  });
  for (const target of targets) {
    const files = target.tls ?? tls;
    const key = JSON.stringify(files ?? {});
    if (!files || checked.has(key)) continue;
    checked.add(key);
    await checkMasterTls(files);
  }
  const { limitsFromEnv } = await import("../sync/mod.ts");
  try {
    limitsFromEnv();
  } catch (error) {
    throw new SlothError("usage", (error as Error).message, {
      hint: "SLOTH_SYNC_MAX_BYTES and _FILE_BYTES take a size (64G, 512M), _ENTRIES a count; " +
        "fix or unset it",
    });
  }
}

/** Refuses two reports to one file, and a place a report cannot be written. */
async function checkReports(io: Io, reports: Report[]): Promise<void> {
  const seen = new Map<string, string>();
  for (const { format, file } of reports) {
    const path = file.startsWith("/") ? file : `${io.cwd}/${file}`;
    const other = seen.get(path);
    if (other) {
      const both = other === format
        ? `two ${format} reports`
        : `the ${other} and ${format} reports`;
      throw new SlothError("usage", `${both} would both be ${file}`, {
        hint: "give each --report its own file",
      });
    }
    seen.set(path, format);
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    try {
      if ((await Deno.stat(path).catch(() => undefined))?.isDirectory) {
        throw new Error("it is a directory");
      }
      await Deno.mkdir(dir, { recursive: true });
      await Deno.remove(await Deno.makeTempFile({ dir, prefix: ".sloth-report-" }));
    } catch (error) {
      throw new SlothError(
        "usage",
        `cannot write the ${format} report ${file}: ${(error as Error).message}`,
        { hint: "choose a file in a directory you can write to (it is made if missing)" },
      );
    }
  }
}

/** Writes each report; says which could not be written, and returns whether all were. */
async function saveReports(io: Io, reports: Report[], recorder: RunRecorder): Promise<boolean> {
  const record = recorder.record();
  let ok = true;
  for (const { format, file } of reports) {
    const path = file.startsWith("/") ? file : `${io.cwd}/${file}`;
    try {
      const dir = path.slice(0, path.lastIndexOf("/"));
      if (dir) await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(path, format === "junit" ? junitXml(record) : jsonReport(record));
    } catch (error) {
      io.err(`error: cannot write the ${format} report ${file}: ${(error as Error).message}\n`);
      ok = false;
    }
  }
  return ok;
}

function logEvent(task: Task | undefined, level: string, line: string): RunEvent {
  const base = task ? { id: task.id, task: task.name } : {};
  if (level === "print") return { type: "log", ...base, stream: "stdout", line };
  return {
    type: "log",
    ...base,
    stream: "log",
    level: (["debug", "info", "warn", "error"].includes(level) ? level : "info") as
      | "debug"
      | "info"
      | "warn"
      | "error",
    line,
  };
}

function countStatuses(results: TaskResult[]): Record<TaskStatus, number> {
  const counts: Record<TaskStatus, number> = {
    success: 0,
    failed: 0,
    skipped: 0,
    timeout: 0,
    cancelled: 0,
  };
  for (const r of results) counts[r.status]++;
  return counts;
}

function footer(
  counts: Record<TaskStatus, number>,
  aborted: string | undefined,
  interrupted: boolean,
): string {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const parts = (Object.entries(counts) as [TaskStatus, number][])
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${status}`);
  let text = `${total} task${total === 1 ? "" : "s"}: ${parts.join(", ")}`;
  if (aborted) text += `\nRun aborted: ${aborted}`;
  if (interrupted) text += "\nRun interrupted.";
  return text;
}

function showPlan(
  io: Io,
  plan: Plan,
  loaded: Loaded,
  output: "text" | "json",
): void {
  const rows = plan.tasks.map(({ task }, i) => ({
    step: i + 1,
    id: task.id,
    task: task.name,
    group: task.group,
    where: describeTarget(task.target, loaded.inventory),
    async: task.async,
    depends_on: task.dependsOn,
    next_if_fail: task.nextIfFail,
  }));
  if (output === "json") {
    io.out(JSON.stringify({ type: "plan", file: loaded.workflow.file, tasks: rows }) + "\n");
    return;
  }
  const qualify = new Set(rows.map((r) => r.group)).size > 1;
  const name = (r: typeof rows[number]) => qualify ? r.id : r.task;
  const width = Math.max(4, ...rows.map((r) => name(r).length));
  const whereWidth = Math.max(5, ...rows.map((r) => r.where.length));
  let text = `Plan: ${rows.length} task${rows.length === 1 ? "" : "s"}, in this order ` +
    `(dry run: nothing is executed)\n`;
  for (const r of rows) {
    const notes = [
      r.async ? "async" : "",
      r.depends_on.length ? `after ${r.depends_on.join(", ")}` : "",
      r.next_if_fail.length ? `if ${r.next_if_fail.join(" or ")} fails` : "",
    ].filter(Boolean).join("; ");
    text +=
      `${String(r.step).padStart(3)}. ${name(r).padEnd(width)}  ${
        r.where.padEnd(whereWidth)
      }  ${notes}`
        .trimEnd() + "\n";
  }
  io.out(text);
}

export async function listCommand(io: Io, options: LoadOptions): Promise<number> {
  const pool = new LuaPool({ maxIdle: 1 });
  try {
    const loaded = await load(io, pool, options);
    checkWorkflow(loaded.workflow);
    let text = "";
    for (const group of loaded.workflow.groups) {
      text += `${group.name}${group.version ? ` ${group.version}` : ""}${
        group.description ? ` — ${group.description}` : ""
      }\n`;
      const rows = group.tasks.map((t) => [
        t.name,
        describeTarget(t.target, loaded.inventory),
        t.dependsOn.join(", ") || "-",
        t.description,
      ]);
      const header = ["TASK", "WHERE", "DEPENDS ON", "DESCRIPTION"];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      for (const row of [header, ...rows]) {
        text += "  " + row.map((c, i) => i === row.length - 1 ? c : c.padEnd(widths[i])).join("  ")
          .trimEnd() +
          "\n";
      }
      text += "\n";
    }
    io.out(text.trimEnd() + "\n");
    return ExitCode.ok;
  } finally {
    pool.close();
  }
}

export async function validateCommand(io: Io, options: LoadOptions): Promise<number> {
  const pool = new LuaPool({ maxIdle: 1 });
  try {
    const loaded = await load(io, pool, { ...options, unknownGlobals: "error" });
    checkWorkflow(loaded.workflow);
    const tasks = allTasks(loaded.workflow);
    const remote = tasks.filter((t) => t.target.kind !== "local").length;
    const groups = loaded.workflow.groups.length;
    // Tasks that go to a pool or fan out, with the members they would reach now.
    const fleetLines = tasks.filter((t) => t.target.kind === "pool" || t.target.kind === "each")
      .map((t) => `  ${t.id}: ${describeTarget(t.target, loaded.inventory)}\n`).join("");
    io.out(
      `${options.file} is valid: ${groups} group${groups === 1 ? "" : "s"}, ` +
        `${tasks.length} task${tasks.length === 1 ? "" : "s"}` +
        (remote ? ` (${remote} remote)` : "") + "\n" + fleetLines,
    );
    return ExitCode.ok;
  } finally {
    pool.close();
  }
}

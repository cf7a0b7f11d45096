/**
 * The agent: accepts a job, unpacks its workspace into a fresh temporary
 * directory, runs exactly that task there (never its dependencies, never
 * delegating further), streams its log lines, returns what changed, and removes
 * the directory whatever happened.
 */
import {
  loadWorkflow,
  LUA_WASM_PATH,
  type LuaPool,
  type LuaSession,
  startLuaWorker,
  startProcessWorker,
} from "../dsl/mod.ts";
import { bwrapSandbox, type Sandbox, taskUser, userSandbox } from "../exec/mod.ts";
import type { RunEvent } from "../log/mod.ts";
import type { ExitStatus, Task } from "../model/mod.ts";
import { exitStatusText, formatDuration } from "../model/mod.ts";
import {
  type AgentHandlers,
  type IncomingJob,
  type LogLine,
  OLDEST_PROTOCOL,
  parseRequirements,
  type PingResponse,
  PROTOCOL_VERSION,
  ProtocolError,
  type TaskResultMessage,
  type TaskStart,
} from "../rpc/mod.ts";
import { LocalRunner } from "../runner/mod.ts";
import type { AttemptContext, AttemptResult } from "../scheduler/mod.ts";
import {
  diff,
  DiskBudget,
  footprint,
  isNoSpace,
  type Limits,
  ManifestBases,
  markUnverified,
  NoSpaceError,
  readSmallFile,
  restat,
  setModeAndTime,
  SyncError,
  type WorkspaceState,
} from "../sync/mod.ts";
import {
  handOverFilled,
  materialize,
  receiveManifest,
  sendChanges,
  settleKept,
} from "./exchange.ts";
import { type LuaSlot, LuaSlots } from "./lua_slots.ts";
import { SlothError } from "../errors.ts";
import { createHmac } from "node:crypto";

/** Log lines waiting to be sent, beyond which Lua's lines are dropped (and counted). */
const MAX_QUEUED_LOG_LINES = 1000;

/** The abort reason of jobs cut short because the agent is stopping. */
const STOPPING = "agent_stopping";

/** Room made for a job's directories when the disk is full: a few blocks. */
const NEW_DIR_BYTES = 64 * 1024;

export interface AgentOptions {
  version: string;
  /** Jobs that run at once; the rest wait in order. */
  maxConcurrent: number;
  /** Where job directories are made. */
  workRoot: string;
  /** Run shell commands under bubblewrap. */
  bwrap: boolean;
  /** Give tasks (shell and Lua) a network. */
  taskNetwork: boolean;
  /** Files tasks must not see: the token file, TLS files, the local token directory. */
  secrets: string[];
  /** Limits on what a master may send. */
  limits: Limits;
  /**
   * Bytes the agent keeps for later jobs: the content store and the kept
   * workspaces together (least recently used goes first, across both).
   */
  cacheBytes: number;
  /** Workspaces kept for later runs of the same master directory (a count, within `cacheBytes`). */
  keptWorkspaces: number;
  /** One line per job and per notable event. */
  log(line: string): void;
}

/**
 * `<work root>/sloth-agent-<port>`; for an agent bound to one address other than
 * 127.0.0.1 (several agents may share a port on distinct addresses),
 * `<work root>/sloth-agent-<address>-<port>`.
 */
export function agentHome(workRoot: string, bind: string, port: number): string {
  const plain = ["127.0.0.1", "0.0.0.0", "::", "[::]"].includes(bind);
  return `${workRoot}/sloth-agent-${plain ? "" : `${bind.replace(/[^A-Za-z0-9.]/g, "_")}-`}${port}`;
}

export class AgentService implements AgentHandlers {
  #o: AgentOptions;
  #running = 0;
  #waiting: (() => void)[] = [];
  #nextId = 0;
  /** Every job's controller, so that stopping the agent stops them all. */
  #jobs = new Set<AbortController>();
  #dirs = new Set<string>();
  #stopping = false;
  #home?: { jobs: string; keep: DiskBudget; secret: Uint8Array };
  #ephemeralHome?: string;
  /** What masters' manifest deltas are made against (sync/delta.ts): about 30 MB at most. */
  #bases = new ManifestBases({ keys: 32, entries: 100_000 });
  /** Warm Lua workers, each bound to a directory that holds one job's at a time. */
  #slots?: LuaSlots;

  constructor(options: AgentOptions) {
    // Lines hold text a master or a task chose (names, error messages): the agent's log
    // sink (cli/agent.ts) writes each as one escaped line.
    this.#o = options;
  }

  /**
   * Takes `home` (`agentHome()`) as this agent's own: jobs/, and the content store
   * and kept workspaces, which so outlast a restart on the same address. Two agents
   * on one machine never share (or clean up) each other's. `ephemeral` (a port the
   * system picked, which no restart will get again): the whole home goes when the
   * agent stops.
   */
  open(home: string, ephemeral = false): void {
    if (ephemeral) this.#ephemeralHome = home;
    const jobs = `${home}/jobs`;
    try {
      // Job directories a crashed agent left behind.
      Deno.removeSync(jobs, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    Deno.mkdirSync(jobs, { recursive: true, mode: 0o700 });
    this.#slots = this.#luaSlots(`${home}/slots`);
    this.#home = {
      jobs,
      keep: DiskBudget.open(home, {
        limitBytes: this.#o.cacheBytes,
        keptWorkspaces: this.#o.keptWorkspaces,
      }),
      secret: agentSecret(home),
    };
  }

  /**
   * The name of the kept workspace for a master's key: bound to the client that
   * called (its token or certificate, see IncomingJob.client) and to this agent's
   * secret, so that another client, even one that knows or guesses the key a
   * master sends, can never name that master's workspace. Undefined (nothing
   * kept) when the master sent no key.
   */
  #workspaceKey(job: IncomingJob, secret: Uint8Array): string | undefined {
    const sent = job.start.workspace_key;
    if (!/^[0-9a-f]{16,64}$/.test(sent)) return undefined;
    return createHmac("sha256", secret).update(`${job.client}\0${sent}`).digest("hex")
      .slice(0, 32);
  }

  ping(): PingResponse {
    return {
      version: this.#o.version,
      protocol: PROTOCOL_VERSION,
      running_jobs: this.#running,
      queued_jobs: this.#waiting.length,
      max_concurrent: this.#o.maxConcurrent,
      manifest_delta: true,
    };
  }

  async runTask(job: IncomingJob): Promise<void> {
    if (this.#stopping) throw new ProtocolError("unavailable", "the agent is stopping");
    const home = this.#home;
    if (!home) throw new ProtocolError("unavailable", "the agent is starting");
    const id = ++this.#nextId;
    const { start } = job;
    const started = performance.now();
    const controller = new AbortController();
    const onCancel = () => controller.abort("cancelled");
    job.signal.addEventListener("abort", onCancel, { once: true });
    this.#jobs.add(controller);
    let outcome = "error";
    let jobRoot: string | undefined;
    let pool: LuaPool | undefined;
    let slot: LuaSlot | undefined;
    let key: string | undefined;
    let state: WorkspaceState = new Map();
    let digests: string[] = [];
    /** What this job's workspace needs on disk, once its manifest is known. */
    let needed = 0;
    let resultSent = false;
    if (!await this.#acquire(controller.signal)) {
      job.signal.removeEventListener("abort", onCancel);
      this.#jobs.delete(controller);
      this.#o.log(`job ${id} ${start.group}.${start.task}: cancelled while waiting for a slot`);
      if (this.#stopping) throw new ProtocolError("unavailable", "the agent is stopping");
      return;
    }
    try {
      // A Lua job's directory is made in a free slot, whose worker is warm (lua_slots.ts).
      if (start.shell_command === "") slot = await this.#slots!.take();
      const parent = slot?.dir ?? home.jobs;
      jobRoot = await home.keep.retryOnFullAsync(() => this.#newJobRoot(parent), NEW_DIR_BYTES);
      const ws = `${jobRoot}/ws`;
      const tmp = `${jobRoot}/tmp`;
      if (start.protocol < OLDEST_PROTOCOL || start.protocol > PROTOCOL_VERSION) {
        throw new ProtocolError(
          "invalid",
          `the master speaks protocol ${start.protocol}, this agent ${OLDEST_PROTOCOL} to ${PROTOCOL_VERSION}`,
        );
      }
      // The workspace kept from this master directory's last run, if it is free.
      const wanted = this.#workspaceKey(job, home.secret) ?? "";
      const manifest = await receiveManifest(job, this.#o.limits, {
        bases: this.#bases,
        key: wanted,
      });
      needed = [...manifest.values()].reduce(
        (sum, e) => sum + (e.type === "file" ? footprint(e.size) : 0),
        0,
      );
      const taken = home.keep.shelf.take(wanted, ws);
      key = taken.taken ? wanted : undefined;
      state = taken.state;
      await home.keep.retryOnFullAsync(
        () =>
          Deno.mkdir(ws).catch((error) => {
            if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
          }),
        NEW_DIR_BYTES,
      );
      digests = [...manifest.values()].flatMap((e) => e.digest ? [e.digest] : []);
      home.keep.blobs.pin(digests);
      const { fetched, written, ours } = await materialize({
        job,
        ws,
        manifest,
        state,
        budget: home.keep,
        limits: this.#o.limits,
        compressed: start.compression === "gzip",
        where: this.#o.workRoot,
      });
      // The job's directory, and what the agent wrote in it, are the task user's from
      // here on (see exec/task_user.ts).
      handOverFilled(jobRoot, [...ours, ...written]);
      // What the agent wrote, as the task finds it (a hand-over changes ctimes); from
      // here on, only the task writes in ws/ (and Lua's top level may, as it loads).
      restat(ws, state, written);
      const taskStartMs = Date.now();
      // A shell job runs nothing of the agent's in its directory from here on.
      const sandbox = this.#sandbox(jobRoot, { handedOver: start.shell_command !== "" });
      const source = {
        file: start.main_file,
        cwd: start.master_cwd,
        values: parseJson(start.values_json, "values_json"),
        bundle: bundleOf(start.files),
      };
      let task: Task;
      /** The state the workflow was loaded in, which then runs the task's functions. */
      let loadedIn: LuaSession | undefined;
      const required = parseRequirements(start.requirements_json);
      if (start.shell_command !== "") {
        task = shellTask(start, ws);
      } else {
        pool = slot!.pool(this.#luaOptions(jobRoot));
        ({ task, session: loadedIn } = await this.#loadTask(pool, job, ws));
      }
      // The master's reading wins: top-level code here sees another environment.
      if (required) {
        task = {
          ...task,
          user: required.user,
          artifacts: required.artifacts,
          consumes: required.consumes,
        };
      }

      const timeoutMs = start.timeout_ms;
      const timer = timeoutMs > 0
        ? setTimeout(() => controller.abort("timeout"), timeoutMs)
        : undefined;
      // Log lines go out in order; a shell task waits for its line to be sent (so a
      // slow master slows the task, not the agent's memory), Lua lines queue up to a
      // limit and are then dropped, with a count.
      let sending = Promise.resolve();
      let queued = 0;
      let dropped = 0;
      const emit = (event: RunEvent) => {
        if (event.type !== "log" || job.signal.aborted) return;
        if (queued >= MAX_QUEUED_LOG_LINES) {
          dropped++;
          return sending;
        }
        const lines: LogLine[] = dropped > 0
          ? [{ stream: "log", level: "warn", line: `${dropped} log lines dropped` }]
          : [];
        dropped = 0;
        lines.push({ stream: event.stream, level: event.level ?? "", line: event.line });
        queued++;
        sending = sending
          .then(async () => {
            for (const log of lines) await job.send({ log });
          })
          .catch(() => {})
          .finally(() => queued--);
        return sending;
      };
      let result: AttemptResult;
      try {
        const runner = new LocalRunner({
          pool,
          source,
          emit,
          sandbox,
          env: { TMPDIR: tmp },
          session: loadedIn,
        });
        result = await runner.attempt(task, {
          attempt: start.attempt,
          inputs: parseJson(start.inputs_json, "inputs_json") as AttemptContext["inputs"],
          signal: controller.signal,
        });
      } finally {
        clearTimeout(timer);
        loadedIn?.release(); // when the task needed no Lua after all
      }
      await sending;
      if (controller.signal.aborted && !result.ok) {
        const why = controller.signal.reason;
        const reason = why === "timeout"
          ? "timeout"
          : why === STOPPING
          ? "agent_lost"
          : "cancelled";
        result = { ...result, exit: { code: null, signal: null, ...result.exit, reason } };
        if (why === STOPPING) result.error = "the agent stopped while the task ran";
      }
      outcome = result.ok ? "success" : `failed (${result.error ?? "no reason"})`;
      if (job.signal.aborted) {
        outcome = "cancelled by the master";
        return;
      }
      const sendBack = start.sync_back === "always" ||
        (start.sync_back === "on_success" && result.ok);
      let changes;
      try {
        changes = sendBack ? await diff(ws, manifest, state, this.#o.limits) : undefined;
      } catch (error) {
        if (!(error instanceof SyncError)) throw error;
        // Too much to send back (a 16 GB sparse file, say): nothing goes, and the result says why.
        const why = `its changes were not sent back: ${error.message}`;
        result = { ...result, ok: false, error: result.ok ? why : `${result.error}; ${why}` };
        outcome = `failed (${why})`;
      }
      const follow = changes !== undefined &&
        changes.changed.length + changes.deleted.length > 0;
      resultSent = true;
      await job.send({ result: toWire(result, performance.now() - started, follow) });
      if (follow) await sendChanges(job, ws, manifest, changes!, start.compression === "gzip");
      // Kept as the task left it; the next run makes it match the master again.
      if (key) {
        const kept = key;
        // What the task may have changed unseen is hashed again before it is reused.
        markUnverified(state, taskStartMs);
        home.keep.shelf.keep(kept, ws, state);
        const keptAt = Date.now();
        key = undefined;
        // Off the master's clock: the call ends first; then the workspace is measured
        // (what the task wrote counts too), the store fills and unverified files are checked.
        this.#later(() => {
          home.keep.shelf.measure(kept);
          return settleKept(home.keep, kept, {
            state,
            fetched,
            keptAt,
            maxFileBytes: this.#o.limits.maxFileBytes,
          });
        });
      }
    } catch (error) {
      if ((error instanceof NoSpaceError || isNoSpace(error)) && resultSent) {
        // The master has its result; only the workspace is not kept.
        this.#o.log(`job ${id}: its workspace is not kept: ${(error as Error).message}`);
        return;
      }
      if (error instanceof NoSpaceError || isNoSpace(error)) {
        // Everything that may go has gone (see materialize); the master shows this,
        // never an internal error.
        const full = error instanceof NoSpaceError ? error : new NoSpaceError(this.#o.workRoot, {
          freeBytes: home.keep.evictAll(),
          neededBytes: needed,
        });
        outcome = `failed (${full.message})`;
        if (job.signal.aborted) return;
        // The task could not start: what a master counts as the runner's trouble, not the task's.
        const exit: ExitStatus = {
          reason: "spawn_failed",
          code: null,
          signal: null,
          message: full.message,
        };
        await job.send({
          result: toWire(
            { ok: false, error: full.message, exit },
            performance.now() - started,
          ),
        });
        return;
      }
      if (error instanceof SlothError || error instanceof SyncError) {
        // The workflow did not load here, or the workspace was refused: a failure the master shows.
        outcome = `failed (${error.message})`;
        await job.send({
          result: toWire({ ok: false, error: error.message }, performance.now() - started),
        });
        return;
      }
      outcome = job.signal.aborted
        ? "cancelled by the master"
        : `error (${(error as Error).message})`;
      throw error;
    } finally {
      job.signal.removeEventListener("abort", onCancel);
      this.#jobs.delete(controller);
      pool?.close();
      if (slot) {
        // Out of the slot before anyone else's job comes into it.
        if (jobRoot) this.#dirs.delete(jobRoot);
        jobRoot = this.#slots!.release(slot, jobRoot, home.jobs);
        if (jobRoot) this.#dirs.add(jobRoot);
      }
      if (key) home.keep.shelf.release(key);
      home.keep.blobs.unpin(digests);
      home.keep.trim();
      this.#release();
      if (jobRoot) {
        // After the call has ended: the master need not wait for the disk.
        const dir = jobRoot;
        setTimeout(() => this.#removeJobDir(dir).finally(() => this.#dirs.delete(dir)), 0);
      }
      this.#o.log(
        `job ${id} ${start.group}.${start.task} (attempt ${start.attempt}) from ${job.peer}: ` +
          `${outcome} in ${formatDuration(performance.now() - started)}`,
      );
    }
  }

  /** ws/ is the task's workspace; tmp/ its TMPDIR. Only the job root is writable to the task. */
  async #newJobRoot(parent: string): Promise<string> {
    const jobRoot = `${parent}/sloth-job-${crypto.randomUUID().slice(0, 13)}`;
    await Deno.mkdir(jobRoot, { mode: 0o700 });
    this.#dirs.add(jobRoot);
    try {
      // The agent's (0700) until its workspace is filled: see handOverFilled.
      await Deno.mkdir(`${jobRoot}/tmp`);
    } catch (error) {
      // A full disk, say: the caller may make room and ask for another.
      await Deno.remove(jobRoot, { recursive: true }).catch(() => {});
      this.#dirs.delete(jobRoot);
      throw error;
    }
    return jobRoot;
  }

  /** What a Lua job's pool needs besides its slot's worker. */
  #luaOptions(jobRoot: string) {
    return {
      sandbox: this.#sandbox(jobRoot),
      env: { TMPDIR: `${jobRoot}/tmp` },
      tmpdir: `${jobRoot}/tmp`,
      confine: jobRoot,
    };
  }

  /**
   * Lua workers reused across jobs, each reaching its slot's directory only:
   * with bubblewrap, a process that has nothing else of the host's files (so no
   * symlink a task swaps in can lead its `fs` calls outside); without, a Web
   * Worker whose Deno permissions name the slot.
   */
  #luaSlots(dir: string): LuaSlots {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    Deno.mkdirSync(dir, { mode: 0o711 });
    Deno.chmodSync(dir, 0o711);
    return new LuaSlots({
      dir,
      max: this.#o.maxConcurrent + 1,
      start: (slotDir) =>
        this.#o.bwrap
          ? startProcessWorker({
            jobRoot: slotDir,
            network: this.#o.taskNetwork,
            onError: (line) => this.#o.log(`lua worker of ${slotDir}: ${JSON.stringify(line)}`),
          })
          : startLuaWorker(this.#permissions(slotDir)),
      log: this.#o.log,
    });
  }

  #sandbox(jobRoot: string, options: { handedOver?: boolean } = {}): Sandbox | undefined {
    if (!this.#o.bwrap) {
      const user = taskUser();
      return user ? userSandbox(jobRoot, user, options) : undefined;
    }
    return bwrapSandbox({
      jobRoot,
      workRoot: this.#o.workRoot,
      hide: this.#o.secrets,
      network: this.#o.taskNetwork,
    });
  }

  /** Lua of a slot's jobs may read and write the slot, and nothing else of the disk. */
  #permissions(slotDir: string): Deno.PermissionOptionsObject {
    return {
      read: [slotDir, LUA_WASM_PATH],
      write: [slotDir],
      net: this.#o.taskNetwork,
      env: false,
      run: false,
      ffi: false,
      sys: false,
      import: false,
    };
  }

  #background = Promise.resolve();

  /** Work that may wait until the current call has ended; one piece at a time. */
  #later(work: () => Promise<void>): void {
    this.#background = this.#background
      .then(() => new Promise((resolve) => setTimeout(resolve, 0)))
      .then(work)
      .catch((error) => this.#o.log(`background work failed: ${(error as Error).message}`));
  }

  /** Cancels every job (their process trees are killed) and waits for their directories to go. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const controller of this.#jobs) controller.abort(STOPPING);
    this.#slots?.close();
    const deadline = Date.now() + 5000;
    while (this.#dirs.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const dir of this.#dirs) await this.#removeJobDir(dir);
    if (this.#slots) await this.#removeJobDir(this.#slots.dir);
    await this.#background;
    if (this.#ephemeralHome) await this.#removeJobDir(this.#ephemeralHome);
  }

  /** A task (or a master) may leave directories without write permission: grant it, then remove. */
  async #removeJobDir(dir: string): Promise<void> {
    try {
      await Deno.remove(dir, { recursive: true });
      return;
    } catch {
      // Try again below.
    }
    const grant = async (path: string) => {
      try {
        // Never through a symlink (a task's processes are gone by now, but still).
        setModeAndTime(path, { mode: 0o700, directory: true });
      } catch {
        // Not ours, or gone: the removal below says so.
      }
      for await (const entry of Deno.readDir(path)) {
        if (entry.isDirectory) await grant(`${path}/${entry.name}`);
      }
    };
    try {
      await grant(dir);
      await Deno.remove(dir, { recursive: true });
    } catch (error) {
      this.#o.log(`could not remove job directory ${dir}: ${(error as Error).message}`);
    }
  }

  async #loadTask(
    pool: LuaPool,
    job: IncomingJob,
    dir: string,
  ): Promise<{ task: Task; session?: LuaSession }> {
    const { start } = job;
    const params = parseJson(start.params_json, "params_json");
    const loaded = await loadWorkflow(pool, {
      file: start.main_file,
      cwd: start.master_cwd,
      values: parseJson(start.values_json, "values_json"),
      bundle: bundleOf(start.files),
      workdir: dir,
      quiet: true,
      ignoreTargets: true,
      // What the task's state would see (taskEnv): this state runs its functions.
      keep: { env: { SLOTH_TASK: start.task, SLOTH_GROUP: start.group, SLOTH_WORKDIR: dir } },
      only: { group: start.group, task: start.task },
    });
    const group = loaded.workflow.groups.find((g) => g.name === start.group);
    const task = group?.tasks.find((t) => t.name === start.task);
    if (!task) {
      loaded.session?.release();
      throw new ProtocolError(
        "not_found",
        `no task "${start.task}" in group "${start.group}" of the workflow sent`,
      );
    }
    return {
      task: { ...task, workdir: dir, params, target: { kind: "local" } },
      session: loaded.session,
    };
  }

  /** Waits for a slot; false when the job was cancelled (or the agent stopped) first. */
  async #acquire(signal: AbortSignal): Promise<boolean> {
    if (this.#running < this.#o.maxConcurrent) {
      this.#running++;
      return true;
    }
    const granted = await new Promise<boolean>((resolve) => {
      const waiter = () => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      };
      const onAbort = () => {
        this.#waiting = this.#waiting.filter((w) => w !== waiter);
        resolve(false);
      };
      if (signal.aborted) return resolve(false);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
    if (granted && this.#stopping) {
      this.#release();
      return false;
    }
    return granted;
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }
}

/** The task of a shell-only job, made from what the master sent. */
function shellTask(start: TaskStart, workdir: string): Task {
  return {
    id: `${start.group}.${start.task}`,
    name: start.task,
    group: start.group,
    description: "",
    command: { kind: "shell", script: start.shell_command },
    dependsOn: [],
    nextIfFail: [],
    retries: 0,
    async: false,
    workdir,
    params: {},
    target: { kind: "local" },
    syncBack: start.sync_back,
  };
}

function parseJson(text: string, field: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text || "{}");
  } catch {
    throw new ProtocolError("invalid", `${field} is not JSON`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new ProtocolError("invalid", `${field} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function bundleOf(files: { path: string; content: string }[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f.path, f.content]));
}

function toWire(
  result: AttemptResult,
  durationMs: number,
  changesFollow = false,
): TaskResultMessage {
  const exit = result.exit;
  let outputs = "{}";
  try {
    outputs = JSON.stringify(result.outputs ?? {});
  } catch {
    return toWire(
      { ok: false, error: "the task's outputs cannot be sent back as JSON" },
      durationMs,
    );
  }
  return {
    ok: result.ok,
    error: result.error ?? (exit && !result.ok ? exitStatusText(exit) : ""),
    message: result.message ?? "",
    outputs_json: outputs,
    exit_reason: exit?.reason ?? "",
    exit_code: exit?.code ?? 0,
    has_exit_code: exit?.code !== null && exit?.code !== undefined,
    exit_signal: exit?.signal ?? "",
    duration_ms: Math.round(durationMs),
    changes_follow: changesFollow,
  };
}

/** Bytes of the agent's secret. */
const SECRET_BYTES = 32;

/**
 * The agent's secret (random, made once, 0600 in its home, so it outlasts a
 * restart on the same port along with the kept workspaces it names). A secret
 * that is not what this makes (another length, not a plain file) is made anew:
 * kept workspaces named with the old one are then never found again, and go.
 */
function agentSecret(home: string): Uint8Array {
  const file = `${home}/workspace-secret`;
  try {
    const text = new TextDecoder().decode(readSmallFile(file, 4 * SECRET_BYTES)).trim();
    if (new RegExp(`^[0-9a-f]{${2 * SECRET_BYTES}}$`).test(text)) return hexBytes(text);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound) && !(error instanceof SyncError)) throw error;
  }
  const secret = crypto.getRandomValues(new Uint8Array(SECRET_BYTES));
  const temp = `${file}.${crypto.randomUUID()}`;
  const hex = [...secret].map((b) => b.toString(16).padStart(2, "0")).join("");
  Deno.writeTextFileSync(temp, `${hex}\n`, { createNew: true, mode: 0o600 });
  Deno.renameSync(temp, file);
  return secret;
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!, (pair) => Number.parseInt(pair, 16));
}

/**
 * The agent: accepts a job, unpacks its workspace into a fresh temporary
 * directory, runs exactly that task there (never its dependencies, never
 * delegating further), streams its log lines, returns what changed, and removes
 * the directory whatever happened.
 */
import { createHash } from "node:crypto";
import { loadWorkflow, type LuaPool } from "../dsl/mod.ts";
import type { RunEvent } from "../log/mod.ts";
import type { Task } from "../model/mod.ts";
import { exitStatusText, formatDuration } from "../model/mod.ts";
import {
  type AgentHandlers,
  CHUNK_BYTES,
  type IncomingJob,
  type PingResponse,
  PROTOCOL_VERSION,
  ProtocolError,
  type TaskResultMessage,
} from "../rpc/mod.ts";
import { LocalRunner } from "../runner/mod.ts";
import type { AttemptResult } from "../scheduler/mod.ts";
import { diffWorkspace, packPaths, rechunk, unpack } from "../sync/mod.ts";
import { SlothError } from "../errors.ts";

/** The abort reason of jobs cut short because the agent is stopping. */
const STOPPING = "agent_stopping";

export interface AgentOptions {
  version: string;
  /** Jobs that run at once; the rest wait in order. */
  maxConcurrent: number;
  /** Where job directories are made. */
  workRoot: string;
  pool: LuaPool;
  /** One line per job and per notable event. */
  log(line: string): void;
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

  constructor(options: AgentOptions) {
    this.#o = options;
  }

  ping(): PingResponse {
    return {
      version: this.#o.version,
      protocol: PROTOCOL_VERSION,
      running_jobs: this.#running,
      queued_jobs: this.#waiting.length,
      max_concurrent: this.#o.maxConcurrent,
    };
  }

  async runTask(job: IncomingJob): Promise<void> {
    if (this.#stopping) throw new ProtocolError("unavailable", "the agent is stopping");
    const id = ++this.#nextId;
    const { start } = job;
    const started = performance.now();
    const controller = new AbortController();
    const onCancel = () => controller.abort("cancelled");
    job.signal.addEventListener("abort", onCancel, { once: true });
    this.#jobs.add(controller);
    let outcome = "error";
    let dir: string | undefined;
    await this.#acquire();
    try {
      dir = await Deno.makeTempDir({ dir: this.#o.workRoot, prefix: `sloth-job-${id}-` });
      this.#dirs.add(dir);
      const before = await unpack(dir, job.workspace, { mode: "fresh" });
      const task = await this.#loadTask(job, dir);

      const timeoutMs = start.timeout_ms;
      const timer = timeoutMs > 0
        ? setTimeout(() => controller.abort("timeout"), timeoutMs)
        : undefined;
      // Log lines go out in order, each after the one before has been written.
      let sending = Promise.resolve();
      const emit = (event: RunEvent) => {
        if (event.type !== "log") return;
        const log = { stream: event.stream, level: event.level ?? "", line: event.line };
        sending = sending.then(() => job.send({ log }));
      };
      let result: AttemptResult;
      try {
        const runner = new LocalRunner({
          pool: this.#o.pool,
          source: {
            file: start.main_file,
            cwd: start.master_cwd,
            values: JSON.parse(start.values_json || "{}"),
            bundle: bundleOf(start.files),
          },
          emit,
        });
        result = await runner.attempt(task, {
          attempt: start.attempt,
          inputs: JSON.parse(start.inputs_json || "{}"),
          signal: controller.signal,
        });
      } finally {
        clearTimeout(timer);
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
      await job.send({ result: toWire(result, performance.now() - started) });
      const sendBack = start.sync_back === "always" ||
        (start.sync_back === "on_success" && result.ok);
      if (sendBack) await this.#sendChanges(job, dir, before);
    } catch (error) {
      if (error instanceof SlothError) {
        // The workflow did not load here: a task failure the master should show.
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
      this.#release();
      if (dir) {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
        this.#dirs.delete(dir);
      }
      this.#o.log(
        `job ${id} ${start.group}.${start.task} (attempt ${start.attempt}) from ${job.peer}: ` +
          `${outcome} in ${formatDuration(performance.now() - started)}`,
      );
    }
  }

  /** Cancels every job (their process trees are killed) and waits for their directories to go. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const controller of this.#jobs) controller.abort(STOPPING);
    const deadline = Date.now() + 5000;
    while (this.#dirs.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const dir of this.#dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  async #loadTask(job: IncomingJob, dir: string): Promise<Task> {
    const { start } = job;
    const loaded = await loadWorkflow(this.#o.pool, {
      file: start.main_file,
      cwd: start.master_cwd,
      values: JSON.parse(start.values_json || "{}"),
      bundle: bundleOf(start.files),
      workdir: dir,
      quiet: true,
      ignoreTargets: true,
    });
    const group = loaded.workflow.groups.find((g) => g.name === start.group);
    const task = group?.tasks.find((t) => t.name === start.task);
    if (!task) {
      throw new ProtocolError(
        "not_found",
        `no task "${start.task}" in group "${start.group}" of the workflow sent`,
      );
    }
    let params: Record<string, unknown> = task.params;
    try {
      const parsed = JSON.parse(start.params_json || "{}");
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) params = parsed;
    } catch {
      throw new ProtocolError("invalid", "params_json is not JSON");
    }
    return { ...task, workdir: dir, params, target: { kind: "local" } };
  }

  async #sendChanges(job: IncomingJob, dir: string, before: Awaited<ReturnType<typeof unpack>>) {
    const changes = await diffWorkspace(dir, before);
    await job.send({
      changes_begin: { deleted: changes.deleted, entries: changes.changed.length },
    });
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of rechunk(packPaths(dir, changes.changed), CHUNK_BYTES)) {
      hash.update(chunk);
      bytes += chunk.length;
      await job.send({ changes_chunk: chunk });
    }
    await job.send({ changes_end: { bytes, sha256: hash.digest("hex") } });
  }

  async #acquire(): Promise<void> {
    if (this.#running < this.#o.maxConcurrent) {
      this.#running++;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }
}

function bundleOf(files: { path: string; content: string }[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f.path, f.content]));
}

function toWire(result: AttemptResult, durationMs: number): TaskResultMessage {
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
  };
}

/**
 * Runs task attempts on agents: sends the workflow and the task's working
 * directory, relays the agent's log lines as they come, and applies the change
 * set that comes back once it has arrived whole and been checked.
 */
import { createHash } from "node:crypto";
import type { WorkflowSource } from "../dsl/mod.ts";
import type { EmitEvent, LogLevel } from "../log/mod.ts";
import type { ExitStatus, Task } from "../model/mod.ts";
import {
  AgentClient,
  CHUNK_BYTES,
  PROTOCOL_VERSION,
  readLocalToken,
  RpcError,
  type TlsFiles,
} from "../rpc/mod.ts";
import type { AttemptContext, AttemptResult, Gate, TaskExecutor } from "../scheduler/mod.ts";
import {
  applyChanges,
  limitsFromEnv,
  packPaths,
  rechunk,
  SyncError,
  walkWorkspace,
} from "../sync/mod.ts";

export interface RemoteRunnerOptions {
  source: WorkflowSource;
  /** Absolute paths of the workflow's files (the main one first). */
  files: string[];
  emit: EmitEvent;
  /** TLS for agents whose definition has no `tls` of its own (--tls-ca and friends). */
  tls?: TlsFiles;
}

type Remote = Extract<Task["target"], { kind: "remote" }>;

export class RemoteRunner implements TaskExecutor {
  #options: RemoteRunnerOptions;
  #clients = new Map<string, AgentClient>();
  /** A successful ping per agent and token; a failed one is tried again next time. */
  #ready = new Map<string, Promise<void>>();
  #bundle?: Promise<{ path: string; content: string }[]>;
  /** Change sets are checked and applied one at a time per directory. */
  #applying = new Map<string, Promise<unknown>>();

  constructor(options: RemoteRunnerOptions) {
    this.#options = options;
  }

  gate(): Promise<Gate> {
    return Promise.reject(new Error("conditions are evaluated on the master"));
  }

  async attempt(task: Task, ctx: AttemptContext): Promise<AttemptResult> {
    const target = task.target as Remote;
    const label = target.agent ?? target.address;
    const log = (stream: "stdout" | "stderr" | "log", line: string, level?: LogLevel) =>
      this.#options.emit({
        type: "log",
        id: task.id,
        task: task.name,
        agent: label,
        stream,
        level,
        line,
      });
    let spool: string | undefined;
    try {
      const client = this.#client(target);
      await this.#ping(client, target);
      if (ctx.signal.aborted) return { ok: false, error: "cancelled" };

      const walk = await walkWorkspace(task.workdir).catch((error) => {
        throw error instanceof Deno.errors.NotFound
          ? new SyncError(`working directory ${task.workdir} does not exist`)
          : error;
      });
      for (const note of walk.skipped) log("log", `not sent: ${note}`, "warn");
      const sent = new Map(walk.entries.map((e) => [e.path, e]));
      if (ctx.signal.aborted) return { ok: false, error: "cancelled" };

      const call = client.runTask();
      let sentBytes = 0;
      let finished = false;
      const onAbort = () => call.cancel();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      const limits = limitsFromEnv();
      let uploaded: Promise<Error | undefined> | undefined;
      let changes: {
        deleted: string[];
        file: Deno.FsFile;
        hash: ReturnType<typeof createHash>;
        bytes: number;
        open: boolean;
      } | undefined;
      try {
        const upload = (async () => {
          await call.send({
            start: {
              protocol: PROTOCOL_VERSION,
              group: task.group,
              task: task.name,
              files: await this.#files(),
              main_file: this.#options.source.file,
              master_cwd: this.#options.source.cwd,
              values_json: JSON.stringify(this.#options.source.values ?? {}),
              params_json: JSON.stringify(task.params),
              inputs_json: JSON.stringify(ctx.inputs),
              timeout_ms: task.timeoutMs ?? 0,
              attempt: ctx.attempt,
              sync_back: task.syncBack,
              shell_command: task.command?.kind === "shell" && !task.preExec && !task.postExec
                ? task.command.script
                : "",
            },
          });
          const paths = walk.entries.map((e) => e.path);
          for await (const chunk of rechunk(packPaths(task.workdir, paths), CHUNK_BYTES)) {
            sentBytes += chunk.length;
            await call.send({ workspace_chunk: chunk });
          }
          await call.send({ workspace_end: { bytes: sentBytes } });
          call.end();
        })();
        // A failed upload (a file that vanished, say) ends the call at once; its error,
        // not the cancellation it causes, is the one to report.
        uploaded = upload.then(() => undefined, (error) => {
          call.cancel();
          return error as Error;
        });

        let result: AttemptResult | undefined;
        let complete = false;
        for await (const message of call.responses) {
          if ("log" in message) {
            const { stream, level, line } = message.log;
            log(stream, line, stream === "log" ? (level as LogLevel) : undefined);
          } else if ("result" in message) {
            result = fromWire(message.result);
          } else if ("changes_begin" in message) {
            if (changes) {
              throw new RpcError("protocol", `agent ${target.address} began two change sets`);
            }
            spool = await Deno.makeTempFile({ prefix: "sloth-changes-", suffix: ".tar" });
            changes = {
              deleted: message.changes_begin.deleted,
              file: await Deno.open(spool, { write: true }),
              hash: createHash("sha256"),
              bytes: 0,
              open: true,
            };
          } else if ("changes_chunk" in message && changes) {
            const chunk = message.changes_chunk;
            for (let rest = chunk; rest.length > 0;) {
              rest = rest.subarray(await changes.file.write(rest));
            }
            changes.hash.update(chunk);
            changes.bytes += chunk.length;
            // File content plus tar's headers and padding: never more than twice the limit.
            if (changes.bytes > 2 * limits.maxTotalBytes + 1024 * 1024) {
              throw new RpcError(
                "protocol",
                `agent ${target.address} sent a change set over the ${limits.maxTotalBytes}-byte limit`,
              );
            }
          } else if ("changes_end" in message && changes) {
            changes.file.close();
            changes.open = false;
            const digest = changes.hash.digest("hex");
            if (
              changes.bytes !== message.changes_end.bytes || digest !== message.changes_end.sha256
            ) {
              throw new RpcError("protocol", `agent ${target.address} sent a damaged change set`);
            }
            complete = true;
          }
        }
        finished = true;
        const uploadError = await uploaded;
        if (uploadError) throw uploadError;
        if (!result) {
          throw uploadError ??
            new RpcError(
              "lost",
              `agent ${target.address} lost: it ended the task without a result`,
            );
        }
        if (changes && !complete) {
          throw new RpcError(
            "lost",
            `agent ${target.address} lost: the change set did not arrive whole`,
          );
        }
        const keep = task.syncBack === "always" || (task.syncBack === "on_success" && result.ok);
        if (changes && keep && spool) {
          const archive = spool;
          const deleted = changes.deleted;
          await this.#serialized(
            task.workdir,
            () =>
              applyChanges(task.workdir, archive, deleted, {
                sent,
                ignored: walk.ignored,
                limits,
              }),
          );
        }
        return {
          ...result,
          transfer: { sentBytes, receivedBytes: changes?.bytes ?? 0 },
        };
      } catch (error) {
        // A local failure (a damaged change set, a full disk) must not leave the job
        // on the agent waiting for us.
        if (!finished) call.cancel();
        const uploadError = uploaded && await Promise.race([uploaded, Promise.resolve(undefined)]);
        throw uploadError ?? error;
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        if (changes?.open) changes.file.close();
      }
    } catch (error) {
      return failure(error);
    } finally {
      if (spool) await Deno.remove(spool).catch(() => {});
    }
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  #key(target: Remote): string {
    return JSON.stringify([target.address, tokenFor(target), target.tls ?? this.#options.tls]);
  }

  #client(target: Remote): AgentClient {
    const key = this.#key(target);
    let client = this.#clients.get(key);
    if (!client) {
      client = new AgentClient(target.address, {
        token: tokenFor(target),
        tls: target.tls ?? this.#options.tls,
      });
      this.#clients.set(key, client);
    }
    return client;
  }

  #ping(client: AgentClient, target: Remote): Promise<void> {
    const key = this.#key(target);
    let ready = this.#ready.get(key);
    if (!ready) {
      ready = client.ping().then((reply) => {
        if (reply.protocol < PROTOCOL_VERSION) {
          throw new RpcError(
            "protocol",
            `agent ${target.address} is too old (sloth-runner ${reply.version})`,
          );
        }
      });
      ready.catch(() => this.#ready.delete(key));
      this.#ready.set(key, ready);
    }
    return ready;
  }

  #files(): Promise<{ path: string; content: string }[]> {
    this.#bundle ??= Promise.all(
      this.#options.files.map(async (path) => ({ path, content: await Deno.readTextFile(path) })),
    );
    return this.#bundle;
  }

  async #serialized<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#applying.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    this.#applying.set(key, next.catch(() => {}));
    return await next;
  }
}

/** The token for an agent: its `token_env` variable, else `SLOTH_AGENT_TOKEN`. */
function tokenFor(target: Remote): string | undefined {
  if (target.tokenEnv) {
    const value = Deno.env.get(target.tokenEnv);
    if (value === undefined || value === "") {
      throw new RpcError(
        "auth",
        `token_env ${target.tokenEnv} is not set (the token for agent ${target.address})`,
      );
    }
    return value;
  }
  const fromEnv = Deno.env.get("SLOTH_AGENT_TOKEN");
  if (fromEnv) return fromEnv;
  return readLocalToken(target.address);
}

function fromWire(result: {
  ok: boolean;
  error: string;
  message: string;
  outputs_json: string;
  exit_reason: string;
  exit_code: number;
  has_exit_code: boolean;
  exit_signal: string;
}): AttemptResult {
  let outputs: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(result.outputs_json || "{}");
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) outputs = parsed;
  } catch {
    // Checked below: a task whose outputs do not parse fails.
    return { ok: false, error: "the agent sent outputs that are not JSON" };
  }
  const exit: ExitStatus | undefined = result.exit_reason
    ? {
      reason: result.exit_reason as ExitStatus["reason"],
      code: result.has_exit_code ? result.exit_code : null,
      signal: result.exit_signal || null,
    }
    : undefined;
  return {
    ok: result.ok,
    error: result.error || undefined,
    message: result.message || undefined,
    outputs,
    exit,
  };
}

function failure(error: unknown): AttemptResult {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof RpcError) {
    const reason: ExitStatus["reason"] = error.kind === "lost"
      ? "agent_lost"
      : error.kind === "cancelled"
      ? "cancelled"
      : "spawn_failed";
    return { ok: false, error: message, exit: { reason, code: null, signal: null, message } };
  }
  return { ok: false, error: message };
}

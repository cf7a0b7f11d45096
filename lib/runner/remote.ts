/**
 * Runs task attempts on agents: sends the workflow and the task's working
 * directory, relays the agent's log lines as they come, and applies the change
 * set that comes back once it has arrived whole and been checked.
 */
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import type { WorkflowSource } from "../dsl/mod.ts";
import type { EmitEvent, LogLevel } from "../log/mod.ts";
import type { ExitStatus, Task } from "../model/mod.ts";
import type { PingInfo } from "../fleet/mod.ts";
import {
  AgentClient,
  CHUNK_BYTES,
  OLDEST_PROTOCOL,
  PROTOCOL_VERSION,
  readLocalToken,
  RpcError,
  type TaskStart,
  type TlsFiles,
  type WireEntry,
} from "../rpc/mod.ts";
import {
  type AttemptContext,
  type AttemptResult,
  type Gate,
  type RetryWait,
  sleep,
  type TaskExecutor,
} from "../scheduler/mod.ts";
import {
  applyChanges,
  buildManifest,
  type Copy,
  describeManifest,
  diffManifest,
  DigestCache,
  discardJournalDir,
  gzip,
  limitsFromEnv,
  type Manifest,
  type ManifestEntry,
  openJournalDir,
  packEntries,
  rechunk,
  recoverWorkspace,
  recoveryNote,
  SentManifests,
  SyncError,
} from "../sync/mod.ts";

export interface RemoteRunnerOptions {
  source: WorkflowSource;
  /** Absolute paths of the workflow's files (the main one first). */
  files: string[];
  emit: EmitEvent;
  /** TLS for agents whose definition has no `tls` of its own (--tls-ca and friends). */
  tls?: TlsFiles;
  /** gzip for agents whose definition does not say (--compress). */
  compress?: boolean;
}

type Remote = Extract<Task["target"], { kind: "remote" }>;

/**
 * How long a retry after an agent error waits for the agent to answer again: a
 * supervised agent's restart (the systemd unit's RestartSec=2s, or the agent's own
 * sub-second restart, plus its start) with room to spare. An agent that stays down
 * costs each retry this long; one that answers ends the wait at once.
 */
export const AGENT_RETURN_MS = 10_000;
/** Deadline of each probe while waiting; a probe that fails sooner is repeated after `PROBE_EVERY_MS`. */
const PROBE_MS = 250;
const PROBE_EVERY_MS = 200;

/** One probe loop per agent, shared by the tasks waiting for it. */
interface AgentWatch {
  /** Resolves when the agent answered; never rejects. */
  back: Promise<boolean>;
  /** The probing ends here (the latest deadline of the tasks waiting). */
  until: number;
  waiters: number;
  stop: AbortController;
}

export class RemoteRunner implements TaskExecutor {
  #options: RemoteRunnerOptions;
  #clients = new Map<string, AgentClient>();
  /** A successful ping per agent and token; a failed one is tried again next time. */
  #ready = new Map<string, Promise<boolean>>();
  #bundle?: Promise<{ path: string; content: string }[]>;
  /** Change sets are checked and applied one at a time per directory. */
  #applying = new Map<string, Promise<unknown>>();
  #digests = new Map<string, DigestCache>();
  /** What each agent was last sent for each directory: the bases of manifest deltas. */
  #sent = new SentManifests();
  /** Per directory, once a run: what a killed master left half applied there, undone. */
  #recovered = new Map<string, Promise<void>>();
  #watches = new Map<string, AgentWatch>();

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
    const spool = new Spool(task.workdir);
    // Until the whole workspace has gone, the agent cannot have started the command.
    let uploaded = false;
    try {
      const client = this.#client(target);
      // An agent that does not answer must not hold up a cancel (Ctrl-C) until its deadline.
      const takesDeltas = await untilAborted(this.#ping(client, target), ctx.signal);
      if (ctx.signal.aborted) return { ok: false, error: "cancelled" };
      await this.#recover(task.workdir, (line) => log("log", line, "warn"));
      const manifest = await this.#manifest(task.workdir);
      for (const note of manifest.skipped) log("log", `not sent: ${note}`, "warn");
      if (ctx.signal.aborted) return { ok: false, error: "cancelled" };

      const call = client.runTask();
      const onAbort = () => call.cancel();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      const limits = limitsFromEnv();
      const compress = target.compress ?? this.#options.compress ?? false;
      let sentBytes = 0;
      let finished = false;
      // No files, nothing to ask for: the (empty) upload goes without waiting for the answer.
      const nothingToSend = !manifest.entries.some((e) => e.type === "file");
      // Only what changed since the manifest this agent last accepted from here (sync/delta.ts),
      // where the agent may ask for it whole: not if the upload does not wait for its answer.
      const agentId = createHash("sha256").update(this.#key(target)).digest("hex");
      const base = takesDeltas && !nothingToSend
        ? this.#sent.get(agentId, task.workdir)
        : undefined;
      const delta = base ? diffManifest(base, manifest.entries) : undefined;
      const sendManifest = async (
        entries: ManifestEntry[],
        end: { entries: number; deleted?: string[]; sha256?: string },
      ) => {
        for (let i = 0; i < entries.length; i += MANIFEST_BATCH) {
          const batch = entries.slice(i, i + MANIFEST_BATCH);
          await call.send({ manifest: { entries: batch.map(toWire) } });
        }
        await call.send({ manifest_end: end });
      };
      try {
        await call.send({
          start: {
            ...await this.#start(task, ctx, { compress, protocol: call.protocol }),
            manifest_base: base?.digest ?? "",
          },
        });
        if (delta) {
          await sendManifest(delta.changed, {
            entries: delta.changed.length,
            deleted: delta.deleted,
            sha256: delta.digest,
          });
        } else {
          await sendManifest(manifest.entries, { entries: manifest.entries.length });
        }
        let sentWhole = !delta;
        // While the agent matches it: the digests learned, and what the agent now has
        // (the next run's delta is made against it; should the agent not take it after
        // all, that delta costs a whole manifest, never a wrong one).
        manifest.saveDigests();
        if (takesDeltas && !nothingToSend) {
          const { digest, lines } = delta ?? describeManifest(manifest.entries);
          this.#sent.set(agentId, task.workdir, {
            digest,
            paths: manifest.entries.map((e) => e.path),
            lines,
          });
        }
        if (nothingToSend) {
          uploaded = true;
          await call.send({ workspace_end: { bytes: 0 } });
          call.end();
        }

        const responses = call.responses[Symbol.asyncIterator]();
        const byPath = new Map(manifest.entries.map((e) => [e.path, e]));
        const needed: ManifestEntry[] = [];
        let result: AttemptResult | undefined;
        // The agent says what content it lacks (or, if it refused the manifest, fails at once).
        while (true) {
          const { value, done } = await responses.next();
          if (done) {
            throw new RpcError("lost", `agent ${target.address} lost: it ended the call early`);
          }
          if ("need" in value && value.need.whole_manifest) {
            // The agent lacks the base (restarted, another one): once, the manifest whole.
            if (sentWhole || value.need.paths.length > 0) {
              throw new RpcError(
                "protocol",
                `agent ${target.address} asked for the manifest again`,
              );
            }
            sentWhole = true;
            await sendManifest(manifest.entries, { entries: manifest.entries.length });
          } else if ("need" in value) {
            for (const path of value.need.paths) {
              const entry = byPath.get(path);
              if (entry?.type !== "file") {
                throw new RpcError(
                  "protocol",
                  `agent ${target.address} asked for "${path}", which was not offered`,
                );
              }
              needed.push(entry);
            }
          } else if ("need_end" in value) {
            break;
          } else if ("result" in value) {
            result = fromWire(value.result, target.address);
            break;
          } else {
            throw new RpcError("protocol", `agent ${target.address} answered out of turn`);
          }
        }
        if (!result && !nothingToSend) {
          const tar = packEntries(task.workdir, needed);
          for await (const chunk of rechunk(compress ? gzip(tar) : tar, CHUNK_BYTES)) {
            sentBytes += chunk.length;
            await call.send({ workspace_chunk: chunk });
          }
          uploaded = true;
          await call.send({ workspace_end: { bytes: sentBytes } });
        }
        if (!nothingToSend) call.end();

        for (let step = await responses.next(); !step.done; step = await responses.next()) {
          const message = step.value;
          if ("log" in message) {
            const { stream, level, line } = message.log;
            log(stream, line, level ? (level as LogLevel) : undefined);
          } else if ("result" in message) {
            result = fromWire(message.result, target.address);
            if (!message.result.changes_follow) {
              // Nothing more is coming: let the stream end on its own, without waiting for it.
              drainInBackground(responses);
              break;
            }
          } else if ("changes_begin" in message) {
            await spool.begin(target, message.changes_begin);
          } else if ("changes_chunk" in message) {
            await spool.write(target, message.changes_chunk, 2 * limits.maxTotalBytes + (1 << 20));
          } else if ("changes_end" in message) {
            spool.end(target, message.changes_end);
          } else {
            throw new RpcError("protocol", `agent ${target.address} answered out of turn`);
          }
        }
        finished = true;
        if (!result) {
          throw new RpcError(
            "lost",
            `agent ${target.address} lost: it ended the task without a result`,
          );
        }
        spool.checkWhole(target);
        const keep = task.syncBack === "always" || (task.syncBack === "on_success" && result.ok);
        if (spool.begun && keep) {
          const localContent = new Map<string, string>();
          for (const e of manifest.entries) if (e.digest) localContent.set(e.digest, e.path);
          await this.#serialized(
            task.workdir,
            () =>
              applyChanges(task.workdir, spool.path!, spool.deleted, {
                sent: manifest.identity,
                ignored: manifest.ignored,
                limits,
                copies: spool.copies,
                localContent,
                compressed: compress,
                journal: spool.dir,
              }),
          );
        }
        return { ...result, transfer: { sentBytes, receivedBytes: spool.bytes } };
      } catch (error) {
        // A local failure (a damaged change set, a full disk) must not leave the job
        // on the agent waiting for us.
        if (!finished) call.cancel();
        throw error;
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
      }
    } catch (error) {
      const fault = agentFault(error, target);
      // The agent may come back as another process (another version, another token):
      // the next attempt asks it again.
      if (fault) this.#forgetPing(target);
      const outcome = failure(error, fault);
      if (fault === "unreachable" || (fault === "lost" && !uploaded)) outcome.beforeStart = true;
      return outcome;
    } finally {
      spool.dispose();
    }
  }

  /**
   * After an attempt its agent failed (unreachable, or lost under it), the retry waits
   * for the agent to answer a ping again, up to `AGENT_RETURN_MS`, instead of a
   * back-off that a restarting agent outlasts.
   */
  beforeRetry(task: Task, failed: AttemptResult, signal: AbortSignal): RetryWait | undefined {
    if (!failed.agentFault || task.target.kind !== "remote") return undefined;
    const target = task.target;
    const name = target.agent ? `${target.agent} (${target.address})` : target.address;
    return {
      waitingFor: `agent ${name} to answer (up to ${AGENT_RETURN_MS / 1000}s)`,
      ready: this.#agentBack(target, signal).then(() => {}),
    };
  }

  /** Resolves true once the agent answers, false after `AGENT_RETURN_MS` or when `signal` aborts. */
  #agentBack(target: Remote, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    const key = JSON.stringify([target.address, tlsFor(target, this.#options.tls)]);
    const deadline = Date.now() + AGENT_RETURN_MS;
    let watch = this.#watches.get(key);
    if (watch) {
      watch.until = Math.max(watch.until, deadline);
    } else {
      const created: AgentWatch = {
        back: Promise.resolve(false),
        until: deadline,
        waiters: 0,
        stop: new AbortController(),
      };
      created.back = this.#probe(target, created).finally(() => {
        if (this.#watches.get(key) === created) this.#watches.delete(key);
      });
      this.#watches.set(key, created);
      watch = created;
    }
    const shared = watch;
    shared.waiters++;
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const settle = (back: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        // The last task to stop waiting stops the probing.
        if (--shared.waiters === 0) {
          shared.stop.abort();
          if (this.#watches.get(key) === shared) this.#watches.delete(key);
        }
        resolve(back);
      };
      const onAbort = () => settle(false);
      const timer = setTimeout(() => settle(false), deadline - Date.now());
      signal.addEventListener("abort", onAbort, { once: true });
      shared.back.then(settle);
    });
  }

  /** Pings the agent until it answers, `watch.until` passes or `watch.stop` aborts. */
  async #probe(target: Remote, watch: AgentWatch): Promise<boolean> {
    const { signal } = watch.stop;
    while (!signal.aborted && Date.now() < watch.until) {
      const started = Date.now();
      try {
        // A new client when the token changed: a loopback agent restarted with a new one.
        const client = this.#client(target);
        // waitForReady: a call made while the channel reconnects is answered as soon as
        // the connection is up, not failed at once.
        const reply = await client.ping(Math.min(PROBE_MS, Math.max(1, watch.until - started)), {
          waitForReady: true,
        });
        this.#ready.set(this.#key(target), Promise.resolve(checkProtocol(target, reply)));
        return true;
      } catch (error) {
        // It answered (another protocol, a token it refuses for good), or the token is
        // missing here: the retry reports it.
        if (!agentFault(error, target)) return true;
      }
      const rest = PROBE_EVERY_MS - (Date.now() - started);
      if (rest > 0) await sleep(rest, signal);
    }
    return false;
  }

  #forgetPing(target: Remote): void {
    try {
      this.#ready.delete(this.#key(target));
    } catch {
      // No token to key it by: nothing was cached.
    }
  }

  /**
   * Before this run first reads a directory: undoes a change set that a killed
   * master left half applied there, and removes its spool and staging (sync/journal.ts).
   */
  #recover(workdir: string, warn: (line: string) => void): Promise<void> {
    let recovered = this.#recovered.get(workdir);
    if (!recovered) {
      recovered = Promise.resolve().then(() => {
        const note = recoveryNote(recoverWorkspace(workdir), workdir);
        if (note) warn(note);
      });
      // A failure is reported to this task and tried again by the next.
      recovered.catch(() => this.#recovered.delete(workdir));
      this.#recovered.set(workdir, recovered);
    }
    return recovered;
  }

  /** The task's working directory, described, with digests remembered between runs. */
  async #manifest(workdir: string): Promise<Manifest> {
    let cache = this.#digests.get(workdir);
    if (!cache) {
      cache = new DigestCache(workdir);
      this.#digests.set(workdir, cache);
    }
    try {
      return await buildManifest(workdir, cache, { saveDigests: false });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new SyncError(`working directory ${workdir} does not exist`);
      }
      throw error;
    }
  }

  async #start(
    task: Task,
    ctx: AttemptContext,
    options: { compress: boolean; protocol: number },
  ): Promise<TaskStart> {
    const { compress } = options;
    const shellOnly = task.command?.kind === "shell" && !task.preExec && !task.postExec;
    return {
      protocol: options.protocol,
      group: task.group,
      // A fan-out's copy is the task the agent finds in the workflow.
      task: task.fanOut?.task ?? task.name,
      // A shell-only task does not load the workflow on the agent: no need to send it.
      files: shellOnly ? [] : await this.#files(),
      main_file: this.#options.source.file,
      master_cwd: this.#options.source.cwd,
      values_json: JSON.stringify(this.#options.source.values ?? {}),
      params_json: JSON.stringify(task.params),
      inputs_json: JSON.stringify(ctx.inputs),
      timeout_ms: task.timeoutMs ?? 0,
      attempt: ctx.attempt,
      sync_back: task.syncBack,
      shell_command: shellOnly ? (task.command as { script: string }).script : "",
      workspace_key: workspaceKey(task.workdir),
      compression: compress ? "gzip" : "",
      requirements_json: requirementsJson(task),
    };
  }

  /** Pings `target` within `deadlineMs`; rejects with a one-line reason. */
  ping(target: Remote, deadlineMs: number): Promise<PingInfo> {
    return pingAgent(target, { deadlineMs, client: this.#client(target) });
  }

  close(): void {
    // Not closed: a GOAWAY can crash the agent (see AgentClient.close); the
    // connections end with this process.
    this.#clients.clear();
  }

  #key(target: Remote): string {
    return JSON.stringify([target.address, tokenFor(target), tlsFor(target, this.#options.tls)]);
  }

  #client(target: Remote): AgentClient {
    const key = this.#key(target);
    let client = this.#clients.get(key);
    if (!client) {
      client = new AgentClient(target.address, {
        token: tokenFor(target),
        tls: tlsFor(target, this.#options.tls),
      });
      this.#clients.set(key, client);
    }
    return client;
  }

  /** Whether the agent takes manifest deltas, once it answered a ping. */
  #ping(client: AgentClient, target: Remote): Promise<boolean> {
    const key = this.#key(target);
    let ready = this.#ready.get(key);
    if (!ready) {
      ready = client.ping().then((reply) => checkProtocol(target, reply));
      ready.catch(() => {
        if (this.#ready.get(key) === ready) this.#ready.delete(key);
      });
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

/**
 * Pings an agent with its own token and TLS (else `tls`) within `deadlineMs`: what it
 * says of itself, or a rejection with a one-line reason (also for a protocol this
 * master cannot use).
 */
export async function pingAgent(
  target: Remote,
  options: { deadlineMs: number; tls?: TlsFiles; client?: AgentClient },
): Promise<PingInfo> {
  const client = options.client ??
    new AgentClient(target.address, {
      token: tokenFor(target),
      tls: tlsFor(target, options.tls),
    });
  const started = performance.now();
  const reply = await client.ping(options.deadlineMs);
  checkProtocol(target, reply);
  return {
    version: reply.version,
    protocol: reply.protocol,
    running: reply.running_jobs,
    queued: reply.queued_jobs,
    maxConcurrent: reply.max_concurrent,
    rttMs: performance.now() - started,
  };
}

/**
 * Throws for an agent speaking a protocol older than any this master speaks; else
 * whether it takes manifest deltas.
 */
function checkProtocol(
  target: Remote,
  reply: { protocol: number; version: string; manifest_delta?: boolean },
): boolean {
  if (reply.protocol < OLDEST_PROTOCOL) {
    throw new RpcError(
      "protocol",
      `agent ${target.address} is too old: it speaks protocol ${reply.protocol} ` +
        `(sloth-runner ${reply.version}), this master ${OLDEST_PROTOCOL} to ${PROTOCOL_VERSION}`,
    );
  }
  return reply.manifest_delta === true;
}

/** The agent's TLS files (else `fallback`), with the name its certificate must carry. */
function tlsFor(target: Remote, fallback: TlsFiles | undefined): TlsFiles | undefined {
  const files = target.tls ?? fallback;
  return files && target.tlsName ? { ...files, serverName: target.tlsName } : files;
}

/** Whether the agent's token comes from the token file a loopback agent writes. */
function usesLocalToken(target: Remote): boolean {
  return !target.tokenEnv && !Deno.env.get("SLOTH_AGENT_TOKEN") &&
    readLocalToken(target.address) !== undefined;
}

/**
 * The token for an agent: its `token_env` variable, else `SLOTH_AGENT_TOKEN`, without
 * the spaces and newline around it (as an agent reads its --token-file: a token made
 * with `base64 > file` and passed through a Secret ends with one).
 */
function tokenFor(target: Remote): string | undefined {
  if (target.tokenEnv) {
    const value = Deno.env.get(target.tokenEnv)?.trim();
    if (value === undefined || value === "") {
      throw new RpcError(
        "auth",
        `token_env ${target.tokenEnv} is not set (the token for agent ${target.address})`,
      );
    }
    return checkedToken(value, target.tokenEnv);
  }
  const fromEnv = Deno.env.get("SLOTH_AGENT_TOKEN")?.trim();
  if (fromEnv) return checkedToken(fromEnv, "SLOTH_AGENT_TOKEN");
  return readLocalToken(target.address);
}

/** A token a gRPC header can carry; else an error that names where it came from, not it. */
function checkedToken(token: string, from: string): string {
  if (!/^[\x20-\x7e]+$/.test(token)) {
    throw new RpcError(
      "auth",
      `the token in ${from} holds a character a gRPC header cannot carry ` +
        "(a control character or non-ASCII); tokens are printable ASCII",
    );
  }
  return token;
}

/** `work`, or undefined as soon as `signal` aborts (the work goes on, unheeded). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
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
}, address: string): AttemptResult {
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
    // A task that could not start there (its disk is full, say), or that the agent gave
    // up as it stopped, names the agent, as this master's own errors do.
    error: result.error && exit?.reason === "spawn_failed"
      ? `agent ${address}: ${result.error}`
      : result.error && exit?.reason === "agent_lost"
      ? `agent ${address} lost: ${result.error}`
      : result.error || undefined,
    message: result.message || undefined,
    outputs,
    exit,
  };
}

/**
 * Whether an attempt failed because of its agent rather than the task: it could not
 * be reached, or was lost under the call. A refused token counts when the token came
 * from a loopback agent's token file: a restarted agent writes its new token there
 * just after it starts listening.
 */
function agentFault(error: unknown, target: Remote): AttemptResult["agentFault"] {
  if (!(error instanceof RpcError)) return undefined;
  if (error.kind === "lost" || error.kind === "unreachable") return error.kind;
  if (error.kind === "auth" && usesLocalToken(target)) return "unreachable";
  return undefined;
}

function failure(error: unknown, fault?: AttemptResult["agentFault"]): AttemptResult {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof RpcError) {
    const reason: ExitStatus["reason"] = error.kind === "lost"
      ? "agent_lost"
      : error.kind === "cancelled"
      ? "cancelled"
      : "spawn_failed";
    return {
      ok: false,
      error: message,
      exit: { reason, code: null, signal: null, message },
      ...(fault ? { agentFault: fault } : {}),
    };
  }
  return { ok: false, error: message };
}

const MANIFEST_BATCH = 10_000;

function toWire(e: ManifestEntry): WireEntry {
  return {
    path: e.path,
    type: e.type,
    mode: e.mode,
    size: e.size,
    sha256: e.digest ?? "",
    target: e.target ?? "",
    mtime_ms: Math.max(0, Math.round(e.mtimeMs)),
  };
}

/** Names this machine's directory for the agent, without saying which it is. */
function workspaceKey(workdir: string): string {
  return createHash("sha256").update(`${hostname()}\0${Deno.uid() ?? ""}\0${workdir}`).digest("hex")
    .slice(0, 32);
}

/**
 * A change set on its way in: spooled into a journal directory in the task's
 * directory (where recovery finds it if this process is killed, and where it is
 * applied from), and hashed as it comes.
 */
class Spool {
  /** The journal directory, once begun. */
  dir?: string;
  path?: string;
  deleted: string[] = [];
  copies: Copy[] = [];
  bytes = 0;
  #file?: Deno.FsFile;
  #hash = createHash("sha256");
  #complete = false;
  #root: string;

  constructor(root: string) {
    this.#root = root;
  }

  get begun(): boolean {
    return this.path !== undefined;
  }

  async begin(
    target: Remote,
    begin: { deleted: string[]; copies: { path: string; sha256: string; mode: number }[] },
  ): Promise<void> {
    if (this.begun) throw new RpcError("protocol", `agent ${target.address} began two change sets`);
    const journal = openJournalDir(this.#root);
    this.dir = journal.dir;
    this.path = journal.spool;
    this.#file = await Deno.open(this.path, { write: true, createNew: true, mode: 0o600 });
    this.deleted = begin.deleted;
    this.copies = begin.copies.map((c) => ({ path: c.path, digest: c.sha256, mode: c.mode }));
  }

  async write(target: Remote, chunk: Uint8Array, limit: number): Promise<void> {
    if (!this.#file) throw new RpcError("protocol", `agent ${target.address} answered out of turn`);
    for (let rest = chunk; rest.length > 0;) rest = rest.subarray(await this.#file.write(rest));
    this.#hash.update(chunk);
    this.bytes += chunk.length;
    if (this.bytes > limit) {
      throw new RpcError(
        "protocol",
        `agent ${target.address} sent a change set over the size limit`,
      );
    }
  }

  end(target: Remote, end: { bytes: number; sha256: string }): void {
    if (!this.#file) throw new RpcError("protocol", `agent ${target.address} answered out of turn`);
    this.#file.close();
    this.#file = undefined;
    if (this.bytes !== end.bytes || this.#hash.digest("hex") !== end.sha256) {
      throw new RpcError("protocol", `agent ${target.address} sent a damaged change set`);
    }
    this.#complete = true;
  }

  checkWhole(target: Remote): void {
    if (this.begun && !this.#complete) {
      throw new RpcError(
        "lost",
        `agent ${target.address} lost: the change set did not arrive whole`,
      );
    }
  }

  dispose(): void {
    this.#file?.close();
    try {
      if (this.dir) discardJournalDir(this.dir);
    } catch {
      // Left for the next run's recovery.
    }
  }
}

function drainInBackground(responses: AsyncIterator<unknown>): void {
  (async () => {
    while (!(await responses.next()).done) { /* nothing else is expected */ }
  })().catch(() => {});
}

/** TaskStart.requirements_json: what the task requires where it runs, as read here. */
function requirementsJson(task: Task): string {
  if (task.user === undefined && !task.artifacts?.length && !task.consumes?.length) return "";
  return JSON.stringify({
    ...(task.user !== undefined && { user: task.user }),
    ...(task.artifacts?.length && { artifacts: task.artifacts }),
    ...(task.consumes?.length && { consumes: task.consumes }),
  });
}

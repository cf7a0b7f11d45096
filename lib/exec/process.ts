import type { ExitStatus } from "../model/mod.ts";
import type { Sandbox } from "./sandbox.ts";
import { switchUserArgv } from "./task_user.ts";
import { treeEnded, treeStarted } from "./trees.ts";
import { shellsKeptWarm, warmShell } from "./warm.ts";

export type Stream = "stdout" | "stderr";

/** The reasons an attempt's `AbortSignal` carries; anything else counts as cancelled. */
export type AbortReason = "timeout" | "cancelled";

export interface RunOptions {
  /** Working directory; must exist. */
  cwd: string;
  /** Added to the inherited environment. */
  env?: Record<string, string>;
  /** Aborting kills the whole process tree; `signal.reason === "timeout"` marks it a timeout. */
  signal?: AbortSignal;
  /** Called for every complete line, without its line ending, as it arrives. */
  onLine?: (stream: Stream, line: string) => void | Promise<void>;
  /** Keep stdout and stderr and return them (each capped at `captureLimit` bytes). */
  capture?: boolean;
  /** Run inside this sandbox instead of directly. */
  sandbox?: Sandbox;
}

export interface ProcessResult {
  exit: ExitStatus;
  stdout: string;
  stderr: string;
  /**
   * Set for a stream whose bytes are not UTF-8: its string then holds one character
   * (U+0000-U+00FF) per byte, so that no byte is lost to a replacement character.
   */
  binary?: { stdout?: true; stderr?: true };
}

export const SETSID = ["/usr/bin/setsid", "/bin/setsid"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

/** Time between SIGTERM and SIGKILL when a task's tree is stopped. */
export const KILL_GRACE_MS = 1000;
/** A line longer than this is passed on in pieces. */
const MAX_LINE = 64 * 1024;
const CAPTURE_LIMIT = 16 * 1024 * 1024;

/**
 * Runs `script` with `/bin/sh -c` in a new session, so that the whole tree it
 * starts can be signalled as one process group. Whatever the script leaves
 * running in its group when it exits is stopped too: a task cannot leave
 * processes behind, and its output ends when it does.
 */
export async function runShell(script: string, options: RunOptions): Promise<ProcessResult> {
  const { signal } = options;
  const captured = { stdout: new Capture(), stderr: new Capture() };
  if (signal?.aborted) return { exit: abortedStatus(signal, null), stdout: "", stderr: "" };

  let child: Deno.ChildProcess;
  try {
    await options.sandbox?.prepare?.();
  } catch (error) {
    return { exit: spawnFailed(error, options.cwd), stdout: "", stderr: "" };
  }
  // On an agent started as root, the task user's ids (task_user.ts), after setsid;
  // a sandbox switches inside itself.
  const shell = options.sandbox ? options.sandbox.shell : { argv: switchUserArgv(), env: {} };
  const warm = shell && SETSID && shellsKeptWarm() &&
    warmShell([SETSID, ...shell.argv], script, {
      cwd: options.cwd,
      env: { ...options.env, ...shell.env },
      onTaken: treeStarted,
    });
  if (warm) child = warm;
  else {
    const { cmd, args, env } = options.sandbox?.command(script, options.cwd, options.env ?? {}) ??
      { cmd: "/bin/sh", args: ["-c", script] };
    const argv = [...(options.sandbox ? [] : switchUserArgv()), cmd, ...args];
    try {
      // A new session (and so process group) for the tree. `setsid` then exec is
      // cheaper than Deno's `detached` spawn (~0.5 ms a task, measured).
      child = new Deno.Command(SETSID ?? argv[0], {
        args: SETSID ? argv : argv.slice(1),
        cwd: options.cwd,
        env: env ? { ...options.env, ...env } : options.env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        detached: SETSID === undefined,
      }).spawn();
    } catch (error) {
      return { exit: spawnFailed(error, options.cwd), stdout: "", stderr: "" };
    }
    treeStarted(child.pid);
  }

  const pumps = Promise.all(
    (["stdout", "stderr"] as const).map((stream) =>
      pumpLines(
        child[stream],
        (line) => options.onLine?.(stream, line),
        // What is kept is the bytes as they came: no newline added, CRs and all.
        options.capture ? (chunk) => captured[stream].add(chunk) : undefined,
      )
    ),
  );

  let killed: Promise<void> | undefined;
  const onAbort = () => killed ??= killTree(child.pid, child.status);
  signal?.addEventListener("abort", onAbort, { once: true });
  // Aborted while it was starting (the await above): no abort event is coming.
  if (signal?.aborted) onAbort();
  const status = await child.status;
  signal?.removeEventListener("abort", onAbort);

  // Leftovers in the group (they may keep our pipes open): TERM, a grace period, KILL.
  if (signalGroup(child.pid, "SIGTERM")) {
    const deadline = Date.now() + KILL_GRACE_MS;
    await settlesWithin(pumps, KILL_GRACE_MS);
    while (groupExists(child.pid) && Date.now() < deadline) await pause(20);
    signalGroup(child.pid, "SIGKILL");
  }
  await pumps;
  await killed;
  treeEnded(child.pid);

  const exit: ExitStatus = killed
    ? abortedStatus(signal!, status.signal)
    : status.signal
    ? { reason: "exited", code: null, signal: status.signal }
    : { reason: "exited", code: status.code, signal: null };
  const out = captured.stdout.result();
  const err = captured.stderr.result();
  const binary = out.binary || err.binary
    ? { ...(out.binary && { stdout: true as const }), ...(err.binary && { stderr: true as const }) }
    : undefined;
  return { exit, stdout: out.text, stderr: err.text, ...(binary && { binary }) };
}

/** SIGTERM to the group, then SIGKILL after a grace period if the leader still runs. */
async function killTree(pid: number, exited: Promise<Deno.CommandStatus>): Promise<void> {
  signalGroup(pid, "SIGTERM");
  if (!await settlesWithin(exited, KILL_GRACE_MS)) signalGroup(pid, "SIGKILL");
}

/** Whether the group still had members to signal. */
export function signalGroup(pid: number, sig: Deno.Signal): boolean {
  try {
    Deno.kill(-pid, sig);
    return true;
  } catch {
    return false; // The group is already gone.
  }
}

/**
 * Whether a live process is left in the group. A signal reaches zombies too, and
 * orphans are reaped by PID 1 when it gets to it (in a container, maybe never), so
 * on Linux /proc tells: members whose state is not Z. Elsewhere, SIGCONT (which
 * changes nothing for a running process) fails only when nobody is left.
 */
function groupExists(pid: number): boolean {
  if (Deno.build.os !== "linux") return signalGroup(pid, "SIGCONT");
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      let stat: string;
      try {
        stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      } catch {
        continue; // It ended while we looked.
      }
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pid && fields[0] !== "Z") return true;
    }
    return false;
  } catch {
    return signalGroup(pid, "SIGCONT");
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function abortedStatus(signal: AbortSignal, sig: string | null): ExitStatus {
  const reason = signal.reason === "timeout" ? "timeout" : "cancelled";
  return { reason, code: null, signal: sig };
}

function spawnFailed(error: unknown, cwd: string): ExitStatus {
  let message = error instanceof Error ? error.message : String(error);
  if (error instanceof Deno.errors.NotFound) {
    message = `working directory ${cwd} does not exist`;
  } else if (error instanceof Deno.errors.PermissionDenied) {
    message = `permission denied starting /bin/sh in ${cwd}`;
  }
  return { reason: "spawn_failed", code: null, signal: null, message };
}

/**
 * Splits a stream into lines. When `onLine` returns a promise (a slow
 * consumer, such as a master far away), reading waits for it: the task then
 * blocks on its own output instead of sloth-runner buffering without bound.
 */
async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void | Promise<void>,
  onBytes?: (chunk: Uint8Array) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  const emit = (line: string) => onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
  for await (const chunk of stream) {
    onBytes?.(chunk);
    pending += decoder.decode(chunk, { stream: true });
    let start = 0;
    let newline: number;
    while ((newline = pending.indexOf("\n", start)) >= 0) {
      // A long line whose end came in this read is cut like one still arriving.
      for (; newline - start > MAX_LINE; start += MAX_LINE) {
        const waiting = emit(pending.slice(start, start + MAX_LINE));
        if (waiting) await waiting;
      }
      const waiting = emit(pending.slice(start, newline));
      if (waiting) await waiting;
      start = newline + 1;
    }
    pending = pending.slice(start);
    while (pending.length > MAX_LINE) {
      const waiting = emit(pending.slice(0, MAX_LINE));
      if (waiting) await waiting;
      pending = pending.slice(MAX_LINE);
    }
  }
  pending += decoder.decode();
  if (pending.length > 0) await emit(pending);
}

/** A stream's bytes as they came, up to CAPTURE_LIMIT. */
class Capture {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #truncated = false;

  add(chunk: Uint8Array): void {
    const room = CAPTURE_LIMIT - this.#size;
    if (chunk.length > room) this.#truncated = true;
    if (room <= 0) return;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.#chunks.push(kept.slice());
    this.#size += kept.length;
  }

  /** The text, or for bytes that are not UTF-8 one character per byte (`binary`). */
  result(): { text: string; binary: boolean } {
    const all = new Uint8Array(this.#size);
    let at = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    const more = this.#truncated ? "\n[output truncated]\n" : "";
    // A NUL does not cross into Lua inside text (it ends a C string there).
    if (!all.includes(0)) {
      try {
        // ignoreBOM: a byte order mark the command wrote is output too.
        const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
        return { text: decoder.decode(all) + more, binary: false };
      } catch {
        // Not UTF-8 (or a character cut at the limit): taken byte by byte below.
      }
    }
    // One character per byte, U+0100 standing for a NUL; the prelude makes them bytes again.
    let text = "";
    for (let i = 0; i < all.length; i += 8192) {
      const piece = all.subarray(i, i + 8192);
      text += String.fromCharCode(...piece).replaceAll("\0", "\u0100");
    }
    return { text: text + more, binary: true };
  }
}

/** Whether `promise` settles within `ms`; the timer never outlives the answer. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Run reports. `RunRecorder` listens to the event stream and keeps what the run
 * did, with a bound on each task's output; at the end its `RunRecord` is written
 * as JUnit XML (the test tab of Jenkins, GitLab and GitHub reporters) or as JSON.
 */
import type { ExitStatus, TaskStatus, Transfer } from "../model/mod.ts";
import { exitStatusText } from "../model/mod.ts";
import type { LogLevel, LogStream, RunEvent } from "./events.ts";

type RunFinished = Extract<RunEvent, { type: "run_finished" }>;
export type RunStatus = RunFinished["status"];

/**
 * A task's status in a report: a `TaskStatus`, or `not_started` (planned, never
 * began) or `unfinished` (began, but the run ended before its result came).
 */
export type TaskRecordStatus = TaskStatus | "not_started" | "unfinished";

export interface OutputLine {
  stream: LogStream;
  /** For `log` lines. */
  level?: LogLevel;
  /** The attempt that printed it; 0 before the first attempt (conditions, notes). */
  attempt: number;
  line: string;
}

/** The last lines of some output, and what was dropped in front of them. */
export interface RecordedOutput {
  lines: OutputLine[];
  droppedLines: number;
  /** UTF-8 bytes dropped, including the start of a line too long to keep whole. */
  droppedBytes: number;
}

export interface TaskRecord {
  id: string;
  task: string;
  group: string;
  where: string;
  status: TaskRecordStatus;
  attempts: number;
  durationMs: number;
  /** When its first attempt started (ISO 8601, UTC). */
  startedAt?: string;
  /** When its result came (ISO 8601, UTC). */
  finishedAt?: string;
  error?: string;
  message?: string;
  outputs: Record<string, unknown>;
  exit?: ExitStatus;
  transfer?: Transfer;
  output: RecordedOutput;
}

export interface RunRecord {
  /** The workflow file. */
  file: string;
  /** When the run started (ISO 8601, UTC). */
  startedAt: string;
  /** Whether `run_finished` came; when not, status is `unfinished`. */
  finished: boolean;
  status: RunStatus | "unfinished";
  exitCode: number | null;
  durationMs: number;
  counts: Record<TaskRecordStatus, number>;
  /** Why the run stopped early, when it did. */
  reason?: string;
  /** Every planned task, in plan order. */
  tasks: TaskRecord[];
  /** Lines from the workflow's top level, outside any task. */
  output: RecordedOutput;
}

export interface RunRecorderOptions {
  /** Output kept per task (and for the top level), in UTF-8 bytes; older lines go first. */
  maxOutputBytes?: number;
  /** Lines kept per task: bounds the per-line bookkeeping when lines are tiny. */
  maxOutputLines?: number;
  /** The clock, for tests. */
  now?: () => Date;
}

/** 1 MiB: about 13,000 lines of a typical build log, the end of which is what explains a failure. */
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
export const DEFAULT_MAX_OUTPUT_LINES = 50_000;

interface TaskState {
  id: string;
  task: string;
  group: string;
  where: string;
  attempt: number;
  startedAt?: Date;
  finishedAt?: Date;
  result?: Extract<RunEvent, { type: "task_finished" }>["result"];
  output: OutputBuffer;
}

/** Collects a run from its events; `record()` may be called at any point, as often as wanted. */
export class RunRecorder {
  #now: () => Date;
  #maxBytes: number;
  #maxLines: number;
  #created: Date;
  #file = "";
  #startedAt?: Date;
  #tasks = new Map<string, TaskState>();
  #top: OutputBuffer;
  #finished?: RunFinished;

  constructor(options: RunRecorderOptions = {}) {
    this.#now = options.now ?? (() => new Date());
    this.#maxBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    this.#maxLines = options.maxOutputLines ?? DEFAULT_MAX_OUTPUT_LINES;
    this.#created = this.#now();
    this.#top = this.#buffer();
  }

  /** Whether the run has started (its tasks are known). */
  get started(): boolean {
    return this.#startedAt !== undefined;
  }

  #buffer(): OutputBuffer {
    return new OutputBuffer(this.#maxBytes, this.#maxLines);
  }

  #task(id: string, task: string, group?: string, where = ""): TaskState {
    let state = this.#tasks.get(id);
    if (!state) {
      // Only for events about a task that run_started did not list.
      group ??= id.endsWith(`.${task}`) ? id.slice(0, -task.length - 1) : "";
      state = { id, task, group, where, attempt: 0, output: this.#buffer() };
      this.#tasks.set(id, state);
    }
    return state;
  }

  handle(event: RunEvent): void {
    switch (event.type) {
      case "run_started":
        this.#file = event.file;
        this.#startedAt = this.#now();
        for (const t of event.tasks) this.#task(t.id, t.task, t.group, t.where);
        break;
      case "task_started": {
        const state = this.#task(event.id, event.task, event.group, event.where);
        state.attempt = event.attempt;
        state.where = event.where;
        state.startedAt ??= this.#now();
        break;
      }
      case "log": {
        const target = event.id === undefined
          ? this.#top
          : this.#task(event.id, event.task ?? event.id).output;
        const attempt = event.id === undefined ? 0 : this.#tasks.get(event.id)!.attempt;
        // A line may hold several (a Lua print of a multi-line string).
        for (const line of event.line.replace(/\n$/, "").split("\n")) {
          target.add({ stream: event.stream, level: event.level, attempt, line });
        }
        break;
      }
      case "task_finished": {
        const state = this.#task(event.result.id, event.task, event.group, event.result.where);
        state.result = event.result;
        state.where = event.result.where;
        state.finishedAt = this.#now();
        break;
      }
      case "run_finished":
        this.#finished = event;
        break;
    }
  }

  record(): RunRecord {
    const started = this.#startedAt ?? this.#created;
    const tasks = [...this.#tasks.values()].map((s) => taskRecord(s));
    const counts: Record<TaskRecordStatus, number> = {
      success: 0,
      failed: 0,
      skipped: 0,
      timeout: 0,
      cancelled: 0,
      not_started: 0,
      unfinished: 0,
    };
    for (const t of tasks) counts[t.status]++;
    const end = this.#finished;
    return {
      file: this.#file,
      startedAt: started.toISOString(),
      finished: end !== undefined,
      status: end?.status ?? "unfinished",
      exitCode: end?.exit_code ?? null,
      durationMs: end?.duration_ms ?? Math.max(0, this.#now().getTime() - started.getTime()),
      // The scheduler's own count is the one the run reported; ours only adds the two extra states.
      counts: end ? { ...counts, ...end.counts } : counts,
      reason: end?.reason,
      tasks,
      output: this.#top.snapshot(),
    };
  }
}

function taskRecord(s: TaskState): TaskRecord {
  const r = s.result;
  return {
    id: s.id,
    task: s.task,
    group: s.group,
    where: s.where,
    status: r?.status ?? (s.startedAt ? "unfinished" : "not_started"),
    attempts: r?.attempts ?? s.attempt,
    durationMs: r?.durationMs ?? 0,
    startedAt: s.startedAt?.toISOString(),
    finishedAt: s.finishedAt?.toISOString(),
    error: r?.error,
    message: r?.message,
    outputs: r?.outputs ?? {},
    exit: r?.exit,
    transfer: r?.transfer,
    output: s.output.snapshot(),
  };
}

/** The newest lines within a byte and a line budget; the oldest are dropped first. */
class OutputBuffer {
  #maxBytes: number;
  #maxLines: number;
  #lines: OutputLine[] = [];
  /** Index of the oldest kept line: dropping moves it instead of shifting the array. */
  #head = 0;
  #bytes = 0;
  #droppedLines = 0;
  #droppedBytes = 0;

  constructor(maxBytes: number, maxLines: number) {
    this.#maxBytes = Math.max(1, maxBytes);
    this.#maxLines = Math.max(1, maxLines);
  }

  add(entry: OutputLine): void {
    // Each line counts with its newline, as it would be written out.
    let size = utf8Length(entry.line) + 1;
    if (size > this.#maxBytes) {
      const kept = utf8Tail(entry.line, this.#maxBytes - 1);
      const keptSize = utf8Length(kept) + 1;
      this.#droppedBytes += size - keptSize;
      entry = { ...entry, line: kept };
      size = keptSize;
    }
    this.#lines.push(entry);
    this.#bytes += size;
    while (this.#bytes > this.#maxBytes || this.#lines.length - this.#head > this.#maxLines) {
      const old = this.#lines[this.#head++];
      const oldSize = utf8Length(old.line) + 1;
      this.#bytes -= oldSize;
      this.#droppedLines++;
      this.#droppedBytes += oldSize;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#lines.length) {
      this.#lines = this.#lines.slice(this.#head);
      this.#head = 0;
    }
  }

  snapshot(): RecordedOutput {
    return {
      lines: this.#lines.slice(this.#head),
      droppedLines: this.#droppedLines,
      droppedBytes: this.#droppedBytes,
    };
  }
}

/** Bytes of `text` in UTF-8 (a lone surrogate counts as the 3 bytes of U+FFFD). */
function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(text.charCodeAt(i + 1))) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** The longest end of `text` within `maxBytes` of UTF-8, never splitting a surrogate pair. */
function utf8Tail(text: string, maxBytes: number): string {
  let n = 0;
  let i = text.length;
  while (i > 0) {
    const c = text.charCodeAt(i - 1);
    const pair = isLowSurrogate(c) && i > 1 && isHighSurrogate(text.charCodeAt(i - 2));
    const size = pair ? 4 : c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
    if (n + size > maxBytes) break;
    n += size;
    i -= pair ? 2 : 1;
  }
  return text.slice(i);
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

// ---------------------------------------------------------------------------
// JUnit XML

/** CSI (colours, cursor), OSC (titles, links) and the other ESC sequences a terminal reads. */
const ansiPattern =
  // deno-lint-ignore no-control-regex
  /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -/]*[0-~])/g;

/**
 * What XML 1.0 forbids even as a character reference: C0 controls but tab, LF
 * and CR; surrogates not in a pair (the `u` flag lets a pair through as one code
 * point); U+FFFE and U+FFFF.
 */
// deno-lint-ignore no-control-regex
const notXmlChar = /[\x00-\x08\x0B\x0C\x0E-\x1F\uD800-\uDFFF\uFFFE\uFFFF]/gu;

/** Text as an XML reader should see it: no ANSI codes, U+FFFD for what XML cannot hold. */
function xmlSafeText(text: string): string {
  return text.replace(ansiPattern, "").replace(notXmlChar, "\uFFFD");
}

function escapeText(text: string): string {
  return xmlSafeText(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    // Also keeps "]]>" out of the text, which XML forbids outside CDATA.
    .replaceAll(">", "&gt;")
    // A raw CR would reach the reader as LF (end-of-line handling).
    .replaceAll("\r", "&#13;");
}

function escapeAttr(text: string): string {
  // Attribute-value normalisation would turn raw tabs and line breaks into spaces.
  return escapeText(text)
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;")
    .replaceAll("\t", "&#9;")
    .replaceAll("\n", "&#10;");
}

function attrs(values: Record<string, string | number | undefined>): string {
  return Object.entries(values)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${escapeAttr(String(v))}"`)
    .join("");
}

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
}

/** ISO 8601 in UTC, to the second: what xs:dateTime and every reader accept. */
function timestamp(iso: string): string {
  return iso.replace(/\.\d+Z$/, "Z");
}

type Verdict =
  | { kind: "passed" }
  | { kind: "failure" | "error"; type: string; message: string }
  | { kind: "skipped"; message: string };

/**
 * How a task reads in JUnit. A timeout is a `<failure>`: the limit is part of the
 * task, like its exit code, and sloth-runner counts it as a failed task. `<error>`
 * is kept for tasks whose outcome is unknown because sloth-runner could not run
 * them to the end (could not start, agent lost, no result), so CI can tell
 * "the task is broken" from "the runner had trouble".
 */
function verdict(t: TaskRecord): Verdict {
  const message = t.error ?? (t.exit ? exitStatusText(t.exit) : t.status);
  switch (t.status) {
    case "success":
      return { kind: "passed" };
    case "timeout":
      return { kind: "failure", type: "timeout", message };
    case "failed": {
      const reason = t.exit?.reason;
      if (reason === "spawn_failed" || reason === "agent_lost") {
        return { kind: "error", type: reason, message };
      }
      const type = reason === undefined
        ? "failed"
        : reason === "exited"
        ? (t.exit!.code === null && t.exit!.signal ? "signal" : "exit_code")
        : reason;
      return { kind: "failure", type, message };
    }
    case "unfinished":
      return {
        kind: "error",
        type: "unfinished",
        message: "no result: the run ended while this task was running",
      };
    case "skipped":
      return { kind: "skipped", message: t.error ?? "skipped" };
    case "cancelled":
      return { kind: "skipped", message: `cancelled: ${t.error ?? "cancelled"}` };
    case "not_started":
      return { kind: "skipped", message: "not run: the run ended before this task started" };
  }
}

function failureBody(t: TaskRecord): string {
  const lines = [t.error ?? t.status, "", `task: ${t.id}`, `where: ${t.where}`];
  lines.push(`attempts: ${t.attempts}`);
  if (t.exit && exitStatusText(t.exit) !== t.error) lines.push(`exit: ${exitStatusText(t.exit)}`);
  if (t.exit?.signal) lines.push(`signal: ${t.exit.signal}`);
  if (t.message) lines.push(`message: ${t.message}`);
  return lines.join("\n") + "\n";
}

/** The task's output split for `<system-out>` and `<system-err>`, attempts marked when several printed. */
function splitOutput(output: RecordedOutput): { out: string; err: string } {
  let out = "";
  let err = "";
  if (output.droppedLines > 0 || output.droppedBytes > 0) {
    out += `[sloth-runner: ${output.droppedBytes} bytes (${output.droppedLines} lines) ` +
      `of earlier output not kept]\n`;
  }
  const attempts = new Set(output.lines.map((l) => l.attempt));
  const marked = attempts.size > 1;
  let lastOut = -1;
  let lastErr = -1;
  for (const l of output.lines) {
    const toErr = l.stream === "stderr" ||
      (l.stream === "log" && (l.level === "warn" || l.level === "error"));
    const text = l.stream === "log" ? `[${l.level ?? "info"}] ${l.line}` : l.line;
    if (toErr) {
      if (marked && l.attempt !== lastErr && l.attempt > 0) err += `── attempt ${l.attempt} ──\n`;
      lastErr = l.attempt;
      err += text + "\n";
    } else {
      if (marked && l.attempt !== lastOut && l.attempt > 0) out += `── attempt ${l.attempt} ──\n`;
      lastOut = l.attempt;
      out += text + "\n";
    }
  }
  return { out, err };
}

function testcase(t: TaskRecord): string {
  const v = verdict(t);
  // No <properties> in a test case and no attributes on <skipped>: the common
  // schemas (Jenkins xUnit's junit-10, dtkit's junit-4) refuse them. Where a task
  // ran and how often are in the failure text, and all of it in the JSON report.
  let xml = `    <testcase${
    attrs({ name: t.task, classname: t.group, time: seconds(t.durationMs), status: t.status })
  }>\n`;
  if (v.kind === "failure" || v.kind === "error") {
    xml += `      <${v.kind}${attrs({ message: v.message, type: v.type })}>` +
      `${escapeText(failureBody(t))}</${v.kind}>\n`;
  } else if (v.kind === "skipped") {
    xml += `      <skipped>${escapeText(v.message)}</skipped>\n`;
  }
  const { out, err } = splitOutput(t.output);
  if (out) xml += `      <system-out>${escapeText(out)}</system-out>\n`;
  if (err) xml += `      <system-err>${escapeText(err)}</system-err>\n`;
  return xml + "    </testcase>\n";
}

/**
 * Wall-clock span of a group's tasks (they may overlap, so not the sum of their
 * times), never less than its longest task; the sum when no times were seen.
 */
function suiteMs(tasks: TaskRecord[]): number {
  const starts = tasks.flatMap((t) => t.startedAt ? [Date.parse(t.startedAt)] : []);
  const ends = tasks.flatMap((t) => t.finishedAt ? [Date.parse(t.finishedAt)] : []);
  if (starts.length > 0 && ends.length > 0) {
    return Math.max(Math.max(...ends) - Math.min(...starts), ...tasks.map((t) => t.durationMs));
  }
  return tasks.reduce((sum, t) => sum + t.durationMs, 0);
}

/**
 * The run as JUnit XML: one `<testsuite>` per group, one `<testcase>` per task
 * (name = task, classname = group). Output of the workflow's top level has no
 * test case to go in and is left to the JSON report.
 */
export function junitXml(record: RunRecord): string {
  const groups = new Map<string, TaskRecord[]>();
  for (const t of record.tasks) {
    if (!groups.has(t.group)) groups.set(t.group, []);
    groups.get(t.group)!.push(t);
  }
  const total = { tests: 0, failures: 0, errors: 0 };
  let suites = "";
  // A run that failed before any task (the workflow did not load): one error case, so
  // that CI shows a failure instead of an empty, green report.
  if (record.tasks.length === 0 && record.status !== "success" && record.reason) {
    total.tests = 1;
    total.errors = 1;
    suites += `  <testsuite${
      attrs({
        name: "workflow",
        tests: 1,
        failures: 0,
        errors: 1,
        skipped: 0,
        time: seconds(record.durationMs),
        timestamp: timestamp(record.startedAt),
      })
    }>\n    <testcase${
      attrs({ name: "load", classname: "workflow", time: seconds(0), status: "failed" })
    }>\n      <error${attrs({ message: record.reason, type: "workflow" })}>${
      escapeText(record.reason + "\n")
    }</error>\n    </testcase>\n  </testsuite>\n`;
  }
  for (const [group, tasks] of groups) {
    const n = { failures: 0, errors: 0, skipped: 0 };
    for (const t of tasks) {
      const kind = verdict(t).kind;
      if (kind === "failure") n.failures++;
      else if (kind === "error") n.errors++;
      else if (kind === "skipped") n.skipped++;
    }
    total.tests += tasks.length;
    total.failures += n.failures;
    total.errors += n.errors;
    const starts = tasks.flatMap((t) => t.startedAt ? [t.startedAt] : []).sort();
    suites += `  <testsuite${
      attrs({
        name: group,
        tests: tasks.length,
        failures: n.failures,
        errors: n.errors,
        skipped: n.skipped,
        time: seconds(suiteMs(tasks)),
        timestamp: timestamp(starts[0] ?? record.startedAt),
      })
    }>\n`;
    for (const t of tasks) suites += testcase(t);
    suites += "  </testsuite>\n";
  }
  return `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<testsuites${
      attrs({
        name: record.file || "sloth-runner",
        tests: total.tests,
        failures: total.failures,
        errors: total.errors,
        time: seconds(record.durationMs),
      })
    }>\n${suites}</testsuites>\n`;
}

// ---------------------------------------------------------------------------
// JSON

/**
 * The record as one line of JSON, keys in snake_case like `--output json`.
 * Output lines are kept as printed (ANSI codes included): this is the record,
 * and readers that display it choose how.
 */
export function jsonReport(record: RunRecord): string {
  const output = (o: RecordedOutput) => ({
    lines: o.lines,
    dropped_lines: o.droppedLines,
    dropped_bytes: o.droppedBytes,
  });
  return JSON.stringify({
    version: 1,
    file: record.file,
    started_at: record.startedAt,
    finished: record.finished,
    status: record.status,
    exit_code: record.exitCode,
    duration_ms: Math.round(record.durationMs * 10) / 10,
    counts: record.counts,
    reason: record.reason,
    tasks: record.tasks.map((t) => ({
      id: t.id,
      task: t.task,
      group: t.group,
      where: t.where,
      status: t.status,
      attempts: t.attempts,
      duration_ms: Math.round(t.durationMs * 10) / 10,
      started_at: t.startedAt,
      finished_at: t.finishedAt,
      error: t.error,
      message: t.message,
      outputs: t.outputs,
      exit: t.exit,
      transfer: t.transfer && {
        sent_bytes: t.transfer.sentBytes,
        received_bytes: t.transfer.receivedBytes,
      },
      output: output(t.output),
    })),
    output: output(record.output),
  }) + "\n";
}

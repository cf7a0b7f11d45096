/**
 * Renderers of the event stream. Text: task output on stdout and stderr as it
 * comes, each line prefixed with its task; sloth-runner's own notes on stderr;
 * a summary table at the end. JSON: one object per line on stdout, nothing else.
 */
import type { TaskResult, TaskStatus } from "../model/mod.ts";
import { formatDuration } from "../model/mod.ts";
import type { RunEvent } from "./events.ts";
import { LiveRegion, type Terminal } from "./progress.ts";

export type Write = (text: string) => void;

const encoder = new TextEncoder();

/**
 * A writer that never writes half a line, whatever the pipe takes at once. When
 * the reader has gone (`| head`), the rest is dropped: the run goes on, its tasks
 * keep their outcomes, and its reports are still written.
 */
export function fdWriter(file: { writeSync(p: Uint8Array): number }): Write {
  let gone = false;
  return (text) => {
    if (gone) return;
    let bytes = encoder.encode(text);
    try {
      while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      gone = true;
    }
  };
}

export interface TextRendererOptions {
  out: Write;
  err: Write;
  color: boolean;
  /**
   * Show `log.debug` lines; in the live view, also every line of every task
   * (without it the live view shows only warnings, errors and failed tasks' output).
   */
  verbose: boolean;
  /** A terminal on stdout and stderr: show running tasks live, in place. */
  live?: Terminal;
}

/** Lines of a task's output kept to show under it when it fails in the live view. */
const FAILURE_TAIL = 12;

const ansi = {
  reset: "\x1b[0m",
  bold: "\x1b[1m",
  dim: "\x1b[2m",
  red: "\x1b[31m",
  green: "\x1b[32m",
  yellow: "\x1b[33m",
};
const palette = ["\x1b[36m", "\x1b[35m", "\x1b[34m", "\x1b[33m", "\x1b[32m", "\x1b[96m"];

const statusColor: Record<TaskStatus, string> = {
  success: ansi.green,
  failed: ansi.red,
  timeout: ansi.red,
  cancelled: ansi.yellow,
  skipped: ansi.yellow,
};

export class TextRenderer {
  #o: TextRendererOptions;
  #colors = new Map<string, string>();
  /** Name tasks `group.task`: set when the run has several groups. */
  qualify = false;
  #live?: LiveRegion;
  /** Lines waiting to scroll above the live region at the next redraw. */
  #pending: { write: Write; text: string }[] = [];
  #tails = new Map<string, { lines: string[]; dropped: number }>();
  #cursorHidden = false;

  constructor(options: TextRendererOptions) {
    this.#o = options;
    if (options.live) this.#live = new LiveRegion(options.live, options.color);
  }

  /** Prints lines queued above the live region and redraws it; call every ~100 ms. */
  tick(): void {
    if (!this.#live) return;
    let text = this.#cursorHidden ? "" : "\x1b[?25l";
    this.#cursorHidden = true;
    this.#o.err(text + this.#live.clear());
    this.#flush();
    text = this.#live.draw();
    this.#o.err(text);
  }

  /** Removes the live region and gives the cursor back; the renderer then writes plainly. */
  stop(): void {
    if (!this.#live) return;
    this.#o.err(this.#live.clear() + (this.#cursorHidden ? "\x1b[?25h" : ""));
    this.#flush();
    this.#live = undefined;
  }

  #flush(): void {
    for (const { write, text } of this.#pending.splice(0)) write(text);
  }

  /** Writes now, or, in the live view, above the region at the next redraw. */
  #print(write: Write, text: string): void {
    if (this.#live) this.#pending.push({ write, text });
    else write(text);
  }

  #name(id: string, task: string): string {
    return this.qualify ? id : task;
  }

  #paint(code: string, text: string): string {
    return this.#o.color ? `${code}${text}${ansi.reset}` : text;
  }

  #label(id: string | undefined, task: string | undefined, agent?: string): string {
    let name = id === undefined ? "workflow" : this.qualify ? id : task ?? id;
    // A fan-out's copy is already named after its agent (`deploy@web-1`).
    if (agent && !name.endsWith(`@${agent}`)) name += `@${agent}`;
    const key = id ?? "";
    if (!this.#colors.has(key)) this.#colors.set(key, palette[this.#colors.size % palette.length]);
    return this.#paint(this.#colors.get(key)!, `[${name}]`);
  }

  handle(event: RunEvent): void {
    const err = (text: string) => this.#print(this.#o.err, text);
    switch (event.type) {
      case "run_started":
        this.#live?.planned(event.tasks.length);
        break;
      case "task_started": {
        this.#live?.started(event.id, {
          label: this.#name(event.id, event.task),
          where: event.where,
          attempt: event.attempt,
        });
        if (this.#live && !this.#o.verbose) break;
        const attempt = event.attempt > 1 ? ` (attempt ${event.attempt})` : "";
        const where = event.where === "local" ? "" : ` on ${event.where}`;
        err(
          `${this.#label(event.id, event.task)} ${
            this.#paint(ansi.dim, `▶ started${where}${attempt}`)
          }\n`,
        );
        break;
      }
      case "log": {
        const prefix = this.#label(event.id, event.task, event.agent);
        for (const line of event.line.replace(/\n$/, "").split("\n")) {
          if (this.#live && event.id !== undefined && event.level !== "debug") {
            this.#live.output(event.id, line);
          }
          if (this.#live && event.id !== undefined && !this.#o.verbose) this.#keep(event, line);
          else this.#logLine(prefix, event, line);
        }
        break;
      }
      case "task_finished": {
        const r = event.result;
        const mark = r.status === "success" ? "✔" : r.status === "skipped" ? "↷" : "✘";
        const why = r.error ? `: ${r.error}` : "";
        const time = r.status === "skipped" ? "" : ` (${formatDuration(r.durationMs)})`;
        const where = r.where !== "local" && r.status !== "skipped" ? ` on ${r.where}` : "";
        err(
          `${this.#label(r.id, event.task)} ${
            this.#paint(statusColor[r.status], `${mark} ${r.status}${why}`)
          }${time}${where}\n`,
        );
        this.#live?.finished(r.id);
        const tail = this.#tails.get(r.id);
        this.#tails.delete(r.id);
        if (tail && r.status !== "success" && r.status !== "skipped") {
          const title = tail.dropped > 0 ? `its last ${tail.lines.length} lines` : "its output";
          err(
            this.#paint(ansi.dim, `  ${title}:\n`) +
              tail.lines.map((line) => `  ${this.#paint(ansi.dim, "│")} ${line}\n`).join(""),
          );
        }
        break;
      }
      case "run_finished":
        break;
    }
  }

  /**
   * The live view without --verbose: a command's output feeds its task's live line
   * and a short tail shown if it fails; what Lua code says on purpose (`print`,
   * `log.info`, `log.warn`, `log.error`) and sloth-runner's warnings still scroll above.
   */
  #keep(event: RunEvent & { type: "log" }, line: string): void {
    const id = event.id!;
    if (event.level !== "debug") {
      const tail = this.#tails.get(id) ?? { lines: [], dropped: 0 };
      tail.lines.push(line);
      if (tail.lines.length > FAILURE_TAIL) {
        tail.lines.shift();
        tail.dropped++;
      }
      this.#tails.set(id, tail);
    }
    if (event.level !== undefined && event.level !== "debug") {
      this.#logLine(this.#label(event.id, event.task, event.agent), event, line);
    }
  }

  #logLine(prefix: string, event: RunEvent & { type: "log" }, line: string): void {
    const out = (text: string) => this.#print(this.#o.out, text);
    const err = (text: string) => this.#print(this.#o.err, text);
    if (event.stream === "stdout") out(`${prefix} ${line}\n`);
    else if (event.stream === "stderr") err(`${prefix} ${line}\n`);
    else if (event.level === "debug") {
      if (this.#o.verbose) err(`${prefix} ${this.#paint(ansi.dim, `DEBUG ${line}`)}\n`);
    } else if (event.level === "warn") {
      err(`${prefix} ${this.#paint(ansi.yellow, "WARN")} ${line}\n`);
    } else if (event.level === "error") {
      err(`${prefix} ${this.#paint(ansi.red, "ERROR")} ${line}\n`);
    } else out(`${prefix} ${line}\n`);
  }

  /** The table at the end of a run, on stdout. */
  summary(results: { task: string; result: TaskResult }[], footer: string): void {
    this.stop();
    const rows = results.map(({ task, result: r }) => [
      this.qualify ? r.id : task,
      r.status,
      String(r.attempts),
      r.status === "skipped" ? "-" : formatDuration(r.durationMs),
      r.where,
      oneLine(r.error ?? ""),
    ]);
    const header = ["TASK", "STATUS", "ATTEMPTS", "DURATION", "WHERE", "ERROR"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (cells: string[], paint?: (i: number, cell: string) => string) =>
      cells.map((cell, i) => {
        const padded = i === cells.length - 1 ? cell : cell.padEnd(widths[i]);
        return paint ? paint(i, padded) : padded;
      }).join("  ").trimEnd() + "\n";
    let text = "\n" + line(header, (_, cell) => this.#paint(ansi.bold, cell));
    for (const row of rows) {
      text += line(
        row,
        (i, cell) => i === 1 ? this.#paint(statusColor[row[1] as TaskStatus], cell) : cell,
      );
    }
    this.#o.out(text + footer + "\n");
  }
}

function oneLine(text: string): string {
  const first = text.split("\n")[0];
  return first.length > 200 ? first.slice(0, 197) + "..." : first;
}

/** `--output json`: every event as one line of JSON on stdout, keys in snake_case. */
export function jsonRenderer(out: Write): (event: RunEvent) => void {
  return (event) => {
    if (event.type === "task_finished") {
      const r = event.result;
      out(
        JSON.stringify({
          type: event.type,
          id: r.id,
          task: event.task,
          group: event.group,
          status: r.status,
          attempts: r.attempts,
          duration_ms: Math.round(r.durationMs * 10) / 10,
          where: r.where,
          error: r.error,
          message: r.message,
          outputs: r.outputs,
          exit: r.exit,
          transfer: r.transfer && {
            sent_bytes: r.transfer.sentBytes,
            received_bytes: r.transfer.receivedBytes,
          },
        }) + "\n",
      );
      return;
    }
    out(JSON.stringify(event) + "\n");
  };
}

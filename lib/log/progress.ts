/**
 * The live part of the terminal view: one line per running task (state, elapsed
 * time, where it runs, its latest output) and a status line, redrawn in place
 * below the lines that scroll. Lines are cut to the terminal's width so that none
 * wraps: redrawing moves the cursor up by exactly the number of lines drawn.
 */
import { formatDuration } from "../model/mod.ts";

export interface Terminal {
  /** Columns and rows; a pseudo-terminal may report 0, then 80×24 is assumed. */
  size(): { columns: number; rows: number };
  now(): number;
}

interface Running {
  label: string;
  where: string;
  attempt: number;
  started: number;
  latest: string;
}

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
const DIM = "\x1b[2m";
const RESET = "\x1b[0m";

export class LiveRegion {
  #terminal: Terminal;
  #color: boolean;
  #running = new Map<string, Running>();
  #drawn = 0;
  #frame = 0;
  #started: number;
  #planned = 0;
  #finished = 0;

  constructor(terminal: Terminal, color: boolean) {
    this.#terminal = terminal;
    this.#color = color;
    this.#started = terminal.now();
  }

  planned(count: number): void {
    this.#planned = count;
    this.#started = this.#terminal.now();
  }

  started(id: string, task: { label: string; where: string; attempt: number }): void {
    const previous = this.#running.get(id);
    this.#running.set(id, {
      ...task,
      // A retry keeps the task's line and its clock: the time is the task's, not the attempt's.
      started: previous?.started ?? this.#terminal.now(),
      latest: previous?.latest ?? "",
    });
  }

  output(id: string, line: string): void {
    const task = this.#running.get(id);
    // Tabs, carriage returns and other controls would move the cursor: spaces instead.
    // deno-lint-ignore no-control-regex
    const plain = line.replace(ANSI, "").replace(/[\x00-\x1f\x7f]+/g, " ").trim();
    if (task && plain !== "") task.latest = plain;
  }

  finished(id: string): void {
    if (this.#running.delete(id)) this.#finished++;
  }

  /** Moves the cursor back to where the region began and clears it. */
  clear(): string {
    const text = this.#drawn > 0 ? `\x1b[${this.#drawn}F\x1b[J` : "";
    this.#drawn = 0;
    return text;
  }

  /** The region's lines, each ending in a newline; remembers how many to clear next time. */
  draw(): string {
    const { columns, rows } = this.#size();
    const width = columns - 1;
    const now = this.#terminal.now();
    const spinner = SPINNER[this.#frame++ % SPINNER.length];
    const tasks = [...this.#running.values()];
    // Leave the status line and a little scrollback visible on a small terminal.
    const room = Math.max(1, rows - 3);
    const shown = tasks.length > room ? tasks.slice(0, room - 1) : tasks;
    const lines = shown.map((task) => {
      const retry = task.attempt > 1 ? ` (attempt ${task.attempt})` : "";
      const where = task.where === "local" ? "" : ` on ${task.where}`;
      const head = `${spinner} ${task.label} running ${
        formatDuration(now - task.started)
      }${where}${retry}`;
      return this.#withLatest(head, task.latest, width);
    });
    if (shown.length < tasks.length) {
      lines.push(cut(`  … and ${tasks.length - shown.length} more running`, width));
    }
    const waiting = Math.max(0, this.#planned - this.#finished - tasks.length);
    lines.push(this.#dim(cut(
      `${tasks.length} running · ${this.#finished} done · ${waiting} waiting · ${
        formatDuration(now - this.#started)
      }`,
      width,
    )));
    this.#drawn = lines.length;
    return lines.map((line) => line + "\n").join("");
  }

  #withLatest(head: string, latest: string, width: number): string {
    const line = cut(head, width);
    const room = width - columns(line) - 3;
    if (latest === "" || room < 8) return line;
    return `${line}${this.#dim(` › ${cut(latest, room)}`)}`;
  }

  #dim(text: string): string {
    return this.#color ? `${DIM}${text}${RESET}` : text;
  }

  #size(): { columns: number; rows: number } {
    const { columns, rows } = this.#terminal.size();
    return { columns: columns > 10 ? columns : 80, rows: rows > 3 ? rows : 24 };
  }
}

/** Cuts plain text to `width` terminal columns, marking the cut. */
function cut(text: string, width: number): string {
  if (columns(text) <= width) return text;
  let used = 0;
  let result = "";
  for (const char of text) {
    used += columnsOf(char);
    if (used > width - 1) break;
    result += char;
  }
  return result + "…";
}

function columns(text: string): number {
  let total = 0;
  for (const char of text) total += columnsOf(char);
  return total;
}

/** East Asian wide characters and emoji take two columns; close enough to never wrap. */
function columnsOf(char: string): number {
  const code = char.codePointAt(0)!;
  if (code < 0x1100) return 1;
  const wide = (code <= 0x115f) || (code >= 0x2e80 && code <= 0xa4cf) ||
    (code >= 0xac00 && code <= 0xd7a3) || (code >= 0xf900 && code <= 0xfaff) ||
    (code >= 0xfe30 && code <= 0xfe4f) || (code >= 0xff00 && code <= 0xff60) ||
    (code >= 0xffe0 && code <= 0xffe6) || (code >= 0x1f300 && code <= 0x1faff) ||
    (code >= 0x20000 && code <= 0x3fffd);
  return wide ? 2 : 1;
}

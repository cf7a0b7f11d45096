/** Where the CLI writes, and whether it may use colours. */
import { fdWriter, type Terminal, type Write } from "../log/mod.ts";

export interface Io {
  out: Write;
  err: Write;
  /** Colours on stdout. */
  color: boolean;
  cwd: string;
  /** Set when stdout and stderr are a terminal: `run` then shows its live view. */
  terminal?: Terminal;
}

export function defaultIo(): Io {
  const tty = Deno.stdout.isTerminal();
  const noColor = (Deno.env.get("NO_COLOR") ?? "") !== "";
  return {
    out: fdWriter(Deno.stdout),
    // Colours follow each stream: `2> file` gets none, even when stdout is a terminal.
    err: Deno.stderr.isTerminal() && !noColor
      ? fdWriter(Deno.stderr)
      : plain(fdWriter(Deno.stderr)),
    color: tty && !noColor,
    cwd: Deno.cwd(),
    terminal: tty && Deno.stderr.isTerminal() && Deno.env.get("TERM") !== "dumb"
      ? { size: consoleSize, now: () => performance.now() }
      : undefined,
  };
}

function consoleSize(): { columns: number; rows: number } {
  try {
    return Deno.consoleSize();
  } catch {
    return { columns: 0, rows: 0 };
  }
}

/** Drops colour codes (SGR sequences) from what `write` is given. */
function plain(write: Write): Write {
  // deno-lint-ignore no-control-regex
  return (text) => write(text.replace(/\x1b\[[0-9;]*m/g, ""));
}

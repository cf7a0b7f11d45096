/** Where the CLI writes, and whether it may use colours. */
import { fdWriter, type Write } from "../log/mod.ts";

export interface Io {
  out: Write;
  err: Write;
  /** Colours on stdout. */
  color: boolean;
  cwd: string;
}

export function defaultIo(): Io {
  const tty = Deno.stdout.isTerminal();
  const noColor = (Deno.env.get("NO_COLOR") ?? "") !== "";
  return {
    out: fdWriter(Deno.stdout),
    err: fdWriter(Deno.stderr),
    color: tty && !noColor,
    cwd: Deno.cwd(),
  };
}

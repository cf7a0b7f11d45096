import { ExitCode, SlothError } from "../errors.ts";
import type { Write } from "../log/mod.ts";

/** Prints an error the way people can act on it, and returns the exit code to use. */
export function reportError(error: unknown, err: Write): number {
  if (error instanceof SlothError) {
    let text = `error: ${error.message}\n`;
    if (error.detail) text += indent(error.detail) + "\n";
    if (error.hint) text += `hint: ${error.hint}\n`;
    err(text);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  err(`error: internal error: ${message}\n`);
  if (Deno.env.get("SLOTH_DEBUG") && error instanceof Error && error.stack) {
    err(error.stack + "\n");
  }
  return ExitCode.taskFailed;
}

function indent(text: string): string {
  return text.split("\n").map((line) => `  ${line}`).join("\n");
}

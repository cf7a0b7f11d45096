/**
 * A Lua worker's console, turned into log messages of the task. wasmoon's own
 * warnings and whatever Lua's C code writes to stdout or stderr (its runtime
 * prints those with console.log and console.error) would otherwise reach the
 * process's own output: an agent's log, where a task could write lines that
 * look like the agent's, or a worker process's protocol channel.
 */
export function redirectConsole(sink: (level: "info" | "warn", message: string) => void): void {
  const format = (args: unknown[]) =>
    args.map((a) => typeof a === "string" ? a : Deno.inspect(a)).join(" ");
  const target = globalThis.console as unknown as Record<string, unknown>;
  for (const name of Object.keys(target)) {
    if (typeof target[name] !== "function") continue;
    const level = /^(warn|error|trace|assert)$/.test(name) ? "warn" : "info";
    target[name] = name === "assert"
      ? (condition: unknown, ...args: unknown[]) => {
        if (!condition) sink(level, `Assertion failed: ${format(args)}`);
      }
      : (...args: unknown[]) => sink(level, format(args));
  }
}

/**
 * Workflow source files as the Lua side sees them: display names (what errors
 * show), the one accepted fix-up of the upstream docs' header, and the source
 * lines around an error.
 */

const MODERN_DSLS = /^([ \t]*)Modern DSLs([ \t]*=[ \t]*\{)/m;

/**
 * The upstream docs open their examples with `Modern DSLs = {`, a rename of
 * `TaskDefinitions` that is not valid Lua. Exactly that header is read as
 * `TaskDefinitions = {`; line numbers stay the same.
 */
/**
 * A first line starting with `#!` (`#!/usr/bin/env sloth-runner` atop a .sloth file)
 * is skipped, as standard Lua skips it; the line stays, empty, so line numbers hold.
 */
export function skipShebang(source: string): string {
  if (!source.startsWith("#!")) return source;
  const end = source.indexOf("\n");
  return end < 0 ? "" : source.slice(end);
}

export function fixModernDsls(source: string): { source: string; line?: number } {
  const match = MODERN_DSLS.exec(source);
  if (!match) return { source };
  const line = source.slice(0, match.index).split("\n").length;
  return { source: source.replace(MODERN_DSLS, "$1TaskDefinitions$2"), line };
}

/** `path` relative to `cwd` when it lies under it, so errors can be clicked. */
export function displayName(path: string, cwd: string): string {
  const base = cwd.endsWith("/") ? cwd : cwd + "/";
  return path.startsWith(base) ? path.slice(base.length) : path;
}

/** `file:line: message` as Lua reports it, split. */
export function parseLuaLocation(
  message: string,
): { file: string; line: number; text: string } | undefined {
  const match = /^(.+?):(\d+): ([\s\S]*)$/.exec(message);
  if (!match) return undefined;
  return { file: match[1], line: Number(match[2]), text: match[3] };
}

/** Two lines of source either side of `line`, numbered, the line itself marked. */
export function sourceContext(source: string, line: number): string {
  const lines = source.split("\n");
  if (line < 1 || line > lines.length) return "";
  const first = Math.max(1, line - 2);
  const last = Math.min(lines.length, line + 2);
  const width = String(last).length;
  const out: string[] = [];
  for (let n = first; n <= last; n++) {
    const marker = n === line ? ">" : " ";
    out.push(`${marker} ${String(n).padStart(width)} | ${lines[n - 1]}`);
  }
  return out.join("\n");
}

/** Keeps the first line of a Lua error and drops wasmoon's and Lua's traceback. */
export function cleanLuaError(message: string): string {
  const cut = message.indexOf("\nstack traceback:");
  const text = cut >= 0 ? message.slice(0, cut) : message;
  return text.replace(/^(Error: )+/, "").trim();
}

/**
 * Lua tables keep no order, but people read a workflow top to bottom. Keyed
 * groups and tasks are put in the order their names first appear as a key
 * (`name = {` or `["name"] = {`) in the main file; names not found keep their
 * relative order after those that are.
 */
export function sortBySource<T>(items: T[], nameOf: (item: T) => string, source: string): T[] {
  const position = (name: string) => {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const keyAt = (value: string) =>
      new RegExp(
        `(?:^|[^\\w.])(?:${escaped}|\\[\\s*["']${escaped}["']\\s*\\])\\s*=${value}`,
        "m",
      ).exec(source)?.index;
    // `key = {` first; then `key = anything` (a builder, a variable), which is less sure.
    return keyAt("\\s*\\{") ?? keyAt("(?!=)") ?? Number.MAX_SAFE_INTEGER;
  };
  const keyed = items.map((item, index) => ({ item, index, at: position(nameOf(item)) }));
  keyed.sort((a, b) => a.at - b.at || a.index - b.index);
  return keyed.map((entry) => entry.item);
}

/** `path` made absolute against `base`, with `.` and `..` resolved. */
export function resolvePath(base: string, path: string): string {
  const out: string[] = [];
  for (const part of (path.startsWith("/") ? path : `${base}/${path}`).split("/")) {
    if (part === "..") out.pop();
    else if (part !== "." && part !== "") out.push(part);
  }
  return "/" + out.join("/");
}

export function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

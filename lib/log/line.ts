/**
 * Text for a line of a log that others read and parse (the agent's own log),
 * when part of it came from someone else (a task's name, its error message).
 */

/**
 * Control characters (C0, DEL, C1), Unicode line and paragraph separators and
 * bidirectional overrides: what could end a line early, move the cursor or make
 * the text read differently than it is.
 */
// deno-lint-ignore no-control-regex -- control characters are what it looks for
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\" };

/**
 * One line: every unsafe character escaped (`\n`, `\r`, `\t`, `\u001b`, ...),
 * backslashes doubled so an escape cannot be faked, and at most `maxChars`
 * characters kept (then `… (N more characters)`).
 */
export function oneLine(text: string, maxChars = 4096): string {
  const kept = text.length > maxChars ? text.slice(0, maxChars) : text;
  const escaped = kept.replace(/\\/g, "\\\\").replace(
    UNSAFE,
    (c) => NAMED[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  if (kept === text) return escaped;
  const more = text.length - maxChars;
  return `${escaped}… (${more} more character${more === 1 ? "" : "s"})`;
}

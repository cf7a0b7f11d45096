/**
 * A task's `artifacts`: paths or patterns inside its workdir that it must leave
 * behind when it succeeds. Patterns take `*` and `?` within one path segment and
 * `**` across segments; a pattern must match at least one file or directory.
 */
import { join } from "node:path";

/** Entries looked at for one pattern at most: a pattern over a huge tree stops there. */
const WALK_LIMIT = 100_000;

/** The patterns that match nothing in `workdir`. */
export async function missingArtifacts(workdir: string, patterns: string[]): Promise<string[]> {
  const missing: string[] = [];
  const root = await Deno.realPath(workdir).catch(() => workdir);
  for (const pattern of patterns) {
    if (!await matchesSomething(workdir, root, pattern)) missing.push(pattern);
  }
  return missing;
}

/**
 * Whether `path` is really inside `root`: a link in the way that leads out counts as
 * nothing there (on an agent the patterns are a master's, and must not probe the host).
 */
async function inside(root: string, path: string): Promise<boolean> {
  const real = await Deno.realPath(path).catch(() => undefined);
  return real !== undefined && (real === root || real.startsWith(`${root}/`));
}

async function matchesSomething(workdir: string, root: string, pattern: string): Promise<boolean> {
  const segments = pattern.split("/").filter((s) => s !== "" && s !== ".");
  const literal: string[] = [];
  while (literal.length < segments.length && !/[*?]/.test(segments[literal.length])) {
    literal.push(segments[literal.length]);
  }
  const base = join(workdir, ...literal);
  if (literal.length === segments.length) return await exists(base) && await inside(root, base);
  if (!await inside(root, base)) return false;
  const rest = patternRegExp(segments.slice(literal.length).join("/"));
  let seen = 0;
  const walk = async (dir: string, rel: string): Promise<boolean> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return false;
    }
    for (const entry of entries) {
      if (++seen > WALK_LIMIT) return false;
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (rest.test(path)) return true;
      if (entry.isDirectory && await walk(join(dir, entry.name), path)) return true;
    }
    return false;
  };
  return await walk(base, "");
}

function patternRegExp(pattern: string): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*" && pattern[i + 1] === "*") {
      // "**/" matches no directory too: dist/**/x.txt takes dist/x.txt.
      source += pattern[i + 2] === "/" ? "(?:.*/)?" : ".*";
      i += pattern[i + 2] === "/" ? 2 : 1;
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else source += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Paths inside a workspace. Everything that arrives in an archive is checked
 * here before it touches the disk: one place to get right.
 */

export class SyncError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SyncError";
  }
}

const MAX_PATH = 4096;
const MAX_COMPONENT = 255;
const encoder = new TextEncoder();

/**
 * Whether `text` is more than `limit` bytes of UTF-8. Short text is not encoded:
 * a UTF-16 code unit is at most 3 bytes of UTF-8 (a surrogate pair, two units, is
 * 4), and encoding every path of a 10,000-entry manifest cost more than all its
 * other checks.
 */
function overBytes(text: string, limit: number): boolean {
  return text.length * 3 > limit && encoder.encode(text).length > limit;
}

/**
 * A relative, `/`-separated path with no `.`/`..`/empty components, or a
 * `SyncError` saying what is wrong with it. A leading `./` is accepted.
 */
export function checkRelativePath(raw: string): string {
  if (raw.includes("\0")) {
    throw new SyncError(`refused ${JSON.stringify(raw)}: it contains a NUL byte`);
  }
  let path = raw;
  while (path.startsWith("./")) path = path.slice(2);
  if (path.endsWith("/")) path = path.slice(0, -1);
  if (path === "" || path === ".") throw new SyncError(`refused an entry with an empty path`);
  if (path.startsWith("/")) throw new SyncError(`refused "${raw}": absolute paths are not allowed`);
  if (overBytes(path, MAX_PATH)) {
    throw new SyncError(`refused a path of more than ${MAX_PATH} bytes`);
  }
  for (const part of path.split("/")) {
    if (part === "..") throw new SyncError(`refused "${raw}": it climbs out with ".."`);
    if (part === "" || part === ".") {
      throw new SyncError(`refused "${raw}": empty or "." component`);
    }
    if (overBytes(part, MAX_COMPONENT)) {
      throw new SyncError(`refused "${raw}": a name longer than ${MAX_COMPONENT} bytes`);
    }
  }
  return path;
}

/**
 * Whether a symlink at `path` (relative to the root) with this `target` stays
 * inside the root. The target is resolved as text, which is what the kernel
 * does only when nothing it passes through is itself a symlink: so a target
 * that passes through a symlink (as `linkTarget` knows them) does not count as
 * inside, whatever the text says. One that ends at a symlink counts when that
 * symlink does (a chain such as `lib.so -> lib.so.1 -> lib.so.1.2`). Absolute
 * targets never count: they would mean something else on the other machine.
 */
export function symlinkStaysInside(
  path: string,
  target: string,
  linkTarget: (path: string) => string | undefined,
  depth = 0,
): boolean {
  if (depth > 16) return false;
  if (target === "" || target.startsWith("/") || target.includes("\0")) return false;
  const parts = path.split("/").slice(0, -1);
  const steps = target.split("/").filter((part) => part !== "." && part !== "");
  for (const [i, part] of steps.entries()) {
    if (part === "..") {
      if (parts.length === 0) return false;
      parts.pop();
      continue;
    }
    parts.push(part);
    const next = linkTarget(parts.join("/"));
    if (next === undefined) continue;
    if (i < steps.length - 1) return false;
    return symlinkStaysInside(parts.join("/"), next, linkTarget, depth + 1);
  }
  return true;
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/** The target of the symlink at `path`, or undefined when it is not one. */
export function symlinkTargetOnDisk(root: string, path: string): string | undefined {
  try {
    return Deno.readLinkSync(`${root}/${path}`);
  } catch {
    return undefined;
  }
}

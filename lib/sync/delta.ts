/**
 * Manifest deltas: a master that sent a directory's manifest to an agent before
 * sends, the next time, only the entries that differ from that one (the base)
 * and the paths gone from it, with the SHA-256 of the whole manifest they make.
 * The agent rebuilds the whole from the base it kept, checks the digest, and
 * checks the result as it would a manifest sent whole (`checkManifest`): a
 * delta can describe nothing a whole manifest could not.
 *
 * A base is named by the digest of its content, so a master and an agent agree
 * on one only if they hold the same list; whatever either side kept (another
 * agent, another token, a restart) can at worst name a base the other lacks,
 * and then the manifest is sent whole.
 */
import { createHash } from "node:crypto";
import { type ManifestEntry, userCacheHome } from "./manifest.ts";

/** An entry as both sides see it once it has crossed the wire (what the digest covers). */
function line(e: ManifestEntry): string {
  return JSON.stringify([
    e.path,
    e.type,
    e.mode,
    e.size,
    e.type === "file" ? e.digest ?? "" : "",
    e.type === "symlink" ? e.target ?? "" : "",
    Math.max(0, Math.round(e.mtimeMs)),
  ]);
}

/** SHA-256 of the lines, each ended by a newline; hashed in one piece (one call per line cost more). */
function digestOfLines(lines: readonly string[]): string {
  return createHash("sha256").update(lines.length ? `${lines.join("\n")}\n` : "").digest("hex");
}

/** A manifest as a base for deltas: its entries' lines (what the digest covers), and the digest. */
export interface Described {
  digest: string;
  lines: string[];
}

/** Hex SHA-256 of a manifest, entry by entry in its order, with the lines hashed. */
export function describeManifest(entries: readonly ManifestEntry[]): Described {
  const lines = entries.map(line);
  return { digest: digestOfLines(lines), lines };
}

/**
 * A walk's order: by path component, each compared as JavaScript sorts strings
 * (so a directory comes right before what it holds: "a", "a/b", "a-c").
 */
export function comparePaths(a: string, b: string): number {
  const x = a.split("/");
  const y = b.split("/");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return x.length - y.length;
}

export interface ManifestDelta extends Described {
  /** Entries that are new or differ from the base's, in the manifest's order. */
  changed: ManifestEntry[];
  /** Paths of the base that are gone. */
  deleted: string[];
}

/** What `entries` changed from `base` (its paths and lines), and the whole's description. */
export function diffManifest(
  base: { paths: readonly string[]; lines: readonly string[] },
  entries: readonly ManifestEntry[],
): ManifestDelta {
  const before = new Map<string, string>();
  base.paths.forEach((path, i) => before.set(path, base.lines[i]));
  const changed: ManifestEntry[] = [];
  const { digest, lines } = describeManifest(entries);
  entries.forEach((e, i) => {
    if (before.get(e.path) !== lines[i]) changed.push(e);
    before.delete(e.path);
  });
  return { changed, deleted: [...before.keys()], digest, lines };
}

/** What an agent keeps of a manifest it accepted. */
export interface Base extends Described {
  entries: ManifestEntry[];
}

/**
 * The whole manifest that `changed` and `deleted` make of `base`, in a walk's
 * order, or undefined if they do not fit it (a path deleted that it lacks, or
 * one named twice) or the result's digest is not `digest`: either way the
 * caller asks for the manifest whole. Not checked otherwise: see `checkManifest`.
 */
export function applyManifestDelta(
  base: Base,
  delta: { changed: readonly ManifestEntry[]; deleted: readonly string[]; digest: string },
): Base | undefined {
  const index = new Map<string, number>();
  base.entries.forEach((e, i) => index.set(e.path, i));
  const out: ([ManifestEntry, string] | undefined)[] = base.entries.map((e, i) => [
    e,
    base.lines[i],
  ]);
  const named = new Set<string>();
  for (const path of delta.deleted) {
    const i = index.get(path);
    if (i === undefined || named.has(path)) return undefined;
    named.add(path);
    out[i] = undefined;
  }
  const added: [ManifestEntry, string][] = [];
  for (const e of delta.changed) {
    if (named.has(e.path)) return undefined;
    named.add(e.path);
    const i = index.get(e.path);
    if (i === undefined) added.push([e, line(e)]);
    else out[i] = [e, line(e)];
  }
  const kept = out.filter((e) => e !== undefined);
  const whole = added.length === 0
    ? kept
    : merge(kept, added.sort((a, b) => comparePaths(a[0].path, b[0].path)));
  const lines = whole.map(([, l]) => l);
  const digest = digestOfLines(lines);
  if (digest !== delta.digest) return undefined;
  return { digest, entries: whole.map(([e]) => e), lines };
}

/** Two lists in a walk's order, as one. */
function merge<T extends [ManifestEntry, string]>(a: T[], b: T[]): T[] {
  const out: T[] = [];
  let i = 0;
  for (const e of b) {
    // Binary search: few are added to many.
    let lo = i, hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (comparePaths(a[mid][0].path, e[0].path) < 0) lo = mid + 1;
      else hi = mid;
    }
    for (; i < lo; i++) out.push(a[i]);
    out.push(e);
  }
  for (; i < a.length; i++) out.push(a[i]);
  return out;
}

/** What a master keeps of a manifest it sent: each entry's path and line, and the digest. */
export interface Sent {
  digest: string;
  paths: string[];
  lines: string[];
}

/**
 * What a master last sent each agent for a directory, so that it can send a
 * delta next time: one file per directory and agent under the user's cache
 * directory, beside the digest cache (manifest.ts). A file that cannot be read
 * is no base; one that lies (edited by hand) names a digest the agent does not
 * hold, or makes a manifest whose digest is not the one sent, and the agent
 * then asks for the manifest whole.
 */
export class SentManifests {
  #dir: string;
  #known = new Map<string, Sent | null>();

  /** `cacheHome`: instead of the user's cache directory (`XDG_CACHE_HOME`, else ~/.cache). */
  constructor(options: { cacheHome?: string } = {}) {
    this.#dir = `${options.cacheHome ?? userCacheHome()}/sloth-runner/sent`;
  }

  #file(agent: string, workdir: string): string {
    const key = createHash("sha256").update(`${agent}\0${workdir}`).digest("hex").slice(0, 32);
    return `${this.#dir}/${key}.json`;
  }

  /** The manifest last sent to `agent` (its address and token, say) for `workdir`. */
  get(agent: string, workdir: string): Sent | undefined {
    const file = this.#file(agent, workdir);
    if (!this.#known.has(file)) {
      let found: Sent | null = null;
      try {
        const saved = JSON.parse(Deno.readTextFileSync(file));
        if (
          saved?.agent === agent && saved.workdir === workdir &&
          typeof saved.digest === "string" && Array.isArray(saved.paths) &&
          Array.isArray(saved.lines) && saved.paths.length === saved.lines.length
        ) {
          found = { digest: saved.digest, paths: saved.paths, lines: saved.lines };
        }
      } catch {
        // None yet, or unreadable: the manifest goes whole.
      }
      this.#known.set(file, found);
    }
    return this.#known.get(file) ?? undefined;
  }

  /** Remembers what `agent` now holds for `workdir`: it accepted this manifest. */
  set(agent: string, workdir: string, sent: Sent): void {
    const file = this.#file(agent, workdir);
    if (this.#known.get(file)?.digest === sent.digest) return;
    this.#known.set(file, sent);
    try {
      Deno.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
      const temp = `${file}.${crypto.randomUUID()}.tmp`;
      Deno.writeTextFileSync(temp, JSON.stringify({ agent, workdir, ...sent }), { mode: 0o600 });
      Deno.renameSync(temp, file);
    } catch {
      // Not remembered: the next run sends the manifest whole.
    }
  }

  /** Forgets it (the agent did not hold it). */
  forget(agent: string, workdir: string): void {
    const file = this.#file(agent, workdir);
    this.#known.set(file, null);
    try {
      Deno.removeSync(file);
    } catch {
      // Not there.
    }
  }
}

/**
 * The manifests an agent last accepted, per kept workspace key: the bases of
 * the deltas its masters send. In memory only (a restarted agent has none, and
 * asks for manifests whole), at most `maxKeys` of them and `maxEntries` entries
 * in all; the least recently used go first.
 */
export class ManifestBases {
  #bases = new Map<string, Base>();
  #entries = 0;
  #max: { keys: number; entries: number };

  constructor(max: { keys: number; entries: number }) {
    this.#max = max;
  }

  get(key: string, digest: string): Base | undefined {
    const base = this.#bases.get(key);
    if (!base || base.digest !== digest) return undefined;
    this.#bases.delete(key);
    this.#bases.set(key, base);
    return base;
  }

  set(key: string, base: Base): void {
    this.delete(key);
    if (base.entries.length > this.#max.entries) return;
    this.#bases.set(key, base);
    this.#entries += base.entries.length;
    for (const [old, was] of this.#bases) {
      if (this.#bases.size <= this.#max.keys && this.#entries <= this.#max.entries) break;
      this.#bases.delete(old);
      this.#entries -= was.entries.length;
    }
  }

  delete(key: string): void {
    const base = this.#bases.get(key);
    if (!base) return;
    this.#bases.delete(key);
    this.#entries -= base.entries.length;
  }
}

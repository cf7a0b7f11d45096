/**
 * The agent's half of a workspace exchange: take the master's manifest, make
 * the workspace match it (asking only for content it lacks), and, after the
 * task, send back what changed: new content as tar, known content as copies.
 */
import { createHash } from "node:crypto";
import { lchownSync } from "node:fs";
import { handOverJob, taskUser } from "../exec/mod.ts";
import { CHUNK_BYTES, type IncomingJob, ProtocolError, type WireEntry } from "../rpc/mod.ts";
import {
  applyManifestDelta,
  checkManifest,
  describeManifest,
  type DiskBudget,
  fillIn,
  finishDirectories,
  footprint,
  gunzip,
  gzip,
  hashFile,
  isNoSpace,
  type Limits,
  type ManifestBases,
  type ManifestEntry,
  NoSpaceError,
  packEntries,
  rechunk,
  reconcile,
  SyncError,
  tarBound,
  unpack,
  verifyKept,
  type WorkspaceDiff,
  type WorkspaceState,
  yieldNow,
} from "../sync/mod.ts";

const NEED_BATCH = 10_000;

export function fromWire(e: WireEntry): ManifestEntry {
  return {
    path: e.path,
    type: e.type,
    mode: e.mode,
    size: e.size,
    mtimeMs: e.mtime_ms,
    digest: e.type === "file" ? e.sha256 : undefined,
    target: e.type === "symlink" ? e.target : undefined,
  };
}

/**
 * Reads the manifest messages that follow `start`. A master may send a delta
 * against a manifest this agent accepted for the same workspace `key` before
 * (delta.ts): rebuilt from the base kept in `bases`, it is checked as a whole
 * one is; if the base is not there (another agent, a restart) or the digest of
 * what it makes is not the one sent, the manifest is asked for whole.
 */
export async function receiveManifest(
  job: IncomingJob,
  limits: Limits,
  options: { bases?: ManifestBases; key?: string } = {},
): Promise<Map<string, ManifestEntry>> {
  const { bases, key } = options;
  const baseDigest = job.start.manifest_base ?? "";
  let sent = await readManifest(job, limits, baseDigest !== "");
  if (baseDigest !== "") {
    const base = key ? bases?.get(key, baseDigest) : undefined;
    const whole = base && applyManifestDelta(base, sent);
    if (whole) {
      const checked = checkManifest(whole.entries, limits);
      bases!.set(key!, whole);
      return checked;
    }
    await job.send({ need: { paths: [], whole_manifest: true } });
    sent = await readManifest(job, limits, false);
  }
  const checked = checkManifest(sent.changed, limits);
  if (key && bases) bases.set(key, { ...describeManifest(sent.changed), entries: sent.changed });
  return checked;
}

/** The manifest messages up to their end: all entries, or a delta's (`delta`). */
async function readManifest(
  job: IncomingJob,
  limits: Limits,
  delta: boolean,
): Promise<{ changed: ManifestEntry[]; deleted: string[]; digest: string }> {
  const entries: ManifestEntry[] = [];
  while (true) {
    const message = await job.next();
    if ("manifest" in message) {
      for (const e of message.manifest.entries) entries.push(fromWire(e));
      if (entries.length > limits.maxEntries) {
        throw new SyncError(`refused the workspace: more than ${limits.maxEntries} entries`);
      }
    } else if ("manifest_end" in message) {
      const end = message.manifest_end;
      if (end.entries !== entries.length) {
        throw new ProtocolError("invalid", "the manifest ended with a different count");
      }
      const deleted = end.deleted ?? [];
      const digest = end.sha256 ?? "";
      if (delta ? digest === "" : deleted.length > 0 || digest !== "") {
        throw new ProtocolError(
          "invalid",
          delta
            ? "a manifest delta ended without the digest of the whole"
            : "a whole manifest ended as a delta would",
        );
      }
      if (deleted.length > limits.maxEntries) {
        throw new SyncError(`refused the workspace: more than ${limits.maxEntries} entries`);
      }
      return { changed: entries, deleted, digest };
    } else {
      throw new ProtocolError("invalid", "expected the manifest");
    }
  }
}

/** Free bytes kept beyond what a step writes: directories, the state file, the task's TMPDIR. */
const HEADROOM = 1024 * 1024;

/**
 * Makes `ws` match the manifest: what is kept from an earlier run stays, content
 * the store has is copied, and only the rest is asked of the master, written in
 * place as it arrives and checked against its digest. Returns what was fetched
 * (see `storeFetched`).
 *
 * The disk: before asking for anything, room is made for all the content still
 * to write (evicting what the agent keeps, least recently used first); if it
 * cannot be had, a `NoSpaceError` says how much is free and needed, and nothing
 * is asked for. While content arrives, room is made again before each chunk
 * (other jobs write too). A step that still meets a full disk is run once more
 * after making room, except receiving: the master sends its content once, so a
 * full disk there fails the job with a `NoSpaceError`.
 */
export async function materialize(options: {
  job: IncomingJob;
  ws: string;
  manifest: Map<string, ManifestEntry>;
  state: WorkspaceState;
  budget: DiskBudget;
  limits: Limits;
  compressed: boolean;
  /** Named in a `NoSpaceError` (the agent's work root). */
  where: string;
}): Promise<
  { fetchedBytes: number; fetched: ManifestEntry[]; written: string[]; ours: string[] }
> {
  const { job, ws, manifest, state, budget } = options;
  const blobs = budget.blobs;
  const { fill, missing, touched, ours } = await budget.retryOnFullAsync(() =>
    reconcile(ws, manifest, state, blobs, { maxFileBytes: options.limits.maxFileBytes })
  );
  const needed = fill.reduce((sum, e) => sum + footprint(e.size), 0);
  const noSpace = () =>
    new NoSpaceError(options.where, { freeBytes: budget.evictAll(), neededBytes: needed });
  const before = budget.freeBytes();
  if (before !== undefined && before + budget.evictableBytes() < needed) {
    // Evicting everything would not be enough: nothing is evicted for a job that cannot run.
    throw new NoSpaceError(options.where, { freeBytes: before, neededBytes: needed });
  }
  // Room for some headroom too, if it can be had; the job fails only if its content cannot fit.
  const free = budget.makeRoom(needed + HEADROOM);
  if (free !== undefined && free < needed) throw noSpace();

  for (let i = 0; i < missing.length; i += NEED_BATCH) {
    await job.send({ need: { paths: missing.slice(i, i + NEED_BATCH).map((e) => e.path) } });
  }
  await job.send({ need_end: {} });

  const wanted = new Map(missing.map((e) => [e.path, e]));
  let received = 0;
  // Until making room finds nothing more to evict (then the disk decides).
  let evicting = true;
  const stream = async function* () {
    while (true) {
      const message = await job.next();
      if ("workspace_chunk" in message) {
        received += message.workspace_chunk.length;
        if (evicting) {
          const room = message.workspace_chunk.length + HEADROOM;
          const free = budget.makeRoom(room);
          evicting = free !== undefined && (free >= room || budget.evictableBytes() > 0);
        }
        yield message.workspace_chunk;
      } else if ("workspace_end" in message) {
        if (message.workspace_end.bytes !== received) {
          throw new ProtocolError(
            "invalid",
            `the workspace ended after ${received} of ${message.workspace_end.bytes} bytes`,
          );
        }
        return;
      } else {
        throw new ProtocolError("invalid", "expected workspace content");
      }
    }
  };
  // Straight into place: `reconcile` made the directories and cleared these paths.
  const content = missing.reduce((sum, e) => sum + e.size, 0);
  const tar = options.compressed ? gunzip(stream(), tarBound(content, missing.length)) : stream();
  let arrived;
  try {
    arrived = await unpack(ws, tar, { mode: "fresh", limits: options.limits });
  } catch (error) {
    if (isNoSpace(error)) throw noSpace();
    throw error;
  }
  for (const [path, entry] of arrived) {
    const asked = wanted.get(path);
    if (!asked || entry.type !== "file") {
      throw new SyncError(`refused "${path}": it was not asked for`);
    }
    if (entry.sha256 !== asked.digest) {
      throw new SyncError(
        `refused "${path}": its content does not match its digest (did it change while being sent?)`,
      );
    }
    wanted.delete(path);
  }
  if (wanted.size > 0) throw new SyncError(`the master did not send ${[...wanted.keys()][0]}`);
  try {
    await fillIn(ws, fill, new Set(arrived.keys()), state, blobs, {
      retryOnFull: (step, bytes) => budget.retryOnFullAsync(step, bytes + HEADROOM),
    });
    finishDirectories(ws, manifest);
  } catch (error) {
    if (isNoSpace(error)) throw noSpace();
    throw error;
  }
  return {
    fetchedBytes: received,
    fetched: missing,
    written: [...touched, ...fill.map((e) => e.path)],
    ours,
  };
}

/**
 * Gives a job's directory to the task user once its workspace is filled, as
 * `handOverJob` would, without walking the workspace a second time: in ws/, only
 * what may still be the agent's (`ours`: what it made there this job, and what
 * `reconcile`'s walk found still its own) is looked at; the rest is as the task
 * user left it. The same order and care as `handOverJob`: nothing followed
 * (`lchown`), deepest first, ws/ and then the job root (still the agent's 0700,
 * so no path here runs through a directory the task user could change) last.
 */
export function handOverFilled(jobRoot: string, ours: Iterable<string>): void {
  const user = taskUser();
  if (!user) return;
  for (const entry of Deno.readDirSync(jobRoot)) {
    if (entry.name !== "ws") handOverJob(`${jobRoot}/${entry.name}`);
  }
  const agent = Deno.uid();
  const give = (path: string) => {
    let info;
    try {
      info = Deno.lstatSync(path);
    } catch (error) {
      // Replaced by what came later (a file where a directory was): that is listed too.
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    if (info.uid === agent) lchownSync(path, user.uid, user.gid);
  };
  const depth = (path: string) => path.split("/").length;
  const paths = [...new Set(ours)].sort((a, b) => depth(b) - depth(a));
  for (const path of paths) give(`${jobRoot}/ws/${path}`);
  give(`${jobRoot}/ws`);
  give(jobRoot);
}

/**
 * After a job, off the master's clock, while its workspace stays on the shelf
 * (a job that takes it meanwhile stops this; its own reconcile then checks what
 * is left):
 * - content that was fetched goes into the store, for other directories' runs
 *   (this directory's next run finds it in its kept workspace), copied from the
 *   kept file and checked against its digest on the way. On a full disk, room is
 *   made (least recently used first) and the copy tried once more; if that fails
 *   too, the rest is not stored. The copies count as used just before `keptAt`,
 *   when the workspace they came from was kept: they repeat what it holds, so, of
 *   the two, they go first.
 * - files `markUnverified` marked are hashed again (the copy into the store
 *   does it for fetched ones); those that still match are trusted again, the
 *   others forgotten (their next run replaces them).
 */
export async function settleKept(
  budget: DiskBudget,
  key: string,
  options: {
    state: WorkspaceState;
    fetched: ManifestEntry[];
    keptAt: number;
    maxFileBytes: number;
  },
): Promise<void> {
  const { state } = options;
  const held = budget.shelf.hold(key);
  if (!held) return;
  const fetched = new Map(options.fetched.map((e) => [e.path, e]));
  let storing = true;
  let changed = false;
  let done = 0;
  for (const [path, known] of state) {
    const content = fetched.get(path);
    const store = storing && content !== undefined && content.digest === known.digest &&
      !budget.blobs.has(known.digest, known.size);
    if (!known.unverified && !store) continue;
    if (!budget.shelf.isHeld(key, held.handle)) return;
    const full = `${held.dir}/${path}`;
    let stored: Awaited<ReturnType<typeof budget.blobs.storeCopy>> | undefined;
    const checked = await verifyKept(full, known, {
      maxFileBytes: options.maxFileBytes,
      // Stored (or not), the copy into the store hashes the kept file on the way.
      hashed: store
        ? async (file) => {
          try {
            stored = await budget.retryOnFullAsync(
              () => budget.blobs.storeCopy(file, known, options.keptAt - 1),
              footprint(known.size) + HEADROOM,
            );
          } catch (error) {
            if (!isNoSpace(error)) throw error;
            storing = false;
            return await hashFile(file, { maxBytes: options.maxFileBytes });
          }
          return stored === "mismatch"
            ? undefined
            : stored === "stored"
            ? known.digest
            : await hashFile(file, { maxBytes: options.maxFileBytes });
        }
        : undefined,
    });
    if (!budget.shelf.isHeld(key, held.handle)) return;
    if (known.unverified || !checked) {
      if (checked) state.set(path, checked);
      else state.delete(path);
      changed = true;
    }
    // Within the limit as it fills, not only at the end.
    if (stored === "stored") budget.trim();
    // Let running jobs' streams move between files.
    if (++done % 32 === 0) await yieldNow();
  }
  if (changed) budget.shelf.saveState(key, held.handle, state);
  budget.trim();
}

/**
 * Sends what the task changed: new content as a tar stream, content the master
 * sent as copies, and the deleted paths.
 */
export async function sendChanges(
  job: IncomingJob,
  ws: string,
  manifest: Map<string, ManifestEntry>,
  { changed, deleted }: WorkspaceDiff,
  compressed: boolean,
): Promise<void> {
  const known = new Set<string>();
  for (const e of manifest.values()) if (e.digest) known.add(e.digest);
  const copies = changed.filter((e) => e.type === "file" && known.has(e.digest!));
  const sent = changed.filter((e) => !(e.type === "file" && known.has(e.digest!)));
  await job.send({
    changes_begin: {
      deleted,
      entries: sent.length,
      copies: copies.map((e) => ({ path: e.path, sha256: e.digest!, mode: e.mode })),
    },
  });
  const hash = createHash("sha256");
  let bytes = 0;
  const tar = packEntries(ws, sent);
  for await (const chunk of rechunk(compressed ? gzip(tar) : tar, CHUNK_BYTES)) {
    hash.update(chunk);
    bytes += chunk.length;
    await job.send({ changes_chunk: chunk });
  }
  await job.send({ changes_end: { bytes, sha256: hash.digest("hex") } });
}

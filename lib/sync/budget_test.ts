import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DiskBudget } from "./budget.ts";
import { footprint, isNoSpace, NoSpaceError } from "./disk.ts";
import { measureTree, type WorkspaceState } from "./workspace.ts";

const MB = 1024 * 1024;
const KEY_A = "a".repeat(32);
const KEY_B = "b".repeat(32);
const KEY_C = "c".repeat(32);

function digestOf(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** An agent home in a temp directory, and a place for workspaces and sources outside it. */
async function scratch() {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-budget-" }));
  return {
    home: `${dir}/home`,
    out: (name: string) => `${dir}/${name}`,
    [Symbol.asyncDispose]: async () => {
      await Deno.chmod(dir, 0o700);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Stores `text` in the budget's content store; its digest. */
async function store(budget: DiskBudget, source: string, text: string): Promise<string> {
  Deno.writeTextFileSync(source, text);
  const digest = digestOf(text);
  assert.equal(await budget.blobs.storeCopy(source, { digest, size: text.length }), "stored");
  return digest;
}

/** Makes a workspace of `files` at `ws` and keeps it on the shelf under `key`. */
function keepWorkspace(
  budget: DiskBudget,
  key: string,
  ws: string,
  files: Record<string, string>,
): string {
  Deno.mkdirSync(ws, { recursive: true });
  const state: WorkspaceState = new Map();
  for (const [path, text] of Object.entries(files)) {
    Deno.writeTextFileSync(`${ws}/${path}`, text);
    state.set(path, { size: text.length, mtimeMs: 0, mode: 0o644, digest: digestOf(text) });
  }
  const slot = budget.shelf.keep(key, ws, state);
  budget.shelf.measure(key);
  return slot;
}

/** A kept workspace as the shelf counts it: its tree, its state file and its size file. */
function keptBytes(home: string, key: string): number {
  const slot = `${home}/workspaces/${key}`;
  return measureTree(slot) + footprint(Deno.statSync(`${slot}.json`).size) +
    footprint(Deno.statSync(`${slot}.size`).size);
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Sets when a kept workspace was last kept (its state file's mtime), as a restart reads it. */
function keptAt(home: string, key: string, seconds: number): void {
  const when = new Date(seconds * 1000);
  Deno.utimeSync(`${home}/workspaces/${key}.json`, when, when);
}

/** Sets when stored content was last used (its atime, as a restart reads it). */
function usedAt(home: string, digest: string, seconds: number): void {
  Deno.utimeSync(`${home}/blobs/${digest}`, new Date(seconds * 1000), new Date(1_000_000_000));
}

Deno.test("DiskBudget counts stored content and kept workspaces together, each by its footprint", async () => {
  await using dir = await scratch();
  const budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 4 });
  assert.equal(budget.totalBytes, 0);
  await store(budget, dir.out("src"), "x".repeat(10_000));
  assert.equal(budget.blobs.totalBytes, footprint(10_000));
  assert.equal(footprint(10_000), 3 * 4096 + 256, "whole 4 KiB blocks plus an entry's overhead");

  const slot = keepWorkspace(budget, KEY_A, dir.out("ws"), { "a.txt": "a".repeat(5000) });
  // What the task wrote counts too, though the state does not list it.
  Deno.mkdirSync(`${slot}/out`);
  Deno.writeTextFileSync(`${slot}/out/build.log`, "l".repeat(100));
  budget.shelf.measure(KEY_A);
  const dirSize = (path: string) => Deno.lstatSync(path).size;
  assert.equal(
    budget.shelf.totalBytes,
    footprint(dirSize(slot)) + footprint(5000) + footprint(dirSize(`${slot}/out`)) +
      footprint(100) + footprint(dirSize(`${slot}.json`)) + footprint(dirSize(`${slot}.size`)),
  );
  assert.equal(budget.shelf.totalBytes, keptBytes(dir.home, KEY_A));
  assert.equal(budget.totalBytes, budget.blobs.totalBytes + budget.shelf.totalBytes);
});

Deno.test("DiskBudget.trim() evicts least recently used first, across the store and the shelf", async () => {
  await using dir = await scratch();
  let budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  const content = "c".repeat(50_000);
  const oldest = await store(budget, dir.out("s1"), content + "1");
  keepWorkspace(budget, KEY_A, dir.out("wa"), { "f": content });
  const middle = await store(budget, dir.out("s2"), content + "2");
  keepWorkspace(budget, KEY_B, dir.out("wb"), { "f": content });
  const newest = await store(budget, dir.out("s3"), content + "3");
  // The order as a restart reads it: blob, workspace, blob, workspace, blob.
  usedAt(dir.home, oldest, 1000);
  keptAt(dir.home, KEY_A, 2000);
  usedAt(dir.home, middle, 3000);
  keptAt(dir.home, KEY_B, 4000);
  usedAt(dir.home, newest, 5000);

  const each = footprint(50_001);
  const total = budget.totalBytes;
  // Room for about three of the five: the two least recently used go, one of each kind.
  budget = DiskBudget.open(dir.home, { limitBytes: total - each, keptWorkspaces: 8 });
  assert.ok(budget.totalBytes <= (total - each) * 0.9, `${budget.totalBytes}`);
  assert.equal(exists(`${dir.home}/blobs/${oldest}`), false, "the oldest content went");
  assert.equal(exists(`${dir.home}/workspaces/${KEY_A}`), false, "the older workspace went");
  assert.equal(exists(`${dir.home}/workspaces/${KEY_A}.json`), false);
  assert.equal(exists(`${dir.home}/blobs/${middle}`), true);
  assert.equal(exists(`${dir.home}/workspaces/${KEY_B}`), true);
  assert.equal(exists(`${dir.home}/blobs/${newest}`), true);
});

Deno.test("when content was last used survives a restart: stored content older than a workspace goes first", async () => {
  await using dir = await scratch();
  let budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  Deno.writeTextFileSync(dir.out("src"), "o".repeat(50_000));
  const older = digestOf("o".repeat(50_000));
  // As the agent stores what a job fetched: counted as used just before its workspace was kept.
  assert.equal(
    await budget.blobs.storeCopy(
      dir.out("src"),
      { digest: older, size: 50_000 },
      Date.now() - 60_000,
    ),
    "stored",
  );
  keepWorkspace(budget, KEY_A, dir.out("wa"), { "f": "w".repeat(50_000) });
  const newer = await store(budget, dir.out("s2"), "n".repeat(50_000));
  const total = budget.totalBytes;

  budget = DiskBudget.open(dir.home, { limitBytes: total - 1, keptWorkspaces: 8 });
  assert.equal(exists(`${dir.home}/blobs/${older}`), false);
  assert.equal(exists(`${dir.home}/workspaces/${KEY_A}`), true);
  assert.equal(exists(`${dir.home}/blobs/${newer}`), true);
});

Deno.test("DiskBudget never evicts content a running job pinned, nor a workspace a job took", async () => {
  await using dir = await scratch();
  const budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  const pinned = await store(budget, dir.out("s1"), "pinned".repeat(1000));
  const loose = await store(budget, dir.out("s2"), "loose".repeat(1000));
  keepWorkspace(budget, KEY_A, dir.out("wa"), { "f": "taken".repeat(1000) });
  keepWorkspace(budget, KEY_B, dir.out("wb"), { "f": "kept".repeat(1000) });
  budget.blobs.pin([pinned]);
  const taken = budget.shelf.take(KEY_A, dir.out("job-ws"));
  assert.equal(taken.taken, true);
  // A taken workspace is the job's: no longer counted as kept.
  assert.equal(
    budget.totalBytes,
    footprint(6000) + footprint(5000) + keptBytes(dir.home, KEY_B),
  );

  budget.evictAll();
  assert.equal(exists(`${dir.home}/blobs/${pinned}`), true, "pinned content stays");
  assert.equal(Deno.readTextFileSync(dir.out("job-ws/f")), "taken".repeat(1000));
  assert.equal(exists(`${dir.home}/blobs/${loose}`), false);
  assert.equal(exists(`${dir.home}/workspaces/${KEY_B}`), false);
  assert.equal(budget.totalBytes, footprint(6000));

  // Unpinned and kept again, both may go like anything else.
  budget.blobs.unpin([pinned]);
  budget.shelf.keep(KEY_A, dir.out("job-ws"), taken.state);
  assert.ok(budget.totalBytes > footprint(6000));
  budget.evictAll();
  assert.equal(budget.totalBytes, 0);
  assert.deepEqual([...Deno.readDirSync(`${dir.home}/workspaces`)], []);
  assert.deepEqual([...Deno.readDirSync(`${dir.home}/blobs`)], []);
});

Deno.test("kept workspaces' sizes are read back after a restart, not measured again", async () => {
  await using dir = await scratch();
  const first = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  const slot = keepWorkspace(first, KEY_A, dir.out("wa"), { "f": "x".repeat(70_000) });
  await store(first, dir.out("s"), "y".repeat(9000));
  const counted = first.totalBytes;
  // Written after it was measured: a second measurement would count it.
  Deno.writeTextFileSync(`${slot}/late`, "z".repeat(40_000));

  const second = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  assert.equal(second.totalBytes, counted);
  assert.equal(second.shelf.totalBytes, first.shelf.totalBytes);
  // And the state is still there for the next job of that directory.
  const taken = second.shelf.take(KEY_A, dir.out("job"));
  assert.equal(taken.state.get("f")?.size, 70_000);
});

Deno.test("a workspace kept without a recorded size (an older agent's) is measured when opened", async () => {
  await using dir = await scratch();
  const first = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  const slot = keepWorkspace(first, KEY_A, dir.out("wa"), { "f": "x".repeat(70_000) });
  Deno.removeSync(`${slot}.size`);
  const second = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  assert.equal(second.shelf.totalBytes, keptBytes(dir.home, KEY_A));
  assert.ok(second.shelf.totalBytes >= 70_000);
  assert.equal(Deno.readTextFileSync(`${slot}.size`).trim(), String(second.shelf.totalBytes));
});

Deno.test("a workspace on the shelf without its state (a crash between the two) is removed when opened", async () => {
  await using dir = await scratch();
  Deno.mkdirSync(`${dir.home}/workspaces/${KEY_C}/sub`, { recursive: true });
  Deno.writeTextFileSync(`${dir.home}/workspaces/${KEY_C}/sub/f`, "orphan".repeat(1000));
  // A task may leave a directory without write permission.
  Deno.chmodSync(`${dir.home}/workspaces/${KEY_C}/sub`, 0o555);
  const budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  assert.equal(budget.totalBytes, 0);
  assert.deepEqual([...Deno.readDirSync(`${dir.home}/workspaces`)], []);
});

Deno.test("the shelf keeps at most --kept-workspaces, the least recently kept going first", async () => {
  await using dir = await scratch();
  const budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 2 });
  keepWorkspace(budget, KEY_A, dir.out("wa"), { "f": "a" });
  keptAt(dir.home, KEY_A, 1000);
  keepWorkspace(budget, KEY_B, dir.out("wb"), { "f": "b" });
  keptAt(dir.home, KEY_B, 2000);
  const reopened = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 2 });
  keepWorkspace(reopened, KEY_C, dir.out("wc"), { "f": "c" });
  const names = [...Deno.readDirSync(`${dir.home}/workspaces`)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    KEY_B,
    `${KEY_B}.json`,
    `${KEY_B}.size`,
    KEY_C,
    `${KEY_C}.json`,
    `${KEY_C}.size`,
  ]);
  assert.equal(
    reopened.shelf.totalBytes,
    keptBytes(dir.home, KEY_B) + keptBytes(dir.home, KEY_C),
  );
});

Deno.test("a read-only kept workspace (as a task may leave it) is still evicted", async () => {
  await using dir = await scratch();
  const budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  const slot = keepWorkspace(budget, KEY_A, dir.out("wa"), { "f": "x".repeat(100) });
  Deno.mkdirSync(`${slot}/locked`);
  Deno.writeTextFileSync(`${slot}/locked/g`, "y");
  Deno.chmodSync(`${slot}/locked`, 0o555);
  Deno.chmodSync(slot, 0o555);
  budget.evictAll();
  assert.equal(exists(slot), false);
  assert.equal(budget.totalBytes, 0);
});

Deno.test("retryOnFull() on a full disk evicts what may go, runs the step once more, then throws", async () => {
  await using dir = await scratch();
  const budget = DiskBudget.open(dir.home, { limitBytes: 1 << 30, keptWorkspaces: 8 });
  await store(budget, dir.out("s"), "s".repeat(3000));
  keepWorkspace(budget, KEY_A, dir.out("wa"), { "f": "w" });
  let runs = 0;
  // /dev/full answers every write with ENOSPC, as a full disk does.
  const error = (() => {
    try {
      budget.retryOnFull(() => {
        runs++;
        Deno.writeFileSync("/dev/full", new Uint8Array(10));
      });
    } catch (error) {
      return error;
    }
  })();
  assert.equal(runs, 2);
  assert.ok(isNoSpace(error), String(error));
  assert.equal(budget.totalBytes, 0);

  // Any other failure is not retried, and nothing is evicted for it.
  await store(budget, dir.out("s2"), "t".repeat(3000));
  runs = 0;
  assert.throws(
    () =>
      budget.retryOnFull(() => {
        runs++;
        Deno.readFileSync(dir.out("missing"));
      }),
    Deno.errors.NotFound,
  );
  assert.equal(runs, 1);
  assert.equal(budget.totalBytes, footprint(3000));
});

Deno.test("NoSpaceError says where, how much is free and how much is needed, in MB", () => {
  const error = new NoSpaceError("/srv/agent", {
    freeBytes: 23.7 * MB,
    neededBytes: 30.2 * MB,
  });
  assert.equal(error.message, "no space left in /srv/agent (23 MB free, 30 MB needed)");
  // Never as if it fitted.
  assert.equal(
    new NoSpaceError("/w", { freeBytes: 29.3 * MB, neededBytes: 29.4 * MB }).message,
    "no space left in /w (29 MB free, 30 MB needed)",
  );
  assert.equal(
    new NoSpaceError("/w", { freeBytes: undefined, neededBytes: 1 }).message,
    "no space left in /w (free space unknown, 1 MB needed)",
  );
});

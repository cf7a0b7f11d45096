import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { BlobStore } from "./blobs.ts";
import { checkManifest, type ManifestEntry } from "./manifest.ts";
import { DEFAULT_LIMITS } from "./unpack.ts";
import { markUnverified, reconcile, WorkspaceShelf, type WorkspaceState } from "./workspace.ts";

function digestOf(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

async function scratch() {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-workspace-" }));
  Deno.mkdirSync(`${dir}/ws`);
  return {
    dir,
    ws: `${dir}/ws`,
    blobs: BlobStore.open(`${dir}/blobs`),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

function fileEntry(path: string, text: string, mtimeMs = 1_000_000_000): ManifestEntry {
  return { path, type: "file", mode: 0o644, size: text.length, mtimeMs, digest: digestOf(text) };
}

/** Writes a file as the agent would, and records it in `state` as the agent does. */
function written(ws: string, state: WorkspaceState, path: string, text: string): void {
  Deno.writeTextFileSync(`${ws}/${path}`, text);
  Deno.utimeSync(`${ws}/${path}`, new Date(1_000_000_000), new Date(1_000_000_000));
  const info = Deno.lstatSync(`${ws}/${path}`);
  state.set(path, {
    size: info.size,
    mtimeMs: info.mtime!.getTime(),
    mode: 0o644,
    digest: digestOf(text),
    ino: info.ino!,
    ctimeMs: info.ctime!.getTime(),
    checkedMs: Date.now(),
  });
}

Deno.test("reconcile() removes what a walk cannot represent from a kept workspace, without following it", async () => {
  await using s = await scratch();
  Deno.writeTextFileSync(`${s.dir}/victim`, "victim");
  Deno.chmodSync(`${s.dir}/victim`, 0o600);
  const state: WorkspaceState = new Map();
  written(s.ws, state, "a.txt", "kept");
  Deno.symlinkSync(`${s.dir}/victim`, `${s.ws}/evil`);
  Deno.symlinkSync(`${s.dir}`, `${s.ws}/outdir`);
  new Deno.Command("mkfifo", { args: [`${s.ws}/fifo`] }).outputSync();
  Deno.mkdirSync(`${s.ws}/.sloth-apply/deep`, { recursive: true });
  Deno.symlinkSync(`${s.dir}/victim`, `${s.ws}/.sloth-apply/deep/link`);
  const manifest = checkManifest([
    fileEntry("a.txt", "kept"),
    // The master has a file where the task left a symlink out.
    { ...fileEntry("evil", "from the master"), mode: 0o777 },
  ], DEFAULT_LIMITS);

  const { fill, missing } = await reconcile(s.ws, manifest, state, s.blobs);
  assert.deepEqual([...Deno.readDirSync(s.ws)].map((e) => e.name), ["a.txt"]);
  assert.deepEqual(fill.map((e) => e.path), ["evil"]);
  assert.deepEqual(missing.map((e) => e.path), ["evil"]);
  assert.equal(Deno.readTextFileSync(`${s.dir}/victim`), "victim");
  assert.equal(Deno.statSync(`${s.dir}/victim`).mode! & 0o777, 0o600);
  assert.ok(Deno.statSync(s.dir).isDirectory);
});

Deno.test("reconcile() hashes a kept file whose ctime changed though size and mtime did not: rewritten content is replaced", async () => {
  await using s = await scratch();
  const state: WorkspaceState = new Map();
  written(s.ws, state, "build.sh", "echo ORIGINAL");
  written(s.ws, state, "same.sh", "echo SAME");
  written(s.ws, state, "plain.sh", "echo PLAIN");
  // A second later (ctimes are read in whole seconds), a task rewrites two of them in
  // place at the same size and puts their mtimes back (touch -r).
  await new Promise((resolve) => setTimeout(resolve, 1100));
  for (const [path, text] of [["build.sh", "echo TAMPERE"], ["same.sh", "echo SAME"]]) {
    Deno.writeTextFileSync(`${s.ws}/${path}`, text);
    Deno.utimeSync(`${s.ws}/${path}`, new Date(1_000_000_000), new Date(1_000_000_000));
  }
  const manifest = checkManifest([
    fileEntry("build.sh", "echo ORIGINAL"),
    fileEntry("plain.sh", "echo PLAIN"),
    fileEntry("same.sh", "echo SAME"),
  ], DEFAULT_LIMITS);
  const { fill } = await reconcile(s.ws, manifest, state, s.blobs);
  assert.deepEqual(fill.map((e) => e.path), ["build.sh"]);
  assert.throws(() => Deno.lstatSync(`${s.ws}/build.sh`), Deno.errors.NotFound);
  // Hashed, found unchanged, and trusted again from its new ctime.
  assert.equal(Deno.readTextFileSync(`${s.ws}/same.sh`), "echo SAME");
  assert.equal(state.get("same.sh")?.ctimeMs, Deno.lstatSync(`${s.ws}/same.sh`).ctime?.getTime());
  assert.equal(state.get("build.sh"), undefined);
});

Deno.test("reconcile() rehashes a file marked unverified before reusing it", async () => {
  await using s = await scratch();
  const state: WorkspaceState = new Map();
  written(s.ws, state, "build.sh", "echo ORIGINAL");
  // Within the same second: nothing about the file shows it.
  Deno.writeTextFileSync(`${s.ws}/build.sh`, "echo TAMPERE");
  Deno.utimeSync(`${s.ws}/build.sh`, new Date(1_000_000_000), new Date(1_000_000_000));
  state.get("build.sh")!.ctimeMs = Deno.lstatSync(`${s.ws}/build.sh`).ctime!.getTime();
  state.get("build.sh")!.unverified = true;
  const manifest = checkManifest([fileEntry("build.sh", "echo ORIGINAL")], DEFAULT_LIMITS);
  const { fill } = await reconcile(s.ws, manifest, state, s.blobs);
  assert.deepEqual(fill.map((e) => e.path), ["build.sh"]);
});

Deno.test("markUnverified() marks what the agent wrote within the second its task started", () => {
  const taskStart = 1_700_000_000_500;
  const base = { size: 1, mtimeMs: 0, mode: 0o644, digest: "d", ino: 1 };
  const state: WorkspaceState = new Map([
    ["old", { ...base, ctimeMs: 1_699_999_990_000, checkedMs: 1_699_999_990_000 }],
    ["same-second", { ...base, ctimeMs: 1_700_000_000_000, checkedMs: taskStart - 10 }],
    ["hashed-after", { ...base, ctimeMs: 1_700_000_001_000, checkedMs: taskStart + 900 }],
    ["no-ctime", { ...base, ino: undefined, checkedMs: taskStart - 10 }],
  ]);
  assert.equal(markUnverified(state, taskStart), 2);
  assert.equal(state.get("old")!.unverified, undefined);
  assert.equal(state.get("same-second")!.unverified, true);
  assert.equal(state.get("hashed-after")!.unverified, undefined);
  assert.equal(state.get("no-ctime")!.unverified, true);
  // A task that starts 30 ms into a second may see a ctime of the second before.
  const early = new Map([["f", { ...base, ctimeMs: 1_699_999_999_000, checkedMs: 0 }]]);
  assert.equal(markUnverified(early, 1_700_000_000_030), 1);
});

Deno.test("checkManifest() refuses .sloth-apply, which an agent's walk never sees", () => {
  assert.throws(
    () =>
      checkManifest([{ path: ".sloth-apply", type: "dir", mode: 0o755, size: 0, mtimeMs: 0 }], {
        ...DEFAULT_LIMITS,
      }),
    /refused "\.sloth-apply"/,
  );
});

Deno.test("a shelf gives back the state it kept without reading it again; a new one reads its file", async () => {
  await using s = await scratch();
  const shelf = new WorkspaceShelf(`${s.dir}/shelf`, 4);
  const key = "ab".repeat(16);
  const state: WorkspaceState = new Map();
  written(s.ws, state, "a.txt", "a");
  shelf.keep(key, s.ws, state);
  // The file says something else now: this process's shelf does not read it.
  Deno.writeTextFileSync(`${s.dir}/shelf/${key}.json`, JSON.stringify({ "b.txt": {} }));
  const taken = shelf.take(key, `${s.dir}/again`);
  assert.equal(taken.state, state);
  written(`${s.dir}/again`, taken.state, "c.txt", "c");
  shelf.keep(key, `${s.dir}/again`, taken.state);
  // After a restart, the file is all there is.
  const restarted = new WorkspaceShelf(`${s.dir}/shelf`, 4);
  const read = restarted.take(key, `${s.dir}/third`);
  assert.deepEqual([...read.state.keys()], ["a.txt", "c.txt"]);
  assert.deepEqual(read.state.get("a.txt"), JSON.parse(JSON.stringify(state.get("a.txt"))));
});

Deno.test("a shelf does not write a state or size file again when they have not changed", async () => {
  await using s = await scratch();
  const shelf = new WorkspaceShelf(`${s.dir}/shelf`, 4);
  const key = "cd".repeat(16);
  const state: WorkspaceState = new Map();
  written(s.ws, state, "a.txt", "a");
  shelf.keep(key, s.ws, state);
  shelf.measure(key);
  const inode = (name: string) => Deno.statSync(`${s.dir}/shelf/${key}.${name}`);
  const before = { size: inode("size") };
  await new Promise((resolve) => setTimeout(resolve, 20));
  for (let i = 0; i < 3; i++) {
    const taken = shelf.take(key, `${s.dir}/again`);
    shelf.keep(key, `${s.dir}/again`, taken.state);
    shelf.measure(key);
  }
  // Same content, never rewritten (a rewrite would move the change time).
  assert.equal(inode("size").ctime!.getTime(), before.size.ctime!.getTime());
  assert.equal(inode("size").mtime!.getTime(), before.size.mtime!.getTime());
  // A change is written.
  const taken = shelf.take(key, `${s.dir}/again`);
  written(`${s.dir}/again`, taken.state, "b.txt", "bb");
  shelf.keep(key, `${s.dir}/again`, taken.state);
  shelf.measure(key);
  const saved = JSON.parse(Deno.readTextFileSync(`${s.dir}/shelf/${key}.json`));
  assert.deepEqual(Object.keys(saved), ["a.txt", "b.txt"]);
});

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { type RawEntry, rawTar } from "../../tests/_helpers/tar.ts";
import { copyTree, findNames, treeSnapshot } from "../../tests/_helpers/tree.ts";
import { applyChangesStepwise, type ApplyOptions, type Copy } from "./changes.ts";
import { JOURNAL_DIR, openJournalDir, recoverWorkspace } from "./journal.ts";
import { walkWorkspace } from "./walk.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/**
 * A workspace and a change set that together need every kind of operation: new,
 * rewritten and deleted files, a file that becomes a directory and a directory
 * that becomes a file, symlinks, directory modes, copies of local content into
 * directories that do not exist yet, and a directory kept for the ignored file
 * it still holds.
 */
const FILES: Record<string, string> = {
  ".slothignore": "*.log\n",
  "keep.txt": "keep",
  "mod.txt": "old",
  "del.txt": "deleted",
  "gone/a.txt": "a",
  "gone/b/c.txt": "c",
  "f2d": "was a file",
  "d2f/x.txt": "x",
  "ro/r.txt": "r",
  "big.bin": "content the master already has",
  "logs/x.log": "ignored, never sent",
  "logs/y.txt": "y",
};
const ENTRIES: RawEntry[] = [
  { path: "mod.txt", data: "new", mode: 0o755 },
  { path: "f2d", type: "Directory", mode: 0o755 },
  { path: "f2d/inner.txt", data: "inner" },
  { path: "d2f", data: "now a file" },
  { path: "link", type: "SymbolicLink", linkpath: "mod.txt" },
  { path: "ro", type: "Directory", mode: 0o555 },
  { path: "ro/new.txt", data: "n" },
  { path: "copy", type: "Directory", mode: 0o755 },
  { path: "new", type: "Directory", mode: 0o750 },
  { path: "new/deep", type: "Directory", mode: 0o755 },
  { path: "new/deep/file.txt", data: "deep", mode: 0o600 },
  { path: "newlink", type: "SymbolicLink", linkpath: "new/deep/file.txt" },
];
const DELETED = [
  "gone/b/c.txt",
  "gone/b",
  "gone/a.txt",
  "gone",
  "del.txt",
  "d2f/x.txt",
  "logs/y.txt",
  "logs",
];
const COPIES: Copy[] = [{ path: "copy/of/big.bin", digest: sha256(FILES["big.bin"]), mode: 0o600 }];

/** The scenario's workspace (with `link` -> keep.txt), and what applying needs. */
async function scenario(entries = ENTRIES, deleted = DELETED, copies = COPIES) {
  const ws = await tempWorkspace(FILES);
  await Deno.symlink("keep.txt", `${ws.dir}/link`);
  const archive = `${ws.dir}.tar`;
  await Deno.writeFile(archive, rawTar(entries));
  const walk = await walkWorkspace(ws.dir);
  const options: ApplyOptions = {
    sent: new Map(walk.entries.map((e) => [e.path, e])),
    ignored: walk.ignored,
    copies,
    localContent: new Map([[sha256(FILES["big.bin"]), "big.bin"]]),
  };
  return {
    ws,
    archive,
    options,
    deleted,
    before: treeSnapshot(ws.dir),
    [Symbol.asyncDispose]: async () => {
      await ws[Symbol.asyncDispose]();
      await Deno.remove(archive);
    },
  };
}

/** A pid that belonged to a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

/** Gives every journal directory in `root` to `owner` (a `<pid>-<start>` pair). */
function handJournalsTo(root: string, owner: string): void {
  const base = `${root}/${JOURNAL_DIR}`;
  for (const entry of Deno.readDirSync(base)) {
    const random = entry.name.split("-").at(-1);
    Deno.renameSync(`${base}/${entry.name}`, `${base}/${owner}-${random}`);
  }
}

function assertNothingLeft(root: string): void {
  assert.deepEqual(findNames(root, /^\.sloth-apply$|^\.sloth-.*\.tmp$/), []);
}

Deno.test("applyChanges() gives the exact state the change set describes and leaves no journal", async () => {
  await using s = await scenario();
  await applyChangesStepwise(s.ws.dir, s.archive, s.deleted, s.options);
  const after = treeSnapshot(s.ws.dir);
  assert.equal(after["mod.txt"], "file 755 new");
  assert.equal(after["f2d"], "dir 755");
  assert.equal(after["f2d/inner.txt"], "file 644 inner");
  assert.equal(after["d2f"], "file 644 now a file");
  assert.equal(after["link"], "symlink -> mod.txt");
  assert.equal(after["ro"], "dir 555");
  assert.equal(after["ro/new.txt"], "file 644 n");
  assert.equal(after["copy/of"], "dir 755", "a parent the change set did not list is made");
  assert.equal(after["copy/of/big.bin"], `file 600 ${FILES["big.bin"]}`);
  assert.equal(after["new"], "dir 750");
  assert.equal(after["new/deep/file.txt"], "file 600 deep");
  assert.equal(after["logs/x.log"], "file 644 ignored, never sent");
  assert.equal(after["logs/y.txt"], undefined);
  for (const path of ["gone", "del.txt", "d2f/x.txt"]) assert.equal(after[path], undefined, path);
  assertNothingLeft(s.ws.dir);
});

Deno.test("a master killed after any step of applying leaves the workspace exactly as before or as after, once recovered", async () => {
  await using s = await scenario();
  const dead = `${await deadPid()}-1`;
  // The disk as a master killed right after each step would have left it.
  const crashes: { step: string; dir: string }[] = [];
  type Phase = "staging" | "applying" | "done";
  let phase = "staging" as Phase;
  const phases: Phase[] = [];
  await applyChangesStepwise(s.ws.dir, s.archive, s.deleted, s.options, (step) => {
    if (step === "journal written") phase = "applying";
    if (step === "journal removed") phase = "done";
    const dir = `${s.ws.dir}.crash-${crashes.length}`;
    copyTree(s.ws.dir, dir);
    crashes.push({ step, dir });
    phases.push(phase);
  });
  const after = treeSnapshot(s.ws.dir);
  try {
    assert.ok(crashes.length > 30, `only ${crashes.length} steps`);
    for (const [i, crash] of crashes.entries()) {
      handJournalsTo(crash.dir, dead);
      const recovery = recoverWorkspace(crash.dir);
      assert.equal(recovery.busy, 0);
      const expected = phases[i] === "done" ? after : s.before;
      assert.deepEqual(
        treeSnapshot(crash.dir),
        expected,
        `killed after step ${i} (${crash.step}): not as ${
          phases[i] === "done" ? "after" : "before"
        }`,
      );
      assert.equal(recovery.undone, phases[i] === "applying" ? 1 : 0, crash.step);
      assertNothingLeft(crash.dir);
    }
  } finally {
    for (const crash of crashes) await Deno.remove(crash.dir, { recursive: true });
  }
});

Deno.test("recovery killed after any of its own steps, recovered again, still gives exactly the state before", async () => {
  const isOperation = (step: string) => /^(put|aside|remove|mkdir|chmod) /.test(step);
  let operations = 0;
  {
    await using counted = await scenario();
    await applyChangesStepwise(counted.ws.dir, counted.archive, counted.deleted, counted.options, (
      step,
    ) => isOperation(step) && operations++);
  }
  // Masters killed after the 6th and the 14th operation, and after the last one.
  await using s = await scenario();
  const crashes: string[] = [];
  let applied = 0;
  await applyChangesStepwise(s.ws.dir, s.archive, s.deleted, s.options, (step) => {
    if (!isOperation(step)) return;
    applied++;
    if (applied === 6 || applied === 14 || applied === operations) {
      crashes.push(`${s.ws.dir}.crashed-${applied}`);
      copyTree(s.ws.dir, crashes.at(-1)!);
    }
  });
  assert.equal(crashes.length, 3);
  const dead = `${await deadPid()}-1`;
  const copies: string[] = [...crashes];
  try {
    for (const crashed of crashes) {
      handJournalsTo(crashed, dead);
      const source = `${crashed}.source`;
      copyTree(crashed, source);
      copies.push(source);
      const first = copies.length;
      recoverWorkspace(source, {
        step: () => {
          const dir = `${crashed}.recovery-${copies.length}`;
          copyTree(source, dir);
          copies.push(dir);
        },
      });
      assert.ok(copies.length - first > 5, `only ${copies.length - first} recovery steps`);
    }
    for (const dir of copies) {
      recoverWorkspace(dir);
      assert.deepEqual(treeSnapshot(dir), s.before, dir);
      assertNothingLeft(dir);
    }
  } finally {
    for (const dir of copies) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a master process SIGKILLed while applying leaves the workspace as before or as after, once recovered", async () => {
  await using s = await scenario();
  // The same change set applied whole elsewhere, for the after-state.
  const reference = `${s.ws.dir}.reference`;
  copyTree(s.ws.dir, reference);
  let steps = 0;
  const refWalk = await walkWorkspace(reference);
  await applyChangesStepwise(reference, s.archive, s.deleted, {
    ...s.options,
    sent: new Map(refWalk.entries.map((e) => [e.path, e])),
  }, () => steps++);
  const after = treeSnapshot(reference);
  await Deno.remove(reference, { recursive: true });

  const script = `
    import { applyChangesStepwise } from "${ROOT}/lib/sync/changes.ts";
    import { walkWorkspace } from "${ROOT}/lib/sync/walk.ts";
    const [root, archive, killAt] = Deno.args;
    const walk = await walkWorkspace(root);
    let step = 0;
    await applyChangesStepwise(root, archive, ${JSON.stringify(s.deleted)}, {
      sent: new Map(walk.entries.map((e) => [e.path, e])),
      ignored: walk.ignored,
      copies: ${JSON.stringify(s.options.copies)},
      localContent: new Map(${JSON.stringify([...s.options.localContent!])}),
    }, () => { if (++step === Number(killAt)) Deno.kill(Deno.pid, "SIGKILL"); });
  `;
  // Three kills: in staging, in the middle of applying, and near the end.
  for (const killAt of [2, Math.floor(steps / 2), steps - 3]) {
    const dir = `${s.ws.dir}.kill-${killAt}`;
    copyTree(s.ws.dir, dir);
    try {
      const { code, signal } = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--ext=ts", script, dir, s.archive, String(killAt)],
        cwd: ROOT,
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(signal, "SIGKILL", `exited with ${code} instead of being killed`);
      assert.ok(findNames(dir, /^\.sloth-apply$/).length === 1, "the killed master left a journal");
      recoverWorkspace(dir);
      const now = treeSnapshot(dir);
      assert.ok(
        JSON.stringify(now) === JSON.stringify(s.before) ||
          JSON.stringify(now) === JSON.stringify(after),
        `killed at step ${killAt} of ${steps}: neither before nor after`,
      );
      assertNothingLeft(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test({
  name:
    "recovery leaves another live process's journal alone, and undoes it once that process is gone",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await using s = await scenario();
    let applied = 0;
    const crashed = `${s.ws.dir}.crashed`;
    await applyChangesStepwise(s.ws.dir, s.archive, s.deleted, s.options, (step) => {
      if (/^(put|aside|remove|mkdir) /.test(step) && ++applied === 4) copyTree(s.ws.dir, crashed);
    });
    const other = new Deno.Command("sleep", { args: ["30"] }).spawn();
    try {
      const stat = Deno.readTextFileSync(`/proc/${other.pid}/stat`);
      const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
      handJournalsTo(crashed, `${other.pid}-${start}`);
      const halfApplied = treeSnapshot(crashed);
      assert.notDeepEqual(halfApplied, s.before);

      const whileAlive = recoverWorkspace(crashed);
      assert.deepEqual(whileAlive, { undone: 0, removed: 0, busy: 1 });
      assert.deepEqual(treeSnapshot(crashed), halfApplied);

      other.kill("SIGKILL");
      await other.status;
      const afterDeath = recoverWorkspace(crashed);
      assert.deepEqual(afterDeath, { undone: 1, removed: 1, busy: 0 });
      assert.deepEqual(treeSnapshot(crashed), s.before);
      assertNothingLeft(crashed);
    } finally {
      try {
        other.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await other.status;
      await Deno.remove(crashed, { recursive: true });
    }
  },
});

Deno.test("recovery counts a journal whose pid was reused by another process (another start time) as dead", async () => {
  await using ws = await tempWorkspace({ "a.txt": "a" });
  const { dir, spool } = openJournalDir(ws.dir);
  Deno.writeTextFileSync(spool, "a spool of a master that was killed");
  // This very process's pid, with a start time it does not have: a reused pid.
  Deno.renameSync(dir, dir.replace(/^(.*\/\d+)-[0-9A-Za-z]+-/, "$1-999999999999-"));
  assert.deepEqual(recoverWorkspace(ws.dir), { undone: 0, removed: 1, busy: 0 });
  assertNothingLeft(ws.dir);
  assert.deepEqual(treeSnapshot(ws.dir), { "a.txt": "file 644 a" });
});

Deno.test("recovery removes the spool of a master killed while receiving, and leaves its own process's alone", async () => {
  await using ws = await tempWorkspace({ "a.txt": "a" });
  const mine = openJournalDir(ws.dir);
  Deno.writeTextFileSync(mine.spool, "being received right now");
  const theirs = openJournalDir(ws.dir);
  Deno.writeTextFileSync(theirs.spool, "x".repeat(100_000));
  handJournalsTo(ws.dir, `${await deadPid()}-1`);
  // Both were handed to the dead pid; make one this process's again.
  const [first] = [...Deno.readDirSync(`${ws.dir}/${JOURNAL_DIR}`)].map((e) => e.name).sort();
  const ownName = mine.dir.slice(mine.dir.lastIndexOf("/") + 1);
  Deno.renameSync(`${ws.dir}/${JOURNAL_DIR}/${first}`, mine.dir);
  assert.deepEqual(recoverWorkspace(ws.dir), { undone: 0, removed: 1, busy: 1 });
  assert.deepEqual([...Deno.readDirSync(`${ws.dir}/${JOURNAL_DIR}`)].map((e) => e.name), [
    ownName,
  ]);
  Deno.removeSync(`${ws.dir}/${JOURNAL_DIR}`, { recursive: true });
});

Deno.test("applyChanges() refuses a change set that writes, copies to or deletes .sloth-apply, at any depth", async () => {
  const cases: { entries?: RawEntry[]; deleted?: string[]; copies?: Copy[] }[] = [
    { entries: [{ path: ".sloth-apply/1-1-0000000000000000/journal.json", data: "{}" }] },
    { entries: [{ path: "sub/.sloth-apply", type: "Directory" }] },
    { entries: [{ path: ".sloth-apply", type: "SymbolicLink", linkpath: "keep.txt" }] },
    { deleted: [".sloth-apply"] },
    { copies: [{ path: "sub/.sloth-apply/x", digest: sha256(FILES["big.bin"]), mode: 0o644 }] },
  ];
  for (const c of cases) {
    await using s = await scenario(c.entries ?? [], c.deleted ?? [], c.copies ?? []);
    await assert.rejects(
      applyChangesStepwise(s.ws.dir, s.archive, s.deleted, s.options),
      /refused ".*\.sloth-apply.*": \.sloth-apply is where sloth-runner journals changes on this machine/,
      JSON.stringify(c),
    );
    assert.deepEqual(treeSnapshot(s.ws.dir), s.before);
  }
});

Deno.test("an I/O error in the middle of applying undoes what was done and says nothing changed", async () => {
  await using s = await scenario();
  let journal = "";
  let applied = 0;
  const error = await applyChangesStepwise(s.ws.dir, s.archive, s.deleted, s.options, (step) => {
    if (step === "journal written") {
      journal = [...Deno.readDirSync(`${s.ws.dir}/${JOURNAL_DIR}`)][0].name;
    }
    if (/^(put|aside|remove|mkdir|chmod) /.test(step)) applied++;
    // Most of the way through, the staged copy goes missing: putting it in place fails.
    if (step === "put d2f") Deno.removeSync(`${s.ws.dir}/${JOURNAL_DIR}/${journal}/copies/0`);
  }).then(() => undefined, (e: Error) => e);
  assert.match(
    error?.message ?? "",
    /^could not apply the change set to .* \(No such file or directory.*\); it was undone, nothing changed$/,
  );
  assert.ok(applied > 10, `only ${applied} operations were done before the failure`);
  assert.deepEqual(treeSnapshot(s.ws.dir), s.before);
  assertNothingLeft(s.ws.dir);
});

Deno.test("a failure while staging (a copy's source changed meanwhile) changes nothing and leaves no journal", async () => {
  await using s = await scenario();
  await Deno.writeTextFile(`${s.ws.dir}/big.bin`, "changed here meanwhile");
  const before = treeSnapshot(s.ws.dir);
  await assert.rejects(
    applyChangesStepwise(s.ws.dir, s.archive, s.deleted, s.options),
    /big\.bin changed here while the task ran remotely; copy\/of\/big\.bin was not written/,
  );
  assert.deepEqual(treeSnapshot(s.ws.dir), before);
  assertNothingLeft(s.ws.dir);
});

Deno.test("walkWorkspace() never lists .sloth-apply, at the top or deeper", async () => {
  await using ws = await tempWorkspace({
    "a.txt": "a",
    ".sloth-apply/1-1-0000000000000000/changes.tar": "spool",
    "sub/.sloth-apply/x": "x",
    ".sloth/sloth.lua": "-- types",
  });
  const { entries } = await walkWorkspace(ws.dir);
  assert.deepEqual(entries.map((e) => e.path), [".sloth", ".sloth/sloth.lua", "a.txt", "sub"]);
});

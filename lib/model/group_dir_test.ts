import assert from "node:assert/strict";
import { guardedDirs, removalRefusal } from "./group_dir.ts";

const guarded = guardedDirs({
  cwd: "/work/project",
  file: "/work/project/ci/workflow.lua",
  home: "/home/alice",
  tmp: "/var/tmp/",
});

Deno.test("guardedDirs() names where sloth-runner started, the workflow's directory, home and the temporary directory", () => {
  assert.deepEqual(guarded.map((d) => d.path), [
    "/work/project",
    "/work/project/ci",
    "/home/alice",
    "/var/tmp",
  ]);
  assert.equal(guardedDirs({ cwd: "/w", file: "/w/f.lua" }).at(-1)!.path, "/tmp");
});

Deno.test("removalRefusal() allows a directory of the group's own, under a guarded one", () => {
  assert.equal(removalRefusal("/work/project/build", guarded), undefined);
  assert.equal(removalRefusal("/var/tmp/build-1a2b", guarded), undefined);
  assert.equal(removalRefusal("/home/alice/scratch/out", guarded), undefined);
});

Deno.test("removalRefusal() refuses the root, top-level directories, guarded directories and their ancestors", () => {
  assert.equal(removalRefusal("/", guarded), "is the root directory");
  assert.equal(removalRefusal("/./", guarded), "is the root directory");
  assert.equal(removalRefusal("/usr", guarded), "is a top-level directory");
  assert.equal(removalRefusal("/home/alice", guarded), "is your home directory");
  assert.equal(removalRefusal("/home/alice/", guarded), "is your home directory");
  assert.equal(
    removalRefusal("/work/project", guarded),
    "is the directory sloth-runner was started in",
  );
  assert.equal(removalRefusal("/work/project/ci", guarded), "is the workflow file's directory");
  assert.equal(
    removalRefusal("/work", guarded),
    "holds the directory sloth-runner was started in (/work/project)",
  );
  assert.equal(removalRefusal("/var/tmp", guarded), "is the temporary directory");
  // A name that only starts like a guarded one is not its ancestor.
  assert.equal(removalRefusal("/home/ali", guarded), undefined);
});

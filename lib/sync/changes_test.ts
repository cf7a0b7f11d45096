import assert from "node:assert/strict";
import { snapshot, tempWorkspace } from "../../tests/_helpers/mod.ts";
import { type RawEntry, rawTar } from "../../tests/_helpers/tar.ts";
import { applyChanges } from "./changes.ts";
import { walkWorkspace } from "./walk.ts";

/** Applies a change set made of `entries` (and `deleted`) to a workspace holding `files`. */
async function apply(files: Record<string, string>, entries: RawEntry[], deleted: string[] = []) {
  const ws = await tempWorkspace(files);
  const walk = await walkWorkspace(ws.dir);
  const archive = await Deno.makeTempFile({ suffix: ".tar" });
  await Deno.writeFile(archive, rawTar(entries));
  const before = await snapshot(ws.dir);
  try {
    await applyChanges(ws.dir, archive, deleted, {
      sent: new Map(walk.entries.map((e) => [e.path, e])),
      ignored: walk.ignored,
    });
    return { ws, before, error: undefined };
  } catch (error) {
    return { ws, before, error: error as Error };
  } finally {
    await Deno.remove(archive);
  }
}

Deno.test("applyChanges() never throws away a directory holding files the agent never saw", async () => {
  const r = await apply(
    { ".slothignore": "node_modules/\n", "out/node_modules/precious": "keep me", "out/a.txt": "a" },
    [{ path: "out", data: "now a file" }],
    ["out/a.txt"],
  );
  await using _ = r.ws;
  assert.match(
    r.error?.message ?? "",
    /would replace a directory that still holds out\/node_modules/,
  );
  assert.deepEqual(await snapshot(r.ws.dir), r.before);
});

Deno.test("applyChanges() refuses, before writing anything, a file that a later entry goes through", async () => {
  const r = await apply({ "keep.txt": "old" }, [
    { path: "keep.txt", data: "new" },
    { path: "a", data: "a file" },
    { path: "a/b", data: "through a file" },
  ]);
  await using _ = r.ws;
  assert.match(r.error?.message ?? "", /refused "a\/b": a is not a directory/);
  assert.deepEqual(await snapshot(r.ws.dir), r.before);
});

Deno.test("applyChanges() turns a file into a directory when the task did", async () => {
  const r = await apply({ "out": "was a file" }, [
    { path: "out", type: "Directory" },
    { path: "out/x.txt", data: "inside" },
  ]);
  await using _ = r.ws;
  assert.equal(r.error, undefined);
  assert.equal(await Deno.readTextFile(`${r.ws.dir}/out/x.txt`), "inside");
});

Deno.test("applyChanges() writes into an existing ignored directory without calling it a conflict", async () => {
  const r = await apply({ ".slothignore": "build/\n", "build/old.o": "old" }, [
    { path: "build", type: "Directory" },
    { path: "build/new.o", data: "new" },
  ]);
  await using _ = r.ws;
  assert.equal(r.error, undefined, String(r.error));
  assert.equal(await Deno.readTextFile(`${r.ws.dir}/build/new.o`), "new");
  assert.equal(await Deno.readTextFile(`${r.ws.dir}/build/old.o`), "old");
});

Deno.test("applyChanges() refuses to replace a local file it never sent (.slothignore), and writes nothing", async () => {
  const r = await apply({
    ".slothignore": "*.log\nbuild/\n",
    "secret.log": "mine",
    "build/out.o": "local",
  }, [
    { path: "secret.log", data: "the task's" },
    { path: "fresh.log", data: "new" },
  ]);
  await using _ = r.ws;
  assert.match(
    r.error?.message ?? "",
    /conflict on secret\.log: this machine has it but did not send it \(\.slothignore excludes it\)/,
  );
  assert.deepEqual(await snapshot(r.ws.dir), r.before);

  const built = await apply({ ".slothignore": "build/\n", "build/out.o": "local" }, [
    { path: "build", type: "Directory" },
    { path: "build/out.o", data: "remote" },
  ]);
  await using __ = built.ws;
  assert.match(built.error?.message ?? "", /conflict on build\/out\.o: this machine has it/);
  assert.equal(await Deno.readTextFile(`${built.ws.dir}/build/out.o`), "local");
});

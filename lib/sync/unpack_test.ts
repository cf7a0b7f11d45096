import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { snapshot, tempWorkspace } from "../../tests/_helpers/mod.ts";
import { rawTar, streamOf } from "../../tests/_helpers/tar.ts";
import { packEntries } from "./pack.ts";
import { unpack } from "./unpack.ts";
import { walkWorkspace } from "./walk.ts";

async function unpackError(
  archive: Uint8Array,
): Promise<{ message: string; files: Record<string, string> }> {
  await using outside = await tempWorkspace({ "keep.txt": "outside" });
  await using ws = await tempWorkspace();
  try {
    await unpack(`${ws.dir}`, streamOf(archive), { mode: "fresh" });
  } catch (error) {
    assert.deepEqual(await snapshot(outside.dir), { "keep.txt": "outside" });
    return { message: (error as Error).message, files: await snapshot(ws.dir) };
  }
  assert.fail("the archive was accepted");
}

Deno.test("packEntries() and unpack() round-trip files, modes, empty dirs and inner symlinks", async () => {
  await using src = await tempWorkspace({
    "@notes.txt": "a name node-tar would read as an archive",
    "group-writable.txt": "664",
    "read-only.txt": "444",
    "a.txt": "alpha",
    "bin/run.sh": "#!/bin/sh\n",
    "deep/x/y.txt": "y",
  });
  await Deno.chmod(`${src.dir}/bin/run.sh`, 0o755);
  await Deno.chmod(`${src.dir}/group-writable.txt`, 0o664);
  await Deno.chmod(`${src.dir}/read-only.txt`, 0o444);
  await Deno.mkdir(`${src.dir}/empty`);
  await Deno.symlink("a.txt", `${src.dir}/link`);
  // A chain of symlinks inside the workspace, as shared libraries have them.
  await Deno.writeTextFile(`${src.dir}/lib.so.1.2`, "lib");
  await Deno.symlink("lib.so.1.2", `${src.dir}/lib.so.1`);
  await Deno.symlink("lib.so.1", `${src.dir}/lib.so`);
  const walk = await walkWorkspace(src.dir);
  await using dst = await tempWorkspace();
  const entries = await unpack(dst.dir, packEntries(src.dir, walk.entries), {
    mode: "fresh",
  });
  assert.deepEqual(await snapshot(dst.dir), await snapshot(src.dir));
  assert.equal((await Deno.stat(`${dst.dir}/bin/run.sh`)).mode! & 0o777, 0o755);
  assert.equal((await Deno.stat(`${dst.dir}/group-writable.txt`)).mode! & 0o777, 0o664);
  assert.equal((await Deno.stat(`${dst.dir}/read-only.txt`)).mode! & 0o777, 0o444);
  assert.ok((await Deno.stat(`${dst.dir}/empty`)).isDirectory);
  assert.equal(await Deno.readLink(`${dst.dir}/link`), "a.txt");
  assert.equal(
    entries.get("a.txt")?.sha256,
    "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8",
  );
});

Deno.test('unpack() refuses an entry that climbs out with ".."', async () => {
  const r = await unpackError(rawTar([{ path: "../evil.txt", data: "x" }]));
  assert.match(r.message, /climbs out with "\.\."/);
});

Deno.test("unpack() refuses absolute paths", async () => {
  const r = await unpackError(rawTar([{ path: "/tmp/evil.txt", data: "x" }]));
  assert.match(r.message, /absolute paths are not allowed/);
});

Deno.test("unpack() refuses a symlink that points outside, and never writes through one", async () => {
  const out = await unpackError(
    rawTar([{ path: "link", type: "SymbolicLink", linkpath: "../../etc" }]),
  );
  assert.match(out.message, /points outside the workspace/);
  const through = await unpackError(rawTar([
    { path: "dir", type: "SymbolicLink", linkpath: "." },
    { path: "dir/file.txt", data: "x" },
  ]));
  assert.match(through.message, /dir is a symlink, and nothing is written through it/);
});

Deno.test("unpack() refuses hard links, devices and FIFOs", async () => {
  assert.match(
    (await unpackError(rawTar([{ path: "h", type: "Link", linkpath: "/etc/passwd" }]))).message,
    /hard links/,
  );
  assert.match((await unpackError(rawTar([{ path: "f", type: "FIFO" }]))).message, /FIFO/);
  assert.match(
    (await unpackError(rawTar([{ path: "d", type: "CharacterDevice" }]))).message,
    /device/,
  );
});

Deno.test("unpack() refuses the same path twice", async () => {
  const r = await unpackError(rawTar([{ path: "a", data: "1" }, { path: "a", data: "2" }]));
  assert.match(r.message, /appears twice/);
});

Deno.test("unpack() refuses a stream cut in the middle", async () => {
  const whole = rawTar([{ path: "big.bin", data: new Uint8Array(100_000) }]);
  const r = await unpackError(whole.subarray(0, 20_000));
  assert.match(r.message, /ended after|bad archive|unexpected|truncated/i);
});

Deno.test("unpack() refuses garbage", async () => {
  const garbage = Buffer.from("this is not a tar archive at all".repeat(40));
  const r = await unpackError(new Uint8Array(garbage));
  assert.match(r.message, /bad archive|invalid|refused/i);
});

Deno.test("unpack() in stage mode checks entries against the workspace and writes them only into staging", async () => {
  await using ws = await tempWorkspace({ "dir/keep.txt": "keep", "a.txt": "old" });
  await Deno.symlink("dir", `${ws.dir}/link`);
  await using staging = await tempWorkspace();
  const before = await snapshot(ws.dir);
  const entries = await unpack(
    ws.dir,
    streamOf(rawTar([
      { path: "a.txt", data: "new", mode: 0o600 },
      { path: "ro", type: "Directory", mode: 0o555 },
      { path: "ro/x.txt", data: "x" },
    ])),
    { mode: "stage", into: staging.dir },
  );
  assert.deepEqual([...entries.keys()], ["a.txt", "ro", "ro/x.txt"]);
  assert.deepEqual(await snapshot(ws.dir), before);
  assert.deepEqual(await snapshot(staging.dir), { "a.txt": "new", "ro/x.txt": "x" });
  assert.equal((await Deno.stat(`${staging.dir}/a.txt`)).mode! & 0o777, 0o600);
  // Staged directories stay open: what they hold is moved out of them.
  assert.equal((await Deno.stat(`${staging.dir}/ro`)).mode! & 0o777, 0o700);

  // The workspace's symlink, not staging (where there is none), decides: refused.
  await using empty = await tempWorkspace();
  await assert.rejects(
    unpack(ws.dir, streamOf(rawTar([{ path: "link/x.txt", data: "through" }])), {
      mode: "stage",
      into: empty.dir,
    }),
    /refused "link\/x\.txt": link is a symlink, and nothing is written through it/,
  );
  assert.deepEqual(await snapshot(empty.dir), {});
});

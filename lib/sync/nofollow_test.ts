import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, hashFile, setModeAndTime } from "./nofollow.ts";
import { SyncError } from "./paths.ts";

async function scratch() {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-nofollow-" }));
  return {
    dir,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

function mkfifo(path: string): void {
  const out = new Deno.Command("mkfifo", { args: [path] }).outputSync();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

Deno.test("hashFile() hashes a regular file and refuses a symlink or a FIFO without opening it", async () => {
  await using s = await scratch();
  Deno.writeTextFileSync(`${s.dir}/file`, "content");
  Deno.writeTextFileSync(`${s.dir}/secret`, "secret");
  Deno.symlinkSync(`${s.dir}/secret`, `${s.dir}/link`);
  mkfifo(`${s.dir}/fifo`);
  assert.equal(
    await hashFile(`${s.dir}/file`),
    createHash("sha256").update("content").digest("hex"),
  );
  await assert.rejects(hashFile(`${s.dir}/link`, { name: "link" }), /"link" is a symlink/);
  // Opening a FIFO for reading would wait for a writer forever: it is never opened.
  await assert.rejects(hashFile(`${s.dir}/fifo`, { name: "fifo" }), /"fifo" is a FIFO/);
});

Deno.test("hashFile() refuses a sparse file over the limit by its logical size, before reading it", async () => {
  await using s = await scratch();
  using file = Deno.openSync(`${s.dir}/sparse`, { write: true, create: true });
  file.truncateSync(64 * 1024 ** 3);
  await assert.rejects(
    hashFile(`${s.dir}/sparse`, { maxBytes: 1024 ** 3, name: "sparse" }),
    (error) =>
      error instanceof SyncError &&
      /"sparse" is 68719476736 bytes, over the 1073741824-byte file limit/.test(error.message),
  );
});

Deno.test("hashFile() lets timers run while it hashes a large file", async () => {
  await using s = await scratch();
  using file = Deno.openSync(`${s.dir}/big`, { write: true, create: true });
  file.truncateSync(256 * 1024 ** 2);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    const digest = await hashFile(`${s.dir}/big`);
    assert.match(digest, /^[0-9a-f]{64}$/);
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks > 0, "the event loop ran while the file was hashed");
});

Deno.test("copyFile() never writes through a symlink at the target, and removes a copy cut short", async () => {
  await using s = await scratch();
  Deno.writeTextFileSync(`${s.dir}/source`, "new content");
  Deno.writeTextFileSync(`${s.dir}/victim`, "victim");
  Deno.chmodSync(`${s.dir}/victim`, 0o600);
  Deno.symlinkSync(`${s.dir}/victim`, `${s.dir}/target`);
  await assert.rejects(
    copyFile(`${s.dir}/source`, `${s.dir}/target`, { size: 11, mode: 0o777, mtimeMs: 0 }),
    /something is already there/,
  );
  assert.equal(Deno.readTextFileSync(`${s.dir}/victim`), "victim");
  assert.equal(Deno.statSync(`${s.dir}/victim`).mode! & 0o777, 0o600);

  // A source whose size is not what was expected is refused, and nothing is left.
  await assert.rejects(
    copyFile(`${s.dir}/source`, `${s.dir}/copy`, { size: 5, mode: 0o644 }),
    /not the 5 expected/,
  );
  assert.throws(() => Deno.lstatSync(`${s.dir}/copy`), Deno.errors.NotFound);

  const digest = await copyFile(`${s.dir}/source`, `${s.dir}/copy`, {
    size: 11,
    mode: 0o640,
    mtimeMs: 1_000_000_000,
    hash: true,
  });
  assert.equal(digest, createHash("sha256").update("new content").digest("hex"));
  const info = Deno.lstatSync(`${s.dir}/copy`);
  assert.equal(info.mode! & 0o777, 0o640);
  assert.equal(info.mtime?.getTime(), 1_000_000_000);
});

Deno.test("setModeAndTime() refuses a symlink instead of changing what it points to", async () => {
  await using s = await scratch();
  Deno.writeTextFileSync(`${s.dir}/victim`, "victim");
  Deno.chmodSync(`${s.dir}/victim`, 0o600);
  Deno.symlinkSync(`${s.dir}/victim`, `${s.dir}/link`);
  Deno.mkdirSync(`${s.dir}/dir`);
  Deno.symlinkSync(`${s.dir}/dir`, `${s.dir}/dirlink`);
  assert.throws(() => setModeAndTime(`${s.dir}/link`, { mode: 0o777, mtimeMs: 0 }), SyncError);
  assert.throws(
    () => setModeAndTime(`${s.dir}/dirlink`, { mode: 0o777, directory: true }),
    SyncError,
  );
  assert.equal(Deno.statSync(`${s.dir}/victim`).mode! & 0o777, 0o600);
  assert.equal(Deno.statSync(`${s.dir}/dir`).mode! & 0o777, 0o755);
  setModeAndTime(`${s.dir}/dir`, { mode: 0o700, directory: true });
  assert.equal(Deno.statSync(`${s.dir}/dir`).mode! & 0o777, 0o700);
});

Deno.test("setModeAndTime() and copyFile() set the very millisecond asked for, which reads back as it", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-nofollow-" }));
  try {
    Deno.writeTextFileSync(`${dir}/f`, "x");
    const off: number[] = [];
    // A date well past 2026: seconds as a double lose sub-microsecond precision there.
    for (let ms = 1_796_528_802_000; ms < 1_796_528_802_400; ms++) {
      setModeAndTime(`${dir}/f`, { mtimeMs: ms });
      if (Deno.lstatSync(`${dir}/f`).mtime!.getTime() !== ms) off.push(ms);
    }
    for (let ms = 1_796_528_803_000; ms < 1_796_528_803_050; ms++) {
      await copyFile(`${dir}/f`, `${dir}/copy`, { mode: 0o644, mtimeMs: ms, size: 1 });
      if (Deno.lstatSync(`${dir}/copy`).mtime!.getTime() !== ms) off.push(ms);
      Deno.removeSync(`${dir}/copy`);
    }
    assert.deepEqual(off, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

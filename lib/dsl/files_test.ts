import assert from "node:assert/strict";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { createHost } from "./host.ts";

type HostFn = (...args: unknown[]) => { ok: boolean; value?: unknown; error?: string };

/** The host functions for a workdir, with a small data limit; `exec` is never called here. */
function host(workdir: string, dataLimit = 1024): Record<string, HostFn> {
  return createHost({
    workdir,
    env: {},
    values: {},
    dataLimit,
    log: () => {},
    exec: () => Promise.reject(new Error("no exec here")),
    resolveImport: () => {
      throw new Error("no imports here");
    },
  }) as Record<string, HostFn>;
}

function mkfifo(path: string): void {
  const made = new Deno.Command("mkfifo", { args: [path] }).outputSync();
  assert.ok(made.success, new TextDecoder().decode(made.stderr));
}

Deno.test("fs.read refuses a file over the data limit from its size, before reading it", async () => {
  await using ws = await tempWorkspace({
    "fits.txt": "x".repeat(1024),
    "over.txt": "x".repeat(1025),
  });
  // 16 GiB, sparse: reading it would take the memory; its size is all that is looked at.
  Deno.writeTextFileSync(`${ws.dir}/huge.bin`, "");
  Deno.truncateSync(`${ws.dir}/huge.bin`, 16 * 1024 ** 3);
  const h = host(ws.dir);
  assert.deepEqual(h.fs_read("fits.txt"), { ok: true, value: "x".repeat(1024) });
  assert.deepEqual(h.fs_read("over.txt"), {
    ok: false,
    error: "over.txt is 1025 bytes, more than the 1 KiB limit (SLOTH_LUA_DATA_LIMIT)",
  });
  assert.deepEqual(h.fs_read("huge.bin"), {
    ok: false,
    error: "huge.bin is 16 GiB, more than the 1 KiB limit (SLOTH_LUA_DATA_LIMIT)",
  });
});

Deno.test("fs.read of a file that reports no size (/proc) reads it, within the limit", () => {
  const h = host("/", 1024 * 1024);
  const status = h.fs_read("/proc/self/status");
  assert.ok(status.ok && String(status.value).startsWith("Name:"), JSON.stringify(status));
  assert.match(
    String(host("/", 16).fs_read("/proc/self/status").error),
    /is more than the 16 bytes/,
  );
});

Deno.test("fs.read, write, append and copy refuse a FIFO at once instead of waiting for its other end", async () => {
  await using ws = await tempWorkspace({ "a.txt": "a" });
  mkfifo(`${ws.dir}/p`);
  const h = host(ws.dir);
  const started = performance.now();
  assert.deepEqual(h.fs_read("p"), { ok: false, error: "p: not a regular file (a FIFO)" });
  // Nobody reads it: opening it to write fails (ENXIO) instead of waiting for a reader.
  assert.deepEqual(h.fs_write("p", "x"), { ok: false, error: "p: not a regular file" });
  assert.deepEqual(h.fs_append("p", "x"), { ok: false, error: "p: not a regular file" });
  assert.deepEqual(h.fs_copy("p", "b.txt"), { ok: false, error: "p: not a regular file (a FIFO)" });
  assert.deepEqual(h.fs_copy("a.txt", "p"), { ok: false, error: "p: not a regular file" });
  assert.ok(performance.now() - started < 2000);
  assert.deepEqual(h.fs_read("/dev/null"), {
    ok: false,
    error: "/dev/null: not a regular file (a device)",
  });
  assert.equal(h.fs_read(".").error, ".: is a directory");
  assert.equal(h.fs_read("missing").error, "missing: no such file or directory");
});

Deno.test("a FIFO that has a reader is still not written to", async () => {
  await using ws = await tempWorkspace();
  mkfifo(`${ws.dir}/p`);
  // A reader holds the other end (O_NONBLOCK lets this open return at once).
  const reader = Deno.openSync(`${ws.dir}/p`, { read: true, write: true });
  try {
    assert.deepEqual(host(ws.dir).fs_write("p", "x"), {
      ok: false,
      error: "p: not a regular file (a FIFO)",
    });
  } finally {
    reader.close();
  }
});

Deno.test("fs.write, append and copy still write, copy modes, and refuse content over the limit", async () => {
  await using ws = await tempWorkspace({ "run.sh": "echo hi\n" });
  Deno.chmodSync(`${ws.dir}/run.sh`, 0o750);
  const h = host(ws.dir);
  assert.deepEqual(h.fs_write("out.txt", "one\n"), { ok: true, value: true });
  assert.deepEqual(h.fs_append("out.txt", "two\n"), { ok: true, value: true });
  assert.equal(Deno.readTextFileSync(`${ws.dir}/out.txt`), "one\ntwo\n");
  assert.deepEqual(h.fs_write("out.txt", "short"), { ok: true, value: true });
  assert.equal(Deno.readTextFileSync(`${ws.dir}/out.txt`), "short");
  assert.deepEqual(h.fs_copy("run.sh", "copy.sh"), { ok: true, value: true });
  assert.equal(Deno.readTextFileSync(`${ws.dir}/copy.sh`), "echo hi\n");
  assert.equal(Deno.statSync(`${ws.dir}/copy.sh`).mode! & 0o777, 0o750);
  assert.deepEqual(h.fs_write("big.txt", "x".repeat(1025)), {
    ok: false,
    error: "the content is 1025 bytes, more than the 1 KiB limit (SLOTH_LUA_DATA_LIMIT)",
  });
  assert.equal(h.fs_copy("missing", "x").error, "missing: no such file or directory");
  assert.equal(
    h.fs_copy("run.sh", "no/such/dir/x").error,
    "no/such/dir/x: no such file or directory",
  );
});

Deno.test("fs.ls refuses a directory whose names do not fit in the limit", async () => {
  await using ws = await tempWorkspace();
  for (let i = 0; i < 40; i++) Deno.writeTextFileSync(`${ws.dir}/file-${i}`, "");
  assert.equal((host(ws.dir, 4096).fs_ls(".").value as string[]).length, 40);
  assert.deepEqual(host(ws.dir, 512).fs_ls("."), {
    ok: false,
    error: ". has more names than fit in the 512 bytes limit (SLOTH_LUA_DATA_LIMIT)",
  });
});

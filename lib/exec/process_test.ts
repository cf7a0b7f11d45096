import assert from "node:assert/strict";
import { processAlive, tempWorkspace, waitFor } from "../../tests/_helpers/mod.ts";
import { KILL_GRACE_MS, runShell } from "./process.ts";

Deno.test("runShell() streams stdout and stderr line by line, in order per stream", async () => {
  const lines: string[] = [];
  const { exit } = await runShell("echo one; echo two >&2; printf 'three\\r\\nfour'", {
    cwd: "/",
    onLine: (stream, line) => {
      lines.push(`${stream}:${line}`);
    },
  });
  assert.deepEqual(exit, { reason: "exited", code: 0, signal: null });
  assert.deepEqual(lines.filter((l) => l.startsWith("stdout")), [
    "stdout:one",
    "stdout:three",
    "stdout:four",
  ]);
  assert.deepEqual(lines.filter((l) => l.startsWith("stderr")), ["stderr:two"]);
});

Deno.test("runShell() delivers a line before the command finishes", async () => {
  let firstAt = 0;
  const started = Date.now();
  await runShell("echo early; sleep 0.5; echo late", {
    cwd: "/",
    onLine: (_, line) => {
      if (line === "early") firstAt = Date.now() - started;
    },
  });
  assert.ok(firstAt > 0 && firstAt < 400, `first line arrived after ${firstAt}ms`);
});

Deno.test("runShell() reports the exit code, the working directory and the added environment", async () => {
  await using ws = await tempWorkspace();
  const { exit, stdout } = await runShell('echo "$PWD $EXTRA $HOME"; exit 7', {
    cwd: ws.dir,
    env: { EXTRA: "yes" },
    capture: true,
  });
  assert.deepEqual(exit, { reason: "exited", code: 7, signal: null });
  assert.equal(stdout, `${ws.dir} yes ${Deno.env.get("HOME") ?? ""}\n`);
});

Deno.test("runShell() says why it could not start when the directory is missing", async () => {
  const { exit } = await runShell("true", { cwd: "/no/such/dir" });
  assert.equal(exit.reason, "spawn_failed");
  assert.match(exit.message ?? "", /working directory \/no\/such\/dir does not exist/);
});

Deno.test("runShell() kills the whole process tree when its signal times out", async () => {
  await using ws = await tempWorkspace();
  const controller = new AbortController();
  const started = Date.now();
  const running = runShell(`sh -c 'sleep 30 & echo $! > child.pid; wait' & wait`, {
    cwd: ws.dir,
    signal: controller.signal,
  });
  await waitFor(async () =>
    (await Deno.readTextFile(`${ws.dir}/child.pid`).catch(() => "")) !== ""
  );
  const grandchild = Number((await Deno.readTextFile(`${ws.dir}/child.pid`)).trim());
  assert.ok(processAlive(grandchild));
  controller.abort("timeout");
  const { exit } = await running;
  assert.equal(exit.reason, "timeout");
  assert.ok(Date.now() - started < 5000);
  await waitFor(() => !processAlive(grandchild), 3000);
});

Deno.test("runShell() escalates to SIGKILL when the tree ignores SIGTERM", async () => {
  const controller = new AbortController();
  const running = runShell(`trap '' TERM; echo ready; while :; do sleep 0.1; done`, {
    cwd: "/",
    signal: controller.signal,
    onLine: () => controller.abort("cancelled"),
  });
  const { exit } = await running;
  assert.equal(exit.reason, "cancelled");
  assert.equal(exit.signal, "SIGKILL");
});

Deno.test("runShell() stops what the script left running in the background", async () => {
  await using ws = await tempWorkspace();
  const started = Date.now();
  const { exit } = await runShell("sleep 30 & echo $! > bg.pid; echo done", {
    cwd: ws.dir,
    capture: true,
  });
  assert.equal(exit.code, 0);
  assert.ok(Date.now() - started < 3000, "the task's output ended when it did");
  const pid = Number((await Deno.readTextFile(`${ws.dir}/bg.pid`)).trim());
  await waitFor(() => !processAlive(pid), 3000);
});

Deno.test("runShell() does not start when its signal is already aborted", async () => {
  const controller = new AbortController();
  controller.abort("cancelled");
  const { exit } = await runShell("echo never", { cwd: "/", signal: controller.signal });
  assert.equal(exit.reason, "cancelled");
});

Deno.test("runShell() also stops leftovers that ignore SIGTERM and hold no pipe", async () => {
  await using ws = await tempWorkspace();
  const started = Date.now();
  const { exit } = await runShell(
    "(trap '' TERM; exec sleep 30) >/dev/null 2>&1 </dev/null & echo $! > bg.pid",
    { cwd: ws.dir },
  );
  assert.equal(exit.code, 0);
  const pid = Number((await Deno.readTextFile(`${ws.dir}/bg.pid`)).trim());
  await waitFor(() => !processAlive(pid), 3000);
  assert.ok(Date.now() - started < 4000);
});

Deno.test("runShell() does not wait out the SIGKILL grace when SIGTERM ended the tree (orphaned zombies do not count)", async () => {
  await using ws = await tempWorkspace();
  const controller = new AbortController();
  // The shell's child outlives it as an orphan: after SIGTERM it is a zombie until PID 1 reaps it.
  const running = runShell("sleep 30; true", { cwd: ws.dir, signal: controller.signal });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const aborted = performance.now();
  controller.abort("timeout");
  const { exit } = await running;
  assert.equal(exit.reason, "timeout");
  // Not a timing measurement: the grace period is 1 s, and waiting it out is the bug.
  const waited = performance.now() - aborted;
  assert.ok(waited < KILL_GRACE_MS * 0.8, `waited ${Math.round(waited)}ms after SIGTERM`);
});

Deno.test("runShell() cuts a line over 64 KiB into 64 KiB lines, however its bytes arrive", async () => {
  for (
    const script of [
      // All at once (its end in the same read), and in two writes with a pause between.
      "head -c 150000 /dev/zero | tr '\\0' x; echo",
      "head -c 70000 /dev/zero | tr '\\0' x; sleep 0.2; head -c 80000 /dev/zero | tr '\\0' x; echo",
    ]
  ) {
    const lengths: number[] = [];
    await runShell(script, { cwd: "/", onLine: (_, line) => void lengths.push(line.length) });
    assert.deepEqual(lengths, [65536, 65536, 150000 - 2 * 65536], script);
  }
});

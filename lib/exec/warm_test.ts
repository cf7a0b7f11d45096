import assert from "node:assert/strict";
import { processAlive, tempWorkspace, waitFor } from "../../tests/_helpers/mod.ts";
import { runShell } from "./process.ts";
import { keepShellsWarm, warmShellsTaken } from "./warm.ts";

/** Runs `body` with a shell kept warm, and a first command run to make the spare. */
async function warm(body: () => Promise<void>): Promise<void> {
  const stop = keepShellsWarm();
  try {
    await runShell("true", { cwd: "/" });
    await body();
  } finally {
    await stop();
  }
}

/** `runShell` with a shell made ahead; fails if it started the command directly. */
async function runWarm(script: string, options: Parameters<typeof runShell>[1]) {
  // The spare is made on a timer (8 ms) after the command before: let it start.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const before = warmShellsTaken();
  const result = await runShell(script, options);
  assert.equal(warmShellsTaken(), before + 1, "the command ran in a shell made ahead");
  return result;
}

Deno.test("a shell made ahead runs a command as a direct start would: output, exit code, directory, environment, $0, stdin", async () => {
  await using ws = await tempWorkspace();
  const script = [
    "echo one; echo two >&2; printf 'three\\r\\nfour'",
    `echo; echo "pwd=$PWD old=\${OLDPWD-unset} x=$X q=$Q zero=$0 args=$#"`,
    "read line; echo read=$?",
    "exit 7",
  ].join("\n");
  const env = { X: 'it\'s "quoted"\nover two lines $HOME `x`', Q: "" };
  const direct = await runShell(script, { cwd: ws.dir, env, capture: true });
  await warm(async () => {
    const made = await runWarm(script, { cwd: ws.dir, env, capture: true });
    assert.deepEqual(made, direct);
  });
  assert.deepEqual(direct.exit, { reason: "exited", code: 7, signal: null });
  assert.match(direct.stdout, new RegExp(`pwd=${ws.dir} `));
  assert.match(direct.stdout, /read=1/);
});

Deno.test("a shell made ahead: the same environment as a direct start, variable by variable", async () => {
  await using ws = await tempWorkspace();
  const script = "env | sort; set | grep -v '^PPID=' | sort";
  const direct = await runShell(script, { cwd: ws.dir, env: { A: "1" }, capture: true });
  await warm(async () => {
    const made = await runWarm(script, { cwd: ws.dir, env: { A: "1" }, capture: true });
    assert.equal(made.stdout, direct.stdout);
  });
});

Deno.test("a shell made ahead is not used for what sh could not be handed: a long script, a name sh cannot export; a missing directory fails as before", async () => {
  await warm(async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = warmShellsTaken();
    const long = await runShell(`echo ${"x".repeat(5000)} | wc -c`, { cwd: "/", capture: true });
    assert.equal(long.stdout, "5001\n");
    const odd = await runShell("exit 3", { cwd: "/", env: { "A-B": "1" } });
    assert.equal(odd.exit.code, 3);
    const missing = await runShell("true", { cwd: "/no/such/dir" });
    assert.equal(missing.exit.reason, "spawn_failed");
    assert.match(missing.exit.message ?? "", /working directory \/no\/such\/dir does not exist/);
    assert.equal(warmShellsTaken(), before);
    // The spare is still there for the next command.
    await runWarm("true", { cwd: "/" });
  });
});

Deno.test("a shell made ahead: a session of its own, and an abort kills its whole tree", async () => {
  await using ws = await tempWorkspace();
  await warm(async () => {
    const own = await runWarm("echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)", {
      cwd: ws.dir,
      capture: true,
    });
    const [pid, pgrp, session] = own.stdout.trim().split(" ");
    assert.equal(pgrp, pid);
    assert.equal(session, pid);

    const controller = new AbortController();
    const running = runWarm(`sh -c 'sleep 30 & echo $! > child.pid; wait' & wait`, {
      cwd: ws.dir,
      signal: controller.signal,
    });
    await waitFor(async () =>
      (await Deno.readTextFile(`${ws.dir}/child.pid`).catch(() => "")) !== ""
    );
    const grandchild = Number((await Deno.readTextFile(`${ws.dir}/child.pid`)).trim());
    controller.abort("timeout");
    const { exit } = await running;
    assert.equal(exit.reason, "timeout");
    await waitFor(() => !processAlive(grandchild), 3000);
  });
});

Deno.test("a shell made ahead and never used ends when it is no longer kept", async () => {
  const stop = keepShellsWarm();
  await runShell("true", { cwd: "/" });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const stubs = async () =>
    new TextDecoder().decode(
      (await new Deno.Command("pgrep", { args: ["-f", "-P", String(Deno.pid), "read -r l"] })
        .output()).stdout,
    ).trim().split("\n").filter(Boolean);
  assert.equal((await stubs()).length, 1, "one spare waits");
  await stop();
  assert.deepEqual(await stubs(), []);
});

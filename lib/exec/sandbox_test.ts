/**
 * What a command of an agent running as root is, seen from inside it: the task
 * user's ids and no other group, no capability in any set, no_new_privs (so a
 * set-user-ID root program stays the task user's), a session of its own, and a
 * tree that dies with an abort. Root-only; CI runs them as root.
 */
import assert from "node:assert/strict";
import {
  hasCommand,
  pgrep,
  processAlive,
  uniqueSeconds,
  waitFor,
} from "../../tests/_helpers/mod.ts";
import { runShell } from "./process.ts";
import { bwrapSandbox, userSandbox } from "./sandbox.ts";
import { lookupUser, runTasksAs, type TaskUser } from "./task_user.ts";

const nobody = Deno.uid() === 0 ? await lookupUser("nobody") : undefined;
const ignore = Deno.build.os !== "linux" || nobody === undefined;

/** A job directory as the agent hands it over: under a 0755 parent, the task user's. */
async function jobRoot(): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  const parent = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sloth-sandbox-test-" });
  await Deno.chmod(parent, 0o755);
  const dir = `${parent}/job`;
  await Deno.mkdir(`${dir}/tmp`, { recursive: true });
  await Deno.chown(`${dir}/tmp`, nobody!.uid, nobody!.gid);
  await Deno.chown(dir, nobody!.uid, nobody!.gid);
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(parent, { recursive: true }) };
}

/** The status lines of the shell that runs the command, and its /proc/PID/stat fields. */
const PROBE =
  "id -u; id -G; grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs):' /proc/self/status; " +
  "echo stat $$ $(cut -d' ' -f5,6 /proc/$$/stat)";

function checkConfined(stdout: string, user: TaskUser, label: string): void {
  const lines = stdout.trim().split("\n");
  assert.equal(lines[0], String(user.uid), label);
  assert.equal(lines[1], String(user.gid), `${label}: only the task user's group`);
  const field = (name: string) => lines.find((l) => l.startsWith(`${name}:`))?.split(/:\s*/)[1];
  const u = user.uid, g = user.gid;
  assert.equal(field("Uid"), `${u}\t${u}\t${u}\t${u}`, `${label}: real, effective, saved ids`);
  assert.equal(field("Gid"), `${g}\t${g}\t${g}\t${g}`, label);
  assert.equal(field("Groups"), "", `${label}: no supplementary groups`);
  for (const set of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) {
    assert.match(field(set) ?? "missing", /^0+$/, `${label}: ${set}`);
  }
  assert.equal(field("NoNewPrivs"), "1", label);
  const [, pid, pgrp, session] = lines.find((l) => l.startsWith("stat "))!.split(" ");
  assert.equal(pgrp, pid, `${label}: the shell leads its own process group`);
  assert.equal(session, pid, `${label}: and its own session`);
}

Deno.test({
  name:
    "runShell() as the task user: its ids and no other group, no capability in any set, no_new_privs, a session of its own",
  ignore,
}, async () => {
  await using job = await jobRoot();
  const user = nobody!;
  for (const handedOver of [false, true]) {
    const { exit, stdout, stderr } = await runShell(PROBE, {
      cwd: job.dir,
      sandbox: userSandbox(job.dir, user, { handedOver }),
      capture: true,
    });
    assert.deepEqual(exit, { reason: "exited", code: 0, signal: null }, stderr);
    checkConfined(stdout, user, `userSandbox, handedOver ${handedOver}`);
  }
  // Without a sandbox, after runTasksAs (how a Lua worker's exec.run runs).
  runTasksAs(user);
  try {
    const { exit, stdout, stderr } = await runShell(PROBE, { cwd: job.dir, capture: true });
    assert.deepEqual(exit, { reason: "exited", code: 0, signal: null }, stderr);
    checkConfined(stdout, user, "runTasksAs");
  } finally {
    runTasksAs(undefined);
  }
});

Deno.test({
  name: "runShell() as the task user: a set-user-ID root program does not lead back to root",
  ignore,
}, async () => {
  await using job = await jobRoot();
  // A root-owned set-user-ID copy of `id`, where the task user can run it (not a nosuid mount).
  const suid = `${job.dir}/../id-suid`;
  await Deno.copyFile("/usr/bin/id", suid);
  await Deno.chmod(suid, 0o4755);
  // On a nosuid mount the bit means nothing, and neither would this test.
  const mounted = await new Deno.Command("findmnt", {
    args: ["-no", "OPTIONS", "-T", suid],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  if (mounted && /\bnosuid\b/.test(new TextDecoder().decode(mounted.stdout))) return;
  const { exit, stdout, stderr } = await runShell(`"${suid}"; "${suid}" -u`, {
    cwd: job.dir,
    sandbox: userSandbox(job.dir, nobody!, { handedOver: true }),
    capture: true,
  });
  assert.deepEqual(exit, { reason: "exited", code: 0, signal: null }, stderr);
  assert.doesNotMatch(stdout, /euid=0/);
  assert.equal(stdout.trim().split("\n")[1], String(nobody!.uid));
});

Deno.test({
  name: "runShell() as the task user: an abort kills the task user's whole tree",
  ignore,
}, async () => {
  await using job = await jobRoot();
  const controller = new AbortController();
  const running = runShell(`sh -c 'sleep 30 & echo $! > child.pid; wait' & wait`, {
    cwd: job.dir,
    sandbox: userSandbox(job.dir, nobody!, { handedOver: true }),
    signal: controller.signal,
  });
  await waitFor(async () =>
    (await Deno.readTextFile(`${job.dir}/child.pid`).catch(() => "")) !== ""
  );
  const grandchild = Number((await Deno.readTextFile(`${job.dir}/child.pid`)).trim());
  assert.match(await Deno.readTextFile(`/proc/${grandchild}/status`), /^NoNewPrivs:\s+1$/m);
  controller.abort("cancelled");
  const { exit } = await running;
  assert.equal(exit.reason, "cancelled");
  await waitFor(() => !processAlive(grandchild), 3000);
});

Deno.test({
  name:
    "userSandbox() hands over what the agent made in the job's directory before each command, unless told it was handed over",
  ignore,
}, async () => {
  await using job = await jobRoot();
  await Deno.writeTextFile(`${job.dir}/made-by-agent.txt`, "x\n");
  const append = "echo more >> made-by-agent.txt && echo written";
  const told = await runShell(append, {
    cwd: job.dir,
    sandbox: userSandbox(job.dir, nobody!, { handedOver: true }),
    capture: true,
  });
  assert.notEqual(told.exit.code, 0, "nothing was handed over: the file is still root's");
  assert.equal(told.stdout, "");
  // The hand-over is to the user tasks run as (on an agent, set at its start).
  runTasksAs(nobody);
  const { exit, stdout } = await runShell(append, {
    cwd: job.dir,
    sandbox: userSandbox(job.dir, nobody!),
    capture: true,
  }).finally(() => runTasksAs(undefined));
  assert.equal(exit.code, 0);
  assert.equal(stdout, "written\n");
  assert.equal((await Deno.stat(`${job.dir}/made-by-agent.txt`)).uid, nobody!.uid);
});

Deno.test({
  name:
    "runShell() in a bwrap sandbox: an abort at any moment of its start leaves no process of the command behind",
  ignore: Deno.build.os !== "linux" || !hasCommand("bwrap"),
}, async () => {
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sloth-sandbox-test-" });
  await using _ = { [Symbol.asyncDispose]: () => Deno.remove(work, { recursive: true }) };
  await Deno.chmod(work, 0o755);
  const job = `${work}/job`;
  await Deno.mkdir(`${job}/tmp`, { recursive: true });
  const sandbox = bwrapSandbox({ jobRoot: job, workRoot: work, hide: [], network: false });
  // While bwrap sets its sandbox up (a few ms): before the fix, about one abort in five there
  // left the sandbox's PID 1 and the command running, out of the tree's group, for good.
  for (let i = 0; i < 24; i++) {
    const command = `sleep ${uniqueSeconds()}`;
    const controller = new AbortController();
    const running = runShell(command, { cwd: job, sandbox, signal: controller.signal });
    const timer = setTimeout(() => controller.abort("cancelled"), i % 12);
    let wait: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      running.then(() => true),
      new Promise<false>((resolve) => wait = setTimeout(() => resolve(false), 5000)),
    ]);
    clearTimeout(wait);
    clearTimeout(timer);
    let left = await pgrep(command);
    if (ended) {
      await waitFor(async () => (left = await pgrep(command)).length === 0, 2000).catch(() => {});
    }
    // What the test started does not outlive it, whatever the outcome.
    for (const pid of left) Deno.kill(pid, "SIGKILL");
    const { exit } = await running;
    assert.ok(ended, `abort after ${i % 12} ms: runShell did not return (its output held open)`);
    assert.deepEqual(left, [], `abort after ${i % 12} ms: left running`);
    assert.equal(exit.reason, "cancelled");
  }
});

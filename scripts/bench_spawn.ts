/**
 * What one shell command costs, by the way it is started: bare `Deno.Command`,
 * `runShell` as a master runs it, and the ways an agent running as root can run
 * it as the task user. Variants are interleaved round by round (this machine's
 * speed swings), each round in a fresh order; medians and p90 per variant.
 *
 *   deno run -A scripts/bench_spawn.ts [--rounds=300] [--only=a,b] [--gap=10]
 *
 * `--gap` is idle time before each command, as a remote task's round trips leave
 * an agent: a shell made ahead (exec/warm.ts) is made 8 ms after the last was
 * taken, so the "made ahead" rows need a gap over that to show it. Variants
 * needing root (a task user) are left out otherwise.
 */
import { parseArgs } from "node:util";
import { runShell } from "../lib/exec/process.ts";
import { lookupUser, runTasksAs, switchUserArgv } from "../lib/exec/task_user.ts";
import { userSandbox } from "../lib/exec/sandbox.ts";
import { recordTreesIn } from "../lib/exec/trees.ts";
import { keepShellsWarm, warmShellsTaken } from "../lib/exec/warm.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "300" },
    only: { type: "string" },
    // Idle time between commands (a remote task's round trips): when a spare is made.
    gap: { type: "string", default: "0" },
  },
});
const ROUNDS = Number(values.rounds);
const GAP_MS = Number(values.gap);
const nobody = Deno.uid() === 0 ? await lookupUser("nobody") : undefined;
const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sloth-bench-spawn-" });
await Deno.chmod(dir, 0o777);
if (nobody) await Deno.chown(dir, nobody.uid, nobody.gid);

/** Spawns, drains both pipes, waits: what runShell must do at the least. */
async function spawnDrain(cmd: string, args: string[], extra: Partial<Deno.CommandOptions> = {}) {
  const child = new Deno.Command(cmd, {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...extra,
  }).spawn();
  await Promise.all([drain(child.stdout), drain(child.stderr), child.status]);
}

async function drain(stream: ReadableStream<Uint8Array>) {
  for await (const _ of stream);
}

const variants: Record<string, () => Promise<unknown>> = {
  "bare /bin/true, output()": () =>
    new Deno.Command("/bin/true", { stdout: "null", stderr: "null", stdin: "null" }).output(),
  "sh -c true, piped": () => spawnDrain("/bin/sh", ["-c", "true"]),
  "setsid sh -c true, piped": () => spawnDrain("/usr/bin/setsid", ["/bin/sh", "-c", "true"]),
  "detached sh -c true, piped": () => spawnDrain("/bin/sh", ["-c", "true"], { detached: true }),
  "runShell (master)": () => runShell("true", { cwd: dir }),
  "runShell (master), shell made ahead": () => warmly(() => runShell("true", { cwd: dir })),
};

/** Variants with a shell made ahead (exec/warm.ts) run in a block of their own each round. */
let warmed = 0;
async function warmly(run: () => Promise<unknown>): Promise<unknown> {
  const before = warmShellsTaken();
  const result = await run();
  if (warmShellsTaken() > before) warmed++;
  return result;
}
if (nobody) {
  const setpriv = switchUserArgv(nobody);
  const sandbox = userSandbox(dir, nobody);
  const handedOver = userSandbox(dir, nobody, { handedOver: true });
  Object.assign(variants, {
    "setsid setpriv sh, piped": () =>
      spawnDrain("/usr/bin/setsid", [...setpriv, "/bin/sh", "-c", "true"]),
    "detached setpriv sh, piped": () =>
      spawnDrain(setpriv[0], [...setpriv.slice(1), "/bin/sh", "-c", "true"], { detached: true }),
    "detached uid/gid sh, piped": () =>
      spawnDrain("/bin/sh", ["-c", "true"], { detached: true, uid: nobody.uid, gid: nobody.gid }),
    "chown -R (userSandbox.prepare)": () => sandbox.prepare!(),
    "runShell (agent, --sandbox none)": () => runShell("true", { cwd: dir, sandbox }),
    "runShell (agent, --sandbox none), shell made ahead": () =>
      warmly(() => runShell("true", { cwd: dir, sandbox: handedOver })),
    "runShell (agent, --sandbox none, handed over)": () =>
      runShell("true", { cwd: dir, sandbox: handedOver }),
  });
}
const chosen = values.only
  ? Object.keys(variants).filter((name) => values.only!.split(",").some((s) => name.includes(s)))
  : Object.keys(variants);

// The agent records trees on disk; so do the runShell variants here.
recordTreesIn(`${dir}/.trees`);
if (nobody) runTasksAs(nobody);
const times = new Map<string, number[]>(chosen.map((name) => [name, []]));
for (let round = 0; round < ROUNDS + 10; round++) {
  const names = shuffled(chosen);
  for (const ahead of round % 2 ? [true, false] : [false, true]) {
    // Keeping a spare (and ending it) happens outside the timed runs.
    const stopWarm = ahead ? keepShellsWarm() : undefined;
    if (ahead) await runShell("true", { cwd: dir });
    for (const name of names.filter((n) => n.includes("made ahead") === ahead)) {
      if (GAP_MS) await new Promise((resolve) => setTimeout(resolve, GAP_MS));
      const started = performance.now();
      await variants[name]();
      if (round >= 10) times.get(name)!.push(performance.now() - started);
    }
    await stopWarm?.();
  }
}
runTasksAs(undefined);
await Deno.remove(dir, { recursive: true });

const width = Math.max(...chosen.map((name) => name.length));
for (const [name, list] of times) {
  list.sort((a, b) => a - b);
  const at = (q: number) => list[Math.min(list.length - 1, Math.floor(q * list.length))];
  console.log(
    `${name.padEnd(width)}  p50 ${at(0.5).toFixed(2)} ms  p90 ${at(0.9).toFixed(2)} ms`,
  );
}

console.log(`(${warmed} of the "made ahead" runs took a shell made ahead)`);

function shuffled<T>(list: T[]): T[] {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

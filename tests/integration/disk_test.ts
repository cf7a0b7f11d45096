/**
 * The agent's disk: one budget (`--cache-size`) for the content store and the
 * kept workspaces, and a full disk met by evicting them, else a task failure
 * that says so. The full-disk cases run an agent, as users start it, in its own
 * mount namespace on a small tmpfs (root, `unshare` and `mount`); the budget case
 * runs anywhere.
 */
import assert from "node:assert/strict";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { cliProcess, hasCommand, tempWorkspace, waitFor } from "../_helpers/mod.ts";

const MB = 1024 * 1024;
/** The agent's disk in the full-disk cases. */
const DISK_MB = 24;

async function canMountTmpfs(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not running as root";
  if (!hasCommand("unshare")) return "unshare (util-linux) is not installed";
  if (!hasCommand("mount")) return "mount is not installed";
  const dir = await Deno.makeTempDir({ prefix: "sloth-tmpfs-probe-" });
  try {
    const probe = await new Deno.Command("unshare", {
      args: ["-m", "sh", "-c", `mount -t tmpfs -o size=1m tmpfs '${dir}'`],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!probe.success) {
      return `cannot mount a tmpfs in a mount namespace: ${
        new TextDecoder().decode(probe.stderr).trim()
      }`;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return undefined;
}

const skip = await canMountTmpfs();
if (skip) console.log(`disk_test: full-disk cases skipped: ${skip}`);

/** An agent whose work root is a fresh tmpfs of `DISK_MB`, seen only by it. */
async function agentOnTmpfs(
  args: string[] = [],
): Promise<{ agent: TestAgent; workRoot: string; home: () => string } & AsyncDisposable> {
  const workRoot = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-disk-" }));
  const agent = await startAgent({
    args: ["--work-root", workRoot, "--sandbox", "none", ...args],
    prefix: [
      "unshare",
      "-m",
      "sh",
      "-c",
      `mount -t tmpfs -o size=${DISK_MB}m tmpfs '${workRoot}' && exec "$@"`,
      "sh",
    ],
  });
  return {
    agent,
    workRoot,
    // The agent's mount namespace, seen from here through its root.
    home: () => `/proc/${agent.process.pid}/root${workRoot}/sloth-agent-${agent.port}`,
    [Symbol.asyncDispose]: async () => {
      await agent.stop();
      await Deno.remove(workRoot, { recursive: true });
    },
  };
}

/** A master directory holding `bytes` of random content in `data.bin`, and its workflow. */
async function masterDir(address: string, bytes: number, command = "sha256sum data.bin") {
  const ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "check",
      delegate_to = "${address}", command = ${JSON.stringify(command)} } } } }`,
  });
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  await Deno.writeFile(`${ws.dir}/data.bin`, data);
  const local = await new Deno.Command("sha256sum", { args: ["data.bin"], cwd: ws.dir }).output();
  return { ...ws, sha256: new TextDecoder().decode(local.stdout).trim() };
}

/** Runs the workflow in `dir` with JSON output: its task's end and log lines. */
async function runJson(dir: string) {
  const r = await cliProcess(["run", "-f", "workflow.lua", "-o", "json"], { cwd: dir });
  const events = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  return {
    code: r.code,
    stderr: r.stderr + r.stdout,
    finished: events.find((e) => e.type === "task_finished"),
    lines: events.filter((e) => e.type === "log").map((e) => e.line as string),
  };
}

/** Bytes the entries under `dir` take on disk (allocated blocks), the directories' own included. */
function diskUse(dir: string): number {
  let bytes = 0;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = `${dir}/${entry.name}`;
    try {
      bytes += (Deno.lstatSync(full).blocks ?? 0) * 512;
    } catch {
      continue;
    }
    if (entry.isDirectory) bytes += diskUse(full);
  }
  return bytes;
}

Deno.test({
  name: "a workspace bigger than the agent's disk fails its task, saying so on the master; " +
    "the agent runs the next task",
  ignore: skip !== undefined,
}, async () => {
  await using disk = await agentOnTmpfs();
  const { agent, workRoot } = disk;
  await using small = await masterDir(agent.address, 2 * MB);
  const first = await runJson(small.dir);
  assert.equal(first.code, 0, first.stderr);

  await using big = await masterDir(agent.address, 30 * MB);
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: big.dir });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const output = r.stdout + r.stderr;
  const address = agent.address.replaceAll(".", "\\.");
  const match = new RegExp(
    `agent ${address}: no space left in ${workRoot} \\((\\d+) MB free, (\\d+) MB needed\\)`,
  ).exec(output);
  assert.ok(match, output);
  const [free, needed] = [Number(match[1]), Number(match[2])];
  // The small directory's workspace and content (about 4 MB) are still kept.
  assert.ok(free < DISK_MB - 2 && free >= DISK_MB - 8, `free ${free} MB`);
  assert.equal(needed, 30);
  // Both where the task's end is shown and in the summary table.
  assert.match(r.stderr, /\[check\] ✘ failed: agent .*: no space left in /);
  assert.match(r.stdout, /^check +failed +1 .*no space left in /m);
  assert.doesNotMatch(output, /internal error/);
  assert.doesNotMatch(agent.log(), /internal error/);
  assert.match(agent.log(), /failed \(no space left in /);

  // The agent keeps working, and a job that could not fit evicted nothing for it.
  const next = await runJson(small.dir);
  assert.equal(next.code, 0, next.stderr);
  assert.ok(next.lines.some((line) => line.includes(small.sha256)), next.lines.join("\n"));
  assert.equal(next.finished.transfer.sent_bytes, 0, "the kept workspace was still there");
  // And a workspace that fits runs from the directory that failed.
  await Deno.writeFile(`${big.dir}/data.bin`, new Uint8Array(1000));
  const again = await cliProcess(["run", "-f", "workflow.lua"], { cwd: big.dir });
  assert.equal(again.code, 0, again.stdout + again.stderr);
});

Deno.test({
  name: "master directories whose workspaces together overflow the agent's disk all run, " +
    "older kept workspaces and content evicted to make room",
  ignore: skip !== undefined,
}, async () => {
  await using disk = await agentOnTmpfs();
  const { agent } = disk;
  const dirs = [];
  for (let i = 0; i < 5; i++) dirs.push(await masterDir(agent.address, 7 * MB));
  try {
    for (const [i, dir] of dirs.entries()) {
      const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: dir.dir });
      assert.equal(r.code, 0, `run ${i}:\n${r.stdout}${r.stderr}\n${agent.log()}`);
      // The agent saw exactly the master's content.
      assert.ok(r.stdout.includes(dir.sha256), r.stdout);
    }
    // 5 × 7 MB, each kept and stored, on a 24 MB disk: the oldest went.
    const kept = [...Deno.readDirSync(`${disk.home()}/workspaces`)]
      .filter((e) => e.isDirectory).length;
    assert.ok(kept >= 1 && kept < 5, `${kept} kept workspaces`);
    // And the newest is kept: running it again sends nothing.
    const last = dirs[dirs.length - 1];
    const again = await runJson(last.dir);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.finished.transfer.sent_bytes, 0);
    assert.doesNotMatch(agent.log(), /internal error|background work failed/);
  } finally {
    for (const dir of dirs) await dir[Symbol.asyncDispose]();
  }
});

Deno.test("with --cache-size 4M the agent's store and kept workspaces stay within 4 MB", async () => {
  await using root = await tempWorkspace();
  // Unsandboxed, tasks of an agent running as root (nobody) pass through the work root.
  await Deno.chmod(root.dir, 0o711);
  await using agent = await startAgent({
    args: ["--work-root", root.dir, "--cache-size", "4M", "--sandbox", "none"],
  });
  const home = `${root.dir}/sloth-agent-${agent.port}`;
  const kept = () => diskUse(`${home}/blobs`) + diskUse(`${home}/workspaces`);
  // Each run sends 1 MB and its task writes 1.5 MB more that stays in the kept workspace.
  const command = "head -c 1500000 /dev/zero > out.bin && sha256sum data.bin";
  const dirs = [];
  for (let i = 0; i < 6; i++) dirs.push(await masterDir(agent.address, MB, command));
  try {
    for (const dir of [...dirs, dirs[0], dirs[5]]) {
      await Deno.writeTextFile(
        `${dir.dir}/workflow.lua`,
        `TaskDefinitions = { g = { tasks = { { name = "check", delegate_to = "${agent.address}",
          sync_back = "never", command = ${JSON.stringify(command)} } } } }`,
      );
      const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: dir.dir });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(r.stdout.includes(dir.sha256), r.stdout);
      // Once the job's content has been stored (after its call), all of it is within the budget.
      await waitFor(() => kept() <= 4 * MB, 10_000).catch(() => {
        throw new Error(`the agent keeps ${kept()} bytes, over its 4 MB budget`);
      });
    }
    // Something is kept: the last directory's workspace (2.5 MB) fits.
    assert.ok(kept() > 2 * MB, `${kept()} bytes kept`);
    assert.doesNotMatch(agent.log(), /internal error|background work failed/);
  } finally {
    for (const dir of dirs) await dir[Symbol.asyncDispose]();
  }
});

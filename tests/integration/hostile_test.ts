/**
 * Hostile input in both directions: a malicious master against a real agent,
 * and a fake malicious agent against the real master. Every case must end in a
 * clear error, with nothing written outside the target, the master's directory
 * unchanged, and the agent still serving the next job.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  AgentClient,
  type IncomingJob,
  PROTOCOL_VERSION,
  type RunTaskResponse,
  serveAgent,
  type TaskStart,
  type WireEntry,
} from "../../lib/rpc/mod.ts";
import { HOSTILE_ARCHIVES, type HostileArchive } from "../fixtures/hostile/archives.ts";
import { HOSTILE_MANIFESTS } from "../fixtures/hostile/manifests.ts";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { cliProcess, snapshot, tempWorkspace } from "../_helpers/mod.ts";
import { hostileBytes } from "../_helpers/tar.ts";
import { agentToken } from "../_helpers/jobs.ts";

/** SHA-256 of "keep", the content of keep.txt in the master's workspace below. */
const KEEP_DIGEST = "6ca7ea2feefc88ecb5ed6356ed963f47dc9137f82526fdd25d618ea626d0803f";

function start(fields: Partial<TaskStart> = {}): TaskStart {
  return {
    protocol: PROTOCOL_VERSION,
    group: "g",
    task: "t",
    files: [{
      path: "/w/workflow.lua",
      content: `TaskDefinitions = { g = { tasks = { { name = "t", command = "true" } } } }`,
    }],
    main_file: "/w/workflow.lua",
    master_cwd: "/w",
    values_json: "{}",
    params_json: "{}",
    inputs_json: "{}",
    timeout_ms: 0,
    attempt: 1,
    sync_back: "on_success",
    shell_command: "touch ran.txt",
    workspace_key: "",
    compression: "",
    ...fields,
  };
}

/** Sends a job: a manifest (empty unless given), then these bytes as the workspace content. */
async function sendJob(
  agent: TestAgent,
  bytes: Uint8Array,
  fields: Partial<TaskStart> = {},
  manifest: WireEntry[] = [],
): Promise<{ responses: RunTaskResponse[]; error?: Error }> {
  const client = new AgentClient(agent.address, { token: agentToken(agent) });
  const call = client.runTask();
  const responses: RunTaskResponse[] = [];
  try {
    const reading = (async () => {
      for await (const r of call.responses) responses.push(r);
    })();
    await call.send({ start: start(fields) });
    if (manifest.length) await call.send({ manifest: { entries: manifest } });
    await call.send({ manifest_end: { entries: manifest.length } });
    for (let offset = 0; offset < bytes.length; offset += 1 << 20) {
      await call.send({ workspace_chunk: bytes.subarray(offset, offset + (1 << 20)) });
    }
    await call.send({ workspace_end: { bytes: bytes.length } });
    call.end();
    await reading;
    return { responses };
  } catch (error) {
    return { responses, error: error as Error };
  } finally {
    client.close();
  }
}

async function limitedAgent(
  limits: HostileArchive["limits"],
  workRoot: string,
): Promise<TestAgent> {
  const args = ["--work-root", workRoot];
  if (limits?.maxEntries) args.push("--max-workspace-entries", String(limits.maxEntries));
  if (limits?.maxFileBytes) args.push("--max-file-bytes", String(limits.maxFileBytes));
  if (limits?.maxTotalBytes) args.push("--max-workspace-bytes", String(limits.maxTotalBytes));
  return await startAgent({ args });
}

Deno.test("a malicious master's archives are refused by the agent, which keeps serving", async () => {
  await using outer = await tempWorkspace({ "sentinel.txt": "untouched" });
  await Deno.mkdir(`${outer.dir}/work`);
  const before = await snapshot(outer.dir);
  for (const hostile of HOSTILE_ARCHIVES) {
    await using agent = await limitedAgent(hostile.limits, `${outer.dir}/work`);
    const { responses, error } = await sendJob(agent, hostileBytes(hostile));
    assert.equal(error, undefined, `${hostile.name}: ${error?.message}`);
    const result = responses.find((r) => "result" in r);
    assert.ok(result && "result" in result, hostile.name);
    assert.equal(result.result.ok, false, hostile.name);
    assert.match(result.result.error, hostile.refused, hostile.name);
    assert.doesNotMatch(result.result.error, /\bat .*\.ts:\d+/, "no stack crosses the wire");
    // Still serving: a good job right after.
    const good = await sendJob(agent, new Uint8Array(), { shell_command: "echo fine" });
    assert.equal(good.error, undefined);
    assert.ok(
      good.responses.some((r) => "result" in r && r.result.ok),
      `${hostile.name}: next job`,
    );
  }
  assert.deepEqual(await snapshot(outer.dir), before);
  await assert.rejects(Deno.stat("/tmp/sloth-hostile-absolute.txt"), Deno.errors.NotFound);
});

Deno.test("a malicious master's manifests are refused by the agent, which keeps serving", async () => {
  await using outer = await tempWorkspace({ "sentinel.txt": "untouched" });
  await Deno.mkdir(`${outer.dir}/work`);
  const before = await snapshot(outer.dir);
  for (const hostile of HOSTILE_MANIFESTS) {
    await using agent = await limitedAgent(hostile.limits, `${outer.dir}/work`);
    const { responses, error } = await sendJob(agent, new Uint8Array(), {}, hostile.entries);
    assert.equal(error, undefined, `${hostile.name}: ${error?.message}`);
    const result = responses.find((r) => "result" in r);
    assert.ok(result && "result" in result, hostile.name);
    assert.equal(result.result.ok, false, hostile.name);
    assert.match(result.result.error, hostile.refused, hostile.name);
    const good = await sendJob(agent, new Uint8Array(), { shell_command: "echo fine" });
    assert.ok(
      good.responses.some((r) => "result" in r && r.result.ok),
      `${hostile.name}: next job`,
    );
  }
  const after = await snapshot(outer.dir);
  for (const path of Object.keys(after)) {
    assert.ok(path in before || path.includes("/sloth-agent-"), `${path} appeared`);
  }
  assert.equal(after["sentinel.txt"], "untouched");
  await assert.rejects(Deno.stat("/etc/cron.d/evil"), Deno.errors.NotFound);
});

Deno.test("protocol abuse gets a protocol error, and the agent keeps serving", async () => {
  await using agent = await startAgent({ args: ["--idle-timeout", "1s"] });
  const badVersion = await sendJob(agent, new Uint8Array(), { protocol: 0 });
  assert.match(badVersion.error?.message ?? "", /bad message/);

  const missing = await sendJob(agent, new Uint8Array(), { shell_command: "", task: "nope" });
  assert.match(missing.error?.message ?? "", /no task "nope" in group "g" of the workflow sent/);

  const client = new AgentClient(agent.address, { token: agentToken(agent) });
  const early = client.runTask();
  const earlyDone = (async () => {
    for await (const _ of early.responses) { /* none expected */ }
  })();
  await early.send({ workspace_chunk: new Uint8Array(10) });
  await assert.rejects(earlyDone, /the first message must be start/);

  // Many streams that never send: they are ended, and others are still served meanwhile.
  const silent = Array.from({ length: 70 }, () => client.runTask());
  const ended = silent.map((call) =>
    (async () => {
      for await (const _ of call.responses) { /* none */ }
    })().then(() => "ended", (e: Error) => e.message)
  );
  const other = await sendJob(agent, new Uint8Array(), { shell_command: "echo fine" });
  assert.ok(other.responses.some((r) => "result" in r && r.result.ok));
  const outcomes = await Promise.all(ended);
  assert.ok(outcomes.every((o) => /nothing received for 1000ms/.test(o)), outcomes[0]);
  client.close();
  assert.equal((await cliProcess(["agent", "ping", agent.address], { cwd: "/tmp" })).code, 0);
});

/** Reads a master's manifest, asks for `need` (nothing by default), and reads the upload. */
async function drainUpload(job: IncomingJob, need: string[] = []): Promise<void> {
  while (!("manifest_end" in await job.next()));
  if (need.length) await job.send({ need: { paths: need } });
  await job.send({ need_end: {} });
  while (!("workspace_end" in await job.next()));
}

/** A fake agent that answers every job with this change set. */
async function maliciousAgent(changes: {
  bytes: Uint8Array;
  deleted?: string[];
  sha?: string;
  cut?: boolean;
  copies?: { path: string; sha256: string; mode: number }[];
  need?: string[];
}) {
  return await serveAgent({
    ping: () => ({
      version: "evil",
      protocol: PROTOCOL_VERSION,
      running_jobs: 0,
      queued_jobs: 0,
      max_concurrent: 1,
    }),
    runTask: async (job) => {
      await drainUpload(job, changes.need);
      await job.send({
        result: {
          ok: true,
          error: "",
          message: "",
          outputs_json: "{}",
          exit_reason: "exited",
          exit_code: 0,
          has_exit_code: true,
          exit_signal: "",
          duration_ms: 1,
          changes_follow: true,
        },
      });
      await job.send({
        changes_begin: { deleted: changes.deleted ?? [], entries: 1, copies: changes.copies ?? [] },
      });
      if (changes.bytes.length > 0) await job.send({ changes_chunk: changes.bytes });
      if (changes.cut) return;
      const sha = changes.sha ?? createHash("sha256").update(changes.bytes).digest("hex");
      await job.send({ changes_end: { bytes: changes.bytes.length, sha256: sha } });
    },
  }, { host: "127.0.0.1", port: 0 });
}

async function runAgainst(
  port: number,
  env: Record<string, string> = {},
  setup?: (dir: string, outside: string) => Promise<void>,
  args: string[] = [],
) {
  await using outside = await tempWorkspace({
    "outside.txt": "outside",
    "inner/inner.txt": "inner",
  });
  await using ws = await tempWorkspace({
    "keep.txt": "keep",
    "workflow.lua":
      `TaskDefinitions = { g = { tasks = { { name = "t", delegate_to = "127.0.0.1:${port}", command = "true" } } } }`,
  });
  await setup?.(ws.dir, outside.dir);
  const beforeWs = await snapshot(ws.dir);
  const beforeOutside = await snapshot(outside.dir);
  const r = await cliProcess(["run", "-f", "workflow.lua", ...args], { cwd: ws.dir, env });
  assert.deepEqual(await snapshot(ws.dir), beforeWs, "the master's directory is unchanged");
  assert.deepEqual(await snapshot(outside.dir), beforeOutside, "nothing outside changed");
  return r;
}

for (const hostile of HOSTILE_ARCHIVES) {
  Deno.test({
    name: `the master refuses a malicious agent's change set with ${hostile.name}`,
    sanitizeOps: false,
    sanitizeResources: false,
  }, async () => {
    const server = await maliciousAgent({ bytes: hostileBytes(hostile) });
    try {
      const env: Record<string, string> = {};
      if (hostile.limits?.maxEntries) {
        env.SLOTH_SYNC_MAX_ENTRIES = String(hostile.limits.maxEntries);
      }
      if (hostile.limits?.maxFileBytes) {
        env.SLOTH_SYNC_MAX_FILE_BYTES = String(hostile.limits.maxFileBytes);
      }
      if (hostile.limits?.maxTotalBytes) {
        env.SLOTH_SYNC_MAX_BYTES = String(hostile.limits.maxTotalBytes);
      }
      const r = await runAgainst(server.port, env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /\[t\] ✘ failed: /);
      assert.match(r.stderr, hostile.refused);
    } finally {
      await server.close(100);
    }
  });
}

Deno.test({
  name:
    "the master refuses deletions that climb out or go through a symlink, and damaged or cut change sets",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const cases: [
    Parameters<typeof maliciousAgent>[0],
    RegExp,
    ((dir: string, outside: string) => Promise<void>)?,
  ][] = [
    [{ bytes: new Uint8Array(), deleted: ["../outside.txt"] }, /climbs out with "\.\."/],
    [
      { bytes: new Uint8Array(), need: ["../../etc/passwd"] },
      /asked for "\.\.\/\.\.\/etc\/passwd", which was not offered/,
    ],
    [
      {
        bytes: new Uint8Array(),
        copies: [{ path: "stolen", sha256: "f".repeat(64), mode: 0o644 }],
      },
      /the agent asked to copy content this machine never sent/,
    ],
    [
      { bytes: new Uint8Array(), copies: [{ path: "../x", sha256: KEEP_DIGEST, mode: 0o644 }] },
      /climbs out with "\.\."/,
    ],
    [{ bytes: new Uint8Array(), deleted: ["/etc/passwd"] }, /absolute paths are not allowed/],
    [
      { bytes: new Uint8Array(), deleted: ["link/inner.txt"] },
      /link is a symlink, and nothing is written through it/,
      async (dir, outside) => await Deno.symlink(`${outside}/inner`, `${dir}/link`),
    ],
    [
      { bytes: hostileBytes({ entries: [{ path: "x.txt", data: "x" }] }), sha: "0".repeat(64) },
      /sent a damaged change set/,
    ],
    [
      { bytes: hostileBytes({ entries: [{ path: "x.txt", data: "x" }] }), cut: true },
      /did not arrive whole/,
    ],
  ];
  for (const [changes, refused, setup] of cases) {
    const server = await maliciousAgent(changes);
    try {
      const r = await runAgainst(server.port, {}, setup);
      assert.equal(r.code, 1);
      assert.match(r.stderr, refused);
    } finally {
      await server.close(100);
    }
  }
});

/** gzip of `bytes`. */
async function gzipped(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("compressed streams: a gzip bomb, garbage and a compressed hostile archive are refused by the agent", async () => {
  await using outer = await tempWorkspace({ "sentinel.txt": "untouched" });
  await Deno.mkdir(`${outer.dir}/work`);
  const before = await snapshot(outer.dir);
  await using agent = await startAgent({ args: ["--work-root", `${outer.dir}/work`] });
  const bomb = await gzipped(new Uint8Array(200 * 1024 * 1024));
  const traversal = await gzipped(
    hostileBytes({ entries: [{ path: "../escape.txt", data: "x" }] }),
  );
  const cases: [Uint8Array, RegExp][] = [
    [bomb, /refused a compressed stream that expands beyond \d+ bytes/],
    [new Uint8Array([1, 2, 3, 4, 5]), /refused a damaged compressed stream/],
    [traversal, /climbs out with "\.\."|expands beyond/],
  ];
  for (const [bytes, refused] of cases) {
    const { responses, error } = await sendJob(agent, bytes, { compression: "gzip" });
    assert.equal(error, undefined, String(error?.message));
    const result = responses.find((r) => "result" in r);
    assert.ok(result && "result" in result);
    assert.equal(result.result.ok, false);
    assert.match(result.result.error, refused);
  }
  const good = await sendJob(agent, new Uint8Array(), { shell_command: "echo fine" });
  assert.ok(good.responses.some((r) => "result" in r && r.result.ok), "still serving");
  const after = await snapshot(outer.dir);
  for (const path of Object.keys(after)) {
    assert.ok(path in before || path.includes("/sloth-agent-"), `${path} appeared`);
  }
  assert.equal(after["sentinel.txt"], "untouched");
});

Deno.test({
  name: "the master refuses a compressed change set that expands beyond its limits",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const server = await maliciousAgent({ bytes: await gzipped(new Uint8Array(64 * 1024 * 1024)) });
  try {
    const r = await runAgainst(
      server.port,
      { SLOTH_SYNC_MAX_BYTES: "1000000", SLOTH_SYNC_MAX_ENTRIES: "10" },
      undefined,
      ["--compress"],
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refused a compressed stream that expands beyond \d+ bytes/);
  } finally {
    await server.close(100);
  }
});

Deno.test("Lua that loops forever or eats memory at the top level on the agent fails the task, not the agent", async () => {
  await using agent = await startAgent({
    env: { SLOTH_LUA_TIMEOUT: "1s", SLOTH_LUA_MEMORY: String(32 * 1024 * 1024) },
  });
  // os.getenv has no environment on the agent: these lines run there only.
  await using ws = await tempWorkspace({
    "workflow.lua": `
if os.getenv("HOME") == nil and values.mode == "loop" then while true do end end
if os.getenv("HOME") == nil and values.mode == "bomb" then local s = "x" while true do s = s .. s end end
TaskDefinitions = { g = { tasks = {
  { name = "t", delegate_to = "${agent.address}", command = function() return true, "ok", { f = print } end },
} } }`,
  });
  for (
    const [mode, refused] of [["loop", /did not finish loading within 1000ms/], [
      "bomb",
      /used more than its memory limit of 32 MiB/,
    ]] as const
  ) {
    await Deno.writeTextFile(`${ws.dir}/values.yaml`, `mode: ${mode}\n`);
    const r = await cliProcess(["run", "-f", "workflow.lua", "-v", "values.yaml"], { cwd: ws.dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, refused);
  }
  await Deno.writeTextFile(`${ws.dir}/values.yaml`, `mode: fine\n`);
  const unsendable = await cliProcess(["run", "-f", "workflow.lua", "-v", "values.yaml"], {
    cwd: ws.dir,
  });
  assert.equal(unsendable.code, 1);
  assert.match(
    unsendable.stderr,
    /the task function returned outputs that cannot be kept: outputs\.f is a function/,
  );
  assert.equal((await cliProcess(["agent", "ping", agent.address], { cwd: "/tmp" })).code, 0);
});

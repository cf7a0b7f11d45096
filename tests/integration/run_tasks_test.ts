/**
 * Protocol 3: many task attempts on one RunTasks call per master–agent
 * connection, against real agent processes on 127.0.0.1 (and, for the version
 * tests, fake agents made with the agent's own server code).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  AgentClient,
  CHUNK_BYTES,
  OLDEST_PROTOCOL,
  type RemoteCall,
  type RunTaskResponse,
  serveAgent,
  type TaskStart,
  type WireEntry,
} from "../../lib/rpc/mod.ts";
import { protos } from "../../lib/rpc/proto.ts";
import { findUnderAgent, startAgent, type TestAgent, waitUnderAgent } from "../_helpers/agent.ts";
import { cliProcess, processAlive, tempWorkspace, waitFor } from "../_helpers/mod.ts";
import { agentToken, taskStart } from "../_helpers/jobs.ts";

async function connect(agent: TestAgent, protocol?: number): Promise<AgentClient> {
  const client = new AgentClient(agent.address, { token: agentToken(agent), protocol });
  await client.ping();
  return client;
}

/** A bare gRPC client of the agent, to send RunTasks messages a real master never would. */
function rawRunTasks(agent: TestAgent) {
  const { agent: Agent } = protos();
  const raw = new Agent(agent.address, grpc.credentials.createInsecure()) as unknown as
    & grpc.Client
    & { RunTasks(metadata: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown> };
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${agentToken(agent)}`);
  return { open: () => raw.RunTasks(metadata), close: () => raw.close() };
}

interface Outcome {
  lines: string[];
  result?: Extract<RunTaskResponse, { result: unknown }>["result"];
  changeBytes: number;
}

/** Reads a job's responses to the end. */
async function collect(call: RemoteCall): Promise<Outcome> {
  const outcome: Outcome = { lines: [], changeBytes: 0 };
  for await (const message of call.responses) {
    if ("log" in message) outcome.lines.push(message.log.line);
    else if ("result" in message) outcome.result = message.result;
    else if ("changes_chunk" in message) outcome.changeBytes += message.changes_chunk.length;
  }
  return outcome;
}

/** A shell job with an empty workspace, run to its end. */
async function shellJob(
  client: AgentClient,
  command: string,
  fields: Partial<TaskStart> = {},
): Promise<Outcome> {
  return await shellJobOn(client.runTask(), command, fields);
}

/** As shellJob, on a job already made. */
async function shellJobOn(
  call: RemoteCall,
  command: string,
  fields: Partial<TaskStart> = {},
): Promise<Outcome> {
  const reading = collect(call);
  await call.send({
    start: taskStart({ shell_command: command, protocol: call.protocol, ...fields }),
  });
  await call.send({ manifest_end: { entries: 0 } });
  await call.send({ workspace_end: { bytes: 0 } });
  call.end();
  return await reading;
}

/** A tar stream holding one file. */
function tarOf(name: string, content: Uint8Array): Uint8Array {
  const header = new Uint8Array(512);
  const text = new TextEncoder();
  const put = (offset: number, value: string) => header.set(text.encode(value), offset);
  put(0, name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, content.length.toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(156, "0");
  put(257, "ustar\0");
  put(263, "00");
  header.fill(0x20, 148, 156);
  const sum = header.reduce((a, b) => a + b, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  const padded = Math.ceil(content.length / 512) * 512;
  const out = new Uint8Array(512 + padded + 1024);
  out.set(header, 0);
  out.set(content, 512);
  return out;
}

Deno.test("one RunTasks call carries many tasks at once; one cancelled dies within 2 s, the others finish", async () => {
  await using agent = await startAgent({ args: ["--max-concurrent", "8", "--sandbox", "none"] });
  const client = await connect(agent);
  try {
    const slow = client.runTask();
    const slowDone = collect(slow).then(() => "ended", (error: Error) => error.message);
    await slow.send({ start: taskStart({ shell_command: "sleep 37" }) });
    await slow.send({ manifest_end: { entries: 0 } });
    await slow.send({ workspace_end: { bytes: 0 } });
    const sleeper = await waitUnderAgent(agent, ["sleep", "37"]);

    const jobs = Array.from(
      { length: 40 },
      (_, i) =>
        shellJob(client, `i=0; while [ $i -lt 20 ]; do echo job${i} line$i; i=$((i+1)); done`),
    );
    slow.cancel();
    const cancelledAt = Date.now();
    const outcomes = await Promise.all(jobs);
    for (const [i, outcome] of outcomes.entries()) {
      assert.equal(outcome.result?.ok, true, `job ${i}: ${outcome.result?.error}`);
      assert.equal(outcome.lines.length, 20);
      assert.deepEqual(outcome.lines, outcome.lines.map((_, n) => `job${i} line${n}`));
    }
    assert.equal(await slowDone, "cancelled");
    await waitFor(() => !processAlive(sleeper), 2000 - (Date.now() - cancelledAt));
    // Still the same call, before and after the cancel.
    const after = await shellJob(client, "echo after");
    assert.deepEqual(after.lines, ["after"]);
    assert.equal(client.streamsOpened, 1);
    assert.equal(findUnderAgent(agent, ["sleep", "37"]), undefined);
  } finally {
    client.close();
  }
});

Deno.test("a task whose big workspace is held up does not hold up another task's messages", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"] });
  const client = await connect(agent);
  try {
    // 24 MiB in one file: 96 chunks, three times a job's window.
    const content = new Uint8Array(24 << 20);
    for (let i = 0; i < content.length; i += 4096) content[i] = i % 251;
    const digest = createHash("sha256").update(content).digest("hex");
    const entry: WireEntry = {
      path: "big.bin",
      type: "file",
      mode: 0o644,
      size: content.length,
      sha256: digest,
      target: "",
      mtime_ms: Date.now(),
    };
    const big = client.runTask();
    const bigDone = collect(big);
    await big.send({ start: taskStart({ shell_command: "sha256sum big.bin" }) });
    await big.send({ manifest: { entries: [entry] } });
    await big.send({ manifest_end: { entries: 1 } });
    const tar = tarOf("big.bin", content);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < tar.length; i += CHUNK_BYTES) chunks.push(tar.subarray(i, i + CHUNK_BYTES));
    // Half of it, then the upload waits for the chatty task to finish.
    for (const chunk of chunks.slice(0, 48)) await big.send({ workspace_chunk: chunk });
    const chatty = await shellJob(
      client,
      "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done",
    );
    assert.equal(chatty.result?.ok, true);
    assert.equal(chatty.lines.length, 500);
    for (const chunk of chunks.slice(48)) await big.send({ workspace_chunk: chunk });
    await big.send({ workspace_end: { bytes: tar.length } });
    const outcome = await bigDone;
    assert.equal(outcome.result?.ok, true, String(outcome.result?.error));
    assert.deepEqual(outcome.lines, [`${digest}  big.bin`]);
    assert.equal(client.streamsOpened, 1);
  } finally {
    client.close();
  }
});

Deno.test("a master that does not read one task's change set still gets another task's result", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"] });
  const client = await connect(agent);
  try {
    // About 16 MiB back: 64 chunks, twice a job's window; nobody reads them yet.
    const heavy = client.runTask();
    await heavy.send({
      start: taskStart({
        shell_command: "head -c 16777216 /dev/urandom > out.bin",
        sync_back: "always",
      }),
    });
    await heavy.send({ manifest_end: { entries: 0 } });
    await heavy.send({ workspace_end: { bytes: 0 } });
    // The heavy job's change set waits on its window meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const chatty = await shellJob(client, "echo one; echo two");
    assert.deepEqual(chatty.lines, ["one", "two"]);
    assert.equal(chatty.result?.ok, true);
    const outcome = await collect(heavy);
    assert.equal(outcome.result?.ok, true);
    assert.ok(outcome.changeBytes >= 16 << 20, `${outcome.changeBytes} bytes came back`);
  } finally {
    client.close();
  }
});

Deno.test("an agent restarted between two tasks of a run: the next task goes on a new call", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"] });
  const first = agent.servingPid()!;
  await using ws = await tempWorkspace({
    "workflow.lua": `
local agent = { address = "${agent.address}" }
TaskDefinitions = {
  g = {
    tasks = {
      { name = "before", delegate_to = agent, command = "echo before" },
      { name = "restart", depends_on = "before",
        command = "kill ${first} && while kill -0 ${first} 2>/dev/null; do sleep 0.05; done; sleep 1.5" },
      { name = "after", delegate_to = agent, depends_on = "restart", command = "echo after" },
    },
  },
}`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\[after@127\.0\.0\.1:\d+\] after/);
  assert.notEqual(agent.servingPid(), first);
});

Deno.test("a master that speaks protocol 2 still runs tasks on this agent (one RunTask call each)", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"] });
  const client = await connect(agent, OLDEST_PROTOCOL);
  try {
    const outcome = await shellJob(client, "echo old master");
    assert.equal(outcome.result?.ok, true);
    assert.deepEqual(outcome.lines, ["old master"]);
    assert.equal(client.streamsOpened, 0);
  } finally {
    client.close();
  }
});

Deno.test("a master opening RunTasks with another protocol is refused at once, naming both", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"] });
  const raw = rawRunTasks(agent);
  try {
    const call = raw.open();
    const failed = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    call.on("data", () => {});
    call.write({ job: 0, open: { protocol: 4 } });
    const error = await failed;
    assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
    assert.match(error.details, /the master speaks protocol 4, this agent 3/);
  } finally {
    raw.close();
  }
  // And it still serves.
  const client = await connect(agent);
  try {
    assert.deepEqual((await shellJob(client, "echo still")).lines, ["still"]);
  } finally {
    client.close();
  }
});

/** A fake agent made with the agent's own server code, answering Ping with `protocol`. */
async function fakeAgent(protocol: number, seen: number[]) {
  const server = await serveAgent({
    ping: () => ({
      version: "0.0.1-test",
      protocol,
      running_jobs: 0,
      queued_jobs: 0,
      max_concurrent: 1,
    }),
    runTask: async (job) => {
      seen.push(job.start.protocol);
      while (true) {
        const message = await job.next();
        if ("manifest_end" in message) break;
      }
      await job.send({ need_end: {} });
      await job.next();
      await job.send({ log: { stream: "stdout", level: "", line: "fake ran" } });
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
          changes_follow: false,
        },
      });
    },
  }, { host: "127.0.0.1", port: 0 });
  return server;
}

Deno.test("an agent that speaks only protocol 2 gets one RunTask call per task from this master", async () => {
  const seen: number[] = [];
  const server = await fakeAgent(2, seen);
  try {
    await using ws = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { tasks = {
        { name = "a", delegate_to = "127.0.0.1:${server.port}", command = "true" },
        { name = "b", delegate_to = "127.0.0.1:${server.port}", command = "true" },
      } } }`,
    });
    const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /fake ran/);
    assert.deepEqual(seen, [2, 2]);
  } finally {
    await server.close(0);
  }
});

Deno.test("an agent that speaks only protocol 1 is refused at once, with both versions named", async () => {
  const seen: number[] = [];
  const server = await fakeAgent(1, seen);
  try {
    await using ws = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { tasks = {
        { name = "a", delegate_to = "127.0.0.1:${server.port}", command = "true" },
      } } }`,
    });
    const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout + r.stderr,
      /agent 127\.0\.0\.1:\d+ is too old: it speaks protocol 1 \(sloth-runner 0\.0\.1-test\), this master 2 to 3/,
    );
    assert.deepEqual(seen, []);
  } finally {
    await server.close(0);
  }
});

Deno.test("a master breaking the RunTasks protocol loses its call, and the agent keeps serving", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none", "--max-concurrent", "1"] });
  const cases: { name: string; why: RegExp; messages: unknown[] }[] = [
    {
      name: "no open",
      why: /the first message must be open/,
      messages: [{ job: 1, request: { start: taskStart() } }],
    },
    {
      name: "a job not begun with start",
      why: /job 1 did not begin with start/,
      messages: [{ job: 0, open: { protocol: 3 } }, {
        job: 1,
        request: { manifest_end: { entries: 0 } },
      }],
    },
    {
      name: "credit never owed",
      why: /job 1 gave more credit than it was sent/,
      messages: [
        { job: 0, open: { protocol: 3 } },
        { job: 1, request: { start: taskStart({ shell_command: "sleep 5" }) } },
        { job: 1, credit: 32 },
      ],
    },
    {
      // The agent runs one job at a time: the second waits for the first, reading
      // nothing, while its messages pile up.
      name: "past its window",
      why: /job 2 sent more than its window/,
      messages: [
        { job: 0, open: { protocol: 3 } },
        { job: 1, request: { start: taskStart({ shell_command: "sleep 5" }) } },
        { job: 1, request: { manifest_end: { entries: 0 } } },
        { job: 1, request: { workspace_end: { bytes: 0 } } },
        { job: 2, request: { start: taskStart() } },
        ...Array.from({ length: 40 }, () => ({ job: 2, request: { manifest: { entries: [] } } })),
      ],
    },
  ];
  for (const { name, why, messages } of cases) {
    const raw = rawRunTasks(agent);
    try {
      const call = raw.open();
      const failed = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
      call.on("data", () => {});
      for (const message of messages) call.write(message);
      const error = await failed;
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT, `${name}: ${error.details}`);
      assert.match(error.details, why, name);
    } finally {
      raw.close();
    }
  }
  const client = await connect(agent);
  try {
    assert.deepEqual((await shellJob(client, "echo still")).lines, ["still"]);
  } finally {
    client.close();
  }
  assert.ok(processAlive(agent.servingPid()!));
});

Deno.test("a master opening more than 1,024 jobs at once on one call has the rest refused", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none", "--max-concurrent", "1"] });
  const raw = rawRunTasks(agent);
  try {
    const call = raw.open();
    call.on("error", () => {});
    const refused: number[] = [];
    const all = new Promise<void>((resolve) => {
      call.on("data", (message: { job: number; msg: string; job_end?: { code: string } }) => {
        if (message.msg === "job_end" && message.job_end?.code === "UNAVAILABLE") {
          refused.push(message.job);
          if (refused.length === 6) resolve();
        }
      });
    });
    call.write({ job: 0, open: { protocol: 3 } });
    for (let job = 1; job <= 1030; job++) {
      call.write({ job, request: { start: taskStart({ shell_command: "sleep 30" }) } });
    }
    await all;
    assert.deepEqual(refused, [1025, 1026, 1027, 1028, 1029, 1030]);
    call.cancel();
  } finally {
    raw.close();
  }
  const client = await connect(agent);
  try {
    assert.deepEqual((await shellJob(client, "echo still")).lines, ["still"]);
  } finally {
    client.close();
  }
});

Deno.test("jobs made in one order may send their starts in the other", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"] });
  const client = await connect(agent);
  try {
    const first = client.runTask();
    const second = client.runTask();
    const run = async (call: RemoteCall, command: string) => {
      const reading = shellJobOn(call, command);
      // A job the agent dropped would wait for ever: a bound, not a timing.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const never = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`"${command}" never ended`)), 30_000);
      });
      try {
        return await Promise.race([reading, never]);
      } finally {
        clearTimeout(timer);
      }
    };
    const later = await run(second, "echo second");
    const earlier = await run(first, "echo first");
    assert.deepEqual(later.lines, ["second"]);
    assert.deepEqual(earlier.lines, ["first"]);
    assert.equal(client.streamsOpened, 1);
  } finally {
    client.close();
  }
});

Deno.test("a Lua task and a shell task sent to one agent at once both run (the Lua one reads the workflow first)", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
  { name = "lua", async = true, delegate_to = "${agent.address}", timeout = "20s",
    command = function() print("from lua") return true end },
  { name = "sh", async = true, delegate_to = "${agent.address}", command = "echo from shell" },
} } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua", "--plain"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^\[lua@[^\]]+\] from lua$/m);
  assert.match(r.stdout, /^\[sh@[^\]]+\] from shell$/m);
});

Deno.test("agent ping says when this master cannot use the agent it reached", async () => {
  const server = await fakeAgent(1, []);
  try {
    await using ws = await tempWorkspace({});
    const r = await cliProcess(["agent", "ping", `127.0.0.1:${server.port}`], { cwd: ws.dir });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /is reachable: sloth-runner 0\.0\.1-test, protocol 1,/);
    assert.match(
      r.stderr,
      /this master speaks protocol 2 to 3: it cannot run tasks on that agent \(upgrade the agent\)/,
    );
  } finally {
    await server.close(0);
  }
});

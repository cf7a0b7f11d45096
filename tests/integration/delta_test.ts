/**
 * Manifest deltas (lib/sync/delta.ts): a master sends only what changed since the
 * manifest an agent last accepted for the same directory. What the agent makes of
 * a delta must be exactly the master's directory, whatever changed there or in the
 * kept workspace; a delta the agent cannot use makes it ask for the manifest whole;
 * and a master lying in a delta gets no further than it would with a whole one.
 */
import assert from "node:assert/strict";
import {
  AgentClient,
  PROTOCOL_VERSION,
  type RunTaskResponse,
  serveAgent,
  type TaskStart,
  type WireEntry,
} from "../../lib/rpc/mod.ts";
import { describeManifest, type ManifestEntry } from "../../lib/sync/mod.ts";
import { fromWire } from "../../lib/agent/exchange.ts";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { cliProcess, snapshot, tempWorkspace } from "../_helpers/mod.ts";
import { agentToken, taskStart } from "../_helpers/jobs.ts";

const listing = "find . -not -name workflow.lua -not -name . | sort | while read f; do " +
  'if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; elif [ -d "$f" ]; then echo "$f/"; ' +
  'else echo "$f $(stat -c %a "$f") $(sha256sum < "$f" | cut -c1-12)"; fi; done';

function workflow(address: string): string {
  return `TaskDefinitions = { g = { tasks = { { name = "look", delegate_to = "${address}",
    command = ${JSON.stringify(listing)} } } } }`;
}

function localListing(dir: string): string[] {
  const out = new Deno.Command("sh", { args: ["-c", listing], cwd: dir }).outputSync();
  return new TextDecoder().decode(out.stdout).trim().split("\n");
}

/** Deno's cache where it is now: moving XDG_CACHE_HOME must not move it too. */
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;

/** A run with its own cache directory (where the manifests sent are remembered). */
async function run(dir: string, cache: string) {
  const r = await cliProcess(["run", "-f", "workflow.lua", "-o", "json"], {
    cwd: dir,
    env: { XDG_CACHE_HOME: cache, DENO_DIR },
  });
  const events = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const finished = events.find((e) => e.type === "task_finished");
  const lines = events.filter((e) => e.type === "log").map((e) => e.line as string);
  return { code: r.code, finished, lines, stderr: r.stderr };
}

function sentFiles(cache: string): string[] {
  try {
    return [...Deno.readDirSync(`${cache}/sloth-runner/sent`)].map((e) => e.name);
  } catch {
    return [];
  }
}

Deno.test("after changes of every kind, a run that sends a delta gives the agent exactly the master's files", async () => {
  await using agent = await startAgent();
  await using cache = await tempWorkspace();
  await using ws = await tempWorkspace({
    "same.txt": "aaaa",
    "moved.txt": "moved content",
    "d/inner.txt": "in a directory",
    "target-1.txt": "one",
    "target-2.txt": "two",
  });
  await Deno.symlink("target-1.txt", `${ws.dir}/link`);
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(agent.address));
  const first = await run(ws.dir, cache.dir);
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(first.lines, localListing(ws.dir));
  assert.equal(sentFiles(cache.dir).length, 1, "the manifest sent is remembered");

  // In place, same size, same mtime (to the millisecond): only the content differs.
  const info = Deno.statSync(`${ws.dir}/same.txt`);
  Deno.writeTextFileSync(`${ws.dir}/same.txt`, "bbbb");
  Deno.utimeSync(`${ws.dir}/same.txt`, info.atime!, info.mtime!);
  // Replaced by a rename; a directory replaced by a file; a symlink swapped.
  Deno.renameSync(`${ws.dir}/moved.txt`, `${ws.dir}/moved-away.txt`);
  Deno.removeSync(`${ws.dir}/d`, { recursive: true });
  Deno.writeTextFileSync(`${ws.dir}/d`, "now a file");
  Deno.removeSync(`${ws.dir}/link`);
  Deno.symlinkSync("target-2.txt", `${ws.dir}/link`);
  const second = await run(ws.dir, cache.dir);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(second.lines, localListing(ws.dir));

  // And back: a file replaced by a directory, the first content again.
  Deno.removeSync(`${ws.dir}/d`);
  Deno.mkdirSync(`${ws.dir}/d`);
  Deno.writeTextFileSync(`${ws.dir}/d/inner.txt`, "in a directory");
  const third = await run(ws.dir, cache.dir);
  assert.equal(third.code, 0, third.stderr);
  assert.deepEqual(third.lines, localListing(ws.dir));
  assert.equal(third.finished.transfer.sent_bytes, 0, "that content was on the agent already");
});

Deno.test("a kept workspace changed behind the agent's back between two runs is noticed, delta or not", async () => {
  await using root = await tempWorkspace();
  await using agent = await startAgent({ args: ["--work-root", root.dir] });
  await using cache = await tempWorkspace();
  await using ws = await tempWorkspace({ "a.txt": "aaaa", "b.txt": "bbbb", "c/d.txt": "dddd" });
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(agent.address));
  assert.equal((await run(ws.dir, cache.dir)).code, 0);
  const shelf = `${root.dir}/sloth-agent-${agent.port}/workspaces`;
  const kept = [...Deno.readDirSync(shelf)].find((e) => e.isDirectory)!.name;
  // Same size, content changed in place; one removed; one added; a directory removed.
  Deno.writeTextFileSync(`${shelf}/${kept}/a.txt`, "AAAA");
  Deno.removeSync(`${shelf}/${kept}/b.txt`);
  Deno.writeTextFileSync(`${shelf}/${kept}/stray.txt`, "not the master's");
  Deno.removeSync(`${shelf}/${kept}/c`, { recursive: true });
  // The master changed one file too, so that a delta (not an empty one) goes.
  Deno.writeTextFileSync(`${ws.dir}/new.txt`, "new");
  const second = await run(ws.dir, cache.dir);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(second.lines, localListing(ws.dir));
});

Deno.test("an agent restarted between runs has no base: it asks for the manifest whole", async () => {
  await using root = await tempWorkspace();
  await using cache = await tempWorkspace();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const first = await startAgent({ args: ["--work-root", root.dir], port });
  await using ws = await tempWorkspace({ "a.txt": "aaaa", "b.txt": "bbbb" });
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(first.address));
  assert.equal((await run(ws.dir, cache.dir)).code, 0);
  await first.stop();
  await using _again = await startAgent({ args: ["--work-root", root.dir], port });
  Deno.writeTextFileSync(`${ws.dir}/b.txt`, "BBBB");
  Deno.writeTextFileSync(`${ws.dir}/c.txt`, "cccc");
  const second = await run(ws.dir, cache.dir);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(second.lines, localListing(ws.dir));
  // Then deltas again, against the manifest it was sent whole.
  Deno.removeSync(`${ws.dir}/a.txt`);
  const third = await run(ws.dir, cache.dir);
  assert.equal(third.code, 0, third.stderr);
  assert.deepEqual(third.lines, localListing(ws.dir));
});

Deno.test("a master's remembered manifest that lies (edited, or another agent's) costs a whole manifest, never a wrong workspace", async () => {
  await using one = await startAgent();
  await using two = await startAgent();
  await using cache = await tempWorkspace();
  await using ws = await tempWorkspace({ "a.txt": "aaaa", "b.txt": "bbbb" });
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(one.address));
  assert.equal((await run(ws.dir, cache.dir)).code, 0);
  // The cache claims the agent holds the manifest as it is now (a.txt changed included).
  Deno.writeTextFileSync(`${ws.dir}/a.txt`, "AAAA");
  const [name] = sentFiles(cache.dir);
  const file = `${cache.dir}/sloth-runner/sent/${name}`;
  const saved = JSON.parse(Deno.readTextFileSync(file));
  const now = saved.lines.map((line: string) =>
    line.startsWith('["a.txt"')
      ? line.replace(/"[0-9a-f]{64}"/, `"${"0".repeat(64)}"`) // not what the agent has either
      : line
  );
  Deno.writeTextFileSync(file, JSON.stringify({ ...saved, lines: now }));
  const second = await run(ws.dir, cache.dir);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(second.lines, localListing(ws.dir));

  // Another agent, with this directory's cache from the first: it has no base of its own.
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(two.address));
  Deno.writeTextFileSync(`${ws.dir}/b.txt`, "BBBB");
  const third = await run(ws.dir, cache.dir);
  assert.equal(third.code, 0, third.stderr);
  assert.deepEqual(third.lines, localListing(ws.dir));
});

// A master speaking the protocol by hand ------------------------------------

function start(fields: Partial<TaskStart>): TaskStart {
  return taskStart({ shell_command: "find . | sort", workspace_key: "ab".repeat(16), ...fields });
}

const dir = (path: string): WireEntry => ({
  path,
  type: "dir",
  mode: 0o755,
  size: 0,
  sha256: "",
  target: "",
  mtime_ms: 1_000_000_000,
});

function digestOf(entries: WireEntry[]): string {
  return describeManifest(entries.map((e) => fromWire(e) as ManifestEntry)).digest;
}

/**
 * One job by hand: a manifest (whole, or a delta when `delta` is given); if the
 * agent asks for it whole, `whole` is sent. Directories only, so no content is asked.
 */
async function job(
  agent: TestAgent,
  manifest: WireEntry[],
  options: {
    key?: string;
    delta?: { base: string; deleted: readonly string[]; sha256: string };
    whole?: WireEntry[];
  } = {},
): Promise<{ askedWhole: boolean; lines: string[]; result?: RunTaskResponse; error?: Error }> {
  const client = new AgentClient(agent.address, { token: agentToken(agent) });
  const call = client.runTask();
  const lines: string[] = [];
  let askedWhole = false;
  let result: RunTaskResponse | undefined;
  try {
    const keyed = options.key ? { workspace_key: options.key } : {};
    await call.send({
      start: start({ ...keyed, manifest_base: options.delta?.base ?? "" }),
    });
    await call.send({ manifest: { entries: manifest } });
    await call.send({
      manifest_end: options.delta
        ? {
          entries: manifest.length,
          deleted: [...options.delta.deleted],
          sha256: options.delta.sha256,
        }
        : { entries: manifest.length },
    });
    for await (const r of call.responses) {
      if ("need" in r && r.need.whole_manifest) {
        askedWhole = true;
        const whole = options.whole ?? [];
        await call.send({ manifest: { entries: whole } });
        await call.send({ manifest_end: { entries: whole.length } });
      } else if ("need_end" in r) {
        await call.send({ workspace_end: { bytes: 0 } });
        call.end();
      } else if ("log" in r) {
        lines.push(r.log.line);
      } else if ("result" in r) {
        result = r;
      }
    }
    return { askedWhole, lines, result };
  } catch (error) {
    return { askedWhole, lines, result, error: error as Error };
  } finally {
    client.close();
  }
}

Deno.test("an agent takes a delta against the manifest it accepted, and asks for a whole one when it cannot", async () => {
  await using agent = await startAgent();
  const base = [dir("a"), dir("a/b"), dir("z")];
  const first = await job(agent, base);
  assert.equal(first.error, undefined, String(first.error));
  assert.deepEqual(first.lines, [".", "./a", "./a/b", "./z"]);

  const next = [dir("a"), dir("a-c"), dir("z")];
  const delta = { base: digestOf(base), deleted: ["a/b"], sha256: digestOf(next) };
  const second = await job(agent, [dir("a-c")], { delta });
  assert.equal(second.error, undefined, String(second.error));
  assert.equal(second.askedWhole, false, "the delta was taken");
  assert.deepEqual(second.lines, [".", "./a", "./a-c", "./z"]);

  // A base it does not hold, a wrong digest of the whole, another key's base: asked whole.
  const later = [dir("q")];
  for (
    const [why, options] of [
      ["unknown base", { delta: { ...delta, base: "1".repeat(64) } }],
      ["wrong digest", { delta: { base: digestOf(next), deleted: [], sha256: "2".repeat(64) } }],
      ["another key", { key: "cd".repeat(16), delta: { ...delta, base: digestOf(next) } }],
    ] as const
  ) {
    const r = await job(agent, [dir("q")], { ...options, whole: later });
    assert.equal(r.error, undefined, `${why}: ${r.error?.message}`);
    assert.equal(r.askedWhole, true, why);
    assert.deepEqual(r.lines, [".", "./q"], why);
  }
});

Deno.test("a master lying in a delta is refused as it would be with a whole manifest, and nothing outside changes", async () => {
  await using outer = await tempWorkspace({ "sentinel.txt": "untouched" });
  await Deno.mkdir(`${outer.dir}/work`);
  await using agent = await startAgent({ args: ["--work-root", `${outer.dir}/work`] });
  const outside = async () =>
    Object.entries(await snapshot(outer.dir)).filter(([path]) => !path.startsWith("work/"));
  const before = await outside();
  const base = [dir("a"), dir("a/b")];
  assert.equal((await job(agent, base)).error, undefined);
  const escape: WireEntry = {
    ...dir("out"),
    type: "symlink",
    mode: 0o777,
    target: "../../../../../../sentinel.txt",
  };
  const cases: [string, WireEntry[], string[], WireEntry[], RegExp][] = [
    ["a symlink out", [escape], [], [...base, escape], /points outside/],
    ["a directory gone, what it held kept", [], ["a"], [dir("a/b")], /not listed before it/],
    [
      "a path climbing out",
      [dir("a/../../x")],
      [],
      [dir("a"), dir("a/../../x"), dir("a/b")],
      /refused/,
    ],
  ];
  for (const [why, changed, deleted, whole, refused] of cases) {
    const r = await job(agent, changed, {
      delta: { base: digestOf(base), deleted, sha256: digestOf(whole) },
    });
    assert.equal(r.askedWhole, false, why);
    assert.ok(r.result && "result" in r.result, `${why}: ${r.error?.message}`);
    assert.equal(r.result.result.ok, false, why);
    assert.match(r.result.result.error, refused, why);
  }
  // A delta's fields on a whole manifest, or a delta without the digest of the whole.
  for (
    const end of [{ deleted: ["a"], sha256: "" }, { deleted: [], sha256: "3".repeat(64) }]
  ) {
    const r = await job(agent, [], { delta: { base: "", ...end } });
    assert.ok(r.error, "a protocol error ends the call");
  }
  const bad = await job(agent, [], { delta: { base: digestOf(base), deleted: [], sha256: "" } });
  assert.ok(bad.error, "a delta needs the digest of the whole");
  assert.deepEqual(await outside(), before);
  // Still serving, and its base for this key is still the honest one.
  const after = await job(agent, [dir("c")], {
    delta: { base: digestOf(base), deleted: [], sha256: digestOf([...base, dir("c")]) },
  });
  assert.equal(after.askedWhole, false);
  assert.deepEqual(after.lines, [".", "./a", "./a/b", "./c"]);
});

Deno.test({
  name:
    "the master sends a manifest again at most once, and only after a delta: an agent asking for more fails the task",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  /** Manifests each job received. */
  const received: number[] = [];
  const server = await serveAgent({
    ping: () => ({
      version: "asks-forever",
      protocol: PROTOCOL_VERSION,
      running_jobs: 0,
      queued_jobs: 0,
      max_concurrent: 1,
      manifest_delta: true,
    }),
    runTask: async (job) => {
      // Whatever it was sent (a whole manifest, a delta), it asks for it whole, again and again.
      const index = received.push(0) - 1;
      try {
        for (let round = 0; round < 3; round++) {
          while (!("manifest_end" in await job.next()));
          received[index]++;
          await job.send({ need: { paths: [], whole_manifest: true } });
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      } catch {
        // The master ended the call.
      }
    },
  }, { host: "127.0.0.1", port: 0 });
  try {
    await using cache = await tempWorkspace();
    await using ws = await tempWorkspace({ "a.txt": "aaaa" });
    await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(`127.0.0.1:${server.port}`));
    for (const round of ["first (no base)", "second (a delta)"]) {
      const r = await run(ws.dir, cache.dir);
      assert.equal(r.code, 1, round);
      assert.match(r.finished.error, /asked for the manifest again/, round);
    }
    // Once whole (no base): no second. A delta, then once whole: no third.
    assert.deepEqual(received, [1, 2]);
  } finally {
    await server.close(100);
  }
});

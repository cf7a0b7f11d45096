/** Content-addressed, incremental sync: only what changed travels, in both directions. */
import assert from "node:assert/strict";
import { startAgent } from "../_helpers/agent.ts";
import { cliProcess, tempWorkspace, waitFor } from "../_helpers/mod.ts";

interface Finished {
  task: string;
  status: string;
  error?: string;
  transfer?: { sent_bytes: number; received_bytes: number };
}

async function run(dir: string, file = "workflow.lua") {
  const r = await cliProcess(["run", "-f", file, "-o", "json"], { cwd: dir });
  const events = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const finished = events.filter((e) => e.type === "task_finished") as Finished[];
  const lines = events.filter((e) => e.type === "log").map((e) => e.line as string);
  return { code: r.code, finished, lines, stderr: r.stderr };
}

const listing = "find . -type f -not -name workflow.lua | sort | while read f; do " +
  'echo "$f $(stat -c %a "$f") $(sha256sum < "$f" | cut -c1-12)"; done';

function workflow(address: string, command = listing): string {
  return `TaskDefinitions = { g = { tasks = { { name = "look", delegate_to = "${address}",
    command = ${JSON.stringify(command)} } } } }`;
}

function localListing(dir: string): string[] {
  const out = new Deno.Command("sh", { args: ["-c", listing], cwd: dir }).outputSync();
  return new TextDecoder().decode(out.stdout).trim().split("\n");
}

Deno.test("a second run sends only the changed, renamed and mode-changed files, and deletes the deleted", async () => {
  await using agent = await startAgent();
  const big = "x".repeat(200_000);
  await using ws = await tempWorkspace({
    "keep.txt": big,
    "edit.txt": "before",
    "gone.txt": "to be deleted",
    "old-name.txt": "renamed content " + big,
    "tool.sh": "#!/bin/sh\n",
  });
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(agent.address));
  const first = await run(ws.dir);
  assert.equal(first.code, 0, first.stderr);
  assert.ok(first.finished[0].transfer!.sent_bytes > 400_000, "the first run sends everything");
  assert.deepEqual(first.lines, localListing(ws.dir));

  await Deno.writeTextFile(`${ws.dir}/edit.txt`, "after");
  await Deno.remove(`${ws.dir}/gone.txt`);
  await Deno.rename(`${ws.dir}/old-name.txt`, `${ws.dir}/new-name.txt`);
  await Deno.chmod(`${ws.dir}/tool.sh`, 0o755);
  const second = await run(ws.dir);
  assert.equal(second.code, 0, second.stderr);
  // The agent sees exactly the master's files: changed, deleted, renamed, mode-changed.
  assert.deepEqual(second.lines, localListing(ws.dir));
  // Only edit.txt's new content travels: the rename and the mode change cost no content.
  assert.ok(
    second.finished[0].transfer!.sent_bytes < 5_000,
    `sent ${second.finished[0].transfer!.sent_bytes}`,
  );
  assert.equal(
    second.finished[0].transfer!.received_bytes,
    0,
    "nothing back for an unchanged workspace",
  );

  const third = await run(ws.dir);
  assert.equal(third.finished[0].transfer!.sent_bytes, 0, "nothing at all when nothing changed");
});

Deno.test("a damaged entry in the agent's content store is noticed and fetched again", async () => {
  await using root = await tempWorkspace();
  await using agent = await startAgent({ args: ["--work-root", root.dir] });
  const content = "precious content\n".repeat(1000);
  await using a = await tempWorkspace({ "data.txt": content });
  await using b = await tempWorkspace({ "data.txt": content });
  const check = `sha256sum data.txt | cut -c1-16`;
  await Deno.writeTextFile(`${a.dir}/workflow.lua`, workflow(agent.address, check));
  await Deno.writeTextFile(`${b.dir}/workflow.lua`, workflow(agent.address, check));
  const first = await run(a.dir);
  assert.equal(first.code, 0, first.stderr);
  const expected = first.lines[0];

  const digest = [
    ...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(content))),
  ]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const blob = `${root.dir}/sloth-agent-${agent.port}/blobs/${digest}`;
  // The store is filled after the job, off the master's clock.
  await waitFor(async () => (await Deno.stat(blob).catch(() => undefined))?.isFile === true);
  await Deno.chmod(blob, 0o644);
  await Deno.writeTextFile(blob, "corrupted".padEnd(content.length, "!"));

  // Another directory (so no kept workspace), the same content: the store must not be trusted.
  const second = await run(b.dir);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.lines[0], expected);
  assert.ok(second.finished[0].transfer!.sent_bytes >= content.length, "fetched again");
});

Deno.test("content a task moves or copies comes back without its bytes; new content with them", async () => {
  await using agent = await startAgent();
  const big = "y".repeat(300_000);
  await using ws = await tempWorkspace({ "a.bin": big });
  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    workflow(agent.address, "mv a.bin moved.bin && cp moved.bin copy.bin && echo new > new.txt"),
  );
  const r = await run(ws.dir);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(
    r.finished[0].transfer!.received_bytes < 10_000,
    `received ${r.finished[0].transfer!.received_bytes}`,
  );
  assert.equal(await Deno.readTextFile(`${ws.dir}/moved.bin`), big);
  assert.equal(await Deno.readTextFile(`${ws.dir}/copy.bin`), big);
  assert.equal(await Deno.readTextFile(`${ws.dir}/new.txt`), "new\n");
  await assert.rejects(Deno.stat(`${ws.dir}/a.bin`));
});

Deno.test("the agent's store and kept workspaces survive its restart on the same port", async () => {
  await using root = await tempWorkspace();
  // A port chosen here: an agent on port 0 keeps nothing (see the next test).
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const first = await startAgent({ args: ["--work-root", root.dir], port });
  await using ws = await tempWorkspace({ "big.bin": "z".repeat(500_000) });
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(first.address, "true"));
  assert.equal((await run(ws.dir)).code, 0);
  await first.stop();
  await using _again = await startAgent({ args: ["--work-root", root.dir], port });
  const r = await run(ws.dir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.finished[0].transfer!.sent_bytes, 0);
});

Deno.test("an agent on a port the system picked (-p 0) removes its store and workspaces when it stops", async () => {
  await using root = await tempWorkspace();
  const agent = await startAgent({ args: ["--work-root", root.dir] });
  await using ws = await tempWorkspace({ "big.bin": "z".repeat(100_000) });
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(agent.address, "true"));
  assert.equal((await run(ws.dir)).code, 0);
  assert.equal([...Deno.readDirSync(root.dir)].length, 1, "its home, while it runs");
  await agent.stop();
  assert.deepEqual([...Deno.readDirSync(root.dir)], []);
});

Deno.test("--compress and `compress = true` gzip the workspace and the change set, with the same result", async () => {
  await using agent = await startAgent();
  const text = "a line of very compressible text\n".repeat(60_000); // ~2 MB
  await using ws = await tempWorkspace({ "big.txt": text, "gone.txt": "bye", "keep.bin": "k" });
  const command = "rm gone.txt && sed s/very/rather/ big.txt > made.txt && chmod 640 made.txt";
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(agent.address, command));
  const r = await cliProcess(["run", "-f", "workflow.lua", "-o", "json", "--compress"], {
    cwd: ws.dir,
  });
  assert.equal(r.code, 0, r.stderr);
  const done = JSON.parse(r.stdout.trim().split("\n").find((l) => l.includes("task_finished"))!);
  assert.ok(done.transfer.sent_bytes < 100_000, `sent ${done.transfer.sent_bytes}`);
  assert.ok(done.transfer.received_bytes < 100_000, `received ${done.transfer.received_bytes}`);
  assert.equal(
    await Deno.readTextFile(`${ws.dir}/made.txt`),
    text.replaceAll("very", "rather"),
  );
  assert.equal((await Deno.stat(`${ws.dir}/made.txt`)).mode! & 0o777, 0o640);
  await assert.rejects(Deno.stat(`${ws.dir}/gone.txt`), Deno.errors.NotFound);

  // The same through the agent's definition, to a directory the agent has not seen.
  await using other = await tempWorkspace({ "big.txt": text });
  await Deno.writeTextFile(
    `${other.dir}/workflow.lua`,
    `TaskDefinitions = { g = { agents = { a = { address = "${agent.address}", compress = true } },
      tasks = { { name = "look", agent = "a", command = "wc -c < big.txt" } } } }`,
  );
  const second = await run(other.dir);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(second.lines, [String(text.length)]);
  assert.ok(second.finished[0].transfer!.sent_bytes < 100_000);
});

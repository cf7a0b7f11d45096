/** `new` (a starter workflow that runs as it is) and `types` (editor annotations). */
import assert from "node:assert/strict";
import { startAgent } from "../_helpers/agent.ts";
import { cliProcess, tempWorkspace } from "../_helpers/mod.ts";

Deno.test("new writes a starter workflow that runs as it is: local and remote tasks, a dependency, a retry", async () => {
  await using ws = await tempWorkspace();
  await using agent = await startAgent();
  const created = await cliProcess(["new", "my-pipeline", "--agent", agent.address], {
    cwd: ws.dir,
  });
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /^created my-pipeline\/workflow\.lua$/m);
  assert.match(created.stdout, /^ {2}sloth-runner run -f my-pipeline\/workflow\.lua$/m);

  const run = await cliProcess(["run", "-f", "my-pipeline/workflow.lua"], { cwd: ws.dir });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /^flaky +success +2 /m);
  assert.match(
    run.stdout,
    new RegExp(`^build +success +1 .*agent builder \\(${agent.address}\\)`, "m"),
  );
  assert.match(run.stdout, /^report +success +1 /m);
  assert.match(run.stdout, /^\[report\] the agent wrote: HELLO FROM THE MASTER$/m);
  assert.match(run.stdout, /^4 tasks: 4 success$/m);
  // The agent's change came back to the master's directory.
  assert.equal(
    await Deno.readTextFile(`${ws.dir}/my-pipeline/out/build.txt`),
    "HELLO FROM THE MASTER\n",
  );
  const valid = await cliProcess(["validate", "-f", "my-pipeline/workflow.lua"], { cwd: ws.dir });
  assert.match(valid.stdout, /is valid: 1 group, 4 tasks \(1 remote\)/);
});

Deno.test("new --builder writes the same starter in the builder DSL, and it runs the same", async () => {
  await using ws = await tempWorkspace();
  await using agent = await startAgent();
  const created = await cliProcess(["new", "built", "--builder", "--agent", agent.address], {
    cwd: ws.dir,
  });
  assert.equal(created.code, 0, created.stderr);
  const text = await Deno.readTextFile(`${ws.dir}/built/workflow.lua`);
  assert.match(text, /^local build = task\("build"\)$/m);
  assert.match(text, /^workflow\.define\("built"\)$/m);
  assert.doesNotMatch(text, /TaskDefinitions/);
  const run = await cliProcess(["run", "-f", "built/workflow.lua"], { cwd: ws.dir });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /^flaky +success +2 /m);
  assert.match(
    run.stdout,
    new RegExp(`^build +success +1 .*agent builder \\(${agent.address}\\)`, "m"),
  );
  assert.match(run.stdout, /^\[report\] the agent wrote: HELLO FROM THE MASTER$/m);
  assert.match(run.stdout, /^4 tasks: 4 success$/m);
  const list = await cliProcess(["list", "-f", "built/workflow.lua"], { cwd: ws.dir });
  assert.match(list.stdout, /^built — Prepare here, build on an agent, report here$/m);
});

Deno.test("new names the default agent 127.0.0.1:50051 and never overwrites a workflow", async () => {
  await using ws = await tempWorkspace({ "demo/workflow.lua": "-- mine\n" });
  const r = await cliProcess(["new", "demo"], { cwd: ws.dir });
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "error: demo/workflow.lua already exists; nothing was written\n" +
      "hint: choose another name, or pass --force to overwrite it\n",
  );
  assert.equal(await Deno.readTextFile(`${ws.dir}/demo/workflow.lua`), "-- mine\n");
  const fresh = await cliProcess(["new", "other"], { cwd: ws.dir });
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.match(
    await Deno.readTextFile(`${ws.dir}/other/workflow.lua`),
    /address = "127\.0\.0\.1:50051"/,
  );
  assert.match(fresh.stdout, /sloth-runner agent -p 50051 /);
  const forced = await cliProcess(["new", "demo", "--force"], { cwd: ws.dir });
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(
    await Deno.readTextFile(`${ws.dir}/demo/workflow.lua`),
    /TaskDefinitions = \{\n {2}demo = \{/,
  );
});

Deno.test("types writes LuaLS annotations and a .luarc.json that points at them, leaving an existing one alone", async () => {
  await using ws = await tempWorkspace();
  const r = await cliProcess(["types"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  const meta = await Deno.readTextFile(`${ws.dir}/.sloth/sloth.lua`);
  assert.match(meta, /^---@meta\n/);
  assert.match(meta, /^---@class \(exact\) sloth\.Task$/m);
  assert.match(meta, /^function exec\.run\(/m);
  // The builder DSL: task(), its builder's methods, workflow.define and what functions get.
  assert.match(meta, /^function task\(name\) end$/m);
  assert.match(meta, /^---@class \(exact\) sloth\.TaskBuilder$/m);
  assert.match(
    meta,
    /^---@field on_failure fun\(self: sloth\.TaskBuilder, hook: sloth\.BuilderAfter\): sloth\.TaskBuilder$/m,
  );
  assert.match(meta, /^function workflow\.define\(name, spec\) end$/m);
  assert.match(meta, /^---@class \(exact\) sloth\.This$/m);
  assert.match(meta, /^function goroutine\.spawn\(/m);
  assert.deepEqual(JSON.parse(await Deno.readTextFile(`${ws.dir}/.luarc.json`)), {
    "runtime.version": "Lua 5.4",
    "workspace.library": [".sloth"],
  });
  const second = await cliProcess(["types"], { cwd: ws.dir });
  assert.match(second.stdout, /^\.luarc\.json already lists \.sloth in "workspace\.library"$/m);
  await Deno.writeTextFile(`${ws.dir}/.luarc.json`, "{}\n");
  const again = await cliProcess(["types", "--output", "editor/types.lua"], { cwd: ws.dir });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /\.luarc\.json exists and was left alone: .*"editor"/);
  assert.equal(await Deno.readTextFile(`${ws.dir}/.luarc.json`), "{}\n");
  assert.equal(await Deno.readTextFile(`${ws.dir}/editor/types.lua`), meta);
  const stdout = await cliProcess(["types", "-o", "-"], { cwd: ws.dir });
  assert.equal(stdout.stdout, meta);
});

Deno.test("new makes a valid workflow from awkward names, and refuses a bad --agent or no name", async () => {
  await using ws = await tempWorkspace();
  for (const name of ["end", "my dir", "2fast"]) {
    const r = await cliProcess(["new", name], { cwd: ws.dir });
    assert.equal(r.code, 0, r.stderr);
    const valid = await cliProcess(["validate", "-f", `${name}/workflow.lua`], { cwd: ws.dir });
    assert.equal(valid.code, 0, `${name}: ${valid.stderr}`);
  }
  const spaced = await cliProcess(["new", "it's here"], { cwd: ws.dir });
  assert.match(spaced.stdout, /^ {2}sloth-runner run -f 'it'\\''s here\/workflow\.lua'$/m);
  const bad = await cliProcess(["new", "p", "--agent", "nonsense"], { cwd: ws.dir });
  assert.equal(bad.code, 2);
  assert.equal(
    bad.stderr,
    "error: --agent nonsense is not an agent address\n" +
      "hint: give it as host:port with a port from 1 to 65535, e.g. 127.0.0.1:50051\n",
  );
  const empty = await cliProcess(["new", ""], { cwd: ws.dir });
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /^error: the new workflow needs a name\n/);
  const far = await cliProcess(["new", "far", "--agent", "build-1.example.com:7000"], {
    cwd: ws.dir,
  });
  assert.match(
    far.stdout,
    /sloth-runner agent -p 7000 --bind 0\.0\.0\.0 --token-file TOKEN +# on build-1\.example\.com/,
  );
  await assert.rejects(Deno.stat(`${ws.dir}/p`), Deno.errors.NotFound);
});

Deno.test("new refuses a NAME that is a file, and its starter's comment starts the agent it names", async () => {
  await using ws = await tempWorkspace({ "afile": "x\n" });
  const r = await cliProcess(["new", "afile", "--force"], { cwd: ws.dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: afile exists and is not a directory; nothing was written\n/);
  assert.equal(await Deno.readTextFile(`${ws.dir}/afile`), "x\n");
  await cliProcess(["new", "p", "--agent", "127.0.0.1:6000"], { cwd: ws.dir });
  assert.match(
    await Deno.readTextFile(`${ws.dir}/p/workflow.lua`),
    /^-- {3}sloth-runner agent -p 6000 /m,
  );
});

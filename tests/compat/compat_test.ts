/**
 * Workflows written in the Go sloth-runner's styles (tests/compat/<style>/), run end
 * to end as users run them: all here, then with their remote tasks on a real agent
 * (SLOTH_COMPAT_AGENT names it; the files delegate to it when it is set).
 */
import assert from "node:assert/strict";
import {
  cliProcess,
  copyDir,
  LiveOutput,
  pgrep,
  ROOT,
  spawnCli,
  tempWorkspace,
  uniqueSeconds,
  waitFor,
} from "../_helpers/mod.ts";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";

const copyStyle = (name: string) => copyDir(`${ROOT}/tests/compat/${name}`);

const read = (dir: string, file: string) => Deno.readTextFile(`${dir}/${file}`);

async function run(dir: string, args: string[], agent?: TestAgent) {
  return await cliProcess(["run", "--plain", ...args], {
    cwd: dir,
    env: agent ? { SLOTH_COMPAT_AGENT: agent.address } : {},
  });
}

for (const where of ["here", "on an agent"] as const) {
  const remote = where === "on an agent";

  Deno.test(`compat: the builder chain (task():...:build(), workflow.define builder) runs ${where}`, async () => {
    await using agent = remote ? await startAgent({ args: ["--sandbox", "none"] }) : undefined;
    await using ws = await copyStyle("builder_chain");
    const r = await run(ws.dir, ["-f", "pipeline.sloth", "-g", "ci"], agent);
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 0, out);
    assert.match(r.stdout, /^\[build(?:@[^\]]+)?\] pre_hook of build in ci$/m);
    assert.match(r.stdout, /^\[build(?:@[^\]]+)?\] compiled app \(12 bytes of source\)$/m);
    assert.match(r.stdout, /^\[build(?:@[^\]]+)?\] post_hook sees app\.bin$/m);
    assert.match(r.stdout, /^\[test\] test read app\.bin from /m);
    assert.match(r.stdout, /^flaky\s+success\s+3\s/m);
    assert.match(
      r.stdout,
      remote
        ? /^build\s+success\s+1\s+\S+\s+agent 127\.0\.0\.1:\d+/m
        : /^build\s+success\s+1\s+\S+\s+local/m,
    );
    // The built file came back from the agent; the outcome hooks ran here.
    assert.equal(await read(ws.dir, "app.bin"), "built");
    const workdir = await read(ws.dir, "workdir.txt");
    if (remote) assert.notEqual(workdir, ws.dir);
    else assert.equal(workdir, ws.dir);
    assert.equal(await read(ws.dir, "on_success.txt"), "build made app.bin");
    assert.equal(await read(ws.dir, "started.txt"), "yes");
    assert.equal(
      await read(ws.dir, "complete.txt"),
      "true build=success flaky=success prepare=success test=success",
    );
    await assert.rejects(Deno.stat(`${ws.dir}/on_failure.txt`));
  });

  Deno.test(`compat: on_failure, on_timeout and on_complete(false) run ${where}`, async () => {
    await using agent = remote ? await startAgent({ args: ["--sandbox", "none"] }) : undefined;
    await using ws = await copyStyle("builder_chain");
    const r = await run(ws.dir, ["-f", "pipeline.sloth", "-g", "broken"], agent);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^\[boom(?:@[^\]]+)?\] going down$/m);
    assert.equal(await read(ws.dir, "boom_failed.txt"), "exit code 4");
    assert.equal(await read(ws.dir, "slow_timeout.txt"), "timed out after 300ms");
    assert.equal(await read(ws.dir, "broken_complete.txt"), "false failed timeout");
  });

  Deno.test(`compat: workflow.define's table form runs ${where}`, async () => {
    await using agent = remote ? await startAgent({ args: ["--sandbox", "none"] }) : undefined;
    await using ws = await copyStyle("table_form");
    await Deno.writeTextFile(`${ws.dir}/values.yaml`, "version: 3.1.4\n");
    const r = await run(ws.dir, ["-f", "deploy.sloth", "-v", "values.yaml"], agent);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^\[announce\] announcing release 3\.1\.4$/m);
    assert.equal(await read(ws.dir, "release.txt"), "release 3.1.4");
    assert.equal(await read(ws.dir, "deploy_complete.txt"), "true release 3.1.4");
    // A workflow's own functions log under its name.
    assert.match(r.stdout + r.stderr, /^\[workflow\] deploy: deployed true$/m);
  });

  Deno.test(`compat: the older group fields (workdir, create_workdir_before_run, clean_workdir_after_run) work ${where}`, async () => {
    await using agent = remote ? await startAgent({ args: ["--sandbox", "none"] }) : undefined;
    await using ws = await copyStyle("older_group");
    const ok = await run(ws.dir, ["-f", "workflow.lua"], agent);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(await read(ws.dir, "report.txt"), "compiled from fetched\nsize 8 in build");
    assert.equal(await read(ws.dir, "clean_result.txt"), "true nil");
    await assert.rejects(Deno.stat(`${ws.dir}/build`), "removed after a run that went well");

    await Deno.writeTextFile(`${ws.dir}/values.yaml`, "fail: true\n");
    const failed = await run(ws.dir, ["-f", "workflow.lua", "-v", "values.yaml"], agent);
    assert.equal(failed.code, 1, failed.stdout + failed.stderr);
    assert.match(await read(ws.dir, "clean_result.txt"), /^false .*asked to fail/);
    // Kept for a look, with what the tasks made in it (a failed remote task's changes stay
    // on the agent: sync_back is on_success).
    assert.equal(await read(ws.dir, "build/fetched.txt"), "fetched\n");
    if (!remote) assert.equal(await read(ws.dir, "build/compiled.txt"), "compiled from fetched\n");
  });

  Deno.test(`compat: a goroutine fan-out of exec.run runs ${where}`, async () => {
    await using agent = remote ? await startAgent({ args: ["--sandbox", "none"] }) : undefined;
    await using ws = await copyStyle("goroutines");
    const r = await run(ws.dir, ["-f", "fanout.sloth"], agent);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(
      await read(ws.dir, "goroutines.txt"),
      "host-1,host-2,host-3 sum=14 true later",
    );
  });

  Deno.test(`compat: :user and :artifacts are requirements, checked where the task runs, ${where}`, async () => {
    await using agent = remote ? await startAgent({ args: ["--sandbox", "none"] }) : undefined;
    await using ws = await tempWorkspace({
      "workflow.lua": await Deno.readTextFile(`${ROOT}/tests/compat/requirements.lua`),
    });
    // Who commands run as there: an agent started as root runs its tasks as nobody.
    const me = new TextDecoder().decode(
      (await new Deno.Command("id", { args: ["-un"] }).output()).stdout,
    ).trim();
    const who = remote && me === "root" ? "nobody" : me;
    const r = await cliProcess(["run", "--plain", "-f", "workflow.lua"], {
      cwd: ws.dir,
      env: { SLOTH_COMPAT_USER: who, ...(agent ? { SLOTH_COMPAT_AGENT: agent.address } : {}) },
    });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^as_me\s+success/m);
    assert.equal((await read(ws.dir, "who.txt")).trim(), who);
    assert.match(
      r.stdout,
      new RegExp(
        `^as_other\\s+failed .*user "no-such-user-here": this task must run as no-such-user-here, ` +
          `and commands here run as ${who} \\(${
            remote ? "start the agent as root with --task-user" : "run sloth-runner as"
          }`,
        "m",
      ),
    );
    await assert.rejects(Deno.stat(`${ws.dir}/never.txt`));
    assert.match(
      r.stdout,
      /^makes_nothing\s+failed .*artifacts: nothing matches "dist\/\*\.tar\.gz" in the task's workdir/m,
    );
    assert.match(r.stdout, /^uses_it\s+success/m);
    assert.match(
      r.stdout,
      /^uses_none\s+failed .*consumes: nothing matches "absent\/\*\.bin" in the task's workdir/m,
    );
    await assert.rejects(Deno.stat(`${ws.dir}/ran.txt`));
  });

  Deno.test(`compat: a .sloth file with a shebang and require() runs ${where}`, async () => {
    await using agent = remote ? await startAgent({ args: ["--sandbox", "none"] }) : undefined;
    await using ws = await copyStyle("modules");
    const r = await run(ws.dir, ["-f", "main.sloth"], agent);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^\[bytes(?:@[^\]]+)?\] hello from bytes$/m);
    assert.equal(await read(ws.dir, "bytes.txt"), String.raw`"hi" "a\r\nb" "line\n"`);
    assert.equal(
      await read(ws.dir, "go_style.txt"),
      "out=go style upper=GO STYLE err=oops failed=exit code 2 ok=nil",
    );
  });
}

Deno.test("compat: builder functions get (this, params) or the table form's (params, inputs) by their first parameter's name", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": await Deno.readTextFile(`${ROOT}/tests/compat/conventions.lua`),
  });
  const r = await run(ws.dir, ["-f", "workflow.lua"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(await read(ws.dir, "a_on_success.txt"), "produce:true");
  assert.equal(await read(ws.dir, "b_pre.txt"), "produce:true");
  assert.equal(await read(ws.dir, "b_command.txt"), "consume produce:true consume");
  assert.equal(await read(ws.dir, "b_post.txt"), "conventions");
});

Deno.test("compat: workflow({ name = ... }) with run = and { changed, failed, message } results runs", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": await Deno.readTextFile(`${ROOT}/tests/compat/legacy_agents.lua`),
  });
  const r = await run(ws.dir, ["-f", "workflow.lua"]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^\[legacy\.a\] ran a$/m);
  assert.match(r.stdout, /^\[legacy\.b\] shell b$/m);
  assert.match(r.stdout, /^legacy\.c\s+failed\s+1\s+\S+\s+local\s+c broke$/m);
  assert.match(r.stdout, /^other\.solo\s+success/m);
});

Deno.test("compat: list, validate and --dry-run show builder workflows like groups", async () => {
  await using ws = await copyStyle("builder_chain");
  const list = await cliProcess(["list", "-f", "pipeline.sloth"], { cwd: ws.dir });
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^ci 1\.2\.0 — Builder chain, Go style$/m);
  assert.match(list.stdout, /^ {2}build\s+local\s+prepare\s+Build in the task's workdir$/m);
  assert.match(list.stdout, /^broken — Fails, for the failure hooks$/m);
  const validate = await cliProcess(["validate", "-f", "pipeline.sloth"], { cwd: ws.dir });
  assert.equal(validate.code, 0, validate.stderr);
  const dry = await cliProcess(["run", "-f", "pipeline.sloth", "-g", "ci", "--dry-run"], {
    cwd: ws.dir,
  });
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^\s+2\. build\s+local\s+after prepare$/m);
  // Nothing ran: no hook, no file.
  await assert.rejects(Deno.stat(`${ws.dir}/started.txt`));
});

Deno.test("compat: a builder workflow's reports name it and its tasks as a TaskDefinitions group's do", async () => {
  await using ws = await copyStyle("table_form");
  const r = await cliProcess(
    [
      "run",
      "--plain",
      "-f",
      "deploy.sloth",
      "--report",
      "junit=out.xml",
      "--report",
      "json=out.json",
    ],
    { cwd: ws.dir },
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const xml = await read(ws.dir, "out.xml");
  assert.match(xml, /<testsuite name="deploy" tests="2" failures="0"/);
  assert.match(xml, /<testcase name="announce" classname="deploy"/);
  const json = JSON.parse(await read(ws.dir, "out.json"));
  assert.deepEqual(
    json.tasks.map((
      t: { group: string; task: string; status: string },
    ) => [t.group, t.task, t.status]),
    [["deploy", "package", "success"], ["deploy", "announce", "success"]],
  );
});

Deno.test("compat: Ctrl-C during a builder task on an agent cancels it there, leaving nothing running", async () => {
  await using agent = await startAgent({ args: ["--sandbox", "none"] });
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({
    "workflow.lua": `workflow.define("w", { tasks = {
      task("sleeper"):delegate_to("${agent.address}"):command(function(this, params)
        log.info("started")
        exec.run("sleep ${seconds}")
        log.info("never")
      end):build(),
    } })`,
  });
  const child = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/\[sleeper@[^\]]+\] started/);
  await waitFor(async () => (await pgrep(`sleep ${seconds}`)).length > 0, 5000);
  child.kill("SIGINT");
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 130);
  assert.match(live.stdout, /^sleeper\s+cancelled /m);
  assert.doesNotMatch(live.stdout, /never/);
  await waitFor(async () => (await pgrep(`sleep ${seconds}`)).length === 0, 3000);
  await waitFor(() => /job 1 w\.sleeper .*: cancelled by the master/.test(agent.log()), 5000);
});

Deno.test("compat: a hook that never returns: on_success has the task's timeout; Ctrl-C in on_complete exits 130", async () => {
  await using ws = await tempWorkspace({
    "bounded.lua": `workflow.define("w"):tasks({
      task("a"):timeout("1s"):command("echo a"):on_success(function() while true do end end):build(),
    })`,
    "forever.lua": `workflow.define("w"):tasks({ task("a"):command("echo a"):build() })
      :on_complete(function() while true do end end)`,
  });
  const bounded = await cliProcess(["run", "--plain", "-f", "bounded.lua"], { cwd: ws.dir });
  assert.equal(bounded.code, 1, bounded.stdout + bounded.stderr);
  assert.match(
    bounded.stdout,
    /^a\s+failed\s+1\s+\S+\s+local\s+on_success timed out after 1000ms$/m,
  );

  const child = spawnCli(["run", "--plain", "-f", "forever.lua"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await live.waitFor(/\[a\] ✔ success/);
  child.kill("SIGINT");
  const status = await child.status;
  await live.done();
  assert.equal(status.code, 130);
  assert.match(live.stdout + live.stderr, /on_complete of workflow "w" failed: stopped by Ctrl-C/);
  assert.doesNotMatch(live.stdout + live.stderr, /AbortError/);
});

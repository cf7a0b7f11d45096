/**
 * create_workdir_before_run and clean_workdir_after_run through the real CLI: the
 * group's directory is there before its first task and gone (or not) after the run.
 */
import assert from "node:assert/strict";
import { startAgent } from "../_helpers/agent.ts";
import {
  cliProcess,
  copyFixture,
  LiveOutput,
  spawnCli,
  tempWorkspace,
  waitFor,
} from "../_helpers/mod.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("create_workdir_before_run makes the group's workdir before its first task, which writes there; without clean_workdir_after_run it stays", async () => {
  await using ws = await copyFixture("group_dir");
  assert.equal(await exists(`${ws.dir}/build`), false);
  const r = await cliProcess(["run", "-g", "made"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^\\[write\\] ${ws.dir}/build/out$`, "m"));
  assert.equal(await Deno.readTextFile(`${ws.dir}/build/out/made.txt`), "made\n");
  assert.doesNotMatch(r.stdout + r.stderr, /group "made"/);
});

Deno.test("clean_workdir_after_run = true removes the group's workdir after the run, false keeps it", async () => {
  await using ws = await copyFixture("group_dir");
  const r = await cliProcess(["run", "-g", "removed,kept"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^\\[removed\\.fill\\] ${ws.dir}/scratch$`, "m"));
  assert.match(
    r.stdout,
    new RegExp(`^\\[workflow\\] group "removed": removed ${ws.dir}/scratch$`, "m"),
  );
  assert.equal(await exists(`${ws.dir}/scratch`), false);
  assert.equal(await Deno.readTextFile(`${ws.dir}/kept/kept.txt`), "kept\n");
  assert.equal(await exists(`${ws.dir}/workflow.lua`), true);
});

Deno.test("a clean_workdir_after_run function removes the directory when the group succeeded and keeps it when a task failed", async () => {
  await using ws = await copyFixture("group_dir");
  const ok = await cliProcess(["run", "-g", "decides"], { cwd: ws.dir });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^\[workflow\] success=true error=nil$/m);
  assert.equal(await exists(`${ws.dir}/decided`), false);

  const failed = await cliProcess(["run", "-g", "decides"], { cwd: ws.dir, env: { FAIL: "1" } });
  assert.equal(failed.code, 1);
  assert.match(
    failed.stdout,
    /^\[workflow\] success=false error=task "check" failed: exit code 1$/m,
  );
  assert.match(
    failed.stdout,
    new RegExp(
      `^\\[workflow\\] group "decides": ${ws.dir}/decided is kept \\(clean_workdir_after_run returned false\\)$`,
      "m",
    ),
  );
  assert.equal(await Deno.readTextFile(`${ws.dir}/decided/step.txt`), "step\n");
  assert.match(failed.stdout, /^check\s+failed\s+1\s+\S+\s+local\s+exit code 1$/m);
});

Deno.test("a group without workdir gets a new temporary directory: removed after success, kept after a failure", async () => {
  await using ws = await copyFixture("group_dir");
  const tmp = (Deno.env.get("TMPDIR") || "/tmp").replace(/\/$/, "");
  const workdirOf = (stdout: string) => {
    const line = /^\[where\] workdir (\S+)$/m.exec(stdout);
    assert.ok(line, stdout);
    return line[1];
  };

  const ok = await cliProcess(["run", "-g", "ephemeral"], { cwd: ws.dir });
  assert.equal(ok.code, 0, ok.stderr);
  const first = workdirOf(ok.stdout);
  assert.equal(first.slice(0, first.lastIndexOf("/")), tmp);
  assert.match(first, /\/ephemeral-[^/]+$/);
  assert.match(ok.stdout, new RegExp(`^\\[workflow\\] last output dir=${first}$`, "m"));
  assert.match(ok.stdout, new RegExp(`^\\[workflow\\] group "ephemeral": removed ${first}$`, "m"));
  assert.equal(await exists(first), false);
  assert.equal(await exists(`${ws.dir}/here.txt`), false);

  const failed = await cliProcess(["run", "-g", "ephemeral"], { cwd: ws.dir, env: { FAIL: "1" } });
  assert.equal(failed.code, 1);
  const second = workdirOf(failed.stdout);
  try {
    assert.notEqual(second, first);
    assert.equal(await Deno.readTextFile(`${second}/here.txt`), second);
    assert.match(failed.stdout, /^\[workflow\] last output dir=nil$/m);
    assert.match(failed.stdout, /is kept \(clean_workdir_after_run returned false\)$/m);
  } finally {
    await Deno.remove(second, { recursive: true });
  }
});

Deno.test("an error in clean_workdir_after_run is said with file:line and the directory is kept", async () => {
  await using ws = await copyFixture("group_dir");
  const r = await cliProcess(["run", "-g", "broken"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `^\\[workflow\\] ERROR group "broken": clean_workdir_after_run \\(workflow\\.lua:65\\) failed: ` +
        `workflow\\.lua:66: cannot decide for broken; ${ws.dir}/broken is kept$`,
      "m",
    ),
  );
  assert.equal(await exists(`${ws.dir}/broken`), true);
});

Deno.test("an interrupted run removes nothing", async () => {
  await using ws = await copyFixture("group_dir");
  const child = spawnCli(["run", "-g", "slow"], { cwd: ws.dir });
  const live = new LiveOutput(child);
  await waitFor(() => exists(`${ws.dir}/slow/started`), 10_000);
  child.kill("SIGINT");
  const { code } = await child.status;
  await live.done();
  assert.equal(code, 130);
  assert.match(live.stderr, new RegExp(`group "slow": run interrupted; ${ws.dir}/slow is kept`));
  assert.equal(await Deno.readTextFile(`${ws.dir}/slow/started`), "started\n");
});

Deno.test("clean_workdir_after_run on where sloth-runner started, the home directory or / is refused before anything runs", async () => {
  const home = Deno.env.get("HOME")!;
  await using ws = await tempWorkspace({
    "workflow.lua": `
TaskDefinitions = {
  here = { workdir = ".", clean_workdir_after_run = true, tasks = { { name = "a", command = "touch ran-a" } } },
  home = { workdir = ${JSON.stringify(home)}, clean_workdir_after_run = function() return true end,
           tasks = { { name = "b", command = "touch ran-b" } } },
  root = { workdir = "/", clean_workdir_after_run = true, tasks = { { name = "c", command = "touch ran-c" } } },
}`,
  });
  const r = await cliProcess(["run"], { cwd: ws.dir });
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    new RegExp(
      `group "here": clean_workdir_after_run could remove workdir ${ws.dir}, which is the directory sloth-runner was started in; sloth-runner never removes that`,
    ),
  );
  assert.match(
    r.stderr,
    new RegExp(`group "home": .*workdir ${home}, which is your home directory`),
  );
  assert.match(r.stderr, /group "root": .*workdir \/, which is the root directory/);
  assert.doesNotMatch(r.stderr, /▶ started/);
  assert.deepEqual([...Deno.readDirSync(ws.dir)].map((e) => e.name), ["workflow.lua"]);
});

Deno.test("a group delegated to an agent has its directory on the master: sent to the agent, its changes back, then removed", async () => {
  await using agent = await startAgent();
  await using ws = await tempWorkspace({
    "workflow.lua": `
TaskDefinitions = {
  remote = {
    delegate_to = "${agent.address}",
    create_workdir_before_run = true,
    clean_workdir_after_run = function(result)
      log.info("master sees " .. fs.read(result.workdir .. "/made.txt") .. " in " .. result.workdir)
      return result.success
    end,
    tasks = {
      { name = "make", command = "printf made-on-agent > made.txt" },
      { name = "read", depends_on = "make", command = "cat made.txt" },
    },
  },
}`,
  });
  const r = await cliProcess(["run", "--plain"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /\[read[^\]]*\] made-on-agent$/m);
  const seen = /^\[workflow\] master sees made-on-agent in (\S+)$/m.exec(r.stdout);
  assert.ok(seen, r.stdout);
  assert.match(r.stdout, new RegExp(`^\\[workflow\\] group "remote": removed ${seen[1]}$`, "m"));
  assert.equal(await exists(seen[1]), false);
  assert.deepEqual([...Deno.readDirSync(ws.dir)].map((e) => e.name), ["workflow.lua"]);
});

/**
 * Lua's `fs` on an agent cannot race out of its job's directory. A task starts
 * a command (in a Lua coroutine, so it runs while Lua goes on) that keeps
 * swapping `x` between a regular file and a symlink to a file outside, while Lua
 * reads or writes `x` as fast as it can. With the check and the use two steps,
 * this got out after ~250 tries; Lua now runs in a process that has nothing of
 * the host's files but the job's directory (exec/confined.ts), so there is
 * nothing outside to reach.
 */
import assert from "node:assert/strict";
import { jobDirs, startAgent } from "../_helpers/agent.ts";
import { cliProcess, hasCommand, tempWorkspace } from "../_helpers/mod.ts";

const BWRAP = hasCommand("bwrap");

/** Lua that races `fs.<op>` on `x` against a command flipping it; prints what it got. */
function racer(agent: string, op: "read" | "write", target: string, tries: number): string {
  const attempt = op === "read"
    ? `local ok, s = pcall(fs.read, "x")
          if ok and s:find("SECRET", 1, true) then got = got + 1 end`
    : `pcall(fs.write, "x", "PWNED")`;
  return `TaskDefinitions = { g = { delegate_to = { address = "${agent}" }, tasks = {
    { name = "race", command = function()
        local flipper = coroutine.create(function()
          exec.run([[for i in $(seq 1 200000); do ln -sfn ${target} x; echo safe > x.new; mv -f x.new x; done]])
        end)
        coroutine.resume(flipper)
        local got, started = 0, os.time()
        for i = 1, ${tries} do
          ${attempt}
          if os.time() - started > 60 then break end
        end
        log.info("tries done, leaked " .. got)
        return true
      end } } } }`;
}

Deno.test({
  name: "Lua on an agent cannot read a host file by racing a symlink under fs.read (100,000 tries)",
  ignore: !BWRAP,
  async fn() {
    await using secret = await tempWorkspace({ "secret.txt": "SECRET\n" });
    Deno.chmodSync(`${secret.dir}/secret.txt`, 0o600);
    await using agent = await startAgent({ args: ["--sandbox", "bwrap"] });
    await using ws = await tempWorkspace({
      "workflow.lua": racer(agent.address, "read", `${secret.dir}/secret.txt`, 100_000),
    });
    const run = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /tries done, leaked 0$/m);
    // The same agent runs the next task.
    assert.equal((await cliProcess(["agent", "ping", agent.address], { cwd: ws.dir })).code, 0);
  },
});

Deno.test({
  name:
    "Lua on an agent cannot write a host file by racing a symlink under fs.write (100,000 tries)",
  ignore: !BWRAP,
  async fn() {
    await using host = await tempWorkspace({ "victim.txt": "untouched\n" });
    await using agent = await startAgent({ args: ["--sandbox", "bwrap"] });
    await using ws = await tempWorkspace({
      "workflow.lua": racer(agent.address, "write", `${host.dir}/victim.txt`, 100_000),
    });
    const run = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /tries done/);
    assert.equal(await Deno.readTextFile(`${host.dir}/victim.txt`), "untouched\n");
  },
});

Deno.test({
  name: "a job's Lua on an agent cannot reach another job running at the same moment",
  ignore: !BWRAP,
  async fn() {
    await using root = await tempWorkspace();
    await using agent = await startAgent({ args: ["--sandbox", "bwrap", "--work-root", root.dir] });
    // Job B: writes a secret in its workspace and waits.
    await using b = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
        tasks = { { name = "b", command = "echo SECRET > secret.txt && sleep 4" } } } }`,
    });
    const runB = cliProcess(["run", "-f", "workflow.lua"], { cwd: b.dir });
    let dir: string | undefined;
    for (let i = 0; i < 200 && !dir; i++) {
      const found = jobDirs(agent, root.dir).map((name) =>
        `${root.dir}/sloth-agent-${agent.port}/jobs/${name}`
      ).find((d) => exists(`${d}/ws/secret.txt`));
      dir = found;
      if (!dir) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(dir, "job B never started");
    // Job A knows where B's files are, and tries every way in.
    await using a = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
        tasks = { { name = "a", command = function()
          local tries = {
            function() return fs.read("${dir}/ws/secret.txt") end,
            function() return fs.ls("${dir}/ws") end,
            function() return fs.ls("${root.dir}/sloth-agent-${agent.port}/jobs") end,
            function() return fs.read("../../${dir.split("/").pop()}/ws/secret.txt") end,
            function() return fs.read("/proc/self/cwd/../../${
        dir.split("/").pop()
      }/ws/secret.txt") end,
            function()
              exec.run("ln -sfn ${dir}/ws/secret.txt link")
              return fs.read("link")
            end,
            function() return fs.write("${dir}/ws/secret.txt", "PWNED") end,
          }
          for i, try in ipairs(tries) do
            local ok, got = pcall(try)
            log.info("try " .. i .. ": " .. tostring(ok) .. " " .. tostring(got))
          end
          return true
        end } } } }`,
    });
    const runA = await cliProcess(["run", "-f", "workflow.lua"], { cwd: a.dir });
    assert.equal(runA.code, 0, runA.stdout + runA.stderr);
    assert.equal((runA.stdout.match(/try \d+: false /g) ?? []).length, 7, runA.stdout);
    assert.doesNotMatch(runA.stdout, /SECRET/);
    const resultB = await runB;
    assert.equal(resultB.code, 0, resultB.stderr);
    assert.equal(await Deno.readTextFile(`${b.dir}/secret.txt`), "SECRET\n");
  },
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

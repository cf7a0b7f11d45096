/**
 * An agent reuses its Lua workers across jobs (lib/agent/lua_slots.ts): each is
 * bound to a slot directory that holds one job's directory at a time. These
 * tests try to get from one job to another through that: what a job leaves
 * behind for the next one in the same slot (a Lua global, a background process,
 * a double-forked daemon, a command still running), and a job running at the
 * same moment in another slot, by absolute paths, `..`, `/proc/self/cwd` and
 * symlinks.
 */
import assert from "node:assert/strict";
import { startAgent } from "../_helpers/agent.ts";
import {
  cliProcess,
  hasCommand,
  pgrep,
  tempWorkspace,
  uniqueSeconds,
  waitFor,
} from "../_helpers/mod.ts";

const BWRAP = hasCommand("bwrap");

/** Tries to reach every job directory near its own, for 15 s, as a background process. */
const SPY = `
end=$(( $(date +%s) + 15 ))
while [ "$(date +%s)" -lt "$end" ]; do
  for d in ../../*/ws ../../../*/*/ws /proc/self/cwd/../../*/ws; do
    [ -d "$d" ] || continue
    [ "$d" -ef . ] && continue
    echo pwned > "$d/pwned" 2>/dev/null
    cat "$d/b.txt" > "stolen-$(date +%N)" 2>/dev/null
  done
  sleep 0.05
done
`;

Deno.test({
  name:
    "the next job in a reused Lua slot finds nothing of the last one: no global, no process, no way to its files",
  ignore: !BWRAP,
  async fn() {
    await using agent = await startAgent({
      args: ["--sandbox", "bwrap", "--max-concurrent", "1"],
    });
    const marker = uniqueSeconds();
    // Job a: leaves a global, a background spy and a double-forked one, and says where it ran.
    const a = `{ name = "a", delegate_to = "${agent.address}", command = function(params)
        left_behind = "a"
        fs.write("a.txt", "A-SECRET")
        exec.run("setsid sh ./spy.sh ${marker} >/dev/null 2>&1 </dev/null &")
        exec.run("(setsid sh ./spy.sh ${marker} >/dev/null 2>&1 </dev/null &) ; sleep 0.2")
        local root = params.workdir:match("^(.*)/ws$")
        log.info("a ran in " .. root)
        return true, "", { root = root }
      end }`;
    // Jobs b1..b4: wait for the spies, then look for what a left and try a's directory.
    const b = (name: string, after: string) =>
      `{ name = "${name}", delegate_to = "${agent.address}", depends_on = "${after}",
      command = function(params, inputs)
        local a_root = inputs["${after}"].root
        local a_name = a_root:match("([^/]+)$")
        exec.run("sleep 0.5")
        local leaks = {}
        local function try(what, fn)
          local ok, got = pcall(fn)
          if ok and got then leaks[#leaks + 1] = what .. "=" .. tostring(got) end
        end
        try("global", function() return rawget(_G, "left_behind") end)
        try("pwned", function() return fs.exists("pwned") end)
        try("stolen", function()
          for _, n in ipairs(fs.ls(".")) do if n:find("^stolen") then return n end end
        end)
        try("absolute", function() return fs.read(a_root .. "/ws/a.txt") end)
        try("dotdot", function() return fs.read("../../" .. a_name .. "/ws/a.txt") end)
        try("cwd", function() return fs.read("/proc/self/cwd/" .. a_name .. "/ws/a.txt") end)
        try("slot", function() return table.concat(fs.ls("../.."), ",") end)
        try("shell", function()
          local r = exec.run("cat " .. a_root .. "/ws/a.txt ../../" .. a_name .. "/ws/a.txt")
          return r.stdout:find("A-SECRET") and r.stdout
        end)
        try("link", function()
          exec.run("ln -sfn " .. a_root .. "/ws/a.txt link")
          return fs.read("link")
        end)
        local root = params.workdir:match("^(.*)/ws$")
        log.info("${name} ran in " .. root .. " leaks=" .. table.concat(leaks, ";"))
        return true, "", { root = a_root }
      end }`;
    await using ws = await tempWorkspace({
      "spy.sh": SPY,
      "b.txt": "B-SECRET\n",
      "workflow.lua": `TaskDefinitions = { g = { tasks = { ${a}, ${b("b1", "a")}, ${
        b("b2", "b1")
      }, ${b("b3", "b2")}, ${b("b4", "b3")} } } }`,
    });
    const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const slotOf = (root: string) => root.slice(0, root.lastIndexOf("/"));
    const aRoot = /\] a ran in (\S+)$/m.exec(r.stdout)?.[1];
    assert.ok(aRoot, r.stdout);
    const runs = [...r.stdout.matchAll(/\] (b\d) ran in (\S+) leaks=(.*)$/gm)];
    assert.equal(runs.length, 4, r.stdout);
    for (const [, name, , leaks] of runs) assert.equal(leaks, "", `${name} found: ${leaks}`);
    // The point of the test: at least one of them ran where a had run.
    assert.ok(
      runs.some(([, , root]) => slotOf(root) === slotOf(aRoot)),
      `no job reused a's slot:\n${r.stdout}`,
    );
    // Each job had a directory of its own, in whichever slot.
    assert.equal(new Set([aRoot, ...runs.map(([, , root]) => root)]).size, 5);
    assert.deepEqual(await pgrep(`spy.sh ${marker}`), [], "a spy outlived its job");
    await assert.rejects(Deno.stat(`${ws.dir}/pwned`), Deno.errors.NotFound);
  },
});

for (const sandbox of BWRAP ? ["bwrap", "none"] : ["none"]) {
  Deno.test(`a job's Lua cannot reach a Lua job running at the same moment in another slot (--sandbox ${sandbox})`, async () => {
    await using root = await tempWorkspace();
    Deno.chmodSync(root.dir, 0o711);
    await using agent = await startAgent({
      args: ["--sandbox", sandbox, "--work-root", root.dir],
    });
    const slots = `${root.dir}/sloth-agent-${agent.port}/slots`;
    // Job B: a Lua job that writes a secret and waits.
    await using b = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
        tasks = { { name = "b", command = function()
          fs.write("secret.txt", "B-SECRET")
          exec.run("sleep 4")
          return true
        end } } } }`,
    });
    const runB = cliProcess(["run", "-f", "workflow.lua"], { cwd: b.dir });
    let dir: string | undefined;
    for (let i = 0; i < 200 && !dir; i++) {
      dir = jobsIn(slots).find((d) => exists(`${d}/ws/secret.txt`));
      if (!dir) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(dir, "job B never started");
    const [slotName, jobName] = dir.split("/").slice(-2);
    const shellTries = sandbox === "bwrap"
      ? `function()
              local r = exec.run("cat ${dir}/ws/secret.txt; ls ${slots}")
              return r.stdout:find("SECRET") ~= nil or r.stdout:find("${jobName}") ~= nil
            end,`
      : "";
    await using a = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { delegate_to = { address = "${agent.address}" },
        tasks = { { name = "a", command = function()
          local tries = {
            function() return fs.read("${dir}/ws/secret.txt") end,
            function() return fs.ls("${dir}/ws") end,
            function() return fs.ls("${slots}") end,
            function() return fs.read("../../../${slotName}/${jobName}/ws/secret.txt") end,
            function() return fs.read("/proc/self/cwd/../${slotName}/${jobName}/ws/secret.txt") end,
            function()
              exec.run("ln -sfn ${dir}/ws/secret.txt link")
              return fs.read("link")
            end,
            function() return fs.write("${dir}/ws/secret.txt", "PWNED") end,
            ${shellTries}
          }
          for i, try in ipairs(tries) do
            local ok, got = pcall(try)
            log.info("try " .. i .. ": " .. tostring(ok and got ~= false) .. " " .. tostring(got))
          end
          return true
        end } } } }`,
    });
    const runA = await cliProcess(["run", "-f", "workflow.lua"], { cwd: a.dir });
    assert.equal(runA.code, 0, runA.stdout + runA.stderr);
    const tries = sandbox === "bwrap" ? 8 : 7;
    assert.equal((runA.stdout.match(/try \d+: false /g) ?? []).length, tries, runA.stdout);
    assert.doesNotMatch(runA.stdout, /SECRET/);
    const resultB = await runB;
    assert.equal(resultB.code, 0, resultB.stderr);
    assert.equal(await Deno.readTextFile(`${b.dir}/secret.txt`), "B-SECRET");
  });
}

Deno.test("a Lua worker whose job left a command running is replaced, not reused", async () => {
  await using agent = await startAgent({ args: ["--max-concurrent", "1"] });
  const seconds = uniqueSeconds();
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "a", delegate_to = "${agent.address}", command = function()
          coroutine.resume(coroutine.create(function() exec.run("sleep ${seconds}") end))
          return true
        end },
      { name = "b", delegate_to = "${agent.address}", depends_on = "a", command = function()
          log.info("b global=" .. tostring(rawget(_G, "left_behind")))
          return true
        end },
    } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\] b global=nil$/m);
  // The reset (and so this line) may come after b ran, in the spare slot.
  await waitFor(
    () =>
      /the Lua worker of \S+ is replaced: a call of its last job was still running/.test(
        agent.log(),
      ),
    3000,
  );
  // Stopped with its session (SIGTERM, then SIGKILL a second later). The session ends right
  // after the command started, often while bwrap was still setting its sandbox up: the case
  // exec/sandbox.ts's BWRAP_TREE_ARGS is about (sandbox_test.ts tries it at every moment).
  try {
    await waitFor(async () => (await pgrep(`sleep ${seconds}`)).length === 0, 5000);
  } finally {
    // Whatever the outcome, what the test started does not outlive it.
    for (const pid of await pgrep(`sleep ${seconds}`)) Deno.kill(pid, "SIGKILL");
  }
});

function jobsIn(slots: string): string[] {
  try {
    return [...Deno.readDirSync(slots)].flatMap((slot) =>
      [...Deno.readDirSync(`${slots}/${slot.name}`)].map((job) =>
        `${slots}/${slot.name}/${job.name}`
      )
    );
  } catch {
    return [];
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

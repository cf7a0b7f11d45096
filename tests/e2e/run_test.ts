/** `sloth-runner run` as a user runs it: a real process, its output and its exit code. */
import assert from "node:assert/strict";
import {
  cliProcess,
  copyFixture,
  executable,
  FIXTURES,
  processAlive,
  snapshot,
  spawnCli,
  tempWorkspace,
  waitFor,
} from "../_helpers/mod.ts";

Deno.test("the English seed's local_task runs unchanged and prints its echo", async () => {
  await using ws = await copyFixture("seed_en_task");
  const r = await cliProcess(["run", "-f", "workflow.lua", "-t", "local_task"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\[local_task\] Hello from local machine!$/m);
  assert.match(
    r.stderr,
    /^warning: workflow\.lua:1: "Modern DSLs = \{" is not valid Lua; reading it as "TaskDefinitions = \{"$/m,
  );
  assert.match(r.stdout, /^local_task\s+success\s+1\s+\S+\s+local\s*$/m);
});

Deno.test("the Portuguese seed's local_task runs unchanged and prints its echo", async () => {
  await using ws = await copyFixture("seed_pt");
  const r = await cliProcess(["run", "-f", "workflow.lua", "-t", "local_task"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\[local_task\] Olá da máquina local!$/m);
  assert.doesNotMatch(r.stderr, /warning/);
});

Deno.test("a string command streams prefixed stdout and stderr, sees SLOTH_* and fails on exit code", async () => {
  await using ws = await copyFixture("shell_task");
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^\[greet\] hello from greet in shell$/m);
  assert.match(r.stdout, new RegExp(`^\\[greet\\] workdir=${ws.dir}$`, "m"));
  assert.match(r.stderr, /^\[greet\] to stderr$/m);
  assert.doesNotMatch(r.stdout, /to stderr/);
  assert.match(r.stdout, /^\[broken\] about to fail$/m);
  assert.match(r.stdout, /^broken\s+failed\s+1\s+\S+\s+local\s+exit code 3$/m);
  assert.match(
    r.stdout,
    /^after_broken\s+skipped\s+0\s+-\s+local\s+dependency "broken" failed with exit code 3$/m,
  );
  assert.doesNotMatch(r.stdout, /must not run/);
  assert.match(r.stdout, /^\[independent\] independent ran$/m);
  assert.match(r.stdout, /^\[on_broken\] cleaning up after broken$/m);
  assert.match(r.stdout, /^on_greet\s+skipped .* none of next_if_fail \(greet\) failed$/m);
  assert.match(r.stdout, /^6 tasks: 3 success, 1 failed, 2 skipped$/m);
});

Deno.test("Lua functions get params and inputs, return outputs, and fail with clear messages", async () => {
  await using ws = await copyFixture("lua_task");
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^\[produce\] producing in eu as produce\/lua$/m);
  assert.match(r.stdout, /^\[consume\] cpu=2 tags=a,b$/m);
  assert.match(r.stdout, /^refuses\s+failed\s+1\s+\S+\s+local\s+not today$/m);
  assert.match(
    r.stdout,
    /^raises\s+failed\s+1\s+\S+\s+local\s+workflow\.lua:33: raised on purpose$/m,
  );
  assert.match(
    r.stdout,
    /^no_boolean\s+failed .* the task function must return true or false as its first value, got string "yes"$/m,
  );
});

Deno.test("--output json prints only JSON events, with outputs and messages", async () => {
  await using ws = await copyFixture("lua_task");
  const r = await cliProcess(["run", "-f", "workflow.lua", "-t", "consume", "--output", "json"], {
    cwd: ws.dir,
  });
  assert.equal(r.code, 0, r.stderr);
  const events = r.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(
    events.map((e) => e.type),
    [
      "run_started",
      "task_started",
      "log",
      "task_finished",
      "task_started",
      "log",
      "task_finished",
      "run_finished",
    ],
  );
  const produced = events.find((e) => e.type === "task_finished" && e.task === "produce");
  assert.deepEqual(produced.outputs, { cpu: 2, tags: ["a", "b"], workdir: ws.dir });
  assert.equal(produced.message, "produced");
  assert.equal(produced.status, "success");
  const log = events.find((e) => e.type === "log" && e.task === "consume");
  assert.deepEqual(log, {
    type: "log",
    id: "lua.consume",
    task: "consume",
    stream: "stdout",
    level: "info",
    line: "cpu=2 tags=a,b",
  });
  const finished = events.at(-1);
  assert.equal(finished.status, "success");
  assert.equal(finished.exit_code, 0);
  assert.deepEqual(finished.counts, {
    success: 2,
    failed: 0,
    skipped: 0,
    timeout: 0,
    cancelled: 0,
  });
});

Deno.test("pre_exec, post_exec, run_if and abort_if hooks shape what runs", async () => {
  await using ws = await copyFixture("hooks");
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.equal(await Deno.readTextFile(`${ws.dir}/order.txt`), "pre command post:42");
  assert.match(r.stdout, /^pre_refuses\s+failed .* pre_exec returned false: not ready$/m);
  assert.match(r.stdout, /^post_refuses\s+failed .* post_exec returned false: bad output$/m);
  assert.match(r.stdout, /^run_if_shell_false\s+skipped .* run_if was false$/m);
  assert.match(r.stdout, /^\[run_if_shell_true\] shell condition held$/m);
  assert.match(r.stdout, /^run_if_fn_false\s+skipped .* run_if was false$/m);
  assert.match(r.stdout, /^\[run_if_fn_true\] function condition held$/m);
  const files = Object.keys(await snapshot(ws.dir));
  for (const never of ["never.txt", "never2.txt", "never3.txt"]) assert.ok(!files.includes(never));
});

Deno.test("abort_if stops the whole run with a clear message and exit code 1", async () => {
  await using ws = await copyFixture("abort");
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^Run aborted: run aborted by task "guard": abort_if was true$/m);
  assert.match(r.stdout, /^last\s+skipped .* run aborted by task "guard"/m);
  assert.ok(!(await snapshot(ws.dir))["last-ran"]);
});

Deno.test("retries try again with each attempt logged, and the summary counts attempts", async () => {
  await using ws = await copyFixture("retries");
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^\[flaky\] WARN attempt 1 of 3 failed: exit code 1; retrying in 250ms$/m);
  assert.match(r.stderr, /^\[flaky\] WARN attempt 2 of 3 failed: exit code 1; retrying in 500ms$/m);
  assert.match(r.stdout, /^\[flaky\] attempt 3$/m);
  assert.match(r.stdout, /^flaky\s+success\s+3 /m);
  assert.match(r.stdout, /^hopeless\s+failed\s+2 .* exit code 9$/m);
});

Deno.test("a timeout kills the task's whole process tree and stops a running Lua function", async () => {
  await using ws = await copyFixture("timeout");
  const started = Date.now();
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 1);
  assert.ok(Date.now() - started < 10_000);
  assert.match(r.stdout, /^sleeper\s+timeout\s+1 .* timed out after 500ms$/m);
  assert.match(r.stdout, /^lua_loop\s+timeout\s+1 .* timed out after 300ms$/m);
  assert.match(r.stdout, /^lua_exec\s+timeout\s+1 .* timed out after 2000ms$/m);
  for (const file of ["child.pid", "grandchild.pid", "exec.pid"]) {
    const pid = Number(await Deno.readTextFile(`${ws.dir}/${file}`));
    await waitFor(() => !processAlive(pid), 3000);
  }
});

Deno.test("async tasks run side by side and -j bounds them", async () => {
  await using ws = await copyFixture("async");
  let started = Date.now();
  const parallel = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const parallelMs = Date.now() - started;
  assert.equal(parallel.code, 0, parallel.stderr);
  const lines = parallel.stdout.split("\n").filter((l) => l.startsWith("["));
  assert.equal(lines.at(-1), "[join] joined");
  started = Date.now();
  const serial = await cliProcess(["run", "-f", "workflow.lua", "-j", "1"], { cwd: ws.dir });
  const serialMs = Date.now() - started;
  assert.equal(serial.code, 0);
  // Three 0.4 s sleeps: side by side they cannot add up; one at a time they must.
  assert.ok(serialMs >= 1200, `serial took ${serialMs}ms`);
  assert.ok(parallelMs < serialMs, `parallel ${parallelMs}ms, serial ${serialMs}ms`);
});

Deno.test("-v gives the workflow its values, lists and nested maps kept", async () => {
  await using ws = await copyFixture("values");
  const r = await cliProcess(["run", "-f", "workflow.lua", "-v", "values.yaml"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\[show\] env=staging first=eu-west db=db\.internal$/m);
});

Deno.test("workdir is relative to the workflow file; without one, tasks run where sloth-runner started", async () => {
  await using ws = await copyFixture("workdir");
  const r = await cliProcess(["run", "-f", `${ws.dir}/workflow.lua`], { cwd: "/tmp" });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^\\[in_group_dir\\] ${ws.dir}/sub$`, "m"));
  assert.match(r.stdout, new RegExp(`^\\[in_task_dir\\] ${ws.dir}$`, "m"));
  await using ws2 = await copyFixture("shell_task");
  const r2 = await cliProcess(["run", "-f", `${ws2.dir}/workflow.lua`, "-t", "greet"], {
    cwd: "/tmp",
  });
  assert.match(r2.stdout, /^\[greet\] workdir=\/tmp$/m);
});

Deno.test("Ctrl-C kills every running task's tree, prints the summary and exits 130", async () => {
  await using ws = await copyFixture("interrupt");
  const child = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  const output = child.output();
  await waitFor(async () => {
    const text = await Deno.readTextFile(`${ws.dir}/sleep.pid`).catch(() => "");
    return text.trim() !== "";
  }, 10_000);
  const sleeper = Number(await Deno.readTextFile(`${ws.dir}/sleep.pid`));
  assert.ok(processAlive(sleeper));
  child.kill("SIGINT");
  const { code, stdout } = await output;
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 130);
  assert.match(text, /^long\s+cancelled /m);
  assert.match(text, /^never\s+skipped .* run interrupted$/m);
  assert.match(text, /^Run interrupted\.$/m);
  await waitFor(() => !processAlive(sleeper), 3000);
  assert.ok(!(await snapshot(ws.dir))["never-ran"]);
});

Deno.test("a syntax error is reported as file:line with source around it, exit code 2", async () => {
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: `${FIXTURES}/syntax_error` });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(
    r.stderr,
    /^error: workflow\.lua:4: '\}' expected near 'command'$/m,
  );
  assert.match(r.stderr, /^ {2}> 4 \| {7}\{ name = "a" command = "true" \},$/m);
  assert.match(r.stderr, /^ {4}2 \| {3}g = \{$/m);
  assert.match(r.stderr, /^ {4}6 \| {3}\},$/m);
  assert.doesNotMatch(r.stderr, /at .*\.ts|Stack/);
});

Deno.test("a dependency cycle is printed and nothing runs", async () => {
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: `${FIXTURES}/cycle` });
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /^error: tasks in group "g" depend on each other in a cycle: a -> c -> b -> a$/m,
  );
  assert.doesNotMatch(r.stderr, /started/);
});

Deno.test("an unknown dependency is named with the closest existing task", async () => {
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: `${FIXTURES}/unknown_dep` });
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /depends_on names "biuld", which is not a task of this group\. Did you mean "build"\?/,
  );
});

Deno.test("an unknown task or group given on the command line exits 2 with a suggestion", async () => {
  const r = await cliProcess(["run", "-f", "workflow.lua", "-t", "greeet"], {
    cwd: `${FIXTURES}/shell_task`,
  });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: no task named "greeet"\. Did you mean "greet"\?$/m);
  const g = await cliProcess(["run", "-f", "workflow.lua", "-g", "shel"], {
    cwd: `${FIXTURES}/shell_task`,
  });
  assert.equal(g.code, 2);
  assert.match(g.stderr, /^error: no group named "shel"\. Did you mean "shell"\?$/m);
});

Deno.test("a missing workflow file exits 2 and says which file", async () => {
  const r = await cliProcess(["run", "-f", "nope.lua"], { cwd: "/tmp" });
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "error: workflow file nope.lua not found\n" +
      "hint: pass the file with -f PATH (default: workflow.lua here), " +
      "or write a starter with: sloth-runner new NAME\n",
  );
});

Deno.test("--dry-run prints the order and where each task would run, and runs nothing", async () => {
  await using ws = await copyFixture("seed_en_task");
  await Deno.writeTextFile(
    `${ws.dir}/extra.lua`,
    `TaskDefinitions = { g = { tasks = {
      { name = "make", command = "touch made" },
      { name = "use", depends_on = "make", async = true, command = "true" } } } }`,
  );
  const before = await snapshot(ws.dir);
  const r = await cliProcess(["run", "-f", "extra.lua", "--dry-run"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ {2}1\. make\s+local$/m);
  assert.match(r.stdout, /^ {2}2\. use\s+local\s+async; after make$/m);
  assert.deepEqual(await snapshot(ws.dir), before);
  const seed = await cliProcess(["run", "-f", "workflow.lua", "--dry-run"], { cwd: ws.dir });
  assert.match(seed.stdout, /^ {2}1\. specific_remote_task\s+agent 192\.168\.1\.100:50051$/m);
  assert.match(seed.stdout, /^ {2}2\. local_task\s+local$/m);
});

Deno.test("colours appear on a terminal, and never off one or with NO_COLOR", async () => {
  await using ws = await copyFixture("shell_task");
  const r = await cliProcess(["run", "-f", "workflow.lua", "-t", "greet"], { cwd: ws.dir });
  assert.ok(!(r.stdout + r.stderr).includes("\x1b["));
  // script(1) gives the command a pseudo-terminal.
  const onTty = async (env: Record<string, string>, redirect = "") => {
    // --plain: colours are what is checked here, not the live view (tests/e2e/progress_test.ts).
    const run = executable("sloth-runner", ["run", "-f", "workflow.lua", "-t", "greet", "--plain"]);
    const command = [run.command, ...run.args].join(" ") + redirect;
    const out = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      cwd: ws.dir,
      // A clean environment: CI exports NO_COLOR, which this test must control.
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/",
        ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
        RUST_BACKTRACE: "0",
        ...env,
      },
      clearEnv: true,
    }).output();
    return new TextDecoder().decode(out.stdout);
  };
  const tty = await onTty({});
  assert.match(tty, /hello from greet/);
  assert.ok(tty.includes("\x1b["), "colours on a terminal");
  const noColor = await onTty({ NO_COLOR: "1" });
  assert.match(noColor, /hello from greet/);
  assert.ok(!noColor.includes("\x1b["), "NO_COLOR honoured");
  // stderr to a file while stdout is a terminal: colours on the terminal only.
  const split = await onTty({}, " 2>err.txt");
  assert.ok(split.includes("\x1b["), "colours on the terminal");
  const err = await Deno.readTextFile(`${ws.dir}/err.txt`);
  assert.match(err, /\[greet\] ✔ success/);
  assert.ok(!err.includes("\x1b["), "no colours in the file");
});

Deno.test("a reader that goes away (| head) changes no task's outcome, and the report is written", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = {
      { name = "a", command = "echo first" },
      { name = "b", depends_on = "a", command = "sleep 0.3; seq 1 2000" } } } }`,
  });
  const run = executable("sloth-runner", ["run", "--plain", "--report", "json=r.json"]);
  const child = new Deno.Command(run.command, {
    args: run.args,
    cwd: ws.dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  assert.match(first, /^\[a\] first/);
  await reader.cancel();
  const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  const status = await child.status;
  assert.equal(status.code, 0, stderr);
  assert.doesNotMatch(stderr, /Broken pipe|Uncaught|error:/);
  const record = JSON.parse(await Deno.readTextFile(`${ws.dir}/r.json`));
  assert.equal(record.status, "success");
  assert.deepEqual(record.tasks.map((t: { status: string }) => t.status), ["success", "success"]);
});

import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import { loadWorkflow, LuaPool } from "../dsl/mod.ts";
import type { RunEvent } from "../log/mod.ts";
import type { TaskResult, TaskStatus } from "../model/mod.ts";
import { planRun, type RunOutcome } from "../scheduler/mod.ts";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { finishGroupDirs, groupResult, prepareGroupDirs } from "./group_dir.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** A workspace with `workflow.lua`, the workflow loaded and planned, and a Lua pool. */
async function setup(
  workflow: string | ((dir: string) => string),
  files: Record<string, string> = {},
) {
  const ws = await tempWorkspace(files);
  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    typeof workflow === "string" ? workflow : workflow(ws.dir),
  );
  const pool = new LuaPool();
  const loaded = await loadWorkflow(pool, { file: "workflow.lua", cwd: ws.dir });
  const events: RunEvent[] = [];
  return {
    dir: ws.dir,
    pool,
    loaded,
    plan: planRun(loaded.workflow, {}),
    events,
    notes: () =>
      events.flatMap((e) => e.type === "log" ? [`${e.level ?? e.stream}: ${e.line}`] : []),
    /** Every task ended as `statuses` says (by task name; success otherwise). */
    outcome(statuses: Record<string, TaskStatus> = {}, extra: Partial<RunOutcome> = {}) {
      const plan = planRun(loaded.workflow, {});
      const results = plan.tasks.map(({ task }): TaskResult => ({
        id: task.id,
        status: statuses[task.name] ?? "success",
        attempts: 1,
        durationMs: 1,
        where: "local",
        error: statuses[task.name] && statuses[task.name] !== "success" ? "exit code 1" : undefined,
        outputs: { from: task.name },
      }));
      return { results, interrupted: false, ...extra };
    },
    async [Symbol.asyncDispose]() {
      pool.close();
      await ws[Symbol.asyncDispose]();
    },
  };
}

type Setup = Awaited<ReturnType<typeof setup>>;

async function finish(
  s: Setup,
  prepared: Awaited<ReturnType<typeof prepareGroupDirs>>,
  outcome: RunOutcome,
  signal?: AbortSignal,
) {
  await finishGroupDirs(prepared.dirs, {
    signal,
    cwd: s.dir,
    file: `${s.dir}/workflow.lua`,
    plan: prepared.plan,
    outcome,
    pool: s.pool,
    source: s.loaded.source,
    emit: (event) => void s.events.push(event),
  });
}

const places = (s: Setup) => ({ cwd: s.dir, file: `${s.dir}/workflow.lua` });

Deno.test("prepareGroupDirs() makes a temporary directory for each planned group that asks, and gives it to the tasks that inherit it", async () => {
  await using s = await setup(`
TaskDefinitions = {
  ["../x y"] = {
    create_workdir_before_run = true,
    tasks = { { name = "a", command = "true" }, { name = "b", workdir = "own", command = "true" } },
  },
  named = { workdir = "out/deep", create_workdir_before_run = true, tasks = { { name = "c", command = "true" } } },
}`);
  const prepared = await prepareGroupDirs(s.loaded.workflow, s.plan, places(s));
  const [temp, named] = prepared.dirs;
  try {
    assert.equal(temp.temporary, true);
    assert.equal((await Deno.stat(temp.path)).isDirectory, true);
    // The group's name cannot climb out of the temporary directory or split the path.
    assert.match(temp.path.slice(temp.path.lastIndexOf("/") + 1), /^\.\._x_y-/);
    assert.deepEqual(prepared.plan.tasks.map(({ task }) => task.workdir), [
      temp.path,
      `${s.dir}/own`,
      `${s.dir}/out/deep`,
    ]);
    assert.deepEqual(named, {
      group: s.loaded.workflow.groups[1],
      path: `${s.dir}/out/deep`,
      temporary: false,
      made: `${s.dir}/out/deep`,
    });
    assert.equal((await Deno.stat(`${s.dir}/out/deep`)).isDirectory, true);
    // The plan given is left as it was.
    assert.equal(s.plan.tasks[0].task.workdir, "");
  } finally {
    await Deno.remove(temp.path, { recursive: true });
  }
});

Deno.test("prepareGroupDirs() leaves groups the run does not select alone", async () => {
  await using s = await setup(`
TaskDefinitions = {
  one = { workdir = "one", create_workdir_before_run = true, tasks = { { name = "a", command = "true" } } },
  two = { workdir = "two", create_workdir_before_run = true, tasks = { { name = "b", command = "true" } } },
}`);
  const prepared = await prepareGroupDirs(
    s.loaded.workflow,
    planRun(s.loaded.workflow, { groups: ["two"] }),
    places(s),
  );
  assert.deepEqual(prepared.dirs.map((d) => d.group.name), ["two"]);
  assert.equal(await exists(`${s.dir}/one`), false);
});

Deno.test("prepareGroupDirs() refuses a workdir that is a file, or a link clean_workdir_after_run would go through, and leaves no directory behind", async () => {
  await using s = await setup(
    `
TaskDefinitions = {
  temp = { create_workdir_before_run = true, tasks = { { name = "a", command = "true" } } },
  file = { workdir = "a-file", create_workdir_before_run = true, tasks = { { name = "b", command = "true" } } },
}`,
    { "a-file": "not a directory" },
  );
  const before = new Set(
    [...Deno.readDirSync(Deno.env.get("TMPDIR") || "/tmp")].map((e) => e.name),
  );
  await assert.rejects(
    prepareGroupDirs(s.loaded.workflow, s.plan, places(s)),
    (error) =>
      error instanceof SlothError && error.exitCode === 2 &&
      error.message === `group "file": workdir ${s.dir}/a-file is not a directory`,
  );
  const after = [...Deno.readDirSync(Deno.env.get("TMPDIR") || "/tmp")].map((e) => e.name);
  assert.deepEqual(after.filter((n) => !before.has(n) && n.startsWith("temp-")), []);
  assert.equal(await Deno.readTextFile(`${s.dir}/a-file`), "not a directory");

  await using linked = await setup(
    `TaskDefinitions = { g = { workdir = "link", clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } } }`,
  );
  await Deno.mkdir(`${linked.dir}/target`);
  await Deno.writeTextFile(`${linked.dir}/target/keep`, "x");
  await Deno.symlink(`${linked.dir}/target`, `${linked.dir}/link`);
  await assert.rejects(
    prepareGroupDirs(linked.loaded.workflow, linked.plan, places(linked)),
    new RegExp(
      `group "g": clean_workdir_after_run could remove workdir ${linked.dir}/link, ` +
        "which is a symbolic link \\(only a directory itself is ever removed\\)",
    ),
  );
  assert.equal(await Deno.readTextFile(`${linked.dir}/target/keep`), "x");
});

Deno.test("prepareGroupDirs() refuses a workdir whose real path is the directory sloth-runner started in", async () => {
  // Through a link to /, "alias/<the workspace>" is the workspace itself: only the disk can tell.
  await using s = await setup((dir) =>
    `TaskDefinitions = { g = { workdir = "alias${dir}", clean_workdir_after_run = true, ` +
    `tasks = { { name = "a", command = "true" } } } }`
  );
  await Deno.symlink("/", `${s.dir}/alias`);
  await assert.rejects(
    prepareGroupDirs(s.loaded.workflow, s.plan, places(s)),
    (error) =>
      error instanceof SlothError &&
      error.message === `group "g": clean_workdir_after_run could remove workdir ` +
          `${s.dir}/alias${s.dir}, which is the directory sloth-runner was started in; ` +
          "sloth-runner never removes that",
  );
  assert.equal(await exists(`${s.dir}/workflow.lua`), true);
});

Deno.test("finishGroupDirs() removes a directory on true, keeps it on false, and says so", async () => {
  await using s = await setup(`
TaskDefinitions = {
  gone = { workdir = "gone", create_workdir_before_run = true, clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } },
  kept = { workdir = "kept", create_workdir_before_run = true, clean_workdir_after_run = false, tasks = { { name = "b", command = "true" } } },
  temp = { clean_workdir_after_run = false, tasks = { { name = "c", command = "true" } } },
  auto = { create_workdir_before_run = true, tasks = { { name = "d", command = "true" } } },
}`);
  const prepared = await prepareGroupDirs(s.loaded.workflow, s.plan, places(s));
  const [, , temp, auto] = prepared.dirs;
  for (const d of prepared.dirs) await Deno.writeTextFile(`${d.path}/file`, d.group.name);
  try {
    await finish(s, prepared, s.outcome({ a: "failed" }));
    assert.equal(await exists(`${s.dir}/gone`), false);
    assert.equal(await Deno.readTextFile(`${s.dir}/kept/file`), "kept");
    assert.equal(await Deno.readTextFile(`${temp.path}/file`), "temp");
    assert.equal(await exists(auto.path), false);
    assert.deepEqual(s.notes(), [
      `info: group "gone": removed ${s.dir}/gone`,
      `info: group "temp": ${temp.path} is kept (clean_workdir_after_run = false)`,
      `info: group "auto": removed ${auto.path}`,
    ]);
  } finally {
    await Deno.remove(temp.path, { recursive: true });
  }
});

Deno.test("finishGroupDirs() lets clean_workdir_after_run decide from the group's result", async () => {
  const workflow = `
TaskDefinitions = {
  g = {
    workdir = "box",
    create_workdir_before_run = true,
    clean_workdir_after_run = function(result)
      log.info("success=" .. tostring(result.success) .. " failed=" .. table.concat(result.failed, ","))
      return result.success
    end,
    tasks = { { name = "a", command = "true" }, { name = "b", command = "true" } },
  },
}`;
  await using ok = await setup(workflow);
  await finish(ok, await prepareGroupDirs(ok.loaded.workflow, ok.plan, places(ok)), ok.outcome());
  assert.equal(await exists(`${ok.dir}/box`), false);
  assert.deepEqual(ok.notes(), [
    "info: success=true failed=",
    `info: group "g": removed ${ok.dir}/box`,
  ]);

  await using bad = await setup(workflow);
  await finish(
    bad,
    await prepareGroupDirs(bad.loaded.workflow, bad.plan, places(bad)),
    bad.outcome({ b: "timeout" }),
  );
  assert.equal(await exists(`${bad.dir}/box`), true);
  assert.deepEqual(bad.notes(), [
    "info: success=false failed=b",
    `info: group "g": ${bad.dir}/box is kept (clean_workdir_after_run returned false)`,
  ]);
});

Deno.test("finishGroupDirs() keeps the directory when clean_workdir_after_run fails, saying where", async () => {
  await using s = await setup(`
TaskDefinitions = {
  raises = {
    workdir = "raises", create_workdir_before_run = true,
    clean_workdir_after_run = function(result) error("cannot decide") end,
    tasks = { { name = "a", command = "true" } },
  },
  vague = {
    workdir = "vague", create_workdir_before_run = true,
    clean_workdir_after_run = function(result) end,
    tasks = { { name = "b", command = "true" } },
  },
}`);
  await finish(s, await prepareGroupDirs(s.loaded.workflow, s.plan, places(s)), s.outcome());
  assert.equal(await exists(`${s.dir}/raises`), true);
  assert.equal(await exists(`${s.dir}/vague`), true);
  assert.deepEqual(s.notes(), [
    `error: group "raises": clean_workdir_after_run (workflow.lua:5) failed: ` +
    `workflow.lua:5: cannot decide; ${s.dir}/raises is kept`,
    `error: group "vague": clean_workdir_after_run (workflow.lua:10) failed: ` +
    `clean_workdir_after_run must return a boolean, got nil; ${s.dir}/vague is kept`,
  ]);
});

Deno.test("finishGroupDirs() removes nothing after an interrupted run", async () => {
  await using s = await setup(`
TaskDefinitions = {
  g = {
    workdir = "box", create_workdir_before_run = true,
    clean_workdir_after_run = function() error("must not be called") end,
    tasks = { { name = "a", command = "true" } },
  },
  t = { create_workdir_before_run = true, tasks = { { name = "b", command = "true" } } },
}`);
  const prepared = await prepareGroupDirs(s.loaded.workflow, s.plan, places(s));
  const temp = prepared.dirs[1].path;
  try {
    await finish(s, prepared, s.outcome({ a: "cancelled" }, { interrupted: true }));
    assert.equal(await exists(`${s.dir}/box`), true);
    assert.equal(await exists(temp), true);
    assert.deepEqual(s.notes(), [
      `warn: group "g": run interrupted; ${s.dir}/box is kept`,
      `warn: group "t": run interrupted; ${temp} is kept`,
    ]);
  } finally {
    await Deno.remove(temp, { recursive: true });
  }
});

Deno.test("finishGroupDirs() removes nothing once Ctrl-C came, even after a run that finished", async () => {
  await using s = await setup(
    `TaskDefinitions = { g = { workdir = "box", create_workdir_before_run = true, clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } } }`,
  );
  const prepared = await prepareGroupDirs(s.loaded.workflow, s.plan, places(s));
  const stop = new AbortController();
  stop.abort();
  await finish(s, prepared, s.outcome(), stop.signal);
  assert.equal(await exists(`${s.dir}/box`), true);
  assert.deepEqual(s.notes(), [`warn: group "g": run interrupted; ${s.dir}/box is kept`]);
});

Deno.test("finishGroupDirs() refuses a directory a task swapped for a link, and removes no more than the directory", async () => {
  await using s = await setup(`
TaskDefinitions = {
  swapped = { workdir = "swapped", create_workdir_before_run = true, clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } },
  inside = { workdir = "inside", create_workdir_before_run = true, clean_workdir_after_run = true, tasks = { { name = "b", command = "true" } } },
  file = { workdir = "file", create_workdir_before_run = true, clean_workdir_after_run = true, tasks = { { name = "c", command = "true" } } },
}`);
  const prepared = await prepareGroupDirs(s.loaded.workflow, s.plan, places(s));
  // What the tasks did: the first replaced its directory with a link to precious data,
  // the second left links to it inside its own, the third left a file in its place.
  await Deno.mkdir(`${s.dir}/precious`);
  await Deno.writeTextFile(`${s.dir}/precious/data`, "keep me");
  await Deno.remove(`${s.dir}/swapped`);
  await Deno.symlink(`${s.dir}/precious`, `${s.dir}/swapped`);
  await Deno.symlink(`${s.dir}/precious`, `${s.dir}/inside/link`);
  await Deno.symlink(`${s.dir}/precious/data`, `${s.dir}/inside/data-link`);
  await Deno.remove(`${s.dir}/file`);
  await Deno.writeTextFile(`${s.dir}/file`, "a file now");

  await finish(s, prepared, s.outcome());
  assert.equal(await Deno.readTextFile(`${s.dir}/precious/data`), "keep me");
  assert.equal((await Deno.lstat(`${s.dir}/swapped`)).isSymlink, true);
  assert.equal(await exists(`${s.dir}/inside`), false);
  assert.equal(await Deno.readTextFile(`${s.dir}/file`), "a file now");
  assert.deepEqual(s.notes(), [
    `error: group "swapped": ${s.dir}/swapped is not removed: it is a symbolic link ` +
    "(only a directory itself is ever removed)",
    `info: group "inside": removed ${s.dir}/inside`,
    `error: group "file": ${s.dir}/file is not removed: it is not a directory`,
  ]);
});

Deno.test("groupResult() gives success, the first failure, the failed tasks, every task's end and the last task's outputs", async () => {
  await using s = await setup(`
TaskDefinitions = {
  g = { create_workdir_before_run = true, tasks = {
    { name = "a", command = "true" },
    { name = "b", command = "false" },
    { name = "c", command = "true", depends_on = "b" },
  } },
  other = { tasks = { { name = "x", command = "false" } } },
}`);
  const group = s.loaded.workflow.groups[0];
  const outcome = s.outcome({ b: "failed", c: "skipped", x: "failed" });
  assert.deepEqual(groupResult(group, "/tmp/g-1", s.plan, outcome), {
    success: false,
    group: "g",
    workdir: "/tmp/g-1",
    error: 'task "b" failed: exit code 1',
    failed: ["b"],
    tasks: {
      a: { status: "success", error: undefined, outputs: { from: "a" } },
      b: { status: "failed", error: "exit code 1", outputs: { from: "b" } },
      c: { status: "skipped", error: "exit code 1", outputs: { from: "c" } },
    },
    output: { from: "c" },
  });
  const aborted = groupResult(
    group,
    "/tmp/g-1",
    s.plan,
    s.outcome({}, { aborted: 'run aborted by task "a": abort_if was true' }),
  );
  assert.equal(aborted.success, false);
  assert.equal(aborted.error, 'run aborted by task "a": abort_if was true');
  assert.equal(groupResult(group, "/tmp/g-1", s.plan, s.outcome()).success, true);
});

Deno.test("finishGroupDirs() never removes a directory that was there before the run, whatever the group says", async () => {
  await using s = await setup(
    `TaskDefinitions = {
  g = { workdir = "existing", clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } },
  h = { workdir = "existing2", create_workdir_before_run = true, clean_workdir_after_run = function() return true end,
        tasks = { { name = "b", command = "true" } } },
}`,
    { "existing/precious.txt": "keep me", "existing2/precious.txt": "keep me too" },
  );
  const prepared = await prepareGroupDirs(s.loaded.workflow, s.plan, places(s));
  await finish(s, prepared, s.outcome());
  assert.equal(await Deno.readTextFile(`${s.dir}/existing/precious.txt`), "keep me");
  assert.equal(await Deno.readTextFile(`${s.dir}/existing2/precious.txt`), "keep me too");
  assert.deepEqual(s.notes().map((n) => n.replace(s.dir, "DIR")), [
    'warn: group "g": DIR/existing is not removed: it was there before this run, and sloth-runner ' +
    "removes only a directory the run made (remove it yourself, or let the next run make it)",
    'warn: group "h": DIR/existing2 is not removed: it was there before this run, and sloth-runner ' +
    "removes only a directory the run made (remove it yourself, or let the next run make it)",
  ]);
});

Deno.test("finishGroupDirs() removes nothing when a parent of the directory it made was swapped for a link", async () => {
  await using s = await setup(
    `TaskDefinitions = { g = { workdir = "p/wd", create_workdir_before_run = true,
      clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } } }`,
    { "victim/wd/keep.txt": "precious" },
  );
  const prepared = await prepareGroupDirs(s.loaded.workflow, s.plan, places(s));
  // What a task could do during the run: move the parent away and put a link in its place.
  await Deno.rename(`${s.dir}/p`, `${s.dir}/p.real`);
  await Deno.symlink(`${s.dir}/victim`, `${s.dir}/p`);
  await finish(s, prepared, s.outcome());
  assert.equal(await Deno.readTextFile(`${s.dir}/victim/wd/keep.txt`), "precious");
  assert.equal(await exists(`${s.dir}/p.real/wd`), true);
  assert.match(
    s.notes().join("\n"),
    /p\/wd is not removed: it is now .*victim\/wd, not the directory the run made/,
  );
});

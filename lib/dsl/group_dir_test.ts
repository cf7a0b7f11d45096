/** The group fields create_workdir_before_run and clean_workdir_after_run, as loaded and called. */
import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { GROUP_FUNCTIONS, loadWorkflow, LuaPool, openGroupSession } from "./mod.ts";

async function load(workflow: string, options: { ignoreTargets?: boolean } = {}) {
  await using ws = await tempWorkspace({ "workflow.lua": workflow });
  const pool = new LuaPool();
  try {
    const loaded = await loadWorkflow(pool, { file: "workflow.lua", cwd: ws.dir, ...options });
    return { ...loaded, dir: ws.dir };
  } finally {
    pool.close();
  }
}

async function loadError(workflow: string): Promise<string> {
  try {
    await load(workflow);
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    return error.message;
  }
  assert.fail("the workflow loaded");
}

Deno.test("loadWorkflow() gives a group without workdir but with create_workdir_before_run a temporary directory, removed by default", async () => {
  const { workflow } = await load(`
TaskDefinitions = {
  build = {
    create_workdir_before_run = true,
    tasks = { { name = "a", command = "true" }, { name = "b", workdir = "/srv", command = "true" } },
  },
}`);
  const [build] = workflow.groups;
  assert.deepEqual(build.dir, { create: true, clean: true });
  // "" until the run makes the directory; a task's own workdir is its own.
  assert.deepEqual(build.tasks.map((t) => t.workdir), ["", "/srv"]);
});

Deno.test("loadWorkflow() gives a group with only clean_workdir_after_run a temporary directory too, as the Go runner does", async () => {
  const { workflow } = await load(`
TaskDefinitions = {
  keep = { clean_workdir_after_run = false, tasks = { { name = "a", command = "true" } } },
  decide = {
    clean_workdir_after_run = function(result) return result.success end,
    tasks = { { name = "a", command = "true" } },
  },
  plain = { create_workdir_before_run = false, tasks = { { name = "a", command = "true" } } },
}`);
  const [keep, decide, plain] = workflow.groups;
  assert.deepEqual(keep.dir, { create: true, clean: false });
  assert.deepEqual(decide.dir, { create: true, clean: { kind: "lua", where: "workflow.lua:5" } });
  assert.equal(decide.tasks[0].workdir, "");
  // Neither field asks for anything: the group runs where it always did.
  assert.equal(plain.dir, undefined);
  assert.notEqual(plain.tasks[0].workdir, "");
});

Deno.test("loadWorkflow() keeps a named workdir unless clean_workdir_after_run says otherwise", async () => {
  const { workflow, dir } = await load(`
TaskDefinitions = {
  made = { workdir = "out/build", create_workdir_before_run = true, tasks = { { name = "a", command = "true" } } },
  removed = { workdir = "out/tmp", clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } },
}`);
  const [made, removed] = workflow.groups;
  assert.deepEqual(made.dir, { path: `${dir}/out/build`, create: true, clean: false });
  assert.equal(made.tasks[0].workdir, `${dir}/out/build`);
  assert.deepEqual(removed.dir, { path: `${dir}/out/tmp`, create: false, clean: true });
});

Deno.test("loadWorkflow() refuses clean_workdir_after_run on a workdir that is, or holds, a directory that must stay", async () => {
  const home = Deno.env.get("HOME");
  const message = await loadError(`
TaskDefinitions = {
  here = { workdir = ".", clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } },
  root = { workdir = "/", clean_workdir_after_run = function() return true end, tasks = { { name = "a", command = "true" } } },
  up = { workdir = "..", clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } },
  home = { workdir = ${
    JSON.stringify(home)
  }, clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } },
  kept = { workdir = "/", clean_workdir_after_run = false, tasks = { { name = "a", command = "true" } } },
}`);
  assert.match(
    message,
    /group "here": clean_workdir_after_run could remove workdir \/\S+, which is the directory sloth-runner was started in; sloth-runner never removes that\./,
  );
  assert.match(message, /group "root": .*workdir \/, which is the root directory;/);
  assert.match(message, /group "up": .*which (holds|is) /);
  assert.match(
    message,
    new RegExp(`group "home": .*workdir ${home}, which is your home directory;`),
  );
  // false never removes anything: nothing to refuse.
  assert.doesNotMatch(message, /group "kept"/);
});

Deno.test("loadWorkflow() on an agent does not judge the master's paths", async () => {
  const { workflow } = await load(
    `TaskDefinitions = { g = { workdir = ".", clean_workdir_after_run = true, tasks = { { name = "a", command = "true" } } } }`,
    { ignoreTargets: true },
  );
  assert.equal(workflow.groups[0].dir?.clean, true);
});

Deno.test("loadWorkflow() says what the two fields take, and where a misplaced function is", async () => {
  const message = await loadError(`
TaskDefinitions = {
  g = {
    create_workdir_before_run = "yes",
    clean_workdir_after_run = 3,
    description = function() end,
    clean_workdir_after = true,
    tasks = { { name = "a", command = "true" } },
  },
}`);
  assert.match(message, /group "g": create_workdir_before_run must be true or false/);
  assert.match(
    message,
    /group "g": clean_workdir_after_run must be true, false or a function\(result\) that returns true to remove the directory/,
  );
  assert.match(
    message,
    /group "g": description is a function \(workflow\.lua:6\); it takes no function here/,
  );
  assert.match(
    message,
    /group "g": unknown field "clean_workdir_after"\. Did you mean "clean_workdir_after_run"\?/,
  );
  // A group's field, not a task's.
  assert.match(
    await loadError(
      `TaskDefinitions = { g = { tasks = { { name = "a", clean_workdir_after_run = true } } } }`,
    ),
    /group "g" task "a": unknown field "clean_workdir_after_run"/,
  );
});

Deno.test("openGroupSession() calls the group's clean_workdir_after_run with the result, in the group's directory", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `
TaskDefinitions = {
  g = {
    clean_workdir_after_run = function(result)
      log.info("success=" .. tostring(result.success) .. " in " .. fs.read("marker"))
      return result.success and os.getenv("SLOTH_GROUP") == "g"
    end,
    tasks = { { name = "a", command = "true" } },
  },
  broken = {
    clean_workdir_after_run = function(result) if result.success then return "yes" end error("no luck") end,
    tasks = { { name = "a", command = "true" } },
  },
}`,
    "box/marker": "box",
  });
  const pool = new LuaPool();
  try {
    const loaded = await loadWorkflow(pool, { file: "workflow.lua", cwd: ws.dir });
    const call = async (group: string, success: boolean) => {
      const lines: string[] = [];
      const session = await openGroupSession(pool, loaded.source, {
        name: group,
        workdir: `${ws.dir}/box`,
      }, { onLog: (level, line) => lines.push(`${level}: ${line}`) });
      try {
        const result = await session.call(
          "condition",
          { group, task: GROUP_FUNCTIONS, field: "clean_workdir_after_run" },
          [{ success }],
        );
        return { result, lines };
      } finally {
        session.release();
      }
    };
    assert.deepEqual(await call("g", true), {
      result: { value: true },
      lines: ["info: success=true in box"],
    });
    assert.deepEqual((await call("g", false)).result, { value: false });
    assert.deepEqual((await call("broken", true)).result, {
      error: 'clean_workdir_after_run must return a boolean, got string "yes"',
    });
    assert.deepEqual((await call("broken", false)).result, { error: "workflow.lua:11: no luck" });
  } finally {
    pool.close();
  }
});

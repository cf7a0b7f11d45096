import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import type { Workflow } from "../model/mod.ts";
import { task, workflow } from "./_testing.ts";
import { planRun } from "./plan.ts";

const order = (w: Workflow, selection = {}) => planRun(w, selection).tasks.map((p) => p.task.id);

function planError(w: Workflow, selection = {}): SlothError {
  try {
    planRun(w, selection);
  } catch (error) {
    assert.ok(error instanceof SlothError);
    return error;
  }
  assert.fail("the plan was accepted");
}

Deno.test("planRun() keeps file order where dependencies allow it", () => {
  const w = workflow([
    task("deploy", { dependsOn: ["build"] }),
    task("lint"),
    task("build"),
    task("notify", { nextIfFail: ["deploy"] }),
  ]);
  assert.deepEqual(order(w), ["g.lint", "g.build", "g.deploy", "g.notify"]);
});

Deno.test("planRun() names an unknown dependency and suggests the closest task", () => {
  const error = planError(workflow([task("build"), task("test", { dependsOn: ["biuld"] })]));
  assert.equal(error.code, "unknown_dependency");
  assert.equal(error.exitCode, 2);
  assert.equal(
    error.message,
    'task "test" in group "g": depends_on names "biuld", which is not a task of this group. Did you mean "build"?',
  );
});

Deno.test("planRun() checks next_if_fail names too", () => {
  const error = planError(workflow([task("a", { nextIfFail: ["zzz"] })]));
  assert.match(error.message, /next_if_fail names "zzz"/);
});

Deno.test("planRun() prints a dependency cycle as a -> b -> a", () => {
  const error = planError(workflow([
    task("a", { dependsOn: ["b"] }),
    task("b", { dependsOn: ["c"] }),
    task("c", { dependsOn: ["a"] }),
  ]));
  assert.equal(error.code, "dependency_cycle");
  assert.match(error.message, /cycle: a -> b -> c -> a$/);
});

Deno.test("planRun() refuses a task that depends on itself", () => {
  const error = planError(workflow([task("a", { dependsOn: ["a"] })]));
  assert.match(error.message, /depends_on names itself/);
});

Deno.test("planRun() with tasks selected adds their dependencies, transitively", () => {
  const w = workflow([
    task("a"),
    task("b", { dependsOn: ["a"] }),
    task("c", { dependsOn: ["b"] }),
    task("other"),
  ]);
  assert.deepEqual(order(w, { tasks: ["c"] }), ["g.a", "g.b", "g.c"]);
});

Deno.test("planRun() suggests a task name when the selected one does not exist", () => {
  const error = planError(workflow([task("deploy")]), { tasks: ["deplyo"] });
  assert.equal(error.code, "unknown_task");
  assert.equal(error.message, 'no task named "deplyo". Did you mean "deploy"?');
});

Deno.test("planRun() runs every group unless groups are selected", () => {
  const w = workflow([task("a", {}, "one")], [task("b", {}, "two")]);
  assert.deepEqual(order(w), ["one.a", "two.b"]);
  assert.deepEqual(order(w, { groups: ["two"] }), ["two.b"]);
  const error = planError(w, { groups: ["twoo"] });
  assert.equal(error.code, "unknown_group");
  assert.match(error.message, /no group named "twoo"\. Did you mean "two"\?/);
});

Deno.test("planRun() with -t brings a task's next_if_fail targets, as it brings its dependencies", () => {
  const w = workflow([
    task("setup"),
    task("fails", { dependsOn: ["setup"] }),
    task("rescue", { nextIfFail: ["fails"] }),
    task("other"),
  ]);
  const plan = planRun(w, { tasks: ["rescue"] });
  assert.deepEqual(plan.tasks.map((p) => p.task.id), ["g.setup", "g.fails", "g.rescue"]);
  assert.deepEqual(plan.tasks.find((p) => p.task.id === "g.rescue")!.watches, ["g.fails"]);
});

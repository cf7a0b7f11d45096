import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import type { Task, Workflow } from "../model/mod.ts";
import { planRun } from "../scheduler/mod.ts";
import { task } from "../scheduler/_testing.ts";
import { expandFanOut, fanOutPools } from "./expand.ts";
import type { Member } from "./members.ts";

function member(name: string, n: number): Member {
  return {
    name,
    labels: ["web"],
    target: { kind: "remote", address: `10.0.0.${n}:50051`, agent: name, tokenEnv: "T" },
  };
}

const WEB = [member("web-1", 1), member("web-2", 2), member("web-3", 3)];

function flow(...groups: [string, Task[]][]): Workflow {
  return {
    file: "/w/workflow.lua",
    groups: groups.map(([name, tasks]) => ({ name, description: "", tasks, agents: {} })),
  };
}

const each = (pool: string, more: { batch?: number; maxFailures?: number } = {}) => ({
  target: { kind: "each" as const, pool, ...more },
  syncBack: "never" as const,
});

function expandError(workflow: Workflow, members: Map<string, Member[]>): SlothError {
  try {
    expandFanOut(workflow, members);
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    return error;
  }
  assert.fail("the fan-out was expanded");
}

Deno.test("expandFanOut() makes one task per member, named task@member, in the fan-out's place", () => {
  const deploy = task("deploy", { ...each("web", { batch: 2, maxFailures: 1 }), retries: 2 });
  const out = expandFanOut(
    flow(["g", [task("build"), deploy, task("notify")]]),
    new Map([["web", WEB]]),
  );
  const tasks = out.groups[0].tasks;
  assert.deepEqual(tasks.map((t) => t.id), [
    "g.build",
    "g.deploy@web-1",
    "g.deploy@web-2",
    "g.deploy@web-3",
    "g.notify",
  ]);
  const siblings = ["g.deploy@web-1", "g.deploy@web-2", "g.deploy@web-3"];
  assert.deepEqual(tasks[2], {
    ...deploy,
    id: "g.deploy@web-2",
    name: "deploy@web-2",
    target: WEB[1].target,
    fanOut: {
      task: "deploy",
      pool: "web",
      host: "web-2",
      index: 1,
      siblings,
      batch: 2,
      maxFailures: 1,
    },
  });
  assert.deepEqual(tasks.slice(1, 4).map((t) => t.fanOut?.index), [0, 1, 2]);
  assert.ok(tasks.slice(1, 4).every((t) => t.fanOut?.siblings.join() === siblings.join()));
  assert.ok(tasks.every((t) => t.target.kind !== "each"), "no fan-out reaches a runner");
});

Deno.test("expandFanOut() makes whatever depended on the task depend on every copy", () => {
  const out = expandFanOut(
    flow(["g", [
      task("build"),
      task("deploy", { ...each("web"), dependsOn: ["build"] }),
      task("verify", { dependsOn: ["build", "deploy"] }),
      task("rollback", { nextIfFail: ["deploy"] }),
    ]]),
    new Map([["web", WEB.slice(0, 2)]]),
  );
  const byName = new Map(out.groups[0].tasks.map((t) => [t.name, t]));
  assert.deepEqual(byName.get("deploy@web-1")?.dependsOn, ["build"]);
  assert.deepEqual(byName.get("verify")?.dependsOn, ["build", "deploy@web-1", "deploy@web-2"]);
  assert.deepEqual(byName.get("rollback")?.nextIfFail, ["deploy@web-1", "deploy@web-2"]);
  // The expanded workflow plans: every reference names a task.
  assert.equal(planRun(out).tasks.length, 5);
});

Deno.test("expandFanOut() chains two fan-outs: each copy of the second depends on every copy of the first", () => {
  const out = expandFanOut(
    flow(["g", [
      task("upload", each("web")),
      task("restart", { ...each("web"), dependsOn: ["upload"] }),
    ]]),
    new Map([["web", WEB.slice(0, 2)]]),
  );
  const restart = out.groups[0].tasks.filter((t) => t.fanOut?.task === "restart");
  assert.deepEqual(restart.map((t) => t.dependsOn), [
    ["upload@web-1", "upload@web-2"],
    ["upload@web-1", "upload@web-2"],
  ]);
});

Deno.test("expandFanOut() leaves other groups alone, even a task there of the same name", () => {
  const other: Task[] = [
    task("deploy", {}, "other"),
    task("verify", { dependsOn: ["deploy"] }, "other"),
  ];
  const out = expandFanOut(
    flow(["g", [task("deploy", each("web"))]], ["other", other]),
    new Map([["web", WEB]]),
  );
  assert.deepEqual(out.groups[1].tasks, other);
  assert.equal(out.groups[0].tasks.length, 3);
});

Deno.test("expandFanOut() returns the workflow unchanged in content when nothing fans out", () => {
  const input = flow(["g", [task("a"), task("b", { dependsOn: ["a"] })]]);
  assert.deepEqual(expandFanOut(input, new Map()), input);
});

Deno.test("expandFanOut() leaves the workflow it was given as it was", () => {
  const input = flow(["g", [task("deploy", each("web")), task("v", { dependsOn: ["deploy"] })]]);
  const before = structuredClone(input);
  expandFanOut(input, new Map([["web", WEB]]));
  assert.deepEqual(input, before);
});

Deno.test("expandFanOut() refuses a pool with no members, naming it, and leaves a pool not looked up as it is", () => {
  const workflow = flow(["g", [task("deploy", each("web"))]]);
  const error = expandError(workflow, new Map([["web", []]]));
  assert.equal(error.message, 'pool "web" has no members to fan out to');
  // No task of the run fans out to it: it was not looked up, and stays a fan-out.
  const untouched = expandFanOut(workflow, new Map<string, Member[]>());
  assert.deepEqual(untouched.groups[0].tasks.map((t) => [t.name, t.target.kind]), [[
    "deploy",
    "each",
  ]]);
});

Deno.test("fanOutPools() names each pool some task fans out to, once", () => {
  const workflow = flow(
    ["g", [
      task("a", each("web")),
      task("b", each("web")),
      task("c", { target: { kind: "pool", pool: "db" } }),
    ]],
    ["h", [task("d", each("edge"))]],
  );
  assert.deepEqual(fanOutPools(workflow), ["web", "edge"]);
});

Deno.test({
  name: "expandFanOut() refuses a copy whose name another task of the group already has",
  fn: () => {
    const workflow = flow(["g", [task("deploy@web-1"), task("deploy", each("web"))]]);
    const error = expandError(workflow, new Map([["web", WEB.slice(0, 2)]]));
    assert.match(error.message, /deploy@web-1/);
  },
});

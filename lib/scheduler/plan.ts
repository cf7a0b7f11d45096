/**
 * Planning, before anything runs: check every reference between tasks, find
 * cycles, pick the tasks the user asked for and put them in run order.
 */
import { didYouMean, SlothError } from "../errors.ts";
import type { Task, Workflow } from "../model/mod.ts";

export interface PlannedTask {
  task: Task;
  /** Ids of `depends_on` tasks; each must succeed (or be skipped without failing). */
  deps: string[];
  /** Ids of `next_if_fail` tasks; the task runs only if one of them failed. */
  watches: string[];
  /**
   * Ids of tasks that must have finished, however they ended, before this one starts:
   * a fan-out's previous batch of hosts.
   */
  after: string[];
}

export interface Plan {
  /** In run order: dependencies first, otherwise file order. */
  tasks: PlannedTask[];
}

export interface Selection {
  groups?: string[];
  /** Task names; their dependencies are added. */
  tasks?: string[];
}

/** Every check that needs no execution: references, then cycles. Throws `SlothError`. */
export function checkWorkflow(workflow: Workflow): void {
  const problems: string[] = [];
  for (const group of workflow.groups) {
    const names = group.tasks.map((t) => t.name);
    for (const task of group.tasks) {
      for (
        const [field, refs] of [["depends_on", task.dependsOn], [
          "next_if_fail",
          task.nextIfFail,
        ]] as const
      ) {
        for (const ref of refs) {
          if (!names.includes(ref)) {
            problems.push(
              `task "${task.name}" in group "${group.name}": ${field} names "${ref}", ` +
                `which is not a task of this group.${
                  didYouMean(ref, names.filter((n) => n !== task.name))
                }`,
            );
          } else if (ref === task.name) {
            problems.push(`task "${task.name}" in group "${group.name}": ${field} names itself`);
          }
        }
      }
    }
  }
  if (problems.length === 1) throw new SlothError("unknown_dependency", problems[0]);
  if (problems.length > 1) {
    throw new SlothError(
      "unknown_dependency",
      `the workflow refers to tasks that do not exist:\n${
        problems.map((p) => `  - ${p}`).join("\n")
      }`,
    );
  }
  for (const group of workflow.groups) {
    const cycle = findCycle(group.tasks);
    if (cycle) {
      throw new SlothError(
        "dependency_cycle",
        `tasks in group "${group.name}" depend on each other in a cycle: ${cycle.join(" -> ")}`,
        { hint: "Remove one of these depends_on or next_if_fail entries." },
      );
    }
  }
}

/** Checks the workflow, applies the selection and orders the tasks. */
export function planRun(workflow: Workflow, selection: Selection = {}): Plan {
  checkWorkflow(workflow);
  const groupNames = workflow.groups.map((g) => g.name);
  for (const name of selection.groups ?? []) {
    if (!groupNames.includes(name)) {
      throw new SlothError(
        "unknown_group",
        `no group named "${name}".${didYouMean(name, groupNames)}`,
        { hint: `Groups in this workflow: ${groupNames.join(", ")}` },
      );
    }
  }
  const groups = selection.groups?.length
    ? workflow.groups.filter((g) => selection.groups!.includes(g.name))
    : workflow.groups;
  const candidates = groups.flatMap((g) => g.tasks);
  const byId = new Map(candidates.map((t) => [t.id, t]));

  let chosen: Set<string>;
  if (selection.tasks?.length) {
    chosen = new Set();
    const names = [...new Set(candidates.map((t) => t.name))];
    for (const name of selection.tasks) {
      const matches = candidates.filter((t) =>
        t.name === name || t.id === name || t.fanOut?.task === name
      );
      if (matches.length === 0) {
        throw new SlothError(
          "unknown_task",
          `no task named "${name}"${selection.groups?.length ? " in the selected groups" : ""}.` +
            didYouMean(name, names),
          {
            hint: names.length <= 20
              ? `Tasks: ${names.join(", ")} (sloth-runner list -f FILE shows them all).`
              : "`sloth-runner list -f FILE` shows every task.",
          },
        );
      }
      for (const task of matches) addWithDependencies(task, byId, chosen);
    }
  } else {
    chosen = new Set(candidates.map((t) => t.id));
  }

  const selected = candidates.filter((t) => chosen.has(t.id));
  const ordered = orderTasks(selected);
  return {
    tasks: ordered.map((task) => ({
      task,
      deps: task.dependsOn.map((name) => `${task.group}.${name}`),
      watches: task.nextIfFail.map((name) => `${task.group}.${name}`).filter((id) =>
        chosen.has(id)
      ),
      after: previousBatch(task).filter((id) => chosen.has(id)),
    })),
  };
}

/** A fan-out host's previous batch: hosts `batch` places before it, a batch at a time. */
function previousBatch(task: Task): string[] {
  const fanOut = task.fanOut;
  if (!fanOut?.batch) return [];
  const first = Math.floor(fanOut.index / fanOut.batch) * fanOut.batch;
  return fanOut.siblings.slice(Math.max(0, first - fanOut.batch), first);
}

/**
 * A selected task brings what it depends on, and the tasks it rescues
 * (`next_if_fail`): without them it could never run.
 */
function addWithDependencies(task: Task, byId: Map<string, Task>, into: Set<string>): void {
  if (into.has(task.id)) return;
  into.add(task.id);
  for (const name of [...task.dependsOn, ...task.nextIfFail]) {
    addWithDependencies(byId.get(`${task.group}.${name}`)!, byId, into);
  }
}

/**
 * Topological order that keeps file order wherever the dependencies allow:
 * at each step the earliest task (in file order) whose prerequisites are
 * placed goes next.
 */
function orderTasks(tasks: Task[]): Task[] {
  const ids = new Set(tasks.map((t) => t.id));
  const prerequisites = (t: Task) =>
    [...t.dependsOn, ...t.nextIfFail].map((n) => `${t.group}.${n}`).filter((id) => ids.has(id));
  const placed = new Set<string>();
  const out: Task[] = [];
  const remaining = [...tasks];
  while (remaining.length > 0) {
    const index = remaining.findIndex((t) => prerequisites(t).every((id) => placed.has(id)));
    // checkWorkflow() has ruled out cycles, so some task is always ready.
    const [next] = remaining.splice(index, 1);
    placed.add(next.id);
    out.push(next);
  }
  return out;
}

/** A cycle as names, first name repeated at the end, or undefined. */
function findCycle(tasks: Task[]): string[] | undefined {
  const edges = new Map(tasks.map((t) => [t.name, [...t.dependsOn, ...t.nextIfFail]]));
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (name: string): string[] | undefined => {
    if (state.get(name) === "done") return undefined;
    if (state.get(name) === "visiting") return [...stack.slice(stack.indexOf(name)), name];
    state.set(name, "visiting");
    stack.push(name);
    for (const next of edges.get(name) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(name, "done");
    return undefined;
  };
  for (const task of tasks) {
    const cycle = visit(task.name);
    if (cycle) return cycle;
  }
  return undefined;
}

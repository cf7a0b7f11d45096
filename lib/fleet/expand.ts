/**
 * Fan-out: a task with `delegate_to = { each = POOL }` becomes one task per
 * member (`deploy@web-1`, ...) before the run is planned. Whatever depended on it
 * depends on every copy, and gets their outputs keyed by member
 * (scheduler/run.ts); `-t deploy` selects every copy.
 */
import { SlothError } from "../errors.ts";
import { FAN_OUT_MARK, type Task, type Workflow } from "../model/mod.ts";
import type { Member } from "./members.ts";

/** Pools some task fans out to. */
export function fanOutPools(workflow: Workflow): string[] {
  const pools = new Set<string>();
  for (const group of workflow.groups) {
    for (const task of group.tasks) {
      if (task.target.kind === "each") pools.add(task.target.pool);
    }
  }
  return [...pools];
}

/**
 * The workflow with every fan-out task to a pool of `members` replaced by its copies;
 * a fan-out to a pool `members` does not have is left as it is.
 */
export function expandFanOut(workflow: Workflow, members: Map<string, Member[]>): Workflow {
  return {
    ...workflow,
    groups: workflow.groups.map((group) => {
      const copies = new Map<string, string[]>();
      const tasks: Task[] = [];
      for (const task of group.tasks) {
        if (task.target.kind !== "each") {
          tasks.push(task);
          continue;
        }
        const { pool, batch, maxFailures } = task.target;
        const hosts = members.get(pool);
        // A pool not looked up (no task of the run fans out to it) stays as it is.
        if (!hosts) {
          tasks.push(task);
          continue;
        }
        if (!hosts.length) {
          throw new SlothError("inventory_invalid", `pool "${pool}" has no members to fan out to`);
        }
        const names = hosts.map((m) => `${task.name}${FAN_OUT_MARK}${m.name}`);
        const taken = names.find((name) => group.tasks.some((t) => t.name === name));
        if (taken) {
          throw new SlothError(
            "workflow_invalid",
            `group "${group.name}": the fan-out of "${task.name}" makes a task "${taken}", ` +
              "and the group has one of that name",
          );
        }
        const siblings = names.map((name) => `${group.name}.${name}`);
        copies.set(task.name, names);
        hosts.forEach((member, index) =>
          tasks.push({
            ...task,
            id: siblings[index],
            name: names[index],
            target: member.target,
            fanOut: {
              task: task.name,
              pool,
              host: member.name,
              index,
              siblings,
              batch,
              maxFailures,
            },
          })
        );
      }
      const expand = (refs: string[]) => refs.flatMap((ref) => copies.get(ref) ?? [ref]);
      return {
        ...group,
        tasks: tasks.map((task) => ({
          ...task,
          dependsOn: expand(task.dependsOn),
          nextIfFail: expand(task.nextIfFail),
        })),
      };
    }),
  };
}

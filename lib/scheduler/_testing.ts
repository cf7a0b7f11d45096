/** Plain tasks and workflows for scheduler tests. */
import type { Task, Workflow } from "../model/mod.ts";

export function task(name: string, fields: Partial<Task> = {}, group = "g"): Task {
  return {
    id: `${group}.${name}`,
    name,
    group,
    description: "",
    command: { kind: "shell", script: "true" },
    dependsOn: [],
    nextIfFail: [],
    retries: 0,
    async: false,
    workdir: "/",
    params: {},
    target: { kind: "local" },
    syncBack: "on_success",
    ...fields,
  };
}

export function workflow(...groups: Task[][]): Workflow {
  return {
    file: "/w.lua",
    groups: groups.map((tasks) => ({
      name: tasks[0].group,
      description: "",
      tasks,
      agents: {},
    })),
  };
}

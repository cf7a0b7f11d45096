/** For this folder's tests: a task function run in a real Lua state, as a task's is. */
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { type CallResult, loadWorkflow, LuaPool, openTaskSession } from "./mod.ts";

export interface RunLuaOptions {
  /** More files in the workspace, by path. */
  files?: Record<string, string>;
  params?: unknown;
  inputs?: unknown;
  /** Lua after the workflow table, at the top level. */
  top?: string;
  /** Runs while the call does, with the workspace and a controller that cancels the call. */
  during?: (dir: string, cancel: AbortController) => Promise<void>;
  /** Runs once the call returned, before the workspace goes. */
  after?: (dir: string) => Promise<void>;
}

/**
 * Runs `body` as the function of a task, `function(params, inputs)` (line 2 of
 * workflow.lua is its first line), and returns what `__sloth_call` made of it.
 */
export async function runLua(
  body: string,
  options: RunLuaOptions = {},
): Promise<CallResult & { logs: string[]; dir: string }> {
  await using ws = await tempWorkspace({
    ...options.files,
    "workflow.lua":
      `TaskDefinitions = { g = { tasks = { { name = "t", command = function(params, inputs)
${body}
end } } } }
${options.top ?? ""}`,
  });
  const pool = new LuaPool();
  const logs: string[] = [];
  try {
    const loaded = await loadWorkflow(pool, { file: "workflow.lua", cwd: ws.dir });
    const task = loaded.workflow.groups[0].tasks[0];
    const session = await openTaskSession(pool, loaded.source, task, {
      onLog: (level, message) => logs.push(`${level}:${message}`),
    });
    const cancel = new AbortController();
    const call = session.call(
      "command",
      { group: "g", task: "t", field: "command" },
      [options.params ?? {}, options.inputs ?? {}],
      cancel.signal,
    );
    await options.during?.(ws.dir, cancel);
    const result = await call;
    session.release();
    await options.after?.(ws.dir);
    return { ...result, logs, dir: ws.dir };
  } finally {
    pool.close();
  }
}

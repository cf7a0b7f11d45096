/** A master's side of a job, by hand: its start message, and the token a loopback agent wrote. */
import { PROTOCOL_VERSION, type TaskStart } from "../../lib/rpc/mod.ts";
import type { TestAgent } from "./agent.ts";

/** A start message for a shell task with an empty workspace; `fields` override. */
export function taskStart(fields: Partial<TaskStart> = {}): TaskStart {
  return {
    protocol: PROTOCOL_VERSION,
    group: "g",
    task: "t",
    files: [],
    main_file: "/w/workflow.lua",
    master_cwd: "/w",
    values_json: "{}",
    params_json: "{}",
    inputs_json: "{}",
    timeout_ms: 0,
    attempt: 1,
    sync_back: "never",
    shell_command: "true",
    workspace_key: "",
    compression: "",
    ...fields,
  };
}

/** The token the agent wrote for this user's masters (it says where in its log), if any. */
export function agentToken(agent: TestAgent): string | undefined {
  const match = /token for this user's masters in (\S+?)[,)]/.exec(agent.log());
  return match ? Deno.readTextFileSync(match[1]).trim() : undefined;
}

export { KILL_GRACE_MS, runShell } from "./process.ts";
export type { AbortReason, ProcessResult, RunOptions, Stream } from "./process.ts";

export { checkWorkflow, planRun } from "./plan.ts";
export type { Plan, PlannedTask, Selection } from "./plan.ts";
export { backoff, runPlan, sleep } from "./run.ts";
export type {
  AttemptContext,
  AttemptResult,
  Gate,
  RetryPause,
  RetryWait,
  RunHooks,
  RunOptions,
  RunOutcome,
  Settled,
  TaskExecutor,
} from "./run.ts";

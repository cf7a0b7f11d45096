export { KILL_GRACE_MS, runShell } from "./process.ts";
export type { AbortReason, ProcessResult, RunOptions, Stream } from "./process.ts";
export { bwrapSandbox, probeBwrap, userSandbox } from "./sandbox.ts";
export type { Sandbox, SandboxOptions } from "./sandbox.ts";
export {
  chooseTaskUser,
  commandUser,
  DEFAULT_TASK_USER,
  handOver,
  handOverJob,
  hardlinksProtected,
  runTasksAs,
  switchUserArgv,
  taskUser,
  TaskUserError,
} from "./task_user.ts";
export type { TaskUser, TaskUserChoice } from "./task_user.ts";
export { killRecordedTrees, recordTreesIn } from "./trees.ts";
export { keepShellsWarm, warmShellsTaken } from "./warm.ts";
export { selfCommand, startSelf } from "./self.ts";
export type { SelfProcess, StartSelfOptions } from "./self.ts";
export { confinedArgs, startConfined } from "./confined.ts";
export type { ConfinedOptions, ConfinedProcess } from "./confined.ts";

export { LocalRunner } from "./local.ts";
export type { LocalRunnerOptions } from "./local.ts";

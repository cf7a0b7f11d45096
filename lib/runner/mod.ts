export { LocalRunner } from "./local.ts";
export type { LocalRunnerOptions } from "./local.ts";
export { RemoteRunner } from "./remote.ts";
export type { RemoteRunnerOptions } from "./remote.ts";

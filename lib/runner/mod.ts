export { LocalRunner } from "./local.ts";
export { finishGroupDirs, groupResult, prepareGroupDirs } from "./group_dir.ts";
export type { FinishOptions, GroupDirPlaces, PreparedDir } from "./group_dir.ts";
export type { LocalRunnerOptions } from "./local.ts";
export type { RemoteRunner, RemoteRunnerOptions } from "./remote.ts";

/** `pingAgent` from the remote runner, loaded on first use like it. */
export async function loadPingAgent(): Promise<typeof import("./remote.ts").pingAgent> {
  return (await import("./remote.ts")).pingAgent;
}
export { type MemberRunner, PoolRunner } from "./pool.ts";

/** The remote runner, loaded on first use: gRPC and tar are not needed for local runs. */
export async function loadRemoteRunner(): Promise<typeof import("./remote.ts").RemoteRunner> {
  return (await import("./remote.ts")).RemoteRunner;
}

export { applyChanges, diffWorkspace, hashFile } from "./changes.ts";
export type { ApplyOptions, ChangeSet } from "./changes.ts";
export { packPaths, rechunk } from "./pack.ts";
export { checkRelativePath, symlinkStaysInside, SyncError } from "./paths.ts";
export { DEFAULT_LIMITS, limitsFromEnv, unpack } from "./unpack.ts";
export type { Limits, UnpackedEntry, UnpackMode } from "./unpack.ts";
export { IGNORE_FILE, walkWorkspace } from "./walk.ts";
export type { Entry, EntryType, Walk } from "./walk.ts";

export { BlobStore } from "./blobs.ts";
export { DiskBudget } from "./budget.ts";
export { footprint, isNoSpace, NoSpaceError } from "./disk.ts";
export { applyChanges } from "./changes.ts";
export { gunzip, gzip, tarBound } from "./compress.ts";
export type { Compression } from "./compress.ts";
export type { ApplyOptions, Copy } from "./changes.ts";
export {
  discardJournalDir,
  JOURNAL_DIR,
  openJournalDir,
  recoverWorkspace,
  recoveryNote,
} from "./journal.ts";
export type { Recovery } from "./journal.ts";
export {
  applyManifestDelta,
  comparePaths,
  describeManifest,
  diffManifest,
  ManifestBases,
  SentManifests,
} from "./delta.ts";
export type { Base, ManifestDelta, Sent } from "./delta.ts";
export { buildManifest, checkManifest, DigestCache, hashFileSync } from "./manifest.ts";
export type { Manifest, ManifestEntry } from "./manifest.ts";
export { CHUNK, packEntries, rechunk } from "./pack.ts";
export {
  diff,
  fillIn,
  finishDirectories,
  markUnverified,
  reconcile,
  restat,
  verifyKept,
  WorkspaceShelf,
} from "./workspace.ts";
export { hashFile, readSmallFile, setModeAndTime, yieldNow } from "./nofollow.ts";
export type { FileState, WorkspaceDiff, WorkspaceState } from "./workspace.ts";
export { checkRelativePath, symlinkStaysInside, SyncError } from "./paths.ts";
export { DEFAULT_LIMITS, limitsFromEnv, unpack } from "./unpack.ts";
export type { Limits, UnpackedEntry, UnpackMode } from "./unpack.ts";
export { IGNORE_FILE, walkWorkspace } from "./walk.ts";
export type { Entry, EntryType, Walk } from "./walk.ts";

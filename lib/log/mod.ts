export type { EmitEvent, LogLevel, LogStream, RunEvent } from "./events.ts";
export { fdWriter, jsonRenderer, TextRenderer } from "./render.ts";
export { oneLine } from "./line.ts";
export type { TextRendererOptions, Write } from "./render.ts";
export type { Terminal } from "./progress.ts";
export {
  DEFAULT_MAX_OUTPUT_BYTES,
  DEFAULT_MAX_OUTPUT_LINES,
  jsonReport,
  junitXml,
  RunRecorder,
} from "./report.ts";
export type {
  OutputLine,
  RecordedOutput,
  RunRecord,
  RunRecorderOptions,
  RunStatus,
  TaskRecord,
  TaskRecordStatus,
} from "./report.ts";

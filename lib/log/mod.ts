export type { EmitEvent, LogLevel, LogStream, RunEvent } from "./events.ts";
export { fdWriter, jsonRenderer, TextRenderer } from "./render.ts";
export type { TextRendererOptions, Write } from "./render.ts";
export type { Terminal } from "./progress.ts";

/// <reference lib="deno.worker" />
/**
 * A Lua worker: holds one fresh Lua state per session, loads the workflow into
 * it and calls the task functions it is asked for. Shell commands are not run
 * here: `exec.run` asks the main thread, which owns every child process and can
 * stop them when this worker is terminated.
 */
import { type LuaEngine, LuaFactory, type LuaThread } from "wasmoon";
import { type ErrorData, toErrorData } from "../errors.ts";
import { createHost, type ExecReply, type HostContext, toLua } from "./host.ts";
import { PRELUDE } from "./prelude.ts";
import { redirectConsole } from "./console.ts";
import type { CallRequest, CallResult, FromWorker, OpenRequest, ToWorker } from "./protocol.ts";
import {
  cleanLuaError,
  dirname,
  displayName,
  fixModernDsls,
  parseLuaLocation,
  resolvePath,
  skipShebang,
  sortBySource,
  sourceContext,
} from "./source.ts";

const wasmPath = decodeURIComponent(
  new URL("./glue.wasm", import.meta.resolve("wasmoon")).pathname,
);
// Before the Lua runtime starts: it binds console.log and console.error for Lua's own output.
// (Posted a moment later: `send` below is not set yet while this module loads.)
redirectConsole((level, message) => queueMicrotask(() => post({ op: "log", level, message })));
shareCompiledRuntime();
/**
 * Where Lua states come from. One factory is one wasm instance (its memory, its
 * emscripten files, wasmoon's table of JavaScript values): a worker reused across
 * an agent's jobs gets a new one for each job (`reset`), so no byte of a previous
 * job's states is there to find, even through a bug in Lua.
 */
let factory = new LuaFactory(wasmPath);

let engine: LuaEngine | undefined;
let execId = 0;
const pendingExec = new Map<number, { resolve(r: ExecReply): void; reject(e: Error): void }>();
/** Host calls (commands, fetches, downloads, imports) started and not yet settled. */
let inFlight = 0;

/**
 * Compiles the Lua runtime once per worker: wasmoon (emscripten) instantiates it
 * from its bytes for every factory, which would compile it each time (10-40 ms);
 * a later factory then costs an instantiation (~2 ms), made ahead of its job.
 */
function shareCompiledRuntime(): void {
  const instantiate = WebAssembly.instantiate.bind(WebAssembly);
  const compiled = new Map<number, Promise<WebAssembly.Module>>();
  WebAssembly.instantiate = ((source: BufferSource | WebAssembly.Module, imports) => {
    if (source instanceof WebAssembly.Module) return instantiate(source, imports);
    let module = compiled.get(source.byteLength);
    if (!module) compiled.set(source.byteLength, module = WebAssembly.compile(source));
    return module.then(async (m) => ({ module: m, instance: await instantiate(m, imports) }));
  }) as typeof WebAssembly.instantiate;
}

/** Where answers go: the worker's parent, or (worker_process.ts) its pipe. */
let send: (message: FromWorker) => void = (message) => self.postMessage(message);

function post(message: FromWorker): void {
  send(message);
}

/**
 * Serves this module's sessions over another channel than a Worker's: `reply`
 * carries answers out; the returned function takes each request in.
 */
export function serveOver(reply: (message: FromWorker) => void): (message: ToWorker) => void {
  send = reply;
  return handle;
}

// As a Web Worker (the usual case), requests come as messages; in a process, see serveOver.
if (typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope) {
  self.onmessage = (event: MessageEvent<ToWorker>) => handle(event.data);
}

function handle(message: ToWorker): void {
  switch (message.op) {
    case "open":
      open(message).then(post);
      break;
    case "call":
      call(message).then(post);
      break;
    case "exec_done": {
      const waiter = pendingExec.get(message.id);
      pendingExec.delete(message.id);
      if (message.reply) waiter?.resolve(message.reply);
      else waiter?.reject(new Error(message.error ?? "command failed"));
      break;
    }
    case "close":
      closeEngine();
      break;
    case "reset": {
      closeEngine();
      pendingExec.clear();
      mainChunks.clear();
      const clean = inFlight === 0;
      // A worker that is not clean is killed by its owner; a clean one gets a new runtime.
      if (clean) factory = new LuaFactory(wasmPath);
      post({ op: "reset_done", clean });
      break;
    }
  }
}

/** The host's functions, each async one counted while it runs (see `reset`). */
function counted(host: Record<string, unknown>): Record<string, unknown> {
  const settled = () => inFlight--;
  for (const [name, value] of Object.entries(host)) {
    if (typeof value !== "function") continue;
    host[name] = (...args: unknown[]) => {
      const result = value(...args);
      if (result instanceof Promise) {
        inFlight++;
        result.then(settled, settled);
      }
      return result;
    };
  }
  return host;
}

function closeEngine(): void {
  engine?.global.close();
  engine = undefined;
}

/** The files one session has read, by absolute path and by display name. */
class Sources {
  readonly byName = new Map<string, { path: string; text: string }>();
  readonly warnings: string[] = [];
  constructor(readonly cwd: string, readonly bundle?: Record<string, string>) {}

  read(path: string): { id: string; name: string; source: string } {
    const name = displayName(path, this.cwd);
    const known = this.byName.get(name);
    if (known) return { id: path, name, source: known.text };
    const fixed = fixModernDsls(skipShebang(this.#readText(path)));
    if (fixed.line !== undefined) {
      this.warnings.push(
        `${name}:${fixed.line}: "Modern DSLs = {" is not valid Lua; reading it as "TaskDefinitions = {"`,
      );
    }
    this.byName.set(name, { path, text: fixed.source });
    return { id: path, name, source: fixed.source };
  }

  #readText(path: string): string {
    if (!this.bundle) return Deno.readTextFileSync(path);
    const text = this.bundle[path];
    if (text === undefined) throw new Deno.errors.NotFound(path);
    return text;
  }

  resolve(fromChunk: string, relative: string) {
    const fromName = fromChunk.startsWith("@") ? fromChunk.slice(1) : "";
    const from = this.byName.get(fromName);
    if (!from) throw new Error(`cannot tell which file is importing "${relative}"`);
    const path = resolvePath(dirname(from.path), relative);
    try {
      return this.read(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(`${relative} not found (looked for ${displayName(path, this.cwd)})`);
      }
      throw error;
    }
  }

  /** `file:line: message` plus the source around that line, when the file is one of ours. */
  describe(message: string): { message: string; detail?: string } {
    const text = cleanLuaError(message);
    const at = parseLuaLocation(text);
    const file = at && this.byName.get(at.file);
    if (!at || !file) return { message: text };
    return { message: text, detail: sourceContext(file.text, at.line) || undefined };
  }
}

let quiet = false;
let memoryLimit = 0;

async function open(request: OpenRequest): Promise<FromWorker> {
  closeEngine();
  const sources = new Sources(request.cwd, request.bundle);
  quiet = request.quiet;
  memoryLimit = request.memoryLimit;
  const ctx: HostContext = {
    workdir: request.workdir,
    tmpdir: request.tmpdir,
    confine: request.confine,
    env: request.env,
    values: request.values,
    dataLimit: request.dataLimit,
    log: (level, message) => {
      if (!quiet) post({ op: "log", level, message });
    },
    exec: (execRequest) =>
      new Promise((resolve, reject) => {
        const id = ++execId;
        pendingExec.set(id, { resolve, reject });
        post({ op: "exec", id, request: execRequest });
      }),
    resolveImport: (from, path) => sources.resolve(from, path),
  };
  try {
    let main: { name: string; source: string };
    try {
      main = sources.read(request.file);
    } catch (error) {
      return failed({
        code: "workflow_not_found",
        message: error instanceof Deno.errors.NotFound
          ? `workflow file ${displayName(request.file, request.cwd)} not found`
          : error instanceof Deno.errors.IsADirectory
          ? `${displayName(request.file, request.cwd)} is a directory, not a workflow file`
          : `cannot read ${request.file}: ${(error as Error).message}`,
        hint: error instanceof Deno.errors.NotFound
          ? "pass the file with -f PATH (default: workflow.lua here), " +
            "or write a starter with: sloth-runner new NAME"
          : error instanceof Deno.errors.IsADirectory
          ? `pass the file itself, e.g. -f ${
            displayName(request.file, request.cwd).replace(/\/$/, "")
          }/workflow.lua`
          : undefined,
      });
    }
    engine = await factory.createEngine({
      injectObjects: false,
      enableProxy: false,
      traceAllocations: true,
    });
    engine.global.setMemoryMax(request.memoryLimit);
    engine.global.set("__sloth_host", counted(createHost(ctx)));
    loadPrelude(engine);
    await engine.global.run(0);

    const thread = engine.global.newThread();
    thread.lua.lua_getglobal(thread.address, "__sloth_main");
    loadMain(thread, main.source, `@${main.name}`);
    const only = request.only;
    for (const arg of [main.name, only?.group, only?.task, only?.describe]) thread.pushValue(arg);
    const [loaded] = [...await thread.run(5)] as [MainResult];
    quiet = false;
    if (loaded.runtime !== undefined && /not enough memory/.test(loaded.runtime)) {
      return failed({
        code: "lua_runtime",
        message: `${main.name}: ${memoryMessage(request.memoryLimit)}`,
      });
    }
    if (loaded.syntax !== undefined || loaded.runtime !== undefined) {
      const { message, detail } = sources.describe(loaded.syntax ?? loaded.runtime!);
      return failed({ code: loaded.syntax ? "lua_syntax" : "lua_runtime", message, detail });
    }
    if (loaded.invalid !== undefined) {
      return failed({
        code: "workflow_invalid",
        message: `${main.name}: ${cleanLuaError(loaded.invalid)}`,
      });
    }
    return {
      op: "opened",
      description: only && !only.describe ? {} : ordered(loaded.description, main.source),
      warnings: sources.warnings,
      files: [...sources.byName.values()].map((f) => f.path),
      // A Lua table that is empty comes as an object.
      globals: Array.isArray(loaded.globals) ? loaded.globals : [],
    };
  } catch (error) {
    return failed(errorData(error, sources, request.memoryLimit));
  }

  function failed(error: ErrorData): FromWorker {
    closeEngine();
    return { op: "open_failed", error: { ...error, message: error.message } };
  }
}

/** The prelude as Lua bytecode, made once per worker: parsing its text took 2-4 ms a state. */
let preludeChunk: Uint8Array | undefined;
/**
 * Workflow files' main chunks as bytecode, by chunk name and text: a local run
 * opens a state per task with the same file (2 ms to parse 200 tasks). Emptied
 * between an agent's jobs (`reset`): nothing of one job stays for the next.
 */
const mainChunks = new Map<string, Uint8Array>();
const MAX_MAIN_CHUNKS = 8;

/**
 * Puts the prelude, compiled, on the state's stack. Binary chunks are loaded
 * only here and in `loadMain`, each made by this worker's Lua from text it was
 * given; Lua code itself can load text only (the prelude's `load`).
 */
function loadPrelude(engine: LuaEngine): void {
  const global = engine.global;
  if (preludeChunk) {
    loadBytes(global, preludeChunk, "=sloth", "b");
    return;
  }
  loadBytes(global, new TextEncoder().encode(PRELUDE), "=sloth", "t");
  preludeChunk = dumpTop(global);
}

/** The main chunk (or, when it does not compile, Lua's message) on `thread`'s stack. */
function loadMain(thread: LuaThread, source: string, chunkName: string): void {
  const key = `${chunkName}\0${source}`;
  const known = mainChunks.get(key);
  if (known) {
    loadBytes(thread, known, chunkName, "b", false);
    return;
  }
  if (loadBytes(thread, new TextEncoder().encode(source), chunkName, "t", false)) {
    if (mainChunks.size >= MAX_MAIN_CHUNKS) mainChunks.clear();
    mainChunks.set(key, dumpTop(thread));
  }
}

/** luaL_loadbufferx; whether it compiled (else its message is on the stack, or thrown). */
function loadBytes(
  thread: LuaThread,
  bytes: Uint8Array,
  chunkName: string,
  mode: "b" | "t",
  raise = true,
): boolean {
  const module = thread.lua.module;
  const at = module._malloc(Math.max(1, bytes.length));
  try {
    module.HEAPU8.set(bytes, at);
    const status = thread.lua.luaL_loadbufferx(thread.address, at, bytes.length, chunkName, mode);
    if (status !== 0 && raise) thread.assertOk(status);
    return status === 0;
  } finally {
    module._free(at);
  }
}

/** The function on top of `thread`'s stack as bytecode (lua_dump, debug information kept). */
function dumpTop(thread: LuaThread): Uint8Array {
  const module = thread.lua.module;
  const parts: Uint8Array[] = [];
  const writer = module.addFunction((_l: number, data: number, size: number) => {
    parts.push(module.HEAPU8.slice(data, data + size));
    return 0;
  }, "iiiii");
  try {
    thread.lua.lua_dump(thread.address, writer, 0, 0);
  } finally {
    module.removeFunction(writer);
  }
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

function memoryMessage(limit: number): string {
  return `the Lua code used more than its memory limit of ${Math.round(limit / 1024 / 1024)} MiB ` +
    "(SLOTH_LUA_MEMORY)";
}

function errorData(error: unknown, sources: Sources, memoryLimit: number): ErrorData {
  const text = error instanceof Error ? error.message : String(error);
  if (/not enough memory/i.test(text)) {
    return { code: "lua_runtime", message: memoryMessage(memoryLimit) };
  }
  const described = sources.describe(text);
  return { ...toErrorData(error), code: "lua_runtime", ...described };
}

interface RawTask {
  index?: number;
  key?: string;
}
interface RawGroup {
  name: string;
  tasks: RawTask[] | Record<string, never>;
}

/** Groups, and the keyed tasks after the listed ones, in the order the file gives them. */
function ordered(description: unknown, source: string): unknown {
  const groups = (description as { groups?: RawGroup[] }).groups;
  if (!Array.isArray(groups)) return description;
  for (const group of groups) {
    if (!Array.isArray(group.tasks)) continue;
    const listed = group.tasks.filter((t) => t.index !== undefined);
    const keyed = group.tasks.filter((t) => t.index === undefined);
    group.tasks = [...listed, ...sortBySource(keyed, (t) => String(t.key), source)];
  }
  return { ...description as object, groups: sortBySource(groups, (g) => g.name, source) };
}

interface MainResult {
  syntax?: string;
  runtime?: string;
  invalid?: string;
  description?: unknown;
  globals?: string[];
}

/** Calls a global Lua function in a new coroutine, so host promises can be awaited. */
async function invoke(name: string, ...args: unknown[]): Promise<unknown[]> {
  const thread = engine!.global.newThread();
  thread.lua.lua_getglobal(thread.address, name);
  for (const arg of args) thread.pushValue(arg);
  const results = await thread.run(args.length);
  return [...results];
}

async function call(request: CallRequest): Promise<FromWorker> {
  let result: CallResult;
  if (!engine) {
    result = { error: "the Lua state is not open" };
  } else {
    try {
      const [value] = await invoke(
        "__sloth_call",
        request.kind,
        request.group,
        request.task,
        request.field,
        ...request.args.map(toLua),
      );
      result = value as CallResult;
      // The prelude catches Lua's own "not enough memory"; name the limit here.
      if (result.error === "not enough memory") result.error = memoryMessage(memoryLimit);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      result = {
        error: /not enough memory/i.test(text) ? memoryMessage(memoryLimit) : cleanLuaError(text),
      };
    }
  }
  return { op: "called", id: request.id, result };
}

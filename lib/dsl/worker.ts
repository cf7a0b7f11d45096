/// <reference lib="deno.worker" />
/**
 * A Lua worker: holds one fresh Lua state per session, loads the workflow into
 * it and calls the task functions it is asked for. Shell commands are not run
 * here: `exec.run` asks the main thread, which owns every child process and can
 * stop them when this worker is terminated.
 */
import { type LuaEngine, LuaFactory } from "wasmoon";
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
    const fixed = fixModernDsls(this.#readText(path));
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
    await loadPrelude(engine);
    await engine.global.run(0);

    const [loaded] = await invoke(
      "__sloth_main",
      main.source,
      main.name,
      request.only?.group,
      request.only?.task,
    ) as [MainResult];
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
      description: request.only ? {} : ordered(loaded.description, main.source),
      warnings: sources.warnings,
      files: [...sources.byName.values()].map((f) => f.path),
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
let preludeChunk: Promise<Uint8Array> | undefined;

/**
 * Puts the prelude, compiled, on the state's stack. The only binary chunk any
 * state loads, made here from our own text by Lua itself; Lua code can load text
 * only (the prelude's `load`).
 */
async function loadPrelude(engine: LuaEngine): Promise<void> {
  preludeChunk ??= compilePrelude();
  const chunk = await preludeChunk;
  const global = engine.global;
  const module = global.lua.module;
  const at = module._malloc(chunk.length);
  try {
    module.HEAPU8.set(chunk, at);
    global.assertOk(global.lua.luaL_loadbufferx(global.address, at, chunk.length, "=sloth", "b"));
  } finally {
    module._free(at);
  }
}

async function compilePrelude(): Promise<Uint8Array> {
  const scratch = await factory.createEngine({ injectObjects: false, enableProxy: false });
  try {
    scratch.global.set("__prelude", PRELUDE);
    // Hex, because a Lua string reaches JavaScript as UTF-8 text.
    const hex = scratch.doStringSync(`
      local chunk = string.dump(assert(load(__prelude, "=sloth", "t")))
      return (chunk:gsub(".", function(c) return string.format("%02x", c:byte()) end))`) as string;
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    return bytes;
  } finally {
    scratch.global.close();
  }
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

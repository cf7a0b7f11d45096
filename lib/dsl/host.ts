/**
 * The JavaScript side of the Lua modules, run inside the Lua worker. Every
 * function returns `{ ok: true, value }` or `{ ok: false, error }` and never
 * throws: the prelude raises the error in Lua, at the caller's line, so a user
 * never sees a JavaScript stack.
 */
import { formatSize, MAX_TIMEOUT_MS, parseDuration } from "../model/mod.ts";
import {
  closeFile,
  copyFile,
  FileRefused,
  limitText,
  openForWriting,
  overLimit,
  readText,
  TargetError,
  writeAll,
  writeText,
} from "./files.ts";
import { DATA_LIMIT_ENV, DEFAULT_DATA_LIMIT, YAML_SHARE } from "./limits.ts";
import { goroutineHost } from "./goroutine.ts";
import { goModuleMessages } from "./go_modules.ts";

export type HostResult = { ok: true; value?: unknown } | { ok: false; error: string };

export interface ExecRequest {
  cmd: string;
  workdir: string;
  env: Record<string, string>;
  timeoutMs?: number;
}

export interface ExecReply {
  stdout: string;
  stderr: string;
  exit_code: number;
  success: boolean;
  /** Streams that are not UTF-8, one character per byte (the prelude makes them bytes again). */
  binary?: { stdout?: true; stderr?: true };
}

export interface HostContext {
  /** Relative paths in `fs`, `exec` and `net.download` start here. */
  workdir: string;
  /** Variables `os.getenv` sees before the real environment. */
  env: Record<string, string>;
  /** Where `fs.tmpname` makes files. */
  tmpdir?: string;
  /**
   * The one directory files may be touched in (the agent's sandbox): every
   * path is resolved through its symlinks first, since Deno's own permission
   * check looks at the name given, not where a symlink leads.
   */
  confine?: string;
  values: unknown;
  /**
   * Bytes one value may carry between Lua and JavaScript (DEFAULT_DATA_LIMIT when
   * absent): Lua's memory limit does not cover what the host side allocates.
   */
  dataLimit?: number;
  log(level: string, message: string): void;
  exec(request: ExecRequest): Promise<ExecReply>;
  resolveImport(fromChunk: string, path: string): { id: string; name: string; source: string };
}

type Fn = (...args: never[]) => HostResult | Promise<HostResult>;

const NET_TIMEOUT_MS = 30_000;

/**
 * `exec.run` and `net.*` calls of one Lua state in flight at once (Lua coroutines
 * can start many); more wait their turn. Each holds up to its captured output
 * or body in memory, so this bounds them together.
 */
export const MAX_IN_FLIGHT = 8;
/** Characters of one log message; longer ones are passed on in pieces (as a command's lines are). */
const LOG_PIECE = 64 * 1024;

/**
 * A value wasmoon can push: it fails on `null` inside tables, so nulls (JSON's
 * and YAML's) become nil, as they would be in Lua. Changes `value` in place:
 * every value given is fresh (parsed, or copied from a message), and a copy
 * would double the memory a big parse result takes.
 */
export function toLua(value: unknown): unknown {
  if (value === null) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = toLua(value[i]);
    return value;
  }
  if (typeof value === "object" && value.constructor === Object) {
    const record = value as Record<string, unknown>;
    for (const k in record) {
      const v = record[k];
      if (v === null || v === undefined) delete record[k];
      else if (typeof v === "object") record[k] = toLua(v);
    }
    return record;
  }
  return value;
}

export function createHost(ctx: HostContext): Record<string, Fn | unknown> {
  /**
   * An absolute path; in a confined state, the path as the kernel will see it,
   * refused unless it lies inside the confinement. `follow: false` leaves a
   * final symlink as it is (rm, rename, exists act on the link itself).
   */
  const path = (p: unknown, what = "path", follow = true): string => {
    if (typeof p !== "string" || p === "") {
      throw new Error(`expected a ${what} string, got ${show(p)}`);
    }
    const full = p.startsWith("/") ? p : `${ctx.workdir}/${p}`;
    return ctx.confine === undefined ? full : confined(full, ctx.confine, follow);
  };
  // The prelude checks what Lua passes before it crosses; these checks are for what
  // the host makes (file content, bodies, encodings) before Lua gets it.
  const limit = ctx.dataLimit ?? DEFAULT_DATA_LIMIT;
  const yamlLimit = Math.floor(limit / YAML_SHARE);
  const files = { noFollow: ctx.confine !== undefined };
  const slots = new Slots(MAX_IN_FLIGHT);
  const content = (c: unknown): string => {
    if (typeof c === "string") return text(c, "the content", limit);
    if (typeof c === "number") return String(c);
    throw new Error(`expected text to write, got ${show(c)}`);
  };

  return {
    values: toLua(ctx.values ?? {}),
    // On an agent (confined): the master checked the workflow, with its own environment.
    on_agent: ctx.confine !== undefined,
    go_modules: goModuleMessages(),
    data_limit: limit,
    yaml_limit: yamlLimit,
    // The words for the prelude's errors.
    over_limit: (size: number, yaml: boolean) =>
      yaml ? overLimit(size, yamlLimit, yamlLimitText(yamlLimit)) : overLimit(size, limit),
    limit_text: (yaml: boolean) => yaml ? yamlLimitText(yamlLimit) : limitText(limit),
    log: (level: string, message: string) => {
      // The prelude sends pieces of at most 64 KiB; this holds the line for any other caller.
      for (let i = 0; i < message.length || i === 0; i += LOG_PIECE) {
        ctx.log(level, message.slice(i, i + LOG_PIECE));
      }
      return { ok: true };
    },
    getenv: guard((name: unknown) => {
      if (typeof name !== "string") throw new Error(`expected a variable name, got ${show(name)}`);
      if (name in ctx.env) return ctx.env[name];
      try {
        return Deno.env.get(name);
      } catch (error) {
        // A sandboxed worker has no environment: every variable is unset there.
        if (error instanceof Deno.errors.NotCapable) return undefined;
        throw error;
      }
    }),
    resolve_import: guard((from: string, p: string) => ctx.resolveImport(from, p)),
    ...goroutineHost(),

    exec_run: guardAsync(async (cmd: unknown, opts: unknown) => {
      if (typeof cmd !== "string") throw new Error(`expected a command string, got ${show(cmd)}`);
      const o = options(opts, ["workdir", "env", "timeout"]);
      const env: Record<string, string> = { ...ctx.env };
      if (o.env !== undefined) {
        if (!isRecord(o.env)) throw new Error("env must be a table of NAME = value");
        for (const [k, v] of Object.entries(o.env)) env[k] = String(v);
      }
      const timeoutMs = o.timeout === undefined ? undefined : duration(o.timeout);
      const workdir = o.workdir === undefined ? ctx.workdir : path(o.workdir, "workdir");
      return await slots.run(() => ctx.exec({ cmd, workdir, env, timeoutMs }));
    }),

    fs_read: fsGuard((p: unknown) => readText(path(p), limit, files)),
    fs_write: fsGuard((p: unknown, c: unknown) => {
      writeText(path(p), content(c), files);
      return true;
    }),
    fs_append: fsGuard((p: unknown, c: unknown) => {
      writeText(path(p), content(c), { ...files, append: true });
      return true;
    }),
    fs_exists: fsGuard((p: unknown) => {
      try {
        Deno.lstatSync(path(p, "path", false));
        return true;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return false;
        throw error;
      }
    }),
    fs_mkdir: fsGuard((p: unknown) => {
      Deno.mkdirSync(path(p), { recursive: true });
      return true;
    }),
    fs_rm: fsGuard((p: unknown) => {
      Deno.removeSync(path(p, "path", false));
      return true;
    }),
    fs_rm_r: fsGuard((p: unknown) => {
      try {
        Deno.removeSync(path(p, "path", false), { recursive: true });
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      return true;
    }),
    fs_ls: fsGuard((p: unknown) => {
      const names: string[] = [];
      let bytes = 0;
      for (const entry of Deno.readDirSync(path(p ?? "."))) {
        bytes += entry.name.length + 16;
        if (bytes > limit) {
          throw new FileRefused(`has more names than fit in ${limitText(limit)}`, " ");
        }
        names.push(entry.name);
      }
      return names.sort();
    }),
    fs_size: fsGuard((p: unknown) => Deno.statSync(path(p)).size),
    fs_copy: fsGuard((from: unknown, to: unknown) => {
      copyFile(path(from), path(to), files);
      return true;
    }),
    fs_rename: fsGuard((from: unknown, to: unknown) => {
      Deno.renameSync(path(from, "path", false), path(to, "path", false));
      return true;
    }),
    fs_tmpname: fsGuard(() => Deno.makeTempFileSync({ prefix: "sloth-", dir: ctx.tmpdir })),

    data_parse_json: guard((input: unknown) => {
      if (typeof input !== "string") throw new Error(`expected JSON text, got ${show(input)}`);
      text(input, "the input", limit);
      try {
        return JSON.parse(input);
      } catch (error) {
        throw new Error(`invalid JSON: ${(error as Error).message}`);
      }
    }),
    data_to_json: guard((value: unknown) =>
      text(JSON.stringify(value ?? null), "the JSON text", limit)
    ),
    // The YAML library loads on first use: most workflows never need it.
    data_parse_yaml: guardAsync(async (input: unknown) => {
      if (typeof input !== "string") throw new Error(`expected YAML text, got ${show(input)}`);
      if (input.length > yamlLimit) {
        throw new Error(
          `the input is ${overLimit(input.length, yamlLimit, yamlLimitText(yamlLimit))}`,
        );
      }
      const { parse } = await import("yaml");
      try {
        return parse(input);
      } catch (error) {
        throw new Error(`invalid YAML: ${(error as Error).message.split("\n")[0]}`);
      }
    }),
    data_to_yaml: guardAsync(async (value: unknown) => {
      const yaml = (await import("yaml")).stringify(value ?? null);
      if (yaml.length > yamlLimit) {
        throw new Error(
          `the YAML text is ${overLimit(yaml.length, yamlLimit, yamlLimitText(yamlLimit))}`,
        );
      }
      return yaml;
    }),

    net_http_get: guardAsync((url: unknown, opts: unknown) =>
      slots.run(() => request("GET", url, undefined, opts, limit))
    ),
    net_http_post: guardAsync((url: unknown, body: unknown, opts: unknown) =>
      slots.run(() => request("POST", url, body, opts, limit))
    ),
    // Streamed to the file: a download is limited by the disk, not by memory.
    net_download: guardAsync((url: unknown, p: unknown, opts: unknown) =>
      slots.run(async () => {
        const target = path(p);
        const o = options(opts, ["headers", "timeout"]);
        const response = await fetchWithTimeout(checkUrl(url), { headers: headers(o.headers) }, o);
        if (!response.ok) {
          await response.body?.cancel();
          throw new Error(`${url} answered ${response.status} ${response.statusText}`);
        }
        let fd: number;
        try {
          fd = openForWriting(target, files);
        } catch (error) {
          await response.body?.cancel();
          throw fsError(error, p);
        }
        let bytes = 0;
        try {
          for await (const chunk of response.body ?? []) {
            writeAll(fd, chunk);
            bytes += chunk.length;
          }
        } catch (error) {
          // Not half a file where a whole one was asked for.
          closeFile(fd);
          Deno.removeSync(target);
          throw error;
        }
        closeFile(fd);
        return { status: response.status, bytes, path: target };
      })
    ),
  };
}

/** `text` if it is at most `limit` characters (UTF-16: at most its UTF-8 bytes); else an error. */
function text(value: string, what: string, limit: number): string {
  if (value.length > limit) throw new Error(`${what} is ${overLimit(value.length, limit)}`);
  return value;
}

function yamlLimitText(yamlLimit: number): string {
  return `the ${formatSize(yamlLimit)} limit for YAML (1/${YAML_SHARE} of ${DATA_LIMIT_ENV})`;
}

/** At most `size` calls at once; the others wait, in order. */
class Slots {
  #free: number;
  #waiting: (() => void)[] = [];
  constructor(size: number) {
    this.#free = size;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/** A response body as text, refused as soon as it is bigger than `limit` bytes. */
async function bodyText(response: Response, url: string, limit: number): Promise<string> {
  const tooBig = () =>
    new Error(
      `the response from ${url} is more than ${limitText(limit)}; ` +
        "net.download saves big responses to a file",
    );
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > limit) {
    await response.body?.cancel();
    throw tooBig();
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.length;
    if (size > limit) {
      // Leaving the loop early cancels the body.
      throw tooBig();
    }
    parts.push(chunk);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return new TextDecoder().decode(all);
}

async function request(
  method: string,
  url: unknown,
  body: unknown,
  opts: unknown,
  limit: number,
) {
  const o = options(opts, ["headers", "timeout"]);
  const h = headers(o.headers);
  let payload: string | undefined;
  if (typeof body === "string") payload = body;
  else if (body !== undefined && body !== null) {
    payload = JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === "content-type")) {
      h["content-type"] = "application/json";
    }
  }
  const response = await fetchWithTimeout(checkUrl(url), { method, headers: h, body: payload }, o);
  return {
    status: response.status,
    ok: response.ok,
    body: await bodyText(response, String(url), limit),
    headers: Object.fromEntries(response.headers.entries()),
  };
}

async function fetchWithTimeout(url: string, init: RequestInit, o: Record<string, unknown>) {
  const ms = o.timeout === undefined ? NET_TIMEOUT_MS : duration(o.timeout);
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(ms) });
  } catch (error) {
    if (error instanceof DOMException && error.name === "TimeoutError") {
      throw new Error(`${url} did not answer within ${ms}ms`);
    }
    if (error instanceof Deno.errors.NotCapable) {
      throw new Error(`${url}: tasks on this agent have no network (--task-network off)`);
    }
    throw new Error(`${url}: ${(error as Error).message}`);
  }
}

function checkUrl(url: unknown): string {
  if (typeof url !== "string" || !/^https?:\/\//.test(url)) {
    throw new Error(`expected an http:// or https:// URL, got ${show(url)}`);
  }
  return url;
}

function headers(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (!isRecord(value)) throw new Error("headers must be a table of name = value");
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, String(v)]));
}

function duration(value: unknown): number {
  const ms = typeof value === "string" || typeof value === "number"
    ? parseDuration(value)
    : undefined;
  if (ms === undefined) throw new Error(`timeout must be like "30s" or a number of seconds`);
  if (ms > MAX_TIMEOUT_MS) throw new Error("timeout is longer than the longest timeout, 24 days");
  return ms;
}

function options(value: unknown, known: string[]): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) throw new Error(`options must be a table, got ${show(value)}`);
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new Error(`unknown option "${key}" (known: ${known.join(", ")})`);
    }
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (value === undefined || value === null) return "nil";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object") return "a table";
  return `${typeof value} ${String(value)}`;
}

const fsReasons: [new (...args: never[]) => Error, string][] = [
  [Deno.errors.NotFound, "no such file or directory"],
  [Deno.errors.PermissionDenied, "permission denied"],
  [Deno.errors.AlreadyExists, "already exists"],
  [Deno.errors.IsADirectory, "is a directory"],
  [Deno.errors.NotADirectory, "not a directory"],
  [Deno.errors.NotCapable, "outside what this task may touch (the agent's sandbox)"],
];

/** node:fs errors (files.ts) by their code. */
const codeReasons: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EEXIST: "already exists",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  // O_NOFOLLOW on a path just resolved: a symlink was swapped in meanwhile.
  ELOOP: "is a symbolic link that changed while it was opened",
  // O_NONBLOCK, writing: a FIFO nobody reads (or a device that is not there).
  ENXIO: "not a regular file",
};

/** A file system error as `path: reason`, with the path as the user wrote it. */
function fsError(error: unknown, path: unknown): Error {
  if (error instanceof FileRefused) {
    return new Error(`${String(path)}${error.joiner}${error.reason}`);
  }
  for (const [type, reason] of fsReasons) {
    if (error instanceof type) return new Error(`${String(path)}: ${reason}`);
  }
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string" && code in codeReasons) {
    return new Error(`${String(path)}: ${codeReasons[code]}`);
  }
  return error instanceof Error ? error : new Error(String(error));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** `guard` for fs functions: errors name the path the user gave. */
function fsGuard<A extends unknown[]>(fn: (...args: A) => unknown) {
  return guard((...args: A) => {
    try {
      return fn(...args);
    } catch (error) {
      if (error instanceof TargetError) throw fsError(error.cause, args[1]);
      throw fsError(error, args[0]);
    }
  });
}

function guard<A extends unknown[]>(fn: (...args: A) => unknown) {
  return (...args: A): HostResult => {
    try {
      return { ok: true, value: toLua(fn(...args)) };
    } catch (error) {
      return { ok: false, error: message(error) };
    }
  };
}

function guardAsync<A extends unknown[]>(fn: (...args: A) => Promise<unknown>) {
  return async (...args: A): Promise<HostResult> => {
    try {
      return { ok: true, value: toLua(await fn(...args)) };
    } catch (error) {
      return { ok: false, error: message(error) };
    }
  };
}

/** See HostContext.confine. */
function confined(full: string, root: string, follow: boolean): string {
  const parts = full.split("/").filter((part) => part !== "" && part !== ".");
  const name = follow ? undefined : parts.pop();
  // The deepest ancestor that exists, resolved; what is below it does not exist yet.
  let rest: string[] = [];
  let real: string | undefined;
  while (real === undefined) {
    const candidate = "/" + parts.join("/");
    try {
      real = Deno.realPathSync(candidate);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) || parts.length === 0) throw outside(full);
      // A link whose target is not there: outside if it points outside (in an agent's
      // confined worker process, the host's files are not there at all).
      if (danglesOutside(candidate, root)) throw outside(full);
      rest = [parts.pop()!, ...rest];
    }
  }
  if (rest.includes("..")) throw outside(full);
  const resolved = [real === "/" ? "" : real, ...rest, ...(name === undefined ? [] : [name])].join(
    "/",
  );
  if (name === ".." || (resolved !== root && !resolved.startsWith(`${root}/`))) throw outside(full);
  return resolved;
}

function danglesOutside(path: string, root: string): boolean {
  let target: string;
  try {
    target = Deno.readLinkSync(path);
  } catch {
    return false; // Not a link: it simply does not exist.
  }
  const base = target.startsWith("/") ? "" : path.slice(0, path.lastIndexOf("/"));
  const parts: string[] = [];
  for (const part of `${base}/${target}`.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  const resolved = "/" + parts.join("/");
  return resolved !== root && !resolved.startsWith(`${root}/`);
}

function outside(path: string): Error {
  return new Deno.errors.NotCapable(`${path} is outside the job's directory`);
}

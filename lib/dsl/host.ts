/**
 * The JavaScript side of the Lua modules, run inside the Lua worker. Every
 * function returns `{ ok: true, value }` or `{ ok: false, error }` and never
 * throws: the prelude raises the error in Lua, at the caller's line, so a user
 * never sees a JavaScript stack.
 */
import { parseDuration } from "../model/mod.ts";

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
  log(level: string, message: string): void;
  exec(request: ExecRequest): Promise<ExecReply>;
  resolveImport(fromChunk: string, path: string): { id: string; name: string; source: string };
}

type Fn = (...args: never[]) => HostResult | Promise<HostResult>;

const NET_TIMEOUT_MS = 30_000;

/**
 * A value wasmoon can push: it fails on `null` inside tables, so nulls (JSON's
 * and YAML's) become nil, as they would be in Lua.
 */
export function toLua(value: unknown): unknown {
  if (value === null) return undefined;
  if (Array.isArray(value)) return value.map(toLua);
  if (typeof value === "object" && value.constructor === Object) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v !== null && v !== undefined) out[k] = toLua(v);
    }
    return out;
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
  const content = (c: unknown): string => {
    if (typeof c === "string") return c;
    if (typeof c === "number") return String(c);
    throw new Error(`expected text to write, got ${show(c)}`);
  };

  return {
    values: toLua(ctx.values ?? {}),
    log: (level: string, message: string) => {
      ctx.log(level, message);
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
      return await ctx.exec({ cmd, workdir, env, timeoutMs });
    }),

    fs_read: fsGuard((p: unknown) => Deno.readTextFileSync(path(p))),
    fs_write: fsGuard((p: unknown, c: unknown) => {
      Deno.writeTextFileSync(path(p), content(c));
      return true;
    }),
    fs_append: fsGuard((p: unknown, c: unknown) => {
      Deno.writeTextFileSync(path(p), content(c), { append: true });
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
      const names = [...Deno.readDirSync(path(p ?? "."))].map((entry) => entry.name);
      return names.sort();
    }),
    fs_size: fsGuard((p: unknown) => Deno.statSync(path(p)).size),
    fs_copy: fsGuard((from: unknown, to: unknown) => {
      Deno.copyFileSync(path(from), path(to));
      return true;
    }),
    fs_rename: fsGuard((from: unknown, to: unknown) => {
      Deno.renameSync(path(from, "path", false), path(to, "path", false));
      return true;
    }),
    fs_tmpname: fsGuard(() => Deno.makeTempFileSync({ prefix: "sloth-", dir: ctx.tmpdir })),

    data_parse_json: guard((text: unknown) => {
      if (typeof text !== "string") throw new Error(`expected JSON text, got ${show(text)}`);
      try {
        return JSON.parse(text);
      } catch (error) {
        throw new Error(`invalid JSON: ${(error as Error).message}`);
      }
    }),
    data_to_json: guard((value: unknown) => JSON.stringify(value ?? null)),
    // The YAML library loads on first use: most workflows never need it.
    data_parse_yaml: guardAsync(async (text: unknown) => {
      if (typeof text !== "string") throw new Error(`expected YAML text, got ${show(text)}`);
      const { parse } = await import("yaml");
      try {
        return parse(text);
      } catch (error) {
        throw new Error(`invalid YAML: ${(error as Error).message.split("\n")[0]}`);
      }
    }),
    data_to_yaml: guardAsync(async (value: unknown) =>
      (await import("yaml")).stringify(value ?? null)
    ),

    net_http_get: guardAsync((url: unknown, opts: unknown) => request("GET", url, undefined, opts)),
    net_http_post: guardAsync((url: unknown, body: unknown, opts: unknown) =>
      request("POST", url, body, opts)
    ),
    net_download: guardAsync(async (url: unknown, p: unknown, opts: unknown) => {
      const target = path(p);
      const o = options(opts, ["headers", "timeout"]);
      const response = await fetchWithTimeout(checkUrl(url), { headers: headers(o.headers) }, o);
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`${url} answered ${response.status} ${response.statusText}`);
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      Deno.writeFileSync(target, bytes);
      return { status: response.status, bytes: bytes.length, path: target };
    }),
  };
}

async function request(method: string, url: unknown, body: unknown, opts: unknown) {
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
  const text = await response.text();
  return {
    status: response.status,
    ok: response.ok,
    body: text,
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

/** A file system error as `path: reason`, with the path as the user wrote it. */
function fsError(error: unknown, path: unknown): Error {
  for (const [type, reason] of fsReasons) {
    if (error instanceof type) return new Error(`${String(path)}: ${reason}`);
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

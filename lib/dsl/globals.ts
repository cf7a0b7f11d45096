/**
 * Globals that nothing defines, found before a workflow runs: Lua says
 * "attempt to index a nil value" only when the line runs, half way through a
 * run. Each loaded file is parsed once (luaparse) and walked with its scopes;
 * a name read where no local of that name is in scope is a global read. It is
 * fine when Lua or sloth-runner provides it, when a loaded file assigns it, or
 * when the state had it after the main chunk ran; a module of the Go
 * sloth-runner (go_modules.ts) is named with what to use instead.
 *
 * What this cannot see (a global made by `load`, or by `_G[name]` with a name
 * computed at run time) is declared by assigning it anywhere: `name = nil`.
 */
import luaparse from "luaparse";
import { closest, editDistance } from "../errors.ts";
import { goModuleMessage } from "./go_modules.ts";
import { dirname, resolvePath } from "./source.ts";

/** Lua 5.4's own globals. */
export const LUA_GLOBALS: readonly string[] = [
  "_G",
  "_VERSION",
  "assert",
  "collectgarbage",
  "coroutine",
  "debug",
  "dofile",
  "error",
  "getmetatable",
  "io",
  "ipairs",
  "load",
  "loadfile",
  "math",
  "next",
  "os",
  "package",
  "pairs",
  "pcall",
  "print",
  "rawequal",
  "rawget",
  "rawlen",
  "rawset",
  "require",
  "select",
  "setmetatable",
  "string",
  "table",
  "tonumber",
  "tostring",
  "type",
  "utf8",
  "warn",
  "xpcall",
];

/**
 * What sloth-runner gives every workflow (prelude.ts), and the builder DSL's
 * names (`task`, `workflow`) and `goroutine`, which are built in as well.
 */
export const SLOTH_GLOBALS: readonly string[] = [
  "TaskDefinitions",
  "data",
  "exec",
  "fs",
  "goroutine",
  "import",
  "log",
  "net",
  "task",
  "unpack",
  "values",
  "workflow",
];

/** A name read where no local of that name is in scope. */
export interface GlobalRead {
  name: string;
  line: number;
  /** Inside a function body (task code), not the file's top level. */
  inFunction: boolean;
}

/** A `require("x")` or `import("x")` with a literal argument. */
export interface LuaLoad {
  kind: "require" | "import";
  path: string;
  line: number;
}

export interface LuaScan {
  /** Whether reads and loads carry their line (else 0: see `scanLua`). */
  lines: boolean;
  reads: GlobalRead[];
  /** Globals the file assigns: `x = 1`, `function x()`, `_G.x = 1`, `rawset(_G, "x", 1)`. */
  assigned: Set<string>;
  loads: LuaLoad[];
  /** `setmetatable(_G, ...)`: any name may be a global. */
  dynamic: boolean;
}

/** The parts of luaparse's syntax tree that the walk looks at. */
interface Node {
  type: string;
  loc?: { start: { line: number } };
  name?: string;
  value?: unknown;
  body?: Node[];
  clauses?: Node[];
  condition?: Node;
  variables?: Node[];
  variable?: Node;
  init?: Node[];
  start?: Node;
  end?: Node;
  step?: Node | null;
  iterators?: Node[];
  identifier?: Node | null;
  isLocal?: boolean;
  parameters?: Node[];
  expression?: Node;
  arguments?: Node[] | Node;
  argument?: Node;
  base?: Node;
  index?: Node;
  indexer?: "." | ":";
  fields?: Node[];
  key?: Node;
  left?: Node;
  right?: Node;
}

const parser = luaparse as unknown as {
  parse(code: string, options: Record<string, unknown>): Node;
};

/** Lua 5.4's `<const>` and `<close>`, which luaparse (5.3 at most) does not read. */
const ATTRIBUTE = /<\s*(?:const|close)\s*>/g;

/**
 * The global reads and assignments of one file. Throws luaparse's error (with
 * `line`) for what it cannot parse; Lua may still accept it.
 *
 * Without `lines`, every line is 0: luaparse takes about half the time then
 * (~18 ms instead of ~35 for 2,000 lines, cold), and most files have nothing to
 * report. A file that has is scanned again with them; the reads come in the same order.
 */
export function scanLua(source: string, options: { lines?: boolean } = {}): LuaScan {
  const lines = options.lines ?? true;
  // An attribute only makes a local constant: blanked, the lines and columns stay.
  const text = source.includes("<") ? source.replace(ATTRIBUTE, blank) : source;
  const chunk = parser.parse(text, {
    luaVersion: "5.3",
    locations: lines,
    comments: false,
    scope: false,
    // Keeps string values (require's argument); bytes over 0x7f are never a name.
    encodingMode: "pseudo-latin1",
  });
  const walker = new Walker(lines);
  walker.block(chunk.body ?? [], new Scope(undefined, false));
  return walker.scan;
}

function blank(match: string): string {
  return match.replace(/[^\n]/g, " ");
}

class Scope {
  readonly names = new Set<string>();
  constructor(readonly parent: Scope | undefined, readonly inFunction: boolean) {}

  has(name: string): boolean {
    return this.names.has(name) || (this.parent?.has(name) ?? false);
  }
}

class Walker {
  readonly scan: LuaScan;
  constructor(lines: boolean) {
    this.scan = { lines, reads: [], assigned: new Set(), loads: [], dynamic: false };
  }

  block(statements: Node[], scope: Scope): void {
    for (const statement of statements) this.statement(statement, scope);
  }

  statement(node: Node, scope: Scope): void {
    switch (node.type) {
      case "LocalStatement":
        // `local x = x` reads the outer x: the new names start after the statement.
        this.expressions(node.init, scope);
        for (const v of node.variables ?? []) scope.names.add(v.name!);
        break;
      case "AssignmentStatement":
        this.expressions(node.init, scope);
        for (const target of node.variables ?? []) this.assignTo(target, scope);
        break;
      case "CallStatement":
        this.expression(node.expression!, scope);
        break;
      case "FunctionDeclaration":
        this.functionDeclaration(node, scope);
        break;
      case "ReturnStatement":
        this.expressions(node.arguments as Node[] | undefined, scope);
        break;
      case "IfStatement":
        for (const clause of node.clauses ?? []) {
          if (clause.condition) this.expression(clause.condition, scope);
          this.block(clause.body ?? [], new Scope(scope, scope.inFunction));
        }
        break;
      case "WhileStatement":
        this.expression(node.condition!, scope);
        this.block(node.body ?? [], new Scope(scope, scope.inFunction));
        break;
      case "DoStatement":
        this.block(node.body ?? [], new Scope(scope, scope.inFunction));
        break;
      case "RepeatStatement": {
        // `until` sees the body's locals.
        const inner = new Scope(scope, scope.inFunction);
        this.block(node.body ?? [], inner);
        this.expression(node.condition!, inner);
        break;
      }
      case "ForNumericStatement": {
        this.expression(node.start!, scope);
        this.expression(node.end!, scope);
        if (node.step) this.expression(node.step, scope);
        const inner = new Scope(scope, scope.inFunction);
        inner.names.add(node.variable!.name!);
        this.block(node.body ?? [], inner);
        break;
      }
      case "ForGenericStatement": {
        this.expressions(node.iterators, scope);
        const inner = new Scope(scope, scope.inFunction);
        for (const v of node.variables ?? []) inner.names.add(v.name!);
        this.block(node.body ?? [], inner);
        break;
      }
        // LabelStatement, GotoStatement, BreakStatement: no names.
    }
  }

  functionDeclaration(node: Node, scope: Scope): void {
    const id = node.identifier;
    const params: string[] = [];
    if (id && node.isLocal) {
      // `local function f` sees itself (a recursive call is not a global read).
      scope.names.add(id.name!);
    } else if (id?.type === "Identifier") {
      this.assignTo(id, scope);
    } else if (id) {
      // function a.b.c() / a.b:c(): reads a; a method gets `self`.
      this.expression(id.base!, scope);
      if (id.indexer === ":") params.push("self");
    }
    this.functionBody(node, scope, params);
  }

  functionBody(node: Node, scope: Scope, implicit: string[] = []): void {
    const inner = new Scope(scope, true);
    for (const name of implicit) inner.names.add(name);
    for (const p of node.parameters ?? []) if (p.type === "Identifier") inner.names.add(p.name!);
    this.block(node.body ?? [], inner);
  }

  assignTo(target: Node, scope: Scope): void {
    if (target.type === "Identifier") {
      if (!scope.has(target.name!) && !scope.has("_ENV")) this.scan.assigned.add(target.name!);
      return;
    }
    // _G.x = 1, _G["x"] = 1, _ENV.x = 1: a global named x.
    const key = globalKey(target, scope);
    if (key !== undefined) this.scan.assigned.add(key);
    this.expression(target, scope);
  }

  expressions(nodes: Node[] | undefined, scope: Scope): void {
    for (const node of nodes ?? []) this.expression(node, scope);
  }

  expression(node: Node, scope: Scope): void {
    switch (node.type) {
      case "Identifier":
        this.read(node, scope);
        break;
      case "MemberExpression":
        // x.y reads x only.
        this.expression(node.base!, scope);
        break;
      case "IndexExpression":
        this.expression(node.base!, scope);
        this.expression(node.index!, scope);
        break;
      case "CallExpression":
      case "TableCallExpression":
      case "StringCallExpression": {
        this.expression(node.base!, scope);
        const args = node.type === "StringCallExpression"
          ? [node.argument!]
          : node.type === "TableCallExpression"
          ? [node.arguments as Node]
          : node.arguments as Node[];
        this.call(node, args, scope);
        this.expressions(args, scope);
        break;
      }
      case "FunctionDeclaration":
        this.functionBody(node, scope);
        break;
      case "TableConstructorExpression":
        for (const field of node.fields ?? []) {
          // { a = 1 }: `a` is a key, not a read.
          if (field.type === "TableKey") this.expression(field.key!, scope);
          this.expression(field.value as Node, scope);
        }
        break;
      case "BinaryExpression":
      case "LogicalExpression":
        this.expression(node.left!, scope);
        this.expression(node.right!, scope);
        break;
      case "UnaryExpression":
        this.expression(node.argument!, scope);
        break;
        // Literals and `...`: no names.
    }
  }

  read(node: Node, scope: Scope): void {
    const name = node.name!;
    // Under a local _ENV, a free name is a field of that table, not a global.
    if (scope.has(name) || name === "_ENV" || scope.has("_ENV")) return;
    this.scan.reads.push({ name, line: node.loc?.start.line ?? 0, inFunction: scope.inFunction });
  }

  /** require("x") and import("x"); rawset(_G, "x", v); setmetatable(_G, mt). */
  call(node: Node, args: Node[], scope: Scope): void {
    const base = node.base!;
    if (base.type !== "Identifier" || scope.has(base.name!)) return;
    const first = args[0];
    const literal = first?.type === "StringLiteral" && typeof first.value === "string"
      ? first.value
      : undefined;
    switch (base.name) {
      case "require":
      case "import":
        if (literal !== undefined) {
          this.scan.loads.push({ kind: base.name, path: literal, line: base.loc?.start.line ?? 0 });
        }
        break;
      case "rawset": {
        const key = args[1];
        if (
          isGlobalTable(first, scope) && key?.type === "StringLiteral" &&
          typeof key.value === "string"
        ) {
          this.scan.assigned.add(key.value);
        }
        break;
      }
      case "setmetatable":
        if (isGlobalTable(first, scope)) this.scan.dynamic = true;
    }
  }
}

/** `_G` or `_ENV` where it is the global table (no local of that name). */
function isGlobalTable(node: Node | undefined, scope: Scope): boolean {
  return node?.type === "Identifier" && (node.name === "_G" || node.name === "_ENV") &&
    !scope.has(node.name);
}

/** The global named by `_G.x` or `_G["x"]`. */
function globalKey(target: Node, scope: Scope): string | undefined {
  if (!isGlobalTable(target.base, scope)) return undefined;
  if (target.type === "MemberExpression") return target.identifier?.name;
  const index = target.index;
  if (index?.type === "StringLiteral" && typeof index.value === "string") return index.value;
  return undefined;
}

/** A loaded file: where it is, the name errors show, and its text as Lua read it. */
export interface LuaFile {
  path: string;
  name: string;
  text: string;
}

export interface GlobalsReport {
  /** One line for each use of a module of the Go sloth-runner: a load error. */
  modules: string[];
  /** One line for each global that task code reads and nothing defines. */
  unknown: string[];
  /** Files the check could not read (their parser's error), said as warnings. */
  notes: string[];
}

/** A file's scan, or why its parser stopped (`line`, luaparse's message). */
export type FileScan =
  | { file: LuaFile; scan: LuaScan }
  | { file: LuaFile; error: { line?: number; message: string } };

/** `scanLua` of one file, without lines, its parse error kept as a value. */
export function scanFile(file: LuaFile): FileScan {
  try {
    return { file, scan: scanLua(file.text, { lines: false }) };
  } catch (error) {
    const { line, message } = error as { line?: number; message: string };
    return { file, error: { line, message: String(message).replace(/^\[\d+:\d+\] /, "") } };
  }
}

export interface CheckOptions {
  /** The globals the Lua state had after the main chunk ran. */
  defined: Iterable<string>;
  /** Files already scanned (the main file, while Lua ran it), by path. */
  scans?: FileScan[];
  /**
   * A file that a `require`/`import` in task code names, read as the loader
   * would read it; `undefined` when there is none. Such files are checked too,
   * and what they assign counts as defined.
   */
  read(path: string): LuaFile | undefined;
}

/** Modules that `require` gives without a file (prelude.ts, BUILTIN_MODULES). */
const BUILTIN_MODULES = new Set(["log", "exec", "fs", "data", "net"]);

/** The file `require(name)` loads, relative to the requiring file (as the prelude finds it). */
function requirePath(name: string): string {
  if (/\.(lua|sloth)$/.test(name)) return name;
  return (name.includes("/") ? name : name.replaceAll(".", "/")) + ".lua";
}

/**
 * `. Did you mean "exec"?` for a name one slip from a known global (two in a long
 * name), or one it begins: errors.ts's `closest`, held tighter, since a short
 * name of the user's own (`foo`) is two edits from many globals (`io`, `fs`).
 */
function guess(name: string, candidates: string[]): string {
  if (name.length < 3) return "";
  const match = closest(name, candidates);
  if (match === undefined) return "";
  const [a, b] = [name.toLowerCase(), match.toLowerCase()];
  const near = b.startsWith(a) || editDistance(a, b) <= Math.max(1, Math.floor(a.length / 4));
  return near ? `. Did you mean "${match}"?` : "";
}

/** Checks the workflow's files (the main file first) for globals nothing defines. */
export function checkGlobals(files: LuaFile[], options: CheckOptions): GlobalsReport {
  const report: GlobalsReport = { modules: [], unknown: [], notes: [] };
  const known = new Map(options.scans?.map((s) => [s.file.path, s]));
  const scanned: { file: LuaFile; scan: LuaScan; goRequires: LuaLoad[] }[] = [];
  const seen = new Set(files.map((f) => f.path));
  const queue = [...files];
  const assigned = new Set<string>();
  let complete = true;
  let dynamic = false;
  for (let file = queue.shift(); file; file = queue.shift()) {
    const done = known.get(file.path);
    const result = done && done.file.text === file.text ? done : scanFile(file);
    if ("error" in result) {
      report.notes.push(
        `${file.name}:${result.error.line ?? 1}: not checked for globals that nothing defines ` +
          `(the check's Lua parser stops here: ${result.error.message})`,
      );
      complete = false;
      continue;
    }
    const { scan } = result;
    const goRequires: LuaLoad[] = [];
    scanned.push({ file, scan, goRequires });
    for (const name of scan.assigned) assigned.add(name);
    dynamic ||= scan.dynamic;
    for (const load of scan.loads) {
      if (load.kind === "require" && BUILTIN_MODULES.has(load.path)) continue;
      const path = resolvePath(
        dirname(file.path),
        load.kind === "require" ? requirePath(load.path) : load.path,
      );
      if (seen.has(path)) continue;
      const found = options.read(path);
      if (found) {
        seen.add(path);
        queue.push(found);
      } else if (load.kind === "require" && goModuleMessage(load.path)) {
        goRequires.push(load);
      }
    }
  }

  const defined = new Set([...LUA_GLOBALS, ...SLOTH_GLOBALS, ...assigned, ...options.defined]);
  const candidates = [...defined].filter((name) => !name.startsWith("__"));
  const reportUnknown = complete && !dynamic;
  const reported = (read: GlobalRead) =>
    !defined.has(read.name) && (goModuleMessage(read.name) !== undefined ||
      (read.inFunction && reportUnknown));
  for (const entry of scanned) {
    let { scan } = entry;
    if (!entry.goRequires.length && !scan.reads.some(reported)) continue;
    // Something to say: now the lines (the same reads and loads, in the same order).
    if (!scan.lines) scan = scanLua(entry.file.text, { lines: true });
    const name = entry.file.name;
    const required = new Set(entry.goRequires.map((load) => load.path));
    for (const load of scan.loads) {
      if (load.kind === "require" && required.delete(load.path)) {
        report.modules.push(`${name}:${load.line}: ${goModuleMessage(load.path)}`);
      }
    }
    const said = new Set<string>();
    for (const read of scan.reads) {
      if (said.has(read.name) || !reported(read)) continue;
      said.add(read.name);
      const module = goModuleMessage(read.name);
      report[module ? "modules" : "unknown"].push(
        module ? `${name}:${read.line}: ${module}` : (
          `${name}:${read.line}: task code reads global "${read.name}", which nothing defines` +
          guess(read.name, candidates)
        ),
      );
    }
  }
  return report;
}

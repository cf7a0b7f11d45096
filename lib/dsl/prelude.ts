/**
 * Lua code run in every fresh Lua state before the workflow. It turns the host
 * functions (which return `{ ok, value | error }` and never throw) into the Lua
 * modules users see, raising errors at the caller's `file:line`, and it walks
 * `TaskDefinitions` into plain data, keeping the functions it finds in a registry
 * so they can be called later by `group`, `task` and field name.
 */
import { GOROUTINE_LUA } from "./goroutine.ts";

export const PRELUDE = String.raw`
local H = __sloth_host
__sloth_host = nil
local getinfo = debug.getinfo
local getlocal = debug.getlocal
local base_load = load

-- The file:line of the nearest workflow code on the stack (the prelude is "=sloth").
local function caller()
  for level = 2, 30 do
    local info = getinfo(level, "Sl")
    if info == nil then return "" end
    if info.source:sub(1, 1) == "@" and info.currentline > 0 then
      return info.source:sub(2) .. ":" .. info.currentline .. ": "
    end
  end
  return ""
end

local function unwrap(name, r)
  if r.ok then return r.value end
  error(caller() .. name .. ": " .. tostring(r.error), 0)
end

-- Size limits ----------------------------------------------------------------
-- What crosses to the host is copied into JavaScript memory, which Lua's own
-- memory limit does not cover: each value is measured here, before it crosses.

local LIMIT, YAML_LIMIT = H.data_limit, H.yaml_limit
-- What a table costs beside its content: what it takes as a JavaScript object.
local TABLE_COST = 32
local OVER, CYCLE = {}, {}

-- Bytes of its strings and keys, 8 for other values, TABLE_COST for a table;
-- stops as soon as the total passes limit (then returns nil, OVER), or at a
-- table inside itself (nil, CYCLE). Raw iteration: a __pairs cannot hide content.
local function measure(value, limit)
  local total, open = 0, {}
  local function walk(v)
    local kind = type(v)
    if kind == "string" then
      total = total + #v + 2
    elseif kind == "table" then
      if open[v] then error(CYCLE, 0) end
      open[v] = true
      total = total + TABLE_COST
      for k, x in next, v do
        total = total + (type(k) == "string" and #k + 3 or 8)
        if total > limit then error(OVER, 0) end
        walk(x)
      end
      open[v] = nil
    else
      total = total + 8
    end
    if total > limit then error(OVER, 0) end
  end
  local ok, e = pcall(walk, value)
  if ok then return total end
  if e == OVER or e == CYCLE then return nil, e end
  error(e, 0)
end

-- nil if value may cross to the host; else why not ("the input is 150 MiB, more than ...").
local function too_big(value, what, yaml)
  local limit = yaml and YAML_LIMIT or LIMIT
  local kind = type(value)
  if kind == "string" and #value > limit then
    return what .. " is " .. H.over_limit(#value, yaml == true)
  elseif kind == "table" then
    local _, why = measure(value, limit)
    if why == CYCLE then return what .. " is a table that contains itself" end
    if why == OVER then
      return what .. " is more than " .. H.limit_text(yaml == true) ..
        "; a table counts its strings and keys, 8 bytes for each other value and 32 for each table"
    end
  end
  return nil
end

-- Names of the arguments, for the errors above; "argument N" for the others.
local ARGS = {
  ["data.parse_json"] = { "the input" },
  ["data.parse_yaml"] = { "the input" },
  ["data.to_json"] = { "the value" },
  ["data.to_yaml"] = { "the value" },
  ["exec.run"] = { "the command", "the options" },
  ["fs.write"] = { "the path", "the content" },
  ["fs.append"] = { "the path", "the content" },
  ["net.http_get"] = { "the URL", "the options" },
  ["net.http_post"] = { "the URL", "the body", "the options" },
  ["net.download"] = { "the URL", "the path", "the options" },
}
local YAML = { ["data.parse_yaml"] = true, ["data.to_yaml"] = true }

local function check(name, ...)
  local names, yaml = ARGS[name] or {}, YAML[name]
  for i = 1, select("#", ...) do
    local why = too_big((select(i, ...)), names[i] or "argument " .. i, yaml)
    if why then error(caller() .. name .. ": " .. why, 0) end
  end
end

-- A builder task's this.workdir (the Go tool's object) is its path wherever a path
-- goes: an argument, or a value of an options table (exec.run(cmd, { workdir = ... })).
local WORKDIR_META = { __name = "workdir" }
local function is_workdir(v) return type(v) == "table" and getmetatable(v) == WORKDIR_META end
local function as_path(v)
  if type(v) ~= "table" then return v end
  if is_workdir(v) then return rawget(v, "path") end
  for _, x in next, v do
    if is_workdir(x) then
      local copy = {}
      for k, y in next, v do copy[k] = is_workdir(y) and rawget(y, "path") or y end
      return copy
    end
  end
  return v
end
local function as_paths(...)
  local n = select("#", ...)
  if n == 1 then return as_path((...)) end
  local args = table.pack(...)
  for i = 1, n do args[i] = as_path(args[i]) end
  return table.unpack(args, 1, n)
end

-- Goroutines (goroutine.ts): every blocking built-in waits through go.await.
local go = ${GOROUTINE_LUA}(H, caller)

local function sync(name, fn)
  return function(...)
    check(name, ...)
    local value = unwrap(name, fn(as_paths(...)))
    return value
  end
end

local function async(name, fn)
  return function(...)
    check(name, ...)
    local value = unwrap(name, go.await(fn(as_paths(...))))
    return value
  end
end

local function text(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  return table.concat(parts, " ", 1, parts.n)
end

-- Log lines ------------------------------------------------------------------
-- Everything Lua prints goes to the task's log (the master's terminal), never to
-- the process's own output: on an agent that is the agent's log.

-- A message crosses in pieces of at most this many bytes, cut between UTF-8 characters.
local PIECE = 65536
local function emit(level, s)
  local n, i = #s, 1
  if n <= PIECE then H.log(level, s) return end
  while i <= n do
    local j = math.min(i + PIECE - 1, n)
    while j < n and j > i and (s:byte(j + 1) & 0xC0) == 0x80 do j = j - 1 end
    H.log(level, s:sub(i, j))
    i = j + 1
  end
end

log = {}
for _, level in ipairs({ "debug", "info", "warn", "error" }) do
  log[level] = function(...) emit(level, text(...)) end
end
-- The Go sloth-runner's log.success: an info line.
log.success = function(...) emit("info", text(...)) end
function print(...) emit("print", text(...)) end

-- warn("@on") and friends are Lua's controls; every other warning is a log line.
function warn(first, ...)
  local message = table.concat({ first, ... })
  if message:sub(1, 1) ~= "@" then emit("warn", "Lua warning: " .. message) end
end

-- io.write and a stream's :write as in Lua (no separator, nothing added), whole lines
-- to the log: the rest of a line waits for its end, or for the task function to return.
local streams = {}
local function stream(level, name)
  local file = { pending = "" }
  streams[#streams + 1] = file
  function file:write(...)
    local parts = table.pack(...)
    for i = 1, parts.n do
      local v = parts[i]
      if type(v) ~= "string" and type(v) ~= "number" then
        error(caller() .. name .. ":write: argument " .. i .. " is a " .. type(v) .. ", not text", 0)
      end
      parts[i] = tostring(v)
    end
    local all = file.pending .. table.concat(parts, "", 1, parts.n)
    local last = 1
    for line, after in all:gmatch("([^\n]*)\n()") do
      emit(level, line)
      last = after
    end
    file.pending = all:sub(last)
    if #file.pending > PIECE then file:flush() end
    return file
  end
  function file:flush()
    if file.pending ~= "" then emit(level, file.pending) end
    file.pending = ""
    return file
  end
  function file:setvbuf() return true end
  function file:close() return nil, "cannot close " .. name end
  function file:lines() error(caller() .. name .. " cannot be read", 0) end
  file.read = file.lines
  file.seek = file.lines
  return setmetatable(file, { __name = "FILE*", __tostring = function() return "file (" .. name .. ")" end })
end
local function flush_streams()
  for _, file in ipairs(streams) do file:flush() end
end

-- exec.run's table also stands for its stdout (tostring, .., #, string methods), and
-- stderr and an error (nil when it succeeded) come second and third: the Go tool's
-- local out, err, failed = exec.run(cmd) reads the same command the same way.
local run_command = async("exec.run", H.exec_run)
local function stdout_of(v) return type(v) == "table" and rawget(v, "stdout") or v end
local EXEC_RESULT = {
  __name = "exec result",
  __tostring = function(r) return rawget(r, "stdout") end,
  __concat = function(a, b) return tostring(stdout_of(a)) .. tostring(stdout_of(b)) end,
  __len = function(r) return #rawget(r, "stdout") end,
  __index = function(_, key)
    local f = string[key]
    if f == nil then return nil end
    return function(self, ...) return f(stdout_of(self), ...) end
  end,
}
-- Output that is not UTF-8 comes as one character per byte, which crosses into Lua as
-- UTF-8 (bytes 0x80-0xFF as two): made the command's bytes again here.
local function bytes_of(s)
  return (s:gsub("[\xC2-\xC4][\x80-\xBF]", function(c)
    local a, b = c:byte(1, 2)
    if a == 0xC4 then return "\0" end -- U+0100 stands for a NUL
    return string.char(((a & 0x03) << 6) | (b & 0x3F))
  end))
end
exec = {
  run = function(...)
    local r = run_command(...)
    local binary = rawget(r, "binary")
    if binary ~= nil then
      if binary.stdout then r.stdout = bytes_of(r.stdout) end
      if binary.stderr then r.stderr = bytes_of(r.stderr) end
      r.binary = nil
    end
    setmetatable(r, EXEC_RESULT)
    return r, rawget(r, "stderr"), (not rawget(r, "success")) and ("exit code " .. rawget(r, "exit_code")) or nil
  end,
}

fs = {}
for _, name in ipairs({ "read", "write", "append", "exists", "mkdir", "rm", "rm_r", "ls", "size",
                        "copy", "rename", "tmpname" }) do
  fs[name] = sync("fs." .. name, H["fs_" .. name])
end

data = {}
for _, name in ipairs({ "parse_json", "to_json" }) do
  data[name] = sync("data." .. name, H["data_" .. name])
end
for _, name in ipairs({ "parse_yaml", "to_yaml" }) do
  data[name] = async("data." .. name, H["data_" .. name])
end

net = {}
for _, name in ipairs({ "http_get", "http_post", "download" }) do
  net[name] = async("net." .. name, H["net_" .. name])
end

goroutine = go.module

values = H.values or {}
unpack = table.unpack

-- Text chunks only: a binary chunk can break the Lua VM's own checks, and so the
-- limits above that Lua code relies on.
function load(chunk, name, mode, ...)
  -- An env given (even nil) is the chunk's _ENV; none given, the globals.
  if select("#", ...) > 0 then return base_load(chunk, name, "t", ...) end
  return base_load(chunk, name, "t")
end

local getenv = sync("os.getenv", H.getenv)
os.getenv = function(name) return getenv(name) end
os.remove = fs.rm
os.rename = fs.rename
os.tmpname = fs.tmpname

local function unavailable(name, instead)
  return function() error(caller() .. name .. " is not available in sloth-runner; use " .. instead, 0) end
end
os.execute = unavailable("os.execute", "exec.run(cmd)")
os.exit = unavailable("os.exit", "return false, \"message\" from the task")

-- A new io library: the standard one writes to the process's own output (an agent's
-- log), reads its standard input and keeps files in JavaScript memory (io.tmpfile).
-- Its file handles stay unreachable: the old table and the registry's references go.
local stdout, stderr = stream("print", "io.stdout"), stream("stderr", "io.stderr")
local stdin = setmetatable({}, { __name = "FILE*", __tostring = function() return "file (io.stdin)" end })
function stdin:read() error(caller() .. "io.stdin: tasks have no standard input", 0) end
stdin.lines, stdin.close = stdin.read, function() return true end
local lua_registry = debug.getregistry()
lua_registry._IO_input, lua_registry._IO_output = nil, nil
io = {
  stdout = stdout,
  stderr = stderr,
  stdin = stdin,
  write = function(...) return stdout:write(...) end,
  read = function() return stdin:read() end,
  output = function(file)
    if file == nil or file == stdout then return stdout end
    error(caller() .. "io.output: only io.stdout is available; use fs.write(path, text) for files", 0)
  end,
  input = function(file)
    if file == nil or file == stdin then return stdin end
    error(caller() .. "io.input: only io.stdin is available; use fs.read(path) for files", 0)
  end,
  close = function(file) if file ~= nil then return file:close() end return stdout:close() end,
  type = function(obj)
    if obj == stdout or obj == stderr or obj == stdin then return "file" end
    return nil
  end,
  popen = unavailable("io.popen", "exec.run(cmd)"),
  open = unavailable("io.open", "fs.read(path) / fs.write(path, text)"),
  lines = unavailable("io.lines", "fs.read(path)"),
  tmpfile = unavailable("io.tmpfile", "fs.tmpname()"),
}
package.loaded.io = io
-- debug.debug reads the process's standard input; what else of debug reaches into
-- the prelude's locals (the host functions, around the limits) goes too.
debug = { traceback = debug.traceback, getinfo = debug.getinfo }
package.loaded.debug = debug
dofile = unavailable("dofile", "import(\"path.lua\")")
loadfile = unavailable("loadfile", "import(\"path.lua\")")
local imported, importing = {}, {}
-- from: the requiring chunk's debug info; at: where errors say the call was.
local function load_file(what, path, from, at)
  local why = too_big(path, "the path")
  if why then error(at .. what .. ": " .. why, 0) end
  local file = unwrap(what, H.resolve_import(from and from.source or "=?", path))
  if importing[file.id] then error(at .. what .. ": " .. file.name .. " imports itself (import cycle)", 0) end
  if imported[file.id] ~= nil then return imported[file.id].value end
  local chunk, err = load(file.source, "@" .. file.name, "t")
  if not chunk then error(err, 0) end
  importing[file.id] = true
  local ok, value = pcall(chunk)
  importing[file.id] = nil
  if not ok then error(value, 0) end
  imported[file.id] = { value = value }
  return value
end

-- The nearest workflow file on the stack: the one importing (through pcall too).
local function importer()
  for level = 3, 30 do
    local info = getinfo(level, "S")
    if info == nil then return nil end
    if info.source:sub(1, 1) == "@" then return info end
  end
  return nil
end

function import(path)
  if type(path) ~= "string" then error(caller() .. "import: expected a file path, got " .. type(path), 0) end
  return load_file("import", path, importer(), caller())
end

-- A module of the Go sloth-runner that nothing here defines (go_modules.ts): a read of
-- its global, or require of it, says what to use instead, at the reader's line.
local GO_MODULES = H.go_modules
setmetatable(_G, { __index = function(_, name)
  local message = GO_MODULES[name]
  if message then error(caller() .. message, 0) end
end })

-- require("log") and the other built-in modules give them; require("lib/utils") (or
-- "lib.utils") loads lib/utils.lua relative to the requiring file, once, as import does.
-- (values too: the Go tool's require("values") is the -v file's content.)
local BUILTIN_MODULES = { log = true, exec = true, fs = true, data = true, net = true, goroutine = true,
                          values = true }
function require(name)
  if type(name) ~= "string" then error(caller() .. "require: expected a module name, got " .. type(name), 0) end
  if BUILTIN_MODULES[name] then return rawget(_G, name) end
  local path = name
  if not (path:match("%.lua$") or path:match("%.sloth$")) then
    if not path:find("/", 1, true) then path = path:gsub("%.", "/") end
    path = path .. ".lua"
  end
  local from, at = importer(), caller()
  local ok, value = pcall(load_file, "require", path, from, at)
  if ok then return value end
  -- No such file, or no file to look from (require called by pcall, or in a tail call).
  if GO_MODULES[name] and type(value) == "string" and
      (value:find("not found", 1, true) or value:find("cannot tell which file", 1, true)) then
    error(at .. GO_MODULES[name], 0)
  end
  if type(value) == "string" and value:find("not found", 1, true) and not name:find("[/.]") then
    error(at .. "require: no module \"" .. name .. "\" here (built in: log, exec, fs, data, net, goroutine)" ..
      " and no file " .. path .. "; what a module of the Go sloth-runner did, exec.run(\"...\") can do", 0)
  end
  error(value, 0)
end

-- The builder DSL of the Go sloth-runner -------------------------------------
-- task("x"):command(...):build() gives a task table like the ones TaskDefinitions
-- holds; workflow.define("name", ...) adds a group. A builder's functions are
-- called as function(this, params): each is wrapped here, and the wrapper keeps
-- the user's function so errors and listings still say where it is.

local origin = setmetatable({}, { __mode = "k" })
local task_state = setmetatable({}, { __mode = "k" })
local workflow_state = setmetatable({}, { __mode = "k" })

-- this.workdir: the path as a string (tostring, ..) and the Go tool's methods, called
-- with a dot or a colon. ensure() makes it if missing; it never empties it.
local WORKDIR_METHODS = {
  get = function(self) return rawget(self, "path") end,
  exists = function(self) return fs.exists(rawget(self, "path")) end,
  ensure = function(self)
    if not fs.exists(rawget(self, "path")) then fs.mkdir(rawget(self, "path")) end
    return true
  end,
  cleanup = function(self)
    log.warn("this.workdir.cleanup() removes nothing in sloth-runner (as in the Go sloth-runner, where it " ..
      "is disabled): a group's clean_workdir_after_run decides what is removed")
    return true
  end,
}
WORKDIR_META.__index = function(_, key)
  local m = WORKDIR_METHODS[key]
  if m then return m end
  error(caller() .. "this.workdir has no " .. tostring(key) .. "; it has path, get(), exists(), ensure() and cleanup()", 0)
end
WORKDIR_META.__tostring = function(self) return rawget(self, "path") end
WORKDIR_META.__concat = function(a, b)
  return (is_workdir(a) and rawget(a, "path") or tostring(a)) .. (is_workdir(b) and rawget(b, "path") or tostring(b))
end
local function workdir_object(path)
  local object = setmetatable({ path = path }, WORKDIR_META)
  -- with a dot, this.workdir.get() has no self: each method knows its object
  for name, m in pairs(WORKDIR_METHODS) do rawset(object, name, function() return m(object) end) end
  return object
end

-- The Go tool's notion of a task, for function(this, params).
local function this_of(params, inputs)
  params = type(params) == "table" and params or {}
  inputs = type(inputs) == "table" and inputs or {}
  return {
    name = params.task_name,
    workflow = params.group_name,
    group = params.group_name,
    workdir = workdir_object(params.workdir),
    params = params,
    inputs = inputs,
    deps = inputs,
  }
end

-- A builder function that returns nothing succeeded; nil, "why" failed; a table
-- { failed = ..., changed = ..., message = ... } (the Go tool's older agents examples)
-- failed when failed is true.
local function settled(ok, message, ...)
  if type(ok) == "table" and message == nil and (ok.failed ~= nil or ok.changed ~= nil) then
    return not ok.failed, ok.message ~= nil and tostring(ok.message) or nil, ok.outputs
  end
  if ok == nil then
    if message ~= nil then return false, message, ... end
    return true, nil, ...
  end
  return ok, message, ...
end

-- shape: how the host calls the field (see __sloth_call and the runner). A function whose
-- first parameter is named this (or self, t, task, ctx) gets (this, params[, value]); any
-- other gets the table form's arguments, as many of the Go tool's examples write them:
-- (params, inputs), or (params, value) after the command.
local THIS_NAMES = { this = true, self = true, t = true, task = true, ctx = true }
local WRAP = {
  command = function(fn, with_this)
    if not with_this then return function(params, inputs) return settled(fn(params, inputs)) end end
    return function(params, inputs) return settled(fn(this_of(params, inputs), params)) end
  end,
  condition = function(fn, with_this)
    if not with_this then return function(params, inputs) return fn(params, inputs) end end
    return function(params, inputs) return fn(this_of(params, inputs), params) end
  end,
  -- post_exec, on_success: outputs; on_failure, on_timeout: the error; then the inputs.
  after = function(fn, with_this)
    if not with_this then return function(params, value) return settled(fn(params, value)) end end
    return function(params, value, inputs) return settled(fn(this_of(params, inputs), params, value)) end
  end,
}
WRAP.pre = WRAP.command
local function wrap(fn, shape)
  local first = getlocal(fn, 1)
  local wrapped = WRAP[shape](fn, first == nil or THIS_NAMES[first] == true)
  origin[wrapped] = fn
  return wrapped
end

local TASK_METHODS, TASK_METHOD_NAMES = {}, {}
local function method_names(methods)
  local names = {}
  for name in pairs(methods) do names[#names + 1] = ":" .. name end
  table.sort(names)
  return table.concat(names, " ")
end

-- The nearest name of names to name, for "did you mean" (at most 2 edits, or a prefix).
local function nearest(name, names)
  local best, best_cost = nil, 3
  for _, candidate in ipairs(names) do
    local a, b = name:lower(), candidate:lower()
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
      local cur = { [0] = i }
      for j = 1, #b do
        local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
    end
    if prev[#b] < best_cost then best, best_cost = candidate, prev[#b] end
  end
  return best
end

local function no_method(kind, label, methods, names)
  return function(_, key)
    local hint = type(key) == "string" and nearest(key, names) or nil
    error(caller() .. label .. " has no method :" .. tostring(key) ..
      (hint and (" (did you mean :" .. hint .. "?)") or "") ..
      "; a " .. kind .. " builder has " .. method_names(methods), 0)
  end
end

local task_meta = { __name = "task builder" }
task_meta.__index = function(self, key)
  local m = TASK_METHODS[key]
  if m then return m end
  local state = task_state[self]
  return no_method("task", "task(\"" .. tostring(state and state.fields.name) .. "\")",
    TASK_METHODS, TASK_METHOD_NAMES)(self, key)
end
task_meta.__tostring = function(self) return "task builder \"" .. tostring(task_state[self].fields.name) .. "\"" end

local function builder_of(self, method)
  local state = task_state[self]
  if state == nil then
    error(caller() .. method .. ": call it with a colon on a task builder: task(\"name\"):" .. method .. "(...)", 0)
  end
  return state
end

local function label_of(state, method) return caller() .. "task(\"" .. state.fields.name .. "\"):" .. method .. ": " end

-- Fields set as given: checked with every other field when the workflow loads. A field
-- is set once (a second call says where the first was), and never to nil: a nil there
-- is almost always a variable that is not set, and silently running with the default
-- (a delegate_to(nil) running the task here) is what must not happen.
local ON_AGENT = H.on_agent
local function put(state, method, field, value)
  -- On an agent the master checked this (top-level code there sees another environment,
  -- and what an agent needs of these fields comes from the master: TaskStart).
  if value == nil and ON_AGENT then return end
  if value == nil then
    error(label_of(state, method) .. "got nil (a variable that is not set?); leave the call out for the default", 0)
  end
  local first = state.set_at[field]
  if first ~= nil then
    error(label_of(state, method) .. field .. " is set already (" .. first .. ")", 0)
  end
  state.fields[field] = value
  state.set_at[field] = (caller():gsub(": $", ""))
end
local function setter(field, method)
  return function(self, value)
    put(builder_of(self, method), method, field, value)
    return self
  end
end
local function function_setter(field, method, shape)
  return function(self, fn)
    local state = builder_of(self, method)
    if type(fn) ~= "function" then error(label_of(state, method) .. "expected a function, got " .. type(fn), 0) end
    put(state, method, field, wrap(fn, shape))
    return self
  end
end
local function shell_or_function(field, method, shape)
  return function(self, value)
    local state = builder_of(self, method)
    if type(value) == "function" then value = wrap(value, shape)
    elseif type(value) ~= "string" then
      error(label_of(state, method) .. "expected a shell command string or a function, got " .. type(value), 0)
    end
    put(state, method, field, value)
    return self
  end
end
-- Lists add up: depends_on("a"):depends_on("b") depends on both.
local function names_setter(field, method)
  return function(self, ...)
    local state = builder_of(self, method)
    local given = select("#", ...) == 1 and (...) or { ... }
    if select("#", ...) == 0 or given == nil then
      error(label_of(state, method) .. "got nil (a variable that is not set?); give a name or a list of names", 0)
    end
    local list = state.fields[field] or {}
    if type(given) == "table" then
      for _, v in ipairs(given) do list[#list + 1] = v end
      -- anything else in it (a non-list table) is said by the checks at load
      if #given == 0 and next(given) ~= nil then list = given end
    else
      list[#list + 1] = given
    end
    state.fields[field] = list
    return self
  end
end

TASK_METHODS.description = setter("description", "description")
TASK_METHODS.command = shell_or_function("command", "command", "command")
TASK_METHODS.timeout = setter("timeout", "timeout")
TASK_METHODS.retries = function(self, count, strategy)
  local state = builder_of(self, "retries")
  put(state, "retries", "retries", count)
  if strategy ~= nil then put(state, "retries", "retry_strategy", strategy) end
  return self
end
TASK_METHODS.depends_on = names_setter("depends_on", "depends_on")
TASK_METHODS.next_if_fail = names_setter("next_if_fail", "next_if_fail")
TASK_METHODS.async = function(self, value)
  put(builder_of(self, "async"), "async", "async", value == nil or value)
  return self
end
TASK_METHODS.workdir = setter("workdir", "workdir")
TASK_METHODS.run_if = shell_or_function("run_if", "run_if", "condition")
TASK_METHODS.abort_if = shell_or_function("abort_if", "abort_if", "condition")
TASK_METHODS.pre_hook = function_setter("pre_exec", "pre_hook", "pre")
TASK_METHODS.post_hook = function_setter("post_exec", "post_hook", "after")
TASK_METHODS.on_success = function_setter("on_success", "on_success", "after")
TASK_METHODS.on_failure = function_setter("on_failure", "on_failure", "after")
TASK_METHODS.on_fail = function_setter("on_failure", "on_fail", "after")
TASK_METHODS.on_timeout = function_setter("on_timeout", "on_timeout", "after")
-- false: here, said on purpose (delegate_to(AGENT or false)); a function is called now.
TASK_METHODS.delegate_to = function(self, target)
  local state = builder_of(self, "delegate_to")
  if type(target) == "function" then target = target() end
  if target == false then
    if state.set_at.delegate_to then
      error(label_of(state, "delegate_to") .. "delegate_to is set already (" .. state.set_at.delegate_to .. ")", 0)
    end
    state.set_at.delegate_to = (caller():gsub(": $", ""))
    return self
  end
  put(state, "delegate_to", "delegate_to", target)
  return self
end
TASK_METHODS.agent = setter("agent", "agent")
TASK_METHODS.params = function(self, params)
  local state = builder_of(self, "params")
  if type(params) ~= "table" then error(label_of(state, "params") .. "expected a table of name = value, got " .. type(params), 0) end
  local merged_params = state.fields.params or {}
  for k, v in pairs(params) do merged_params[k] = v end
  state.fields.params = merged_params
  return self
end
TASK_METHODS.artifacts = names_setter("artifacts", "artifacts")
TASK_METHODS.consumes = names_setter("consumes", "consumes")
TASK_METHODS.user = setter("user", "user")
TASK_METHODS.sync_back = setter("sync_back", "sync_back")
TASK_METHODS.build = function(self)
  local state = builder_of(self, "build")
  local built = {}
  for k, v in pairs(state.fields) do built[k] = v end
  return built
end
for name in pairs(TASK_METHODS) do TASK_METHOD_NAMES[#TASK_METHOD_NAMES + 1] = name end
table.sort(TASK_METHOD_NAMES)

-- task({ name = ..., run = ... }): a task table in one call, as some of the Go tool's
-- examples write it; run is command, and its function is called as a builder's is.
local function task_from_table(spec, at)
  local fields = {}
  for k, v in pairs(spec) do fields[k] = v end
  if fields.run ~= nil then
    if fields.command ~= nil then
      error(at .. "task \"" .. tostring(fields.name) .. "\": set run or command, not both", 0)
    end
    fields.command, fields.run = fields.run, nil
  end
  if type(fields.command) == "function" then fields.command = wrap(fields.command, "command") end
  return fields
end

function task(name)
  if type(name) == "table" and task_state[name] == nil then return task_from_table(name, caller()) end
  if type(name) ~= "string" or name == "" then
    error(caller() .. "task: expected the task's name, got " .. (type(name) == "string" and "\"\"" or type(name)), 0)
  end
  local self = setmetatable({}, task_meta)
  task_state[self] = { fields = { name = name }, set_at = {} }
  return self
end

-- A task given to a workflow or TaskDefinitions without :build() is built there.
local function task_fields(value)
  local state = task_state[value]
  if state == nil then return value end
  local built = {}
  for k, v in pairs(state.fields) do built[k] = v end
  return built
end

-- workflow.define ------------------------------------------------------------

local defined, defined_order = {}, {}
local WORKFLOW_METHODS, WORKFLOW_METHOD_NAMES = {}, {}
-- Group fields whose value is a function run on this machine, with the group's name as key.
local GROUP_FUNCTIONS = { on_start = true, on_complete = true, clean_workdir_after_run = true }

local workflow_meta = { __name = "workflow builder" }
workflow_meta.__index = function(self, key)
  local m = WORKFLOW_METHODS[key]
  if m then return m end
  local state = workflow_state[self]
  return no_method("workflow", "workflow \"" .. tostring(state and state.name) .. "\"",
    WORKFLOW_METHODS, WORKFLOW_METHOD_NAMES)(self, key)
end

local function workflow_of(self, method)
  local state = workflow_state[self]
  if state == nil then
    error(caller() .. method .. ": call it with a colon on a workflow: workflow.define(\"name\"):" .. method .. "(...)", 0)
  end
  return state
end

-- :tasks({ ... }) twice adds the second list to the first.
local function set_tasks(state, tasks, at)
  if type(tasks) ~= "table" then
    error(at .. "workflow \"" .. state.name .. "\": tasks must be a list of tasks, got " .. type(tasks), 0)
  end
  if task_state[tasks] ~= nil or rawget(tasks, "name") ~= nil then
    error(at .. "workflow \"" .. state.name .. "\": tasks must be a list of tasks, got one task (write { task })", 0)
  end
  if state.tasks == nil then state.tasks = tasks return end
  local n = #state.tasks
  for k, t in pairs(tasks) do
    if math.type(k) == "integer" then state.tasks[n + k] = t
    elseif state.tasks[k] == nil then state.tasks[k] = t
    else error(at .. "workflow \"" .. state.name .. "\": a task is keyed \"" .. tostring(k) .. "\" twice", 0) end
  end
end

local function workflow_setter(field)
  return function(self, value)
    local state = workflow_of(self, field)
    local at = caller()
    local label = at .. "workflow \"" .. state.name .. "\":" .. field .. ": "
    if GROUP_FUNCTIONS[field] and type(value) ~= "function" then
      error(label .. "expected a function, got " .. type(value), 0)
    end
    if value == nil then error(label .. "got nil (a variable that is not set?); leave the call out", 0) end
    if state.fields[field] ~= nil then error(label .. field .. " is set already", 0) end
    state.fields[field] = value
    return self
  end
end
for _, field in ipairs({ "description", "version", "config", "on_start", "on_complete", "delegate_to",
                         "workdir", "agents" }) do
  WORKFLOW_METHODS[field] = workflow_setter(field)
end
WORKFLOW_METHODS.tasks = function(self, tasks)
  local state = workflow_of(self, "tasks")
  set_tasks(state, tasks, caller())
  return self
end
-- Some of the Go tool's examples end a workflow with :build(): it is defined already.
WORKFLOW_METHODS.build = function(self)
  workflow_of(self, "build")
  return self
end
for name in pairs(WORKFLOW_METHODS) do WORKFLOW_METHOD_NAMES[#WORKFLOW_METHOD_NAMES + 1] = name end
table.sort(WORKFLOW_METHOD_NAMES)

-- workflow("name") is workflow.define("name"), and workflow({ name = ..., tasks = { ... } })
-- the table form with its name inside (tasks with run as in task({ ... })), as in some of
-- the Go tool's examples.
workflow = setmetatable({}, { __call = function(_, first, ...)
  if type(first) ~= "table" then return workflow.define(first, ...) end
  local spec = {}
  for k, v in pairs(first) do if k ~= "name" then spec[k] = v end end
  if type(first.tasks) == "table" then
    local tasks = {}
    for k, t in pairs(first.tasks) do
      tasks[k] = (type(t) == "table" and task_state[t] == nil and rawget(t, "run") ~= nil)
        and task_from_table(t, caller()) or t
    end
    spec.tasks = tasks
  end
  return workflow.define(first.name, spec)
end })
function workflow.define(name, spec)
  local at = caller()
  if type(name) ~= "string" or name == "" then
    error(at .. "workflow.define: expected the workflow's name, got " .. (type(name) == "string" and "\"\"" or type(name)), 0)
  end
  if defined[name] then
    error(at .. "workflow.define: a workflow \"" .. name .. "\" is already defined (" .. defined[name].at .. ")", 0)
  end
  if spec ~= nil and type(spec) ~= "table" then
    error(at .. "workflow.define: expected a table { description = ..., tasks = { ... } }, got " .. type(spec), 0)
  end
  local state = { name = name, fields = {}, at = at:gsub(": $", "") }
  defined[name] = state
  defined_order[#defined_order + 1] = name
  for k, v in pairs(spec or {}) do
    if k == "tasks" then set_tasks(state, v, at) else state.fields[k] = v end
  end
  local self = setmetatable({}, workflow_meta)
  workflow_state[self] = state
  return self
end

-- TaskDefinitions and the workflows defined, as one table of groups; then the
-- names in order (TaskDefinitions' as pairs gives them, then the workflows' as defined).
local function all_groups()
  local defs = rawget(_G, "TaskDefinitions")
  if defs ~= nil and type(defs) ~= "table" then return nil, type(defs) end
  local all, order = {}, {}
  for k, v in pairs(defs or {}) do
    all[k] = v
    order[#order + 1] = k
  end
  if #defined_order == 0 then return defs, order end
  for _, name in ipairs(defined_order) do
    local state = defined[name]
    if all[name] ~= nil then
      error("workflow \"" .. name .. "\" is defined twice: by workflow.define (" .. state.at ..
        ") and in TaskDefinitions; rename one of them", 0)
    end
    local group = {}
    for k, v in pairs(state.fields) do group[k] = v end
    group.tasks = state.tasks or {}
    all[name] = group
    order[#order + 1] = name
  end
  return all, order
end

-- Walking TaskDefinitions ---------------------------------------------------

local FUNCTION_FIELDS = {
  command = true, pre_exec = true, post_exec = true, run_if = true, abort_if = true,
  on_success = true, on_failure = true, on_timeout = true,
}
local registry = {}

local function where(fn)
  local info = getinfo(origin[fn] or fn, "S")
  local source = info.source or "?"
  if source:sub(1, 1) == "@" then source = source:sub(2) end
  return source .. ":" .. tostring(info.linedefined or 0)
end

-- Plain data only: the result crosses threads and, later, the wire. What cannot
-- be kept is reported in problems (a list of messages) and left out.
local function plain(value, path, seen, allow_function, problems)
  local kind = type(value)
  if kind == "table" then
    if seen[value] then
      problems[#problems + 1] = path .. " refers to itself"
      return nil
    end
    seen[value] = true
    local copy = {}
    for k, v in pairs(value) do
      local key = type(k) == "string" and k or (math.type(k) == "integer" and k) or nil
      if key == nil then
        problems[#problems + 1] = path .. " has a " .. type(k) .. " key; keys must be strings or integers"
      else
        copy[key] = plain(v, path .. "." .. tostring(k), seen, false, problems)
      end
    end
    seen[value] = nil
    return copy
  elseif kind == "function" then
    if allow_function then return { __lua_function = where(value) } end
    problems[#problems + 1] = path .. " is a function; only strings, numbers, booleans and tables can be kept"
    return nil
  elseif kind == "userdata" or kind == "thread" then
    problems[#problems + 1] = path .. " is a " .. kind .. "; only strings, numbers, booleans and tables can be kept"
    return nil
  end
  return value
end

local function key(group, task, field) return group .. "\0" .. task .. "\0" .. field end

local function merged(task, path)
  local chain, seen = {}, {}
  local current = task
  while type(current) == "table" do
    if seen[current] then error(path .. ".uses forms a loop", 0) end
    seen[current] = true
    table.insert(chain, 1, current)
    current = rawget(current, "uses")
  end
  if current ~= nil then error(path .. ".uses must be a task table, got " .. type(current), 0) end
  local fields = {}
  for _, layer in ipairs(chain) do
    for k, v in pairs(layer) do if k ~= "uses" then fields[k] = v end end
  end
  return fields
end

local function is_index(k, n) return math.type(k) == "integer" and k >= 1 and k <= n end

-- one_group, one_task: describe (and register) that task only, when its group exists (an
-- agent's job: the master checked the rest; describing 40 tasks cost it ~2 ms)
function __sloth_collect(one_group, one_task)
  local defs, order = all_groups()
  if type(order) == "string" then return { invalid = order } end
  if defs == nil then return { missing = true } end
  if one_group ~= nil and type(rawget(defs, one_group)) ~= "table" then one_group, one_task = nil, nil end
  registry = {}
  local groups, problems = {}, {}
  for _, gname in ipairs(order) do
    local group = defs[gname]
    if one_group ~= nil and gname ~= one_group then goto next_group end
    if type(gname) ~= "string" then error("TaskDefinitions has a " .. type(gname) .. " key; group names must be strings", 0) end
    local gpath = "TaskDefinitions." .. gname
    if type(group) ~= "table" then error(gpath .. " must be a table, got " .. type(group), 0) end
    local g = { name = gname, fields = {}, tasks = {}, defined = defined[gname] ~= nil or nil }
    for k, v in pairs(group) do
      -- A function here is kept as a reference: a misspelt field is then met by its name
      -- ("unknown field ... did you mean"), not by what its value is.
      if k ~= "tasks" then g.fields[k] = plain(v, gpath .. "." .. tostring(k), {}, type(v) == "function", problems) end
      if GROUP_FUNCTIONS[k] and type(v) == "function" then registry[key(gname, "", k)] = v end
    end
    local tasks = rawget(group, "tasks")
    if type(tasks) == "table" then
      local n = #tasks
      local entries = {}
      for i = 1, n do entries[#entries + 1] = { index = i, task = tasks[i] } end
      for k, t in pairs(tasks) do
        if not is_index(k, n) then entries[#entries + 1] = { key = k, task = t } end
      end
      for _, entry in ipairs(entries) do
        local tpath = gpath .. ".tasks[" .. (entry.index or string.format("%q", tostring(entry.key))) .. "]"
        if type(entry.task) ~= "table" then error(tpath .. " must be a table, got " .. type(entry.task), 0) end
        local fields = merged(task_fields(entry.task), tpath)
        local name = fields.name
        if name == nil and type(entry.key) == "string" then name = entry.key end
        if one_task ~= nil and name ~= one_task then goto next_task end
        local t = { index = entry.index, key = entry.key, fields = {} }
        for k, v in pairs(fields) do
          if type(v) == "function" and FUNCTION_FIELDS[k] and type(name) == "string" then
            registry[key(gname, name, k)] = v
          end
          if type(k) ~= "string" then error(tpath .. " has a " .. type(k) .. " key; field names must be strings", 0) end
          -- Any field's function is kept as a reference (only FUNCTION_FIELDS' are called):
          -- a misspelt hook (post_exce) is then an unknown field, said with "did you mean".
          t.fields[k] = plain(v, tpath .. "." .. k, {}, FUNCTION_FIELDS[k] or type(v) == "function", problems)
        end
        if t.fields.name == nil and name ~= nil then t.fields.name = name end
        g.tasks[#g.tasks + 1] = t
        ::next_task::
      end
    elseif tasks ~= nil then
      g.fields.tasks = plain(tasks, gpath .. ".tasks", {}, false, problems)
    end
    groups[#groups + 1] = g
    ::next_group::
  end
  return { groups = groups, problems = problems }
end

-- An error message crosses whole up to PIECE bytes; the rest is left out, counted.
local function shorten(message)
  if #message <= PIECE then return message end
  return message:sub(1, PIECE) .. "… (" .. (#message - PIECE) .. " more bytes)"
end

local function error_text(err)
  if type(err) == "string" then return shorten(err) end
  return "error() was given a " .. type(err) .. " value, not a message (use error(\"what went wrong\"))"
end

-- Runs the main chunk, then walks TaskDefinitions; never raises.
-- Only the functions of one task, for a state that runs just that task: walking
-- and copying every task of a large workflow for each task costs more than the task.
local function register_only(gname, tname)
  registry = {}
  local group = (all_groups() or {})[gname]
  if type(group) == "table" then
    for field in pairs(GROUP_FUNCTIONS) do
      local v = rawget(group, field)
      if type(v) == "function" then registry[key(gname, "", field)] = v end
    end
  end
  if tname == "" then return {} end
  local tasks = type(group) == "table" and rawget(group, "tasks") or nil
  if type(tasks) ~= "table" then return {} end
  local n = #tasks
  for k, t in pairs(tasks) do
    if type(t) == "table" then
      local fields = merged(task_fields(t), "task")
      local name = fields.name
      if name == nil and not is_index(k, n) and type(k) == "string" then name = k end
      if name == tname then
        for field, v in pairs(fields) do
          if type(v) == "function" and FUNCTION_FIELDS[field] then registry[key(gname, tname, field)] = v end
        end
        break
      end
    end
  end
  return {}
end

-- chunk: the main file compiled by the host (worker.ts), or why it did not compile
function __sloth_main(chunk, name, only_group, only_task, describe_one)
  if type(chunk) ~= "function" then return { syntax = shorten(chunk) } end
  local ok, e = pcall(go.main, chunk)
  flush_streams()
  if not ok then return { runtime = error_text(e) } end
  if only_group and not describe_one then
    local registered_ok, result = pcall(register_only, only_group, only_task)
    if not registered_ok then return { invalid = error_text(result) } end
    return { description = result }
  end
  local collected_ok, collected = pcall(__sloth_collect, only_group, only_task)
  if not collected_ok then return { invalid = error_text(collected) } end
  local why = too_big(collected, "TaskDefinitions")
  if why then return { invalid = why } end
  -- The globals there are now, for the check of what task code reads (globals.ts).
  local globals = {}
  for k in next, _G do if type(k) == "string" then globals[#globals + 1] = k end end
  return { description = collected, globals = globals }
end

-- Calling a task's functions ------------------------------------------------

local function describe(v)
  if type(v) == "string" then return string.format("string %q", v) end
  return type(v) .. (v == nil and "" or " " .. tostring(v))
end

local function strip(err)
  if type(err) ~= "string" then
    return "error() was given a " .. type(err) .. " value, not a message (use error(\"what went wrong\"))"
  end
  return shorten((err:gsub("^Error: ", "")))
end

-- kind: "command" -> ok, message, outputs; "hook" -> ok, message; "condition" -> boolean;
-- "outcome" (on_success, on_failure, on_timeout, a workflow's on_start and on_complete)
-- -> ok, message, where returning nothing is ok
function __sloth_call(kind, group, task, field, ...)
  local fn = registry[key(group, task, field)]
  if fn == nil then return { error = "no function " .. field .. " on task " .. task } end
  local results = table.pack(pcall(go.main, fn, ...))
  flush_streams()
  if not results[1] then
    local e = strip(results[2])
    if e:find("not enough memory", 1, true) then return { error = "not enough memory" } end
    return { error = e }
  end
  local first, message, outputs = results[2], results[3], results[4]
  if kind == "outcome" and first == nil then first = message == nil end
  local label = field == "command" and "the task function" or field
  if kind == "condition" then
    if type(first) ~= "boolean" then
      return { error = label .. " must return a boolean, got " .. describe(first) }
    end
    return { value = first }
  end
  if type(first) ~= "boolean" then
    return { error = label .. " must return true or false as its first value, got " .. describe(first) }
  end
  if message ~= nil then message = tostring(message) end
  local why = too_big(message, "it")
  if why then return { error = label .. " returned a message that cannot be kept: " .. why } end
  if kind == "command" and outputs ~= nil then
    if type(outputs) ~= "table" then
      return { error = label .. " returned outputs that are a " .. type(outputs) .. "; outputs must be a table" }
    end
    local problems = {}
    outputs = plain(outputs, "outputs", {}, false, problems)
    if #problems > 0 then return { error = label .. " returned outputs that cannot be kept: " .. problems[1] } end
    why = too_big(outputs, "their size")
    if why then return { error = label .. " returned outputs that cannot be kept: " .. why } end
  end
  return { ok = first, message = message, outputs = outputs }
end
`;

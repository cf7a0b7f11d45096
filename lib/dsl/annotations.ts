/**
 * LuaLS (lua-language-server) annotations for workflow files: a `---@meta` file
 * that gives editors completion, hover text and type checks for `TaskDefinitions`
 * and the host modules.
 *
 * The field tables are keyed by the field lists normalize.ts checks workflows
 * with, so `deno check` fails when a field is added there and not here, or
 * described here and not accepted there. Those imports are types only: loading
 * this file must not load zod (mod.ts imports normalize.ts lazily).
 * The module functions live in Lua code (prelude.ts); annotations_test.ts walks
 * a real Lua state and fails on any function that is missing here, or described
 * here and not there.
 */
import type { agentDef, GROUP_FIELDS, TASK_FIELDS, tlsDef } from "./normalize.ts";

type TaskField = (typeof TASK_FIELDS)[number];
type GroupField = (typeof GROUP_FIELDS)[number];
type AgentField = keyof (typeof agentDef)["shape"];
type TlsField = keyof (typeof tlsDef)["shape"];

interface Field {
  /** A LuaLS type expression. */
  type: string;
  doc: string;
  /** Absent from a table literal is an error (LuaLS `missing-fields`). */
  required?: boolean;
}

interface Param {
  /** A Lua name, or `...`. */
  name: string;
  type: string;
  optional?: boolean;
}

interface Fn {
  /** As Lua code calls it: `exec.run`, `import`. */
  name: string;
  doc: string;
  params: Param[];
  returns: string[];
  /** For functions that only raise an error. */
  deprecated?: boolean;
}

interface Class {
  name: string;
  doc: string;
  fields: Record<string, Field>;
  /** Not `(exact)`: any key may be there. */
  open?: boolean;
}

interface Module {
  name: string;
  doc: string;
  functions: Fn[];
}

const DURATION = "sloth.Duration";

const GROUP: Record<GroupField | "tasks", Field> = {
  description: { type: "string", doc: "Shown by `sloth-runner list`." },
  tasks: {
    type: "table<integer|string, sloth.Task>",
    doc: "A list of tasks, or a table keyed by task name (the key names a task without `name`).",
  },
  workdir: {
    type: "string",
    doc: "Working directory of the group's tasks, relative to the workflow file's directory.",
  },
  create_workdir_before_run: {
    type: "boolean",
    doc:
      "Make `workdir` (with its parents) before the run's first task; without `workdir`, the tasks get a new temporary directory.",
  },
  clean_workdir_after_run: {
    type: "boolean|sloth.CleanWorkdir",
    doc:
      "After the run, remove the group's directory: true, false, or a function of the group's result that returns true to remove it. A temporary directory is removed unless this says false.",
  },
  delegate_to: {
    type: "string|sloth.Agent|sloth.Pool|sloth.FanOut",
    doc:
      "Run the group's tasks on an agent (\"host:port\", a name from `agents` or the inventory, or a definition), on a pool's member, or on every member.",
  },
  agents: {
    type: "table<string, sloth.Agent>",
    doc: "Named agents, for `delegate_to` and `agent`.",
  },
  version: { type: "string", doc: "A workflow's version, shown by `sloth-runner list`." },
  config: {
    type: "sloth.WorkflowConfig",
    doc: "Defaults for the group's tasks: timeout, retries, workdir.",
  },
  on_start: {
    type: "sloth.OnStart",
    doc: "Runs on this machine before the run's first task; false or an error stops the run.",
  },
  on_complete: {
    type: "sloth.OnComplete",
    doc: "Runs on this machine after the run's last task, with `success` and `results`.",
  },
  metadata: {
    type: "table<string, any>",
    doc: "Anything, for readers (author, tags, …): sloth-runner does nothing with it.",
  },
};

const WORKFLOW_CONFIG: Record<string, Field> = {
  timeout: { type: DURATION, doc: "The timeout of each task that sets none." },
  retries: { type: "integer", doc: "The retries of each task that sets none." },
  max_retries: { type: "integer", doc: "Another name of `retries`." },
  retry_policy: {
    type: '"exponential"|"linear"|"fixed"',
    doc: "The retry_strategy of each task that sets none.",
  },
  workdir: { type: "string", doc: "Working directory of the tasks (the group's `workdir`)." },
  max_parallel_tasks: {
    type: "integer",
    doc: "At most this many of its tasks at once (async tasks and fan-outs run side by side).",
  },
  fail_fast: { type: "boolean", doc: "true: a failed task stops the whole run." },
  continue_on_error: { type: "boolean", doc: "false: the same as fail_fast = true." },
};

const TASK: Record<TaskField | "uses", Field> = {
  name: {
    type: "string",
    doc: "Unique within its group; no spaces or commas. Defaults to the key in a keyed `tasks`.",
  },
  description: { type: "string", doc: "Shown by `sloth-runner list`." },
  command: {
    type: "string|sloth.TaskFunction",
    doc: "A shell command (`/bin/sh -c`), or a Lua function returning `ok[, message[, outputs]]`.",
  },
  depends_on: {
    type: "string|string[]",
    doc: "Tasks that run first and must succeed; `inputs[name]` is their outputs.",
  },
  next_if_fail: {
    type: "string|string[]",
    doc: "Tasks this one waits for; it runs only if one of them failed (or timed out).",
  },
  retries: {
    type: "integer",
    doc: "Extra attempts after a failure (0-100), with exponential backoff.",
  },
  timeout: {
    type: DURATION,
    doc: 'Per attempt: "500ms", "30s", "2m", "1h30m", or a number of seconds.',
  },
  async: {
    type: "boolean",
    doc: "May run alongside other tasks once its dependencies have finished.",
  },
  pre_exec: {
    type: "sloth.PreExec",
    doc: "Runs before the command; returning false fails the task.",
  },
  post_exec: {
    type: "sloth.PostExec",
    doc: "Runs after a successful command, with its outputs; returning false fails the task.",
  },
  run_if: {
    type: "string|sloth.Condition",
    doc: "A shell command (exit 0 = true) or a function; false skips the task.",
  },
  abort_if: {
    type: "string|sloth.Condition",
    doc: "A shell command (exit 0 = true) or a function; true stops the whole run.",
  },
  workdir: {
    type: "string",
    doc: "Working directory, relative to the workflow file's directory (overrides the group's).",
  },
  params: {
    type: "table<string, any>",
    doc: "Passed to the task's functions, plus `task_name`, `group_name` and `workdir`.",
  },
  delegate_to: {
    type: "string|sloth.Agent|sloth.Pool|sloth.FanOut",
    doc:
      'Run this task on an agent ("host:port", a name from the group\'s `agents` or the inventory, or a definition), on one member of an inventory pool (`{ pool = "web" }`), or on every member (`{ each = "web" }`).',
  },
  agent: {
    type: "string",
    doc: "Run this task on the agent of this name (the group's `agents`, then the inventory).",
  },
  sync_back: {
    type: '"on_success"|"always"|"never"',
    doc: "On an agent: when the files the task changed are copied back (default on_success).",
  },
  uses: {
    type: "sloth.Task",
    doc: "Another task table to start from; this task's fields override it.",
  },
  retry_strategy: {
    type: '"exponential"|"linear"|"fixed"',
    doc: "Wait between attempts: 250ms doubling (default), 1s more each time, or 1s; at most 10s.",
  },
  on_success: {
    type: "sloth.OnOutcome",
    doc:
      "Runs on this machine after the last attempt succeeded, with the outputs; false or an error fails the task.",
  },
  on_failure: {
    type: "sloth.OnOutcome",
    doc: "Runs on this machine after the last attempt failed or timed out, with the error message.",
  },
  on_timeout: {
    type: "sloth.OnOutcome",
    doc:
      "Runs on this machine after the last attempt timed out, with the error message (before on_failure).",
  },
  artifacts: {
    type: "string|string[]",
    doc:
      "Paths or patterns (`*`, `?`, `**`) inside the workdir the task must leave; one matching nothing fails it.",
  },
  user: {
    type: "string",
    doc:
      "The user (name or uid) its commands must run as where it runs; anywhere else the task fails, never running as someone else.",
  },
  consumes: {
    type: "string|string[]",
    doc:
      "Paths or patterns inside the workdir that must be there before it starts (an earlier task's artifacts); else it fails.",
  },
};

/** What runner/group_dir.ts gives `clean_workdir_after_run`. */
const GROUP_RESULT: Record<string, Field> = {
  success: {
    type: "boolean",
    doc:
      "No task of the group failed, timed out or was cancelled, and no abort_if stopped the run.",
    required: true,
  },
  group: { type: "string", doc: "The group's name.", required: true },
  workdir: { type: "string", doc: "The group's directory (absolute).", required: true },
  error: { type: "string", doc: "Why it did not succeed: the first failure, or the abort." },
  failed: {
    type: "string[]",
    doc: "Tasks that failed, timed out or were cancelled, in plan order.",
    required: true,
  },
  tasks: {
    type: "table<string, sloth.TaskOutcome>",
    doc: "Every task of the group the run planned, by name.",
    required: true,
  },
  output: {
    type: "sloth.Outputs",
    doc: "The outputs of the group's last task (in plan order); empty if it gave none.",
    required: true,
  },
};
const TASK_OUTCOME: Record<string, Field> = {
  status: {
    type: '"success"|"failed"|"skipped"|"timeout"|"cancelled"',
    doc: "How it ended.",
    required: true,
  },
  error: { type: "string", doc: "Why it failed or was skipped." },
  outputs: { type: "sloth.Outputs", doc: "What its function returned.", required: true },
};

const AGENT: Record<AgentField, Field> = {
  address: { type: "string", doc: '"host:port" of the agent.', required: true },
  token_env: {
    type: "string",
    doc: "Environment variable holding the agent's token (else SLOTH_AGENT_TOKEN).",
  },
  tls: { type: "sloth.Tls", doc: "Talk TLS to this agent." },
  compress: {
    type: "boolean",
    doc: "gzip workspaces and change sets to and from this agent (wins over --compress).",
  },
};

const POOL: Record<string, Field> = {
  pool: {
    type: "string",
    doc:
      "An inventory pool: each attempt goes to a reachable, least loaded member; an unreachable one is passed over.",
    required: true,
  },
};
const FAN_OUT: Record<string, Field> = {
  each: {
    type: "string",
    doc:
      "An inventory pool: the task runs once on every member (`task@member`); dependents get outputs keyed by member.",
    required: true,
  },
  batch: { type: "integer", doc: "Members started at a time, each batch after the last." },
  max_failures: { type: "integer", doc: "After this many members failed, start no more." },
};

const TLS: Record<TlsField, Field> = {
  ca: { type: "string", doc: "CA certificate (PEM) that signed the agent's certificate." },
  cert: { type: "string", doc: "Client certificate (PEM), for mutual TLS; needs `key`." },
  key: { type: "string", doc: "Client private key (PEM), for mutual TLS; needs `cert`." },
};

/** What a task's functions get as `params` (lib/runner/local.ts adds the three names). */
const PARAMS: Record<string, Field> = {
  task_name: { type: "string", doc: "The task's name.", required: true },
  group_name: { type: "string", doc: "The task's group.", required: true },
  workdir: { type: "string", doc: "The task's working directory (absolute).", required: true },
  "[string]": { type: "any", doc: "The task's own `params`." },
};

// host.ts: `options(opts, [...])` and the values its functions return.
const EXEC_OPTIONS: Record<string, Field> = {
  workdir: { type: "string", doc: "Where the command runs (default: the task's workdir)." },
  env: { type: "table<string, string|number>", doc: "Added to the inherited environment." },
  timeout: { type: DURATION, doc: "Stops the command; it then has exit_code 124." },
};
const EXEC_RESULT: Record<string, Field> = {
  stdout: { type: "string", doc: "Everything the command wrote to stdout.", required: true },
  stderr: { type: "string", doc: "Everything the command wrote to stderr.", required: true },
  exit_code: { type: "integer", doc: "The exit code (124 after a timeout).", required: true },
  success: { type: "boolean", doc: "exit_code == 0.", required: true },
};
const HTTP_OPTIONS: Record<string, Field> = {
  headers: { type: "table<string, string>", doc: "Request headers." },
  timeout: { type: DURATION, doc: "Give up after this long (default 30s)." },
};
const HTTP_RESPONSE: Record<string, Field> = {
  status: { type: "integer", doc: "HTTP status code.", required: true },
  ok: { type: "boolean", doc: "The status is 2xx.", required: true },
  body: { type: "string", doc: "The response body as text.", required: true },
  headers: {
    type: "table<string, string>",
    doc: "Response headers, lower-case names.",
    required: true,
  },
};
const DOWNLOAD: Record<string, Field> = {
  status: { type: "integer", doc: "HTTP status code (always 2xx).", required: true },
  bytes: { type: "integer", doc: "Bytes written.", required: true },
  path: { type: "string", doc: "Absolute path of the file written.", required: true },
};

/** The builder DSL (prelude.ts): each method returns the builder. */
const fnField = (params: string, doc: string, returns = "sloth.TaskBuilder"): Field => ({
  type: `fun(self: ${returns}${params ? `, ${params}` : ""}): ${returns}`,
  doc,
  required: true,
});
const TASK_BUILDER: Record<string, Field> = {
  description: fnField("text: string", "Shown by `sloth-runner list`."),
  command: fnField(
    "command: string|sloth.BuilderFunction",
    "A shell command, or `function(this, params)` returning `ok[, message[, outputs]]` (nothing = ok).",
  ),
  timeout: fnField("duration: sloth.Duration", "Per attempt."),
  retries: fnField(
    'count: integer, strategy?: "exponential"|"linear"|"fixed"',
    "Extra attempts after a failure, and the wait between them.",
  ),
  depends_on: fnField("names: string|string[]", "Tasks that run first and must succeed."),
  next_if_fail: fnField("names: string|string[]", "Runs only if one of these failed."),
  async: fnField("async?: boolean", "May run alongside other tasks (no argument = true)."),
  workdir: fnField("dir: string", "Working directory, relative to the workflow file."),
  run_if: fnField(
    "condition: string|sloth.BuilderCondition",
    "A shell command (exit 0 = true) or `function(this, params)`; false skips the task.",
  ),
  abort_if: fnField(
    "condition: string|sloth.BuilderCondition",
    "A shell command (exit 0 = true) or `function(this, params)`; true stops the run.",
  ),
  pre_hook: fnField(
    "hook: sloth.BuilderFunction",
    "Runs before the command where the task runs; false fails the task (the table form's pre_exec).",
  ),
  post_hook: fnField(
    "hook: sloth.BuilderAfter",
    "Runs after a successful command where the task runs, with its outputs (the table form's post_exec).",
  ),
  on_success: fnField("hook: sloth.BuilderAfter", "See the task field on_success."),
  on_failure: fnField("hook: sloth.BuilderAfter", "See the task field on_failure."),
  on_fail: fnField("hook: sloth.BuilderAfter", "Another name of :on_failure."),
  on_timeout: fnField("hook: sloth.BuilderAfter", "See the task field on_timeout."),
  delegate_to: fnField(
    "target: string|sloth.Agent|sloth.Pool|sloth.FanOut|fun(): (string|table)",
    "Where the task runs; a function is called once, as the file loads.",
  ),
  agent: fnField("name: string", "Run on the agent of this name."),
  params: fnField("params: table<string, any>", "Added to the task's params."),
  artifacts: fnField("paths: string|string[]", "See the task field artifacts."),
  consumes: fnField("paths: string|string[]", "See the task field consumes."),
  user: fnField("user: string", "See the task field user."),
  sync_back: fnField(
    'mode: "on_success"|"always"|"never"',
    "On an agent: when changed files come back.",
  ),
  build: {
    type: "fun(self: sloth.TaskBuilder): sloth.Task",
    doc: "The task, for workflow.define or TaskDefinitions (a builder given there is built).",
    required: true,
  },
};
const wfField = (params: string, doc: string) => fnField(params, doc, "sloth.WorkflowBuilder");
const WORKFLOW_BUILDER: Record<string, Field> = {
  description: wfField("text: string", "Shown by `sloth-runner list`."),
  version: wfField("version: string", "Shown by `sloth-runner list`."),
  tasks: wfField("tasks: (sloth.Task|sloth.TaskBuilder)[]", "The workflow's tasks."),
  config: wfField("config: sloth.WorkflowConfig", "Defaults for the tasks."),
  on_start: wfField("hook: sloth.OnStart", "See the group field on_start."),
  on_complete: wfField("hook: sloth.OnComplete", "See the group field on_complete."),
  delegate_to: wfField(
    "target: string|sloth.Agent|sloth.Pool|sloth.FanOut",
    "Where the tasks run.",
  ),
  workdir: wfField("dir: string", "Working directory of the tasks."),
  agents: wfField("agents: table<string, sloth.Agent>", "Named agents."),
  build: wfField("", "Returns the builder: the workflow is defined already."),
};
const THIS: Record<string, Field> = {
  name: { type: "string", doc: "The task's name.", required: true },
  workflow: { type: "string", doc: "The workflow (group) it belongs to.", required: true },
  group: { type: "string", doc: "Same as `workflow`.", required: true },
  workdir: {
    type: "sloth.TaskWorkdir",
    doc: "Its working directory: `.path`, `get()`, or the object itself as a string.",
    required: true,
  },
  params: { type: "sloth.Params", doc: "The same table as `params`.", required: true },
  inputs: { type: "sloth.Inputs", doc: "Its dependencies' outputs, by task name.", required: true },
  deps: { type: "sloth.Inputs", doc: "Same as `inputs`.", required: true },
};

const TASK_WORKDIR: Record<string, Field> = {
  path: { type: "string", doc: "The absolute path.", required: true },
  get: { type: "fun(): string", doc: "The absolute path.", required: true },
  exists: { type: "fun(): boolean", doc: "Whether it exists.", required: true },
  ensure: {
    type: "fun(): boolean",
    doc: "Makes it (with parents) if missing; never empties it.",
    required: true,
  },
  cleanup: {
    type: "fun(): boolean",
    doc: "Removes nothing (a warning): the group's clean_workdir_after_run decides.",
    required: true,
  },
};
const method = (doc: string, type: string): Field => ({ type, doc, required: true });

// The objects of goroutine.ts's module; their methods are called with a colon.
const GOROUTINE_CLASSES: Class[] = [
  {
    name: "sloth.GoroutineHandle",
    doc: "A running function's result to come; give it to goroutine.await.",
    fields: {},
  },
  {
    name: "sloth.GoroutineResult",
    doc: "One handle's outcome in goroutine.await_all / wait_all.",
    fields: {
      success: {
        type: "boolean",
        doc: "Whether the function returned (no error).",
        required: true,
      },
      values: { type: "any[]", doc: "What it returned." },
      value: { type: "any", doc: "The first value it returned." },
      error: { type: "string", doc: "The error, with its file:line." },
    },
  },
  {
    name: "sloth.WaitGroup",
    doc: "Counts goroutines to wait for.",
    fields: {
      add: method(
        "Adds delta (default 1) to the counter.",
        "fun(self: sloth.WaitGroup, delta?: integer)",
      ),
      done: method("Takes one from the counter.", "fun(self: sloth.WaitGroup)"),
      wait: method("Waits until the counter is 0.", "fun(self: sloth.WaitGroup)"),
    },
  },
  {
    name: "sloth.Channel",
    doc: "Passes values between goroutines, in order.",
    fields: {
      send: method(
        "Waits for room (or a receiver), then sends; false and a message once closed.",
        "fun(self: sloth.Channel, value: any): boolean, string?",
      ),
      receive: method(
        "Waits for a value: value, true; nil, false once closed and empty.",
        "fun(self: sloth.Channel): any, boolean",
      ),
      try_send: method(
        "Sends only if that needs no wait.",
        "fun(self: sloth.Channel, value: any): boolean, string?",
      ),
      try_receive: method(
        "Receives only if a value is there: value, true; else nil, false.",
        "fun(self: sloth.Channel): any, boolean",
      ),
      close: method(
        "No more sends; receivers get what is left, then nil, false.",
        "fun(self: sloth.Channel): boolean, string?",
      ),
      len: method("Values waiting in the buffer.", "fun(self: sloth.Channel): integer"),
      cap: method("The buffer's size.", "fun(self: sloth.Channel): integer"),
      is_closed: method("Whether close was called.", "fun(self: sloth.Channel): boolean"),
      range: method(
        "Calls fn with each value until the channel is closed and empty.",
        "fun(self: sloth.Channel, fn: fun(value: any))",
      ),
    },
  },
  {
    name: "sloth.Mutex",
    doc: "Keeps other goroutines out while held (across their waits).",
    fields: {
      lock: method("Waits until it is free, then holds it.", "fun(self: sloth.Mutex)"),
      unlock: method("Lets it go.", "fun(self: sloth.Mutex)"),
      try_lock: method("Holds it if it is free.", "fun(self: sloth.Mutex): boolean"),
    },
  },
  {
    name: "sloth.PoolOptions",
    doc: "Options of goroutine.pool_create.",
    fields: { workers: { type: "integer", doc: "Jobs run at once (default 4)." } },
  },
  {
    name: "sloth.PoolStats",
    doc: "What goroutine.pool_stats returns.",
    fields: {
      name: { type: "string", doc: "The pool's name.", required: true },
      workers: { type: "integer", doc: "Jobs run at once.", required: true },
      active: { type: "integer", doc: "Jobs running now.", required: true },
      completed: { type: "integer", doc: "Jobs that returned.", required: true },
      failed: { type: "integer", doc: "Jobs that raised an error.", required: true },
      queued: { type: "integer", doc: "Jobs waiting for a worker.", required: true },
    },
  },
];

const CLASSES: Class[] = [
  {
    name: "sloth.TaskDefinitions",
    doc: "The workflow: groups of tasks, keyed by group name.",
    fields: { "[string]": { type: "sloth.Group", doc: "A group." } },
    open: true,
  },
  { name: "sloth.Group", doc: "A group of tasks.", fields: GROUP },
  { name: "sloth.Task", doc: "A task: a shell command or a Lua function.", fields: TASK },
  { name: "sloth.Agent", doc: "Where tasks run remotely.", fields: AGENT },
  { name: "sloth.Pool", doc: "One member of an inventory pool, chosen per attempt.", fields: POOL },
  { name: "sloth.FanOut", doc: "Every member of an inventory pool.", fields: FAN_OUT },
  { name: "sloth.Tls", doc: "TLS settings of an agent; paths relative to the file.", fields: TLS },
  { name: "sloth.Params", doc: "The `params` a task's functions get.", fields: PARAMS, open: true },
  { name: "sloth.ExecOptions", doc: "Options of `exec.run`.", fields: EXEC_OPTIONS },
  { name: "sloth.ExecResult", doc: "What `exec.run` returns.", fields: EXEC_RESULT },
  { name: "sloth.HttpOptions", doc: "Options of the `net` functions.", fields: HTTP_OPTIONS },
  {
    name: "sloth.HttpResponse",
    doc: "What `net.http_get/http_post` return.",
    fields: HTTP_RESPONSE,
  },
  { name: "sloth.Download", doc: "What `net.download` returns.", fields: DOWNLOAD },
  {
    name: "sloth.WorkflowConfig",
    doc: "A workflow's `config`: defaults for its tasks.",
    fields: WORKFLOW_CONFIG,
  },
  { name: "sloth.TaskBuilder", doc: 'What `task("name")` returns.', fields: TASK_BUILDER },
  {
    name: "sloth.WorkflowBuilder",
    doc: "What `workflow.define` returns.",
    fields: WORKFLOW_BUILDER,
  },
  {
    name: "sloth.TaskWorkdir",
    doc: "`this.workdir`: a path wherever a path goes (`..`, `tostring`, arguments).",
    fields: TASK_WORKDIR,
  },
  {
    name: "sloth.This",
    doc: "What a builder task's functions get first: the task.",
    fields: THIS,
  },
  {
    name: "sloth.WorkflowSpec",
    doc: "The table form of `workflow.define(name, { ... })`.",
    fields: {
      description: { type: "string", doc: "Shown by `sloth-runner list`." },
      version: { type: "string", doc: "Shown by `sloth-runner list`." },
      tasks: { type: "(sloth.Task|sloth.TaskBuilder)[]", doc: "The workflow's tasks." },
      config: { type: "sloth.WorkflowConfig", doc: "Defaults for the tasks." },
      on_start: { type: "sloth.OnStart", doc: "See the group field on_start." },
      on_complete: { type: "sloth.OnComplete", doc: "See the group field on_complete." },
      delegate_to: {
        type: "string|sloth.Agent|sloth.Pool|sloth.FanOut",
        doc: "Where the tasks run.",
      },
      workdir: { type: "string", doc: "Working directory of the tasks." },
      agents: { type: "table<string, sloth.Agent>", doc: "Named agents." },
    },
  },
  ...GOROUTINE_CLASSES,
  {
    name: "sloth.GroupResult",
    doc: "What `clean_workdir_after_run` gets: how the group's tasks ended.",
    fields: GROUP_RESULT,
  },
  { name: "sloth.TaskOutcome", doc: "How one task of the group ended.", fields: TASK_OUTCOME },
];

// How lib/runner/local.ts calls a task's functions, and what prelude.ts's
// `__sloth_call` accepts back from them.
const ALIASES: { name: string; doc: string; type: string }[] = [
  {
    name: "sloth.Duration",
    doc: '"500ms", "30s", "2m", "1h30m", or seconds.',
    type: "string|number",
  },
  {
    name: "sloth.Inputs",
    doc: "The outputs of the tasks this one depends on, by task name.",
    type: "table<string, table<string, any>>",
  },
  {
    name: "sloth.Outputs",
    doc: "Plain data: strings, numbers, booleans and tables.",
    type: "table<string, any>",
  },
  {
    name: "sloth.TaskFunction",
    doc: "A task's command: fails on false or an error; outputs become the inputs of dependents.",
    type: "fun(params: sloth.Params, inputs: sloth.Inputs): boolean, string?, sloth.Outputs?",
  },
  {
    name: "sloth.PreExec",
    doc: "Runs before the command; false (with a message) fails the task.",
    type: "fun(params: sloth.Params, inputs: sloth.Inputs): boolean, string?",
  },
  {
    name: "sloth.PostExec",
    doc: "Runs after a successful command; false (with a message) fails the task.",
    type: "fun(params: sloth.Params, outputs: sloth.Outputs): boolean, string?",
  },
  {
    name: "sloth.CleanWorkdir",
    doc: "clean_workdir_after_run as a function: true removes the group's directory.",
    type: "fun(result: sloth.GroupResult): boolean",
  },
  {
    name: "sloth.Condition",
    doc: "run_if / abort_if as a function: must return a boolean.",
    type: "fun(params: sloth.Params, inputs: sloth.Inputs): boolean",
  },
  {
    name: "sloth.OnOutcome",
    doc:
      "on_success (with the outputs), on_failure and on_timeout (with the error); nothing or true = ok.",
    type: "fun(params: sloth.Params, value: any, inputs: sloth.Inputs): boolean?, string?",
  },
  {
    name: "sloth.OnStart",
    doc: "A workflow's on_start: false (with a message) or an error stops the run.",
    type: "fun(): boolean?, string?",
  },
  {
    name: "sloth.OnComplete",
    doc:
      "A workflow's on_complete: `results[task]` has status, success, error, message, outputs, attempts, duration_ms, where.",
    type: "fun(success: boolean, results: table<string, table>): boolean?, string?",
  },
  {
    name: "sloth.BuilderFunction",
    doc:
      "A builder task's command or pre_hook: nothing or true = ok; false or nil, message = failed.",
    type: "fun(this: sloth.This, params: sloth.Params): boolean?, string?, sloth.Outputs?",
  },
  {
    name: "sloth.BuilderCondition",
    doc: "A builder task's run_if / abort_if: must return a boolean.",
    type: "fun(this: sloth.This, params: sloth.Params): boolean",
  },
  {
    name: "sloth.BuilderAfter",
    doc: "A builder task's post_hook and on_success (outputs), on_failure and on_timeout (error).",
    type: "fun(this: sloth.This, params: sloth.Params, value: any): boolean?, string?",
  },
];

const p = (name: string, type: string, optional = false): Param => ({ name, type, optional });
const path = p("path", "string");
const text = p("text", "string");
const anything = p("...", "any");
const url = p("url", "string");
const httpOptions = p("opts", "sloth.HttpOptions", true);

const fnParam = p("fn", "function");
const handles = p("handles", "sloth.GoroutineHandle[]");
const poolName = p("name", "string");

const log = (level: string, doc: string): Fn => ({
  name: `log.${level}`,
  doc,
  params: [anything],
  returns: [],
});

// prelude.ts builds these from the host functions of host.ts.
const MODULES: Module[] = [
  {
    name: "workflow",
    doc: "Workflows of the builder DSL: each is a group, like one of TaskDefinitions.",
    functions: [{
      name: "workflow.define",
      doc:
        "Defines a workflow (a group): add to it with the builder's methods, or give the table form. Names must be unique, also against TaskDefinitions.",
      params: [p("name", "string"), p("spec", "sloth.WorkflowSpec", true)],
      returns: ["sloth.WorkflowBuilder"],
    }],
  },
  {
    name: "log",
    doc: "Log lines for the task; the arguments are joined with spaces.",
    functions: [
      log("debug", "A debug line, shown with --verbose."),
      log("info", "An info line."),
      log("warn", "A warning line."),
      log("error", "An error line (it does not fail the task)."),
      log("success", "An info line (the Go sloth-runner's log.success)."),
    ],
  },
  {
    name: "exec",
    doc: "Shell commands.",
    functions: [{
      name: "exec.run",
      doc:
        "Runs cmd with /bin/sh -c in the task's workdir; a non-zero exit is not an error. The result also stands for its stdout (tostring, .., #, string methods); stderr and an error (nil on success) come second and third, as the Go sloth-runner returns them.",
      params: [p("cmd", "string"), p("opts", "sloth.ExecOptions", true)],
      returns: ["sloth.ExecResult", "string", "string?"],
    }],
  },
  {
    name: "fs",
    doc: "Files; relative paths start from the task's workdir. Failures raise an error.",
    functions: [
      { name: "fs.read", doc: "The content of a text file.", params: [path], returns: ["string"] },
      {
        name: "fs.write",
        doc: "Writes a file, replacing it.",
        params: [path, p("text", "string|number")],
        returns: ["true"],
      },
      {
        name: "fs.append",
        doc: "Appends to a file, creating it.",
        params: [path, p("text", "string|number")],
        returns: ["true"],
      },
      {
        name: "fs.exists",
        doc: "Whether the path exists (a dangling symlink does).",
        params: [path],
        returns: ["boolean"],
      },
      {
        name: "fs.mkdir",
        doc: "Makes a directory and its parents.",
        params: [path],
        returns: ["true"],
      },
      {
        name: "fs.rm",
        doc: "Removes a file or an empty directory.",
        params: [path],
        returns: ["true"],
      },
      {
        name: "fs.rm_r",
        doc: "Removes a path recursively; no error if it is missing.",
        params: [path],
        returns: ["true"],
      },
      {
        name: "fs.ls",
        doc: "The sorted names in a directory (default: the workdir).",
        params: [p("path", "string", true)],
        returns: ["string[]"],
      },
      { name: "fs.size", doc: "A file's size in bytes.", params: [path], returns: ["integer"] },
      {
        name: "fs.copy",
        doc: "Copies a file.",
        params: [p("from", "string"), p("to", "string")],
        returns: ["true"],
      },
      {
        name: "fs.rename",
        doc: "Renames or moves a path.",
        params: [p("from", "string"), p("to", "string")],
        returns: ["true"],
      },
      {
        name: "fs.tmpname",
        doc: "Creates an empty temporary file and returns its path.",
        params: [],
        returns: ["string"],
      },
    ],
  },
  {
    name: "data",
    doc: "Data formats; JSON and YAML nulls become nil.",
    functions: [
      { name: "data.parse_json", doc: "Parses JSON text.", params: [text], returns: ["any"] },
      {
        name: "data.to_json",
        doc: "A value as JSON text.",
        params: [p("value", "any")],
        returns: ["string"],
      },
      { name: "data.parse_yaml", doc: "Parses YAML text.", params: [text], returns: ["any"] },
      {
        name: "data.to_yaml",
        doc: "A value as YAML text.",
        params: [p("value", "any")],
        returns: ["string"],
      },
    ],
  },
  {
    name: "net",
    doc: "HTTP; no answer within the timeout raises an error, a non-2xx status only in download.",
    functions: [
      {
        name: "net.http_get",
        doc: "A GET request.",
        params: [url, httpOptions],
        returns: ["sloth.HttpResponse"],
      },
      {
        name: "net.http_post",
        doc: "A POST request; a table body is sent as JSON.",
        params: [url, p("body", "string|table", true), httpOptions],
        returns: ["sloth.HttpResponse"],
      },
      {
        name: "net.download",
        doc: "Saves a URL's body to a file; a non-2xx status raises an error.",
        params: [url, path, httpOptions],
        returns: ["sloth.Download"],
      },
    ],
  },
  {
    name: "goroutine",
    doc: "Functions of one task that run at once: each runs until it waits " +
      "(exec.run, net.*, sleep, a channel, a wait group), and meanwhile the others run.",
    functions: [
      {
        name: "goroutine.spawn",
        doc: "Starts fn(...) in a goroutine; its error fails the task where the task waits.",
        params: [fnParam, anything],
        returns: [],
      },
      {
        name: "goroutine.spawn_many",
        doc: "Starts count goroutines, fn(1) to fn(count).",
        params: [p("count", "integer"), p("fn", "fun(id: integer)")],
        returns: [],
      },
      {
        name: "goroutine.async",
        doc: "Starts fn(...) in a goroutine; goroutine.await gives its result.",
        params: [fnParam, anything],
        returns: ["sloth.GoroutineHandle"],
      },
      {
        name: "goroutine.create",
        doc: "goroutine.async.",
        params: [fnParam, anything],
        returns: ["sloth.GoroutineHandle"],
      },
      {
        name: "goroutine.await",
        doc: "Waits for the function: true and its values, or false and its error (file:line).",
        params: [p("handle", "sloth.GoroutineHandle")],
        returns: ["boolean", "any ..."],
      },
      {
        name: "goroutine.await_all",
        doc: "Waits for every function; one result each, in order.",
        params: [handles],
        returns: ["sloth.GoroutineResult[]"],
      },
      {
        name: "goroutine.wait_all",
        doc: "goroutine.await_all; those not done within seconds are stopped and fail.",
        params: [handles, p("seconds", "number", true)],
        returns: ["sloth.GoroutineResult[]"],
      },
      {
        name: "goroutine.timeout",
        doc: "fn(...) in a goroutine, given ms: true and its values, false and its error, " +
          'or false, "timeout exceeded (ms ms)" (it is stopped where it waits).',
        params: [p("ms", "number"), fnParam, anything],
        returns: ["boolean", "any ..."],
      },
      {
        name: "goroutine.sleep",
        doc: "Waits ms milliseconds; the other goroutines run meanwhile.",
        params: [p("ms", "number")],
        returns: [],
      },
      {
        name: "goroutine.wait_group",
        doc: "A counter to wait for: wg:add(n), wg:done(), wg:wait().",
        params: [],
        returns: ["sloth.WaitGroup"],
      },
      {
        name: "goroutine.channel",
        doc:
          "A channel holding up to size values unreceived (default 0: a send waits for a receiver).",
        params: [p("size", "integer", true)],
        returns: ["sloth.Channel"],
      },
      {
        name: "goroutine.mutex",
        doc: "A lock: mu:lock(), mu:unlock(), mu:try_lock().",
        params: [],
        returns: ["sloth.Mutex"],
      },
      {
        name: "goroutine.pool_create",
        doc: "A named pool running its jobs on at most workers goroutines (replaces one so named).",
        params: [poolName, p("options", "sloth.PoolOptions", true)],
        returns: ["true"],
      },
      {
        name: "goroutine.pool_submit",
        doc:
          "Queues fn(...) in the pool: a job id, or nil and why not. A job's error fails the task.",
        params: [poolName, fnParam, anything],
        returns: ["string?", "string?"],
      },
      {
        name: "goroutine.pool_wait",
        doc: "Waits until the pool's jobs are done; false and why if there is no such pool.",
        params: [poolName],
        returns: ["boolean", "string?"],
      },
      {
        name: "goroutine.pool_stats",
        doc: "The pool's counters, or nil if there is no such pool.",
        params: [poolName],
        returns: ["sloth.PoolStats?"],
      },
      {
        name: "goroutine.pool_close",
        doc: "Drops the pool and its queued jobs (running ones finish).",
        params: [poolName],
        returns: ["boolean"],
      },
    ],
  },
];

const unavailable = (name: string, instead: string): Fn => ({
  name,
  doc: `Not available in sloth-runner: raises an error. Use \`${instead}\`.`,
  params: [anything],
  returns: [],
  deprecated: true,
});

/** Globals and standard-library functions that prelude.ts replaces. */
const FUNCTIONS: Fn[] = [
  {
    name: "print",
    doc: "A line on the task's stdout; the arguments are joined with spaces.",
    params: [anything],
    returns: [],
  },
  {
    name: "task",
    doc: 'A task builder (the Go sloth-runner\'s DSL): task("name"):command("make"):build().',
    params: [p("name", "string")],
    returns: ["sloth.TaskBuilder"],
  },
  {
    name: "import",
    doc: "Runs a Lua file (relative to this file) once per Lua state and returns its value.",
    params: [path],
    returns: ["any"],
  },
  {
    name: "require",
    doc:
      'A built-in module ("log", "exec", "fs", "data", "net", "goroutine"), or a Lua file relative to this one ("lib/utils" or "lib.utils" is lib/utils.lua), run once per Lua state like import.',
    params: [p("name", "string")],
    returns: ["any"],
  },
  {
    name: "os.getenv",
    doc: "An environment variable, including the task's SLOTH_TASK, SLOTH_GROUP, SLOTH_WORKDIR.",
    params: [p("name", "string")],
    returns: ["string?"],
  },
  {
    name: "os.remove",
    doc: "fs.rm: removes a file or an empty directory; raises an error on failure.",
    params: [path],
    returns: ["true"],
  },
  {
    name: "os.rename",
    doc: "fs.rename: renames or moves a path; raises an error on failure.",
    params: [p("from", "string"), p("to", "string")],
    returns: ["true"],
  },
  {
    name: "os.tmpname",
    doc: "fs.tmpname: creates an empty temporary file and returns its path.",
    params: [],
    returns: ["string"],
  },
  {
    name: "io.write",
    doc: "Writes strings and numbers (nothing added between them) to the task's stdout " +
      "(io.stdout; io.stderr:write for its stderr); each whole line becomes a log line.",
    params: [anything],
    returns: ["table"],
  },
  {
    name: "io.output",
    doc: "io.stdout, the only output there is (files: fs.write).",
    params: [p("file", "table", true)],
    returns: ["table"],
  },
  {
    name: "io.input",
    doc: "io.stdin, which has nothing to read: tasks have no standard input.",
    params: [p("file", "table", true)],
    returns: ["table"],
  },
  {
    name: "io.close",
    doc: "Does nothing to io.stdout and io.stderr, which stay open.",
    params: [p("file", "table", true)],
    returns: ["nil", "string"],
  },
  {
    name: "io.type",
    doc: '"file" for io.stdout, io.stderr and io.stdin; nil for anything else.',
    params: [p("obj", "any")],
    returns: ["string?"],
  },
  {
    name: "io.read",
    doc: "Raises an error: tasks have no standard input.",
    params: [anything],
    returns: [],
  },
  {
    name: "warn",
    doc: "A warning line in the task's log (Lua's @on and @off controls are ignored).",
    params: [p("message", "string"), anything],
    returns: [],
  },
  {
    name: "load",
    doc: "Lua's load, for text chunks only (binary chunks are refused).",
    params: [
      p("chunk", "string|function"),
      p("name", "string", true),
      p("mode", "string", true),
      p(
        "env",
        "table",
        true,
      ),
    ],
    returns: ["function?", "string?"],
  },
  unavailable("os.execute", "exec.run(cmd)"),
  unavailable("io.popen", "exec.run(cmd)"),
  unavailable("os.exit", 'return false, "message" from the task'),
  unavailable("io.open", "fs.read(path) / fs.write(path, text)"),
  unavailable("io.lines", "fs.read(path)"),
  unavailable("io.tmpfile", "fs.tmpname()"),
  unavailable("dofile", 'import("path.lua")'),
  unavailable("loadfile", 'import("path.lua")'),
];

/** Global values: `name = value`, after a `---@type` unless LuaLS can tell from the value. */
const GLOBALS: { name: string; doc: string; type?: string; value: string }[] = [
  {
    name: "TaskDefinitions",
    doc: "The workflow: groups of tasks, keyed by group name.",
    type: "sloth.TaskDefinitions",
    value: "{}",
  },
  {
    name: "values",
    doc: "The content of `-v/--values file.yaml`; {} without it.",
    type: "table<string|integer, any>",
    value: "{}",
  },
  {
    name: "unpack",
    doc: "table.unpack, for Lua 5.1 scripts.",
    value: "table.unpack",
  },
];

function comment(doc: string): string {
  return `--- ${doc}`;
}

function classBlock({ name, doc, fields, open }: Class): string[] {
  const lines = [comment(doc), `---@class ${open ? "" : "(exact) "}${name}`];
  for (const [field, spec] of Object.entries(fields)) {
    lines.push(comment(spec.doc));
    const optional = spec.required || field.startsWith("[") ? "" : "?";
    lines.push(`---@field ${field}${optional} ${spec.type}`);
  }
  return lines;
}

function fnBlock(fn: Fn): string[] {
  const lines = [comment(fn.doc)];
  if (fn.deprecated) lines.push("---@deprecated");
  for (const param of fn.params) {
    lines.push(`---@param ${param.name}${param.optional ? "?" : ""} ${param.type}`);
  }
  for (const type of fn.returns) lines.push(`---@return ${type}`);
  lines.push(`function ${fn.name}(${fn.params.map((x) => x.name).join(", ")}) end`);
  return lines;
}

/**
 * The LuaLS meta file for workflow files: put it where the editor's Lua
 * extension looks (`workspace.library`, or next to the workflow).
 */
export function luaAnnotations(): string {
  const blocks: string[][] = [
    [
      "---@meta",
      "-- sloth-runner workflow API, for lua-language-server (the VS Code Lua extension).",
      "-- Generated by `sloth-runner types`; editing it changes nothing at run time.",
    ],
    ...CLASSES.map(classBlock),
    ...ALIASES.map((a) => [comment(a.doc), `---@alias ${a.name} ${a.type}`]),
    ...GLOBALS.map((g) => [
      comment(g.doc),
      ...(g.type ? [`---@type ${g.type}`] : []),
      `${g.name} = ${g.value}`,
    ]),
    ...MODULES.flatMap((m) => [
      [comment(m.doc), `---@class sloth.${m.name}`, `${m.name} = {}`],
      ...m.functions.map(fnBlock),
    ]),
    ...FUNCTIONS.map(fnBlock),
  ];
  return blocks.map((lines) => lines.join("\n")).join("\n\n") + "\n";
}

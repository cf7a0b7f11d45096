/**
 * The plain description the Lua side produced → a checked `Workflow`. The Lua
 * file is untrusted input: every field is checked here, and every problem is
 * reported with the group and task it belongs to, all at once.
 */
import { z } from "zod";
import { didYouMean, SlothError } from "../errors.ts";
import type {
  AgentDef,
  Command,
  Condition,
  Group,
  GroupDir,
  Inventory,
  LuaRef,
  Target,
  Task,
  Workflow,
} from "../model/mod.ts";
import {
  findAgent,
  findPool,
  guardedDirs,
  hasAddressShape,
  MAX_TIMEOUT_MS,
  parseAddress,
  parseDuration,
  removalRefusal,
} from "../model/mod.ts";
import { dirname, resolvePath } from "./source.ts";

export interface NormalizeOptions {
  /** Absolute path of the main file. */
  file: string;
  /** What errors call the file. */
  fileName: string;
  /** Where tasks run when no `workdir` is given. */
  cwd: string;
  /**
   * On an agent: every task runs right there, so where tasks would run is not
   * looked at (top-level code may compute addresses from the master's environment).
   */
  ignoreTargets?: boolean;
  /** The fleet's agents and pools, which `delegate_to` and `agent` may name. */
  inventory?: Inventory;
  /** What errors call the inventory file. */
  inventoryName?: string;
  /** Where things the user should know, and that do not stop the load, are added. */
  warnings?: string[];
}

/**
 * `config` keys of the Go sloth-runner's workflows that mean nothing here: each is
 * said, with what does the job, and left out (the load goes on).
 */
const GO_CONFIG_KEYS: Readonly<Record<string, string>> = {
  cleanup_on_failure: "create_workdir_before_run = true with clean_workdir_after_run = " +
    "function(r) return not r.success end removes the workflow's own directory after a failure",
  circuit_breaker: "a task's retries and retry_strategy",
  state_persistence: "a task's outputs, which the tasks after it get",
  output_style: "--output json, or the live view on a terminal",
  performance_monitoring: "the run's summary, or --report json=FILE",
  metrics_collection: "the run's summary, or --report json=FILE",
  parallel: "async = true on the tasks that may run side by side (and max_parallel_tasks)",
  on_task_failure: "on_failure on the tasks, or fail_fast",
  values: "values (-v values.yaml)",
  host: "values (-v values.yaml), or params on the tasks",
  port: "values (-v values.yaml), or params on the tasks",
};

export const TASK_FIELDS = [
  "name",
  "description",
  "command",
  "depends_on",
  "next_if_fail",
  "retries",
  "timeout",
  "async",
  "pre_exec",
  "post_exec",
  "run_if",
  "abort_if",
  "workdir",
  "params",
  "delegate_to",
  "agent",
  "sync_back",
  "retry_strategy",
  "on_success",
  "on_failure",
  "on_timeout",
  "artifacts",
  "consumes",
  "user",
] as const;
export const GROUP_FIELDS = [
  "description",
  "workdir",
  "create_workdir_before_run",
  "clean_workdir_after_run",
  "delegate_to",
  "agents",
  "version",
  "config",
  "on_start",
  "on_complete",
  "metadata",
] as const;
/** The group fields whose value may be a Lua function, kept under the task name "". */
export const GROUP_FUNCTION_FIELDS = [
  "clean_workdir_after_run",
  "on_start",
  "on_complete",
] as const;

/** Lua's empty table arrives as `{}`; where a list is expected it means an empty list. */
const emptyAsList = (value: unknown) =>
  isRecord(value) && Object.keys(value).length === 0 ? [] : value;

const fnRef = z.object({ __lua_function: z.string() }, { error: "must be a Lua function" })
  .strict();
const shellOrFn = z.union([z.string().min(1, "must not be empty"), fnRef], {
  error: "must be a shell command string or a Lua function",
});
const names = z.union([
  z.string().min(1),
  z.preprocess(emptyAsList, z.array(z.string().min(1), { error: "must list task names" })),
], { error: "must be a task name or a list of task names" });
const address = z.string().refine(hasAddressShape, { error: 'must be "host:port"', abort: true })
  .refine((a) => parseAddress(a) !== undefined, "has a port outside 1-65535");
export const tlsDef = z.object({
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
}, { error: "tls must be a table { ca = ..., cert = ..., key = ... }" }).strict()
  .refine(
    (t) => (t.cert === undefined) === (t.key === undefined),
    "tls needs both cert and key, or neither",
  );
export const agentDef = z.object({
  address,
  token_env: z.string().min(1).optional(),
  tls: tlsDef.optional(),
  compress: z.boolean().optional(),
}).strict();
const poolName = z.string({ error: "must be the name of a pool of the inventory" }).min(1);
const poolRef = z.object({ pool: poolName }).strict();
const count = (what: string) =>
  z.number({ error: `must be a whole number of ${what}, at least 1` })
    .int({ error: `must be a whole number of ${what}, at least 1` })
    .min(1, `must be a whole number of ${what}, at least 1`);
const eachRef = z.object({
  each: poolName,
  batch: count("hosts").optional(),
  max_failures: count("failed hosts").optional(),
}).strict();
/** The table forms of `delegate_to`, told apart by the key that names what they are. */
const DELEGATE_FORMS = { pool: poolRef, each: eachRef, address: agentDef } as const;
const delegateTo = z.union([z.string().min(1), z.record(z.string(), z.unknown())], {
  error:
    'must be "host:port", an agent name, { address = "host:port" }, { pool = "NAME" } or { each = "NAME" }',
});
const plainTable = z.preprocess(
  (v) => Array.isArray(v) && v.length === 0 ? {} : v,
  z.record(z.string(), z.unknown(), { error: "must be a table of name = value" }),
);

const duration = z.union([z.string(), z.number()]).refine((v) => parseDuration(v) !== undefined, {
  error: (issue) =>
    `${
      JSON.stringify(issue.input)
    } is not a duration (use "500ms", "30s", "2m" or a number of seconds)`,
  abort: true,
}).refine((v) => parseDuration(v)! <= MAX_TIMEOUT_MS, {
  error: (issue) => `${JSON.stringify(issue.input)} is longer than the longest timeout, 24 days`,
});
const retryStrategy = z.enum(["exponential", "linear", "fixed"], {
  error: 'must be "exponential", "linear" or "fixed"',
});
const retryCount = z.number({ error: "must be a whole number of extra attempts, 0 to 100" })
  .int({ error: "must be a whole number of extra attempts, 0 to 100" })
  .min(0, "must be a whole number of extra attempts, 0 to 100")
  .max(100, "must be at most 100 extra attempts");

const artifactPath = z.string().min(1, "must not be empty").refine(
  (p) => !p.startsWith("/") && !p.split("/").includes(".."),
  {
    error: (issue) =>
      `${
        JSON.stringify(issue.input)
      } must be a path inside the task's workdir (no leading / or ..)`,
  },
);

const taskSchema = z.object({
  name: z.string({ error: "is missing (every task needs a name)" }).min(1, "must not be empty")
    .regex(/^[^\s,]+$/, "must not contain spaces or commas")
    .regex(
      /^[^@]+$/,
      "must not contain @, which names a fan-out's copy on one host (deploy@web-1)",
    ),
  description: z.string().optional(),
  command: shellOrFn.optional(),
  depends_on: names.optional(),
  next_if_fail: names.optional(),
  retries: retryCount.optional(),
  timeout: duration.optional(),
  async: z.boolean({ error: "must be true or false" }).optional(),
  pre_exec: fnRef.optional(),
  post_exec: fnRef.optional(),
  run_if: shellOrFn.optional(),
  abort_if: shellOrFn.optional(),
  workdir: z.string().min(1).optional(),
  params: plainTable.optional(),
  delegate_to: delegateTo.optional(),
  agent: z.string().min(1).optional(),
  sync_back: z.enum(["on_success", "always", "never"], {
    error: 'must be "on_success", "always" or "never"',
  }).optional(),
  retry_strategy: retryStrategy.optional(),
  on_success: fnRef.optional(),
  on_failure: fnRef.optional(),
  on_timeout: fnRef.optional(),
  artifacts: z.union([artifactPath, z.preprocess(emptyAsList, z.array(artifactPath))], {
    error: "must be a path (or pattern such as dist/*.tar.gz) or a list of them",
  }).optional(),
  consumes: z.union([artifactPath, z.preprocess(emptyAsList, z.array(artifactPath))], {
    error: "must be a path or a list of paths",
  }).optional(),
  user: z.union([
    z.string().min(1, "must not be empty"),
    z.number().int().min(0).transform(String),
  ], { error: "must be a user name or uid" }).optional(),
});

/** A workflow's `config` (workflow.define): what it may set for all of its tasks. */
const workflowConfig = z.object({
  timeout: duration.optional(),
  retries: retryCount.optional(),
  max_retries: retryCount.optional(),
  retry_policy: retryStrategy.optional(),
  workdir: z.string().min(1).optional(),
  max_parallel_tasks: z.number({ error: "must be a whole number of tasks, at least 1" }).int({
    error: "must be a whole number of tasks, at least 1",
  }).min(1, "must be a whole number of tasks, at least 1").optional(),
  fail_fast: z.boolean({ error: "must be true or false" }).optional(),
  continue_on_error: z.boolean({ error: "must be true or false" }).optional(),
}, { error: "must be a table { timeout = ..., retries = ..., workdir = ... }" }).strict()
  .refine((c) => c.retries === undefined || c.max_retries === undefined, {
    error: "set retries or max_retries (the same thing), not both",
  })
  .refine((c) => c.fail_fast === undefined || c.continue_on_error !== c.fail_fast, {
    error: "fail_fast and continue_on_error say opposite things; set one of them",
  });

const groupSchema = z.object({
  description: z.string().optional(),
  version: z.union([z.string(), z.number()], { error: "must be a version string" }).optional(),
  config: z.preprocess(
    (v) => Array.isArray(v) && v.length === 0 ? {} : v,
    workflowConfig,
  ).optional(),
  on_start: fnRef.optional(),
  on_complete: fnRef.optional(),
  metadata: plainTable.optional(),
  workdir: z.string().min(1).optional(),
  create_workdir_before_run: z.boolean({ error: "must be true or false" }).optional(),
  clean_workdir_after_run: z.union([z.boolean(), fnRef], {
    error: "must be true, false or a function(result) that returns true to remove the directory",
  }).optional(),
  delegate_to: delegateTo.optional(),
  agents: z.preprocess(
    (v) => Array.isArray(v) && v.length === 0 ? {} : v,
    z.record(z.string(), agentDef, { error: "must be a table of name = { address = ... }" }),
  ).optional(),
});

interface RawTask {
  index?: number;
  key?: string;
  fields: Record<string, unknown>;
}
interface RawGroup {
  name: string;
  /** Made by workflow.define, not found in TaskDefinitions. */
  defined?: boolean;
  fields: Record<string, unknown>;
  tasks: RawTask[];
}

export function normalizeWorkflow(description: unknown, options: NormalizeOptions): Workflow {
  const { fileName } = options;
  const desc = description as {
    missing?: boolean;
    invalid?: string;
    groups?: unknown;
    problems?: unknown;
  };
  if (desc.missing) {
    throw new SlothError(
      "workflow_invalid",
      `${fileName} does not define TaskDefinitions or any workflow.define(...)`,
      {
        hint: "Define a global table: TaskDefinitions = { my_group = { tasks = { ... } } }, " +
          'or workflow.define("my_group", { tasks = { ... } })',
      },
    );
  }
  if (desc.invalid) {
    throw new SlothError(
      "workflow_invalid",
      `${fileName}: TaskDefinitions must be a table, got ${desc.invalid}`,
    );
  }
  const rawGroups = emptyAsList(desc.groups) as RawGroup[];
  const problems = (emptyAsList(desc.problems) as string[] | undefined ?? []).slice();
  const groups: Group[] = [];
  for (const raw of rawGroups) {
    const group = normalizeGroup(raw, options, problems);
    if (group) groups.push(group);
  }
  if (problems.length === 0 && groups.length === 0) {
    problems.push("TaskDefinitions has no groups");
  }
  if (problems.length > 0) {
    throw new SlothError(
      "workflow_invalid",
      `${fileName} is not a valid workflow:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  return { file: options.file, groups };
}

function normalizeGroup(
  raw: RawGroup,
  options: NormalizeOptions,
  problems: string[],
): Group | undefined {
  const label = `${raw.defined ? "workflow" : "group"} "${raw.name}"`;
  const before = problems.length;
  if (raw.fields.tasks !== undefined) {
    problems.push(`${label}: tasks must be a table of tasks`);
  }
  const fields = { ...raw.fields };
  delete fields.tasks;
  if (options.ignoreTargets) {
    delete fields.delegate_to;
    delete fields.agents;
  }
  goConfig(fields, label, options.warnings);
  unknownFields(fields, GROUP_FIELDS, label, problems);
  functionsWhereNone(fields, GROUP_FUNCTION_FIELDS, label, problems);
  const parsed = groupSchema.safeParse(fields);
  if (!parsed.success) {
    report(parsed.error, label, problems);
    return undefined;
  }
  const g = parsed.data;
  const baseDir = dirname(options.file);
  const tlsPaths = (t: z.infer<typeof tlsDef> | undefined) =>
    t && {
      ca: t.ca && resolvePath(baseDir, t.ca),
      cert: t.cert && resolvePath(baseDir, t.cert),
      key: t.key && resolvePath(baseDir, t.key),
    };
  const agents: Record<string, AgentDef> = {};
  for (const [name, def] of Object.entries(g.agents ?? {})) {
    agents[name] = {
      address: def.address,
      tokenEnv: def.token_env,
      tls: tlsPaths(def.tls),
      compress: def.compress,
    };
  }
  const config = g.config ?? {};
  if (g.workdir !== undefined && config.workdir !== undefined) {
    problems.push(`${label}: set workdir or config.workdir, not both`);
  }
  const workdirGiven = g.workdir ?? config.workdir;
  const dir = groupDir({ ...g, workdir: workdirGiven }, baseDir, label, options, problems);
  // A temporary directory is made by the run: its tasks' workdir is filled in then.
  const groupWorkdir = dir && !dir.path
    ? ""
    : workdirGiven
    ? resolvePath(baseDir, workdirGiven)
    : options.cwd;
  const known = { agents, options };
  // Checked once, here: its problems are the group's, not each of its tasks'.
  const groupTarget = g.delegate_to === undefined
    ? { kind: "local" as const }
    : resolveTarget({ task: g.delegate_to }, known, label, problems, tlsPaths);

  const tasks: Task[] = [];
  const seen = new Set<string>();
  for (const rawTask of emptyAsList(raw.tasks) as RawTask[]) {
    const where = rawTask.index !== undefined ? `task #${rawTask.index}` : `task "${rawTask.key}"`;
    const name = typeof rawTask.fields.name === "string" ? rawTask.fields.name : undefined;
    const taskLabel = `${label} ${name ? `task "${name}"` : where}`;
    const taskFields = { ...rawTask.fields };
    if (options.ignoreTargets) {
      delete taskFields.delegate_to;
      delete taskFields.agent;
    }
    unknownFields(taskFields, TASK_FIELDS, taskLabel, problems);
    functionsWhereNone(taskFields, FUNCTION_FIELDS, taskLabel, problems);
    const parsedTask = taskSchema.safeParse(taskFields);
    if (!parsedTask.success) {
      report(parsedTask.error, taskLabel, problems);
      continue;
    }
    const t = parsedTask.data;
    if (seen.has(t.name)) {
      problems.push(`${label}: two tasks are named "${t.name}"`);
      continue;
    }
    seen.add(t.name);
    const timeout = t.timeout ?? config.timeout;
    const timeoutMs = timeout === undefined ? undefined : parseDuration(timeout);
    const target = t.delegate_to === undefined && t.agent === undefined
      ? groupTarget
      : resolveTarget(
        { task: t.delegate_to, agent: t.agent },
        known,
        taskLabel,
        problems,
        tlsPaths,
      );
    if (target?.kind === "each" && t.sync_back !== undefined && t.sync_back !== "never") {
      problems.push(
        `${taskLabel}: sync_back = "${t.sync_back}" cannot be kept by a fan-out: the changes ` +
          "of every host would land in one directory. Its hosts' changes stay on them " +
          '(sync_back = "never"); pass results on through outputs, which the tasks that ' +
          "depend on it get keyed by host.",
      );
    }
    tasks.push({
      id: `${raw.name}.${t.name}`,
      name: t.name,
      group: raw.name,
      description: t.description ?? "",
      command: t.command === undefined ? undefined : command(t.command),
      dependsOn: list(t.depends_on),
      nextIfFail: list(t.next_if_fail),
      retries: t.retries ?? config.retries ?? config.max_retries ?? 0,
      timeoutMs,
      async: t.async ?? false,
      preExec: t.pre_exec && lua(t.pre_exec),
      postExec: t.post_exec && lua(t.post_exec),
      runIf: t.run_if === undefined ? undefined : command(t.run_if),
      abortIf: t.abort_if === undefined ? undefined : command(t.abort_if),
      workdir: t.workdir ? resolvePath(baseDir, t.workdir) : groupWorkdir,
      params: t.params ?? {},
      target: target ?? { kind: "local" },
      syncBack: target?.kind === "each" ? "never" : t.sync_back ?? "on_success",
      // Set only when given: most tasks have none of these.
      ...((t.retry_strategy ?? config.retry_policy) &&
        { retryStrategy: t.retry_strategy ?? config.retry_policy }),
      ...(config.max_parallel_tasks !== undefined &&
        { groupMaxParallel: config.max_parallel_tasks }),
      ...((config.fail_fast === true || config.continue_on_error === false) &&
        { stopRunOnFailure: true }),
      ...(t.on_success && { onSuccess: lua(t.on_success) }),
      ...(t.on_failure && { onFailure: lua(t.on_failure) }),
      ...(t.on_timeout && { onTimeout: lua(t.on_timeout) }),
      ...(t.artifacts !== undefined && { artifacts: list(t.artifacts) }),
      ...(t.consumes !== undefined && { consumes: list(t.consumes) }),
      ...(t.user !== undefined && { user: t.user }),
    });
  }
  if (problems.length > before) return undefined;
  return {
    name: raw.name,
    description: g.description ?? "",
    ...(g.version !== undefined && { version: String(g.version) }),
    tasks,
    agents,
    ...(g.on_start && { onStart: lua(g.on_start) }),
    ...(g.on_complete && { onComplete: lua(g.on_complete) }),
    ...(dir ? { dir } : {}),
  };
}

/**
 * `create_workdir_before_run` and `clean_workdir_after_run`, as the Go sloth-runner
 * documents them: with either, a group without `workdir` gets a new temporary
 * directory (removed afterwards unless `clean_workdir_after_run` says otherwise); a
 * named `workdir` is removed only when `clean_workdir_after_run` says so, and never
 * when it is, or holds, a directory that must stay.
 */
function groupDir(
  g: z.infer<typeof groupSchema>,
  baseDir: string,
  label: string,
  options: NormalizeOptions,
  problems: string[],
): GroupDir | undefined {
  const create = g.create_workdir_before_run;
  const clean = g.clean_workdir_after_run;
  if (create !== true && clean === undefined) return undefined;
  const given = typeof clean === "object" ? lua(clean) : clean;
  if (!g.workdir) return { create: true, clean: given ?? true };
  const path = resolvePath(baseDir, g.workdir);
  // On an agent the master has checked (and the paths are the master's).
  if (given !== undefined && given !== false && !options.ignoreTargets) {
    const why = removalRefusal(
      path,
      guardedDirs({
        cwd: options.cwd,
        file: options.file,
        home: Deno.env.get("HOME"),
        tmp: Deno.env.get("TMPDIR"),
      }),
    );
    if (why) {
      problems.push(
        `${label}: clean_workdir_after_run could remove workdir ${path}, which ${why}; ` +
          "sloth-runner never removes that. Give the group a directory of its own, or leave " +
          "workdir out for a new temporary one.",
      );
    }
  }
  return { path, create: create ?? false, clean: given ?? false };
}

function resolveTarget(
  given: { task?: unknown; agent?: string },
  known: { agents: Record<string, AgentDef>; options: NormalizeOptions },
  label: string,
  problems: string[],
  tlsPaths: (t: AgentSpec["tls"]) => AgentDef["tls"],
): Target | undefined {
  if (given.task !== undefined && given.agent !== undefined) {
    problems.push(`${label}: set either agent or delegate_to, not both`);
    return undefined;
  }
  const pick = given.task ?? given.agent;
  if (pick === undefined) return { kind: "local" };
  const { inventory } = known.options;
  if (typeof pick !== "string") {
    const table = pick as Record<string, unknown>;
    const form = "each" in table ? "each" : "pool" in table ? "pool" : "address";
    if (form === "pool" && ("batch" in table || "max_failures" in table)) {
      problems.push(
        `${label}: delegate_to: batch and max_failures go with { each = "${
          String(table.pool)
        }" } (every member), not { pool = ... } (one member per attempt)`,
      );
      return undefined;
    }
    const parsed = DELEGATE_FORMS[form].safeParse(table);
    if (!parsed.success) {
      report(
        parsed.error,
        label,
        problems,
        ["delegate_to"],
        Object.keys(DELEGATE_FORMS[form].shape),
      );
      return undefined;
    }
    if (form === "address") {
      const spec = parsed.data as AgentSpec;
      return {
        kind: "remote",
        address: spec.address,
        tokenEnv: spec.token_env,
        tls: tlsPaths(spec.tls),
        compress: spec.compress,
      };
    }
    const name = form === "each"
      ? (parsed.data as z.infer<typeof eachRef>).each
      : (parsed.data as z.infer<typeof poolRef>).pool;
    const pools = Object.keys(inventory?.pools ?? {}).sort();
    if (!findPool(inventory, name)) {
      problems.push(
        `${label}: delegate_to names pool "${name}", which ` +
          (!inventory
            ? "needs an inventory: none was given (-i FILE, SLOTH_INVENTORY, or ./sloth-inventory.yaml)."
            : pools.length
            ? `is not in the inventory ${known.options.inventoryName ?? inventory.file}. ` +
              `Its pools are: ${pools.join(", ")}.${didYouMean(name, pools)}`
            : `is not in the inventory ${
              known.options.inventoryName ?? inventory.file
            }, which has no pools.`),
      );
      return undefined;
    }
    if (form === "pool") return { kind: "pool", pool: name };
    const each = parsed.data as z.infer<typeof eachRef>;
    return { kind: "each", pool: name, batch: each.batch, maxFailures: each.max_failures };
  }
  const named = (Object.hasOwn(known.agents, pick) ? known.agents[pick] : undefined) ??
    findAgent(inventory, pick);
  if (named) {
    return {
      kind: "remote",
      address: named.address,
      agent: pick,
      tokenEnv: named.tokenEnv,
      tls: named.tls,
      compress: named.compress,
    };
  }
  if (given.agent === undefined) {
    const parsed = address.safeParse(pick);
    if (parsed.success) return { kind: "remote", address: pick };
    // Looks like an address, but is not a good one: say what is wrong with it.
    if (pick.includes(":")) {
      problems.push(`${label}: delegate_to "${pick}" ${parsed.error.issues[0].message}`);
      return undefined;
    }
  }
  const fromGroup = Object.keys(known.agents).sort();
  const fromInventory = Object.keys(inventory?.agents ?? {}).filter((n) =>
    !Object.hasOwn(known.agents, n)
  )
    .sort();
  const sources = [
    fromGroup.length ? `${fromGroup.join(", ")} (the group's agents table)` : "",
    fromInventory.length
      ? `${fromInventory.join(", ")} (inventory ${known.options.inventoryName ?? inventory!.file})`
      : "",
  ].filter(Boolean);
  const isPool = findPool(inventory, pick) !== undefined;
  problems.push(
    `${label}: unknown agent "${pick}".` +
      (isPool
        ? ` "${pick}" is a pool of the inventory: use delegate_to = { pool = "${pick}" } for ` +
          `one of its members, or { each = "${pick}" } for every one.`
        : sources.length
        ? ` Known agents: ${sources.join("; ")}.${
          didYouMean(pick, [...fromGroup, ...fromInventory])
        }`
        : (inventory
          ? ` The inventory ${
            known.options.inventoryName ?? inventory.file
          } names no agents and the group has no agents table;`
          : " There is no inventory (-i FILE, SLOTH_INVENTORY, or ./sloth-inventory.yaml) and" +
            " the group has no agents table;") +
          ' define agents = { name = { address = "host:port" } } or use delegate_to = "host:port".'),
  );
  return undefined;
}

type AgentSpec = z.infer<typeof agentDef>;

/** Moves the Go tool's `config.create_workdir_before_run` up; says what the rest of its keys are. */
function goConfig(fields: Record<string, unknown>, label: string, warnings?: string[]): void {
  if (!isRecord(fields.config)) return;
  const config = { ...fields.config };
  for (const [key, instead] of Object.entries(GO_CONFIG_KEYS)) {
    if (!Object.hasOwn(config, key)) continue;
    delete config[key];
    warnings?.push(
      `${label}: config.${key} is a setting of the Go sloth-runner that does nothing here; ` +
        `instead: ${instead}`,
    );
  }
  if (Object.hasOwn(config, "create_workdir_before_run")) {
    if (fields.create_workdir_before_run === undefined) {
      fields.create_workdir_before_run = config.create_workdir_before_run;
    }
    delete config.create_workdir_before_run;
  }
  fields.config = config;
}

function unknownFields(
  fields: Record<string, unknown>,
  known: readonly string[],
  label: string,
  problems: string[],
): void {
  for (const key of Object.keys(fields)) {
    if (!known.includes(key)) {
      delete fields[key];
      problems.push(`${label}: unknown field "${key}".${didYouMean(key, known)}`);
    }
  }
}

/** The task fields whose value may be a Lua function. */
const FUNCTION_FIELDS = [
  "command",
  "pre_exec",
  "post_exec",
  "run_if",
  "abort_if",
  "on_success",
  "on_failure",
  "on_timeout",
];

/**
 * A known field given a function where it takes none: said so, with where the
 * function is, rather than as a type the user never wrote.
 */
function functionsWhereNone(
  fields: Record<string, unknown>,
  allowed: readonly string[],
  label: string,
  problems: string[],
): void {
  for (const [key, value] of Object.entries(fields)) {
    if (allowed.includes(key) || !isRecord(value) || typeof value.__lua_function !== "string") {
      continue;
    }
    delete fields[key];
    problems.push(
      `${label}: ${key} is a function (${value.__lua_function}); it takes no function here`,
    );
  }
}

function report(
  error: z.ZodError,
  label: string,
  problems: string[],
  prefix: string[] = [],
  knownHere?: readonly string[],
): void {
  for (const issue of error.issues) {
    const path = [...prefix, ...issue.path];
    const field = path.filter((p) => typeof p === "string").join(".");
    if (issue.code === "unrecognized_keys") {
      // A misspelt key inside a table (an agent's, its tls) is met like one at the top.
      const known = issue.path.length === 0 && knownHere ? knownHere : knownKeysAt(path);
      for (const key of issue.keys) {
        problems.push(
          `${label}: ${field ? `${field}: ` : ""}unknown field "${key}".${
            known ? didYouMean(key, known) : ""
          }`,
        );
      }
    } else if (issue.code === "invalid_type" && /received undefined$/.test(issue.message)) {
      problems.push(`${label}: ${field} is missing`);
    } else {
      problems.push(`${label}: ${field ? `${field} ` : ""}${issue.message}`);
    }
  }
}

/** The fields a nested table may have, for suggestions: an agent's, or its `tls`. */
function knownKeysAt(path: PropertyKey[]): readonly string[] | undefined {
  if (path[0] === "config" && path.length === 1) return Object.keys(workflowConfig.shape);
  if (path.at(-1) === "tls") return Object.keys(tlsDef.shape);
  const agentTable = (path[0] === "agents" && path.length === 2) ||
    (path[0] === "delegate_to" && path.length === 1);
  return agentTable ? Object.keys(agentDef.shape) : undefined;
}

function command(value: string | { __lua_function: string }): Command & Condition {
  return typeof value === "string" ? { kind: "shell", script: value } : lua(value);
}

function lua(value: { __lua_function: string }): LuaRef {
  return { kind: "lua", where: value.__lua_function };
}

function list(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return typeof value === "string" ? [value] : value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import { loadInventory } from "../fleet/mod.ts";
import type { Target, Task } from "../model/mod.ts";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { loadWorkflow, LuaPool } from "./mod.ts";

/** web-1 and web-2 are labelled web; db is alone; the TLS path is relative to fleet/. */
const INVENTORY = `
agents:
  web-1:
    address: 10.0.0.11:50051
    labels: [web]
    token_env: WEB_TOKEN
    tls: { ca: certs/ca.pem }
    compress: true
  web-2: { address: 10.0.0.12:50051, labels: [web] }
  db: { address: 10.0.0.20:50051, labels: [db] }
pools:
  web: { labels: [web] }
  databases: { members: [db] }
`;

const INVENTORY_FILE = "fleet/sloth-inventory.yaml";

/** Loads `lua` as workflow.lua, with `inventory` (YAML) as fleet/sloth-inventory.yaml when given. */
async function load(lua: string, inventory?: string) {
  await using ws = await tempWorkspace({
    "workflow.lua": lua,
    ...(inventory === undefined ? {} : { [INVENTORY_FILE]: inventory }),
  });
  const pool = new LuaPool();
  try {
    const loaded = await loadWorkflow(pool, {
      file: "workflow.lua",
      cwd: ws.dir,
      inventory: inventory === undefined
        ? undefined
        : await loadInventory(`${ws.dir}/${INVENTORY_FILE}`, INVENTORY_FILE),
    });
    return { ...loaded, dir: ws.dir };
  } finally {
    pool.close();
  }
}

/** The problems of a workflow that does not load, one per line, without the "  - ". */
async function problems(lua: string, inventory?: string): Promise<string[]> {
  try {
    await load(lua, inventory);
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    assert.equal(error.code, "workflow_invalid");
    assert.equal(error.exitCode, 2);
    const [head, ...lines] = error.message.split("\n");
    assert.equal(head, "workflow.lua is not a valid workflow:");
    return lines.map((line) => line.replace(/^ {2}- /, ""));
  }
  assert.fail("the workflow loaded");
}

/** A workflow of one group `g` holding one task `t` with `fields` (Lua), and `group` fields. */
function oneTask(fields: string, group = ""): string {
  return `TaskDefinitions = { g = { ${group} tasks = { { name = "t", command = "true", ${fields} } } } }`;
}

async function taskOf(lua: string, inventory: string | undefined = INVENTORY): Promise<Task> {
  const { workflow } = await load(lua, inventory);
  return workflow.groups[0].tasks[0];
}

async function targetOf(lua: string, inventory?: string): Promise<Target> {
  return (await taskOf(lua, inventory)).target;
}

// --- names and pools that resolve ----------------------------------------------

Deno.test('loadWorkflow() sends delegate_to = "NAME" to the inventory\'s agent, with its settings', async () => {
  const { workflow, dir } = await load(oneTask('delegate_to = "web-1"'), INVENTORY);
  const task = workflow.groups[0].tasks[0];
  assert.deepEqual(task.target, {
    kind: "remote",
    address: "10.0.0.11:50051",
    agent: "web-1",
    tokenEnv: "WEB_TOKEN",
    // Relative to the inventory's directory, not the workflow's.
    tls: { ca: `${dir}/fleet/certs/ca.pem`, cert: undefined, key: undefined },
    compress: true,
  });
  assert.equal(task.syncBack, "on_success");
});

Deno.test('loadWorkflow() takes agent = "NAME" from the inventory as delegate_to does', async () => {
  assert.deepEqual(await targetOf(oneTask('agent = "db"'), INVENTORY), {
    kind: "remote",
    address: "10.0.0.20:50051",
    agent: "db",
    tokenEnv: undefined,
    tls: undefined,
    compress: undefined,
  });
});

Deno.test("loadWorkflow() lets the group's agents table win over the inventory for the same name", async () => {
  const target = await targetOf(
    oneTask('delegate_to = "web-1"', 'agents = { ["web-1"] = { address = "127.0.0.1:7000" } },'),
    INVENTORY,
  );
  assert.deepEqual(target, {
    kind: "remote",
    address: "127.0.0.1:7000",
    agent: "web-1",
    tokenEnv: undefined,
    tls: undefined,
    compress: undefined,
  });
});

Deno.test('loadWorkflow() still takes delegate_to = "host:port" with an inventory', async () => {
  assert.deepEqual(await targetOf(oneTask('delegate_to = "10.9.9.9:50051"'), INVENTORY), {
    kind: "remote",
    address: "10.9.9.9:50051",
  });
});

Deno.test("loadWorkflow() reads delegate_to = { pool = P } as one member of the pool", async () => {
  const task = await taskOf(oneTask('delegate_to = { pool = "web" }'));
  assert.deepEqual(task.target, { kind: "pool", pool: "web" });
  assert.equal(task.syncBack, "on_success");
});

Deno.test("loadWorkflow() reads delegate_to = { each = P, batch = N, max_failures = K } as a fan-out", async () => {
  const task = await taskOf(oneTask('delegate_to = { each = "web", batch = 2, max_failures = 1 }'));
  assert.deepEqual(task.target, { kind: "each", pool: "web", batch: 2, maxFailures: 1 });
});

Deno.test('loadWorkflow() gives a fan-out sync_back = "never" by default, and takes it said', async () => {
  assert.equal((await taskOf(oneTask('delegate_to = { each = "web" }'))).syncBack, "never");
  assert.equal(
    (await taskOf(oneTask('delegate_to = { each = "web" }, sync_back = "never"'))).syncBack,
    "never",
  );
});

Deno.test("loadWorkflow() fans out every task of a group whose delegate_to is { each = P }", async () => {
  const { workflow } = await load(
    `TaskDefinitions = { g = { delegate_to = { each = "databases", batch = 1 }, tasks = {
      { name = "a", command = "true" },
      { name = "b", command = "true", delegate_to = "web-2" },
    } } }`,
    INVENTORY,
  );
  const [a, b] = workflow.groups[0].tasks;
  assert.deepEqual(a.target, { kind: "each", pool: "databases", batch: 1, maxFailures: undefined });
  assert.equal(a.syncBack, "never");
  assert.equal(b.target.kind, "remote");
  assert.equal(b.syncBack, "on_success");
});

// --- names and pools that do not --------------------------------------------------

Deno.test("loadWorkflow() refuses an unknown pool, listing the inventory's pools and the closest", async () => {
  assert.deepEqual(await problems(oneTask('delegate_to = { pool = "wbe" }'), INVENTORY), [
    'group "g" task "t": delegate_to names pool "wbe", which is not in the inventory ' +
    `${INVENTORY_FILE}. Its pools are: databases, web. Did you mean "web"?`,
  ]);
  const [line] = await problems(oneTask('delegate_to = { each = "cache" }'), INVENTORY);
  assert.match(
    line,
    /pool "cache", which is not in the inventory .*Its pools are: databases, web\.$/,
  );
});

Deno.test("loadWorkflow() says so when the inventory has no pools at all", async () => {
  const [line] = await problems(
    oneTask('delegate_to = { pool = "web" }'),
    "agents: { a: { address: 'h:1' } }\n",
  );
  assert.equal(
    line,
    `group "g" task "t": delegate_to names pool "web", which is not in the inventory ${INVENTORY_FILE}, which has no pools.`,
  );
});

Deno.test("loadWorkflow() refuses an unknown agent, listing known names and where each came from", async () => {
  const lines = await problems(
    oneTask('delegate_to = "web-3"', 'agents = { builder = { address = "127.0.0.1:7000" } },'),
    INVENTORY,
  );
  assert.deepEqual(lines, [
    'group "g" task "t": unknown agent "web-3". Known agents: builder (the group\'s agents table); ' +
    `db, web-1, web-2 (inventory ${INVENTORY_FILE}). Did you mean "web-1"?`,
  ]);
});

Deno.test("loadWorkflow() lists a name once, as the group's, when the group and the inventory both have it", async () => {
  const [line] = await problems(
    oneTask('agent = "dbb"', 'agents = { db = { address = "127.0.0.1:7000" } },'),
    INVENTORY,
  );
  assert.equal(
    line,
    'group "g" task "t": unknown agent "dbb". Known agents: db (the group\'s agents table); ' +
      `web-1, web-2 (inventory ${INVENTORY_FILE}). Did you mean "db"?`,
  );
});

Deno.test("loadWorkflow() says how to use a pool named where an agent was expected", async () => {
  for (const field of ['delegate_to = "web"', 'agent = "web"']) {
    assert.deepEqual(await problems(oneTask(field), INVENTORY), [
      'group "g" task "t": unknown agent "web". "web" is a pool of the inventory: use ' +
      'delegate_to = { pool = "web" } for one of its members, or { each = "web" } for every one.',
    ]);
  }
});

Deno.test("loadWorkflow() meets a misspelt key of { each = ... } with the key it resembles", async () => {
  assert.deepEqual(
    await problems(oneTask('delegate_to = { each = "web", max_failure = 1 }'), INVENTORY),
    ['group "g" task "t": delegate_to: unknown field "max_failure". Did you mean "max_failures"?'],
  );
  assert.deepEqual(
    await problems(oneTask('delegate_to = { each = "web", bacth = 2 }'), INVENTORY),
    ['group "g" task "t": delegate_to: unknown field "bacth". Did you mean "batch"?'],
  );
});

Deno.test("loadWorkflow() refuses batch and max_failures on { pool = ... }", async () => {
  const [line] = await problems(oneTask('delegate_to = { pool = "web", batch = 2 }'), INVENTORY);
  assert.match(
    line,
    /^group "g" task "t": delegate_to: batch and max_failures go with \{ each = "web" \} \(every member\)/,
  );
});

Deno.test("loadWorkflow() refuses a batch or max_failures that is not a whole number from 1", async () => {
  for (const bad of ["0", "-1", "1.5", '"2"']) {
    assert.deepEqual(
      await problems(oneTask(`delegate_to = { each = "web", batch = ${bad} }`), INVENTORY),
      ['group "g" task "t": delegate_to.batch must be a whole number of hosts, at least 1'],
      `batch = ${bad}`,
    );
  }
  assert.deepEqual(
    await problems(oneTask('delegate_to = { each = "web", max_failures = 0 }'), INVENTORY),
    [
      'group "g" task "t": delegate_to.max_failures must be a whole number of failed hosts, at least 1',
    ],
  );
});

Deno.test("loadWorkflow() refuses sync_back other than never on a fan-out", async () => {
  for (const value of ["on_success", "always"]) {
    const [line] = await problems(
      oneTask(`delegate_to = { each = "web" }, sync_back = "${value}"`),
      INVENTORY,
    );
    assert.ok(
      line.startsWith(
        `group "g" task "t": sync_back = "${value}" cannot be kept by a fan-out: the changes ` +
          "of every host would land in one directory.",
      ),
      line,
    );
  }
});

Deno.test("loadWorkflow() refuses sync_back on a task that fans out through its group's delegate_to", async () => {
  const [line] = await problems(
    oneTask('sync_back = "always"', 'delegate_to = { each = "web" },'),
    INVENTORY,
  );
  assert.match(line, /^group "g" task "t": sync_back = "always" cannot be kept by a fan-out/);
});

Deno.test("loadWorkflow() says a pool needs an inventory when there is none", async () => {
  for (const form of ['{ pool = "web" }', '{ each = "web" }']) {
    assert.deepEqual(await problems(oneTask(`delegate_to = ${form}`)), [
      'group "g" task "t": delegate_to names pool "web", which needs an inventory: none was given ' +
      "(-i FILE, SLOTH_INVENTORY, or ./sloth-inventory.yaml).",
    ]);
  }
});

Deno.test("loadWorkflow() says there is no inventory when a name is unknown and none was given", async () => {
  const [line] = await problems(oneTask('delegate_to = "web-1"'));
  assert.match(line, /^group "g" task "t": unknown agent "web-1"\. There is no inventory/);
});

Deno.test({
  name:
    "loadWorkflow() does not say there is no inventory when the inventory has pools but no agents",
  fn: async () => {
    const [line] = await problems(
      oneTask('delegate_to = "web-1"'),
      "pools: { web: { dns: 'web.internal:50051' } }\n",
    );
    assert.doesNotMatch(line, /There is no inventory/);
    assert.match(line, new RegExp(INVENTORY_FILE.replace(".", "\\.")));
  },
});

Deno.test("loadWorkflow() reports a group's unknown pool once for the group, not for each task", async () => {
  const lines = await problems(
    `TaskDefinitions = { g = { delegate_to = { pool = "webs" }, tasks = {
      { name = "a", command = "true" },
      { name = "b", command = "true" },
    } } }`,
    INVENTORY,
  );
  assert.deepEqual(lines, [
    'group "g": delegate_to names pool "webs", which is not in the inventory ' +
    `${INVENTORY_FILE}. Its pools are: databases, web. Did you mean "web"?`,
  ]);
});

Deno.test("loadWorkflow() lists every fleet mistake of the workflow at once, each with its task", async () => {
  const lines = await problems(
    `TaskDefinitions = { g = { tasks = {
      { name = "a", command = "true", delegate_to = "wbe-1" },
      { name = "b", command = "true", delegate_to = { each = "web", batch = 0 } },
      { name = "c", command = "true", agent = "databases" },
    } } }`,
    INVENTORY,
  );
  assert.equal(lines.length, 3, lines.join("\n"));
  assert.match(lines[0], /^group "g" task "a": unknown agent "wbe-1"\..*Did you mean "web-1"\?$/);
  assert.match(lines[1], /^group "g" task "b": delegate_to\.batch /);
  assert.match(lines[2], /^group "g" task "c": unknown agent "databases"\. "databases" is a pool/);
});

Deno.test({
  name:
    "loadWorkflow() refuses names that are properties of every object as unknown agents and pools",
  fn: async () => {
    const [noInventory] = await problems(oneTask('delegate_to = "constructor"'));
    assert.match(noInventory, /unknown agent "constructor"/);
    const [agent] = await problems(oneTask('agent = "toString"'), INVENTORY);
    assert.match(agent, /unknown agent "toString"\. Known agents: /);
    const [pool] = await problems(oneTask('delegate_to = { pool = "toString" }'), INVENTORY);
    assert.match(pool, /delegate_to names pool "toString", which is not in the inventory/);
    const [each] = await problems(oneTask('delegate_to = { each = "hasOwnProperty" }'), INVENTORY);
    assert.match(each, /delegate_to names pool "hasOwnProperty", which is not in the inventory/);
  },
});

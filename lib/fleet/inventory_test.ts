import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import { tempWorkspace } from "../../tests/_helpers/mod.ts";
import { loadInventory, parseInventory } from "./inventory.ts";
import { DEFAULT_INVENTORY, findInventory } from "./locate.ts";

const WHERE = { file: "/srv/fleet/conf/inventory.yaml", shownAs: "conf/inventory.yaml" };

/** The message of the error `parseInventory` throws for `raw`. */
function problem(raw: unknown): string {
  try {
    parseInventory(raw, WHERE);
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    assert.equal(error.code, "inventory_invalid");
    assert.equal(error.exitCode, 2);
    return error.message;
  }
  assert.fail("the inventory was accepted");
}

/** Each problem line of an error message, without the file's part. */
function problems(message: string): string[] {
  const one = /^inventory conf\/inventory\.yaml: (.*)$/s.exec(message);
  if (one) return [one[1]];
  const many = /^inventory conf\/inventory\.yaml has (\d+) problems:\n(.*)$/s.exec(message);
  assert.ok(many, `unexpected message shape: ${message}`);
  const lines = many[2].split("\n").map((l) => l.replace(/^ {2}- /, ""));
  assert.equal(lines.length, Number(many[1]), "the count says how many lines follow");
  return lines;
}

const web1 = { address: "10.0.0.11:50051", labels: ["web", "eu"] };

// --- what a good file becomes -------------------------------------------------

Deno.test("parseInventory() reads agents and pools of labels, members and dns, with their settings", () => {
  const inventory = parseInventory({
    agents: {
      "web-1": {
        address: "10.0.0.11:50051",
        labels: ["web", "eu"],
        token_env: "WEB_TOKEN",
        tls: { ca: "certs/ca.pem", cert: "../shared/client.pem", key: "/etc/sloth/client.key" },
        compress: true,
      },
      "web-2": { address: "[fd00::12]:50051", labels: ["web"] },
      db: { address: "db.internal:7000" },
    },
    pools: {
      web: { labels: ["web"] },
      primary: { members: ["db", "web-1", "db"] },
      edge: { dns: "edge.internal:50051", token_env: "EDGE_TOKEN", tls: { ca: "edge-ca.pem" } },
      srv: { dns: "_sloth._tcp.example.com", compress: false },
    },
  }, WHERE);
  assert.deepEqual(inventory, {
    file: "/srv/fleet/conf/inventory.yaml",
    agents: {
      "web-1": {
        address: "10.0.0.11:50051",
        labels: ["web", "eu"],
        tokenEnv: "WEB_TOKEN",
        // Relative to the inventory's directory, not to where sloth-runner started.
        tls: {
          ca: "/srv/fleet/conf/certs/ca.pem",
          cert: "/srv/fleet/shared/client.pem",
          key: "/etc/sloth/client.key",
        },
        compress: true,
      },
      "web-2": {
        address: "[fd00::12]:50051",
        labels: ["web"],
        tokenEnv: undefined,
        tls: undefined,
        compress: undefined,
      },
      db: {
        address: "db.internal:7000",
        labels: [],
        tokenEnv: undefined,
        tls: undefined,
        compress: undefined,
      },
    },
    pools: {
      web: {
        source: { kind: "labels", labels: ["web"] },
        tokenEnv: undefined,
        tls: undefined,
        compress: undefined,
      },
      // A member named twice is one member.
      primary: {
        source: { kind: "members", members: ["db", "web-1"] },
        tokenEnv: undefined,
        tls: undefined,
        compress: undefined,
      },
      edge: {
        source: { kind: "dns", dns: "edge.internal:50051" },
        tokenEnv: "EDGE_TOKEN",
        tls: { ca: "/srv/fleet/conf/edge-ca.pem", cert: undefined, key: undefined },
        compress: undefined,
      },
      srv: {
        source: { kind: "dns", dns: "_sloth._tcp.example.com" },
        tokenEnv: undefined,
        tls: undefined,
        compress: false,
      },
    },
  });
});

Deno.test("parseInventory() takes an empty map, or nothing at all, as an inventory without agents", () => {
  for (const raw of [{}, { agents: {}, pools: {} }]) {
    assert.deepEqual(parseInventory(raw, WHERE), { file: WHERE.file, agents: {}, pools: {} });
  }
});

Deno.test("loadInventory() reads YAML from a file and resolves TLS paths from the file's directory", async () => {
  await using ws = await tempWorkspace({
    "fleet/sloth-inventory.yaml": `# the fleet
agents:
  web-1:
    address: "127.0.0.1:50051"   # quoted or not, an address is a string
    labels: [web]
    tls: { ca: ca.pem }
  web-2: { address: 127.0.0.2:50051, labels: [web, canary] }
pools:
  web: { labels: [web] }
  canaries:
    members:
      - web-2
`,
  });
  const file = `${ws.dir}/fleet/sloth-inventory.yaml`;
  const inventory = await loadInventory(file, "fleet/sloth-inventory.yaml");
  assert.equal(inventory.file, file);
  assert.deepEqual(Object.keys(inventory.agents), ["web-1", "web-2"]);
  assert.equal(inventory.agents["web-2"].address, "127.0.0.2:50051");
  assert.deepEqual(inventory.agents["web-2"].labels, ["web", "canary"]);
  assert.equal(inventory.agents["web-1"].tls?.ca, `${ws.dir}/fleet/ca.pem`);
  assert.deepEqual(inventory.pools.canaries.source, { kind: "members", members: ["web-2"] });
});

Deno.test("loadInventory() reads an empty file, or one of comments only, as an empty inventory", async () => {
  await using ws = await tempWorkspace({ "empty.yaml": "", "comments.yaml": "# nothing yet\n" });
  for (const name of ["empty.yaml", "comments.yaml"]) {
    const inventory = await loadInventory(`${ws.dir}/${name}`, name);
    assert.deepEqual(inventory, { file: `${ws.dir}/${name}`, agents: {}, pools: {} });
  }
});

// --- every mistake names the file, the entry and the field ------------------

Deno.test("parseInventory() refuses an address without a port, naming the file, the agent and the field", () => {
  const message = problem({ agents: { "web-1": { address: "10.0.0.11", labels: ["web"] } } });
  assert.ok(message.startsWith("inventory conf/inventory.yaml"), message);
  assert.ok(problems(message).includes('agents.web-1.address: must be "host:port"'), message);
});

Deno.test({
  name:
    "parseInventory() says one thing of an address without a port, not also that its port is out of range",
  fn: () => {
    const message = problem({ agents: { "web-1": { address: "10.0.0.11" } } });
    assert.deepEqual(problems(message), ['agents.web-1.address: must be "host:port"']);
  },
});

Deno.test("parseInventory() refuses a port outside 1-65535", () => {
  for (const address of ["10.0.0.11:0", "10.0.0.11:65536", "web.internal:99999"]) {
    assert.deepEqual(problems(problem({ agents: { a: { address } } })), [
      "agents.a.address: has a port outside 1-65535",
    ]);
  }
});

Deno.test("parseInventory() refuses an address that is not a string", () => {
  assert.deepEqual(problems(problem({ agents: { a: { address: 50051 } } })), [
    'agents.a.address: must be "host:port"',
  ]);
});

Deno.test("parseInventory() names the missing address of an agent", () => {
  const [line] = problems(problem({ agents: { "web-1": { labels: ["web"] } } }));
  assert.match(line, /^agents\.web-1\.address: /);
});

Deno.test({
  name: "parseInventory() says a missing address is missing",
  fn: () => {
    assert.deepEqual(problems(problem({ agents: { "web-1": { labels: ["web"] } } })), [
      "agents.web-1.address: is missing",
    ]);
  },
});

Deno.test("parseInventory() meets a misspelt field of an agent with the field it resembles", () => {
  const lines = problems(problem({ agents: { "web-1": { address: "h:1", lables: ["web"] } } }));
  assert.deepEqual(lines, ['agents.web-1: unknown field "lables". Did you mean "labels"?']);
});

Deno.test("parseInventory() meets a misspelt field of a pool, of tls and at the top with suggestions", () => {
  assert.deepEqual(problems(problem({ pools: { web: { label: ["web"] } } })), [
    'pools.web: unknown field "label". Did you mean "labels"?',
  ]);
  assert.deepEqual(
    problems(problem({ agents: { a: { address: "h:1", tls: { ca: "x", cret: "c" } } } })),
    ['agents.a.tls: unknown field "cret". Did you mean "cert"?'],
  );
  assert.deepEqual(problems(problem({ agent: { a: { address: "h:1" } } })), [
    '(top): unknown field "agent". Did you mean "agents"?',
  ]);
  assert.deepEqual(problems(problem({ agents: { a: { address: "h:1", tokenEnv: "T" } } })), [
    'agents.a: unknown field "tokenEnv". Did you mean "token_env"?',
  ]);
});

Deno.test("parseInventory() refuses labels that are not a list of names", () => {
  assert.deepEqual(problems(problem({ agents: { a: { address: "h:1", labels: "web" } } })), [
    "agents.a.labels: must be a list of labels",
  ]);
  assert.deepEqual(problems(problem({ pools: { web: { labels: "web" } } })), [
    "pools.web.labels: must be a list of labels",
  ]);
  const [line] = problems(problem({ agents: { a: { address: "h:1", labels: ["web", 7] } } }));
  assert.match(line, /^agents\.a\.labels\.1: /);
});

Deno.test("parseInventory() refuses a pool with two sources, and one with none", () => {
  assert.deepEqual(
    problems(problem({ agents: { a: web1 }, pools: { web: { labels: ["web"], members: ["a"] } } })),
    ["pools.web: has labels and members; give one of labels, members or dns"],
  );
  assert.deepEqual(
    problems(problem({ pools: { web: { labels: ["web"], dns: "web.internal:50051" } } })),
    ["pools.web: has labels and dns; give one of labels, members or dns"],
  );
  assert.deepEqual(problems(problem({ pools: { web: {} } })), [
    "pools.web: needs one of labels, members or dns",
  ]);
  assert.deepEqual(problems(problem({ pools: { web: { token_env: "T" } } })), [
    "pools.web: needs one of labels, members or dns",
  ]);
});

Deno.test("parseInventory() refuses an empty list of labels or members", () => {
  assert.deepEqual(problems(problem({ pools: { web: { labels: [] } } })), [
    "pools.web.labels: must name at least one label",
  ]);
  assert.deepEqual(problems(problem({ pools: { web: { members: [] } } })), [
    "pools.web.members: must name at least one agent",
  ]);
});

Deno.test("parseInventory() refuses members that are not agents, suggesting the closest name", () => {
  const message = problem({
    agents: { "web-1": web1, "web-2": web1 },
    pools: { web: { members: ["web-1", "web-3", "wbe-2"] } },
  });
  assert.deepEqual(problems(message), [
    'pools.web.members: "web-3" is not an agent of this inventory. Did you mean "web-1"?',
    'pools.web.members: "wbe-2" is not an agent of this inventory. Did you mean "web-2"?',
  ]);
});

Deno.test("parseInventory() refuses a pool and an agent of one name", () => {
  assert.deepEqual(
    problems(problem({ agents: { web: web1 }, pools: { web: { members: ["web"] } } })),
    ['pools.web: an agent is named "web" too; a name means one agent or one pool'],
  );
});

Deno.test("parseInventory() refuses names of agents and pools that could not be typed safely", () => {
  const lines = problems(problem({
    agents: { "-web": web1, "web 1": web1, "ok.name_1-x": web1 },
    pools: { "@all": { labels: ["web"] } },
  }));
  const rule =
    "the name must start with a letter or digit and hold only letters, digits, '.', '_' and '-'";
  assert.deepEqual(lines, [
    `agents.-web: ${rule}`,
    `agents.web 1: ${rule}`,
    `pools.@all: ${rule}`,
  ]);
});

Deno.test("parseInventory() refuses tls with a certificate but no key, or a key but no certificate", () => {
  assert.deepEqual(problems(problem({ agents: { a: { address: "h:1", tls: { cert: "c" } } } })), [
    "agents.a.tls: needs both cert and key, or neither",
  ]);
  assert.deepEqual(
    problems(problem({ pools: { p: { dns: "web.internal:1", tls: { key: "k" } } } })),
    ["pools.p.tls: needs both cert and key, or neither"],
  );
});

Deno.test("parseInventory() refuses a dns spec that is not name:port or an SRV name", () => {
  assert.deepEqual(problems(problem({ pools: { p: { dns: "web.internal" } } })), [
    'pools.p.dns: must be "name:port" or an SRV name "_service._proto.name"',
  ]);
  assert.deepEqual(problems(problem({ pools: { p: { dns: "_sloth._tcp.example.com:50051" } } })), [
    'pools.p.dns: is an SRV name, whose records carry the ports: drop ":port"',
  ]);
  assert.deepEqual(problems(problem({ pools: { p: { dns: "10.0.0.1:50051" } } })), [
    "pools.p.dns: is an IP address, not a name to look up: list it as an agent instead",
  ]);
});

Deno.test("parseInventory() keeps token_env, tls and compress of a pool for dns pools only", () => {
  assert.deepEqual(
    problems(problem({ agents: { a: web1 }, pools: { web: { labels: ["web"], compress: true } } })),
    ["pools.web: token_env, tls and compress belong to each agent; a pool carries them only with dns"],
  );
});

Deno.test("parseInventory() refuses settings of the wrong type, naming the field", () => {
  assert.deepEqual(
    problems(problem({ agents: { a: { address: "h:1", compress: "yes" } } })),
    ["agents.a.compress: must be true or false"],
  );
  const [tokenLine] = problems(problem({ agents: { a: { address: "h:1", token_env: 3 } } }));
  assert.match(tokenLine, /^agents\.a\.token_env: /);
});

Deno.test("parseInventory() refuses YAML that is a list, a string, or tables of the wrong shape", () => {
  for (const raw of [[{ agents: {} }], "agents", 42]) {
    assert.deepEqual(problems(problem(raw)), ["(top): must be a map with agents and pools"]);
  }
  assert.deepEqual(problems(problem({ agents: ["web-1"] })), [
    "agents: must be a map of name: {...}",
  ]);
  assert.deepEqual(problems(problem({ pools: "web" })), ["pools: must be a map of name: {...}"]);
  assert.deepEqual(problems(problem({ agents: { a: "10.0.0.1:50051" } })), [
    'agents.a: must be a map { address: "host:port", labels: [...] }',
  ]);
  assert.deepEqual(problems(problem({ agents: { a: web1 }, pools: { web: ["a"] } })), [
    "pools.web: must be a map with one of labels, members or dns",
  ]);
});

Deno.test("parseInventory() lists every problem of the file at once, each with its entry", () => {
  const message = problem({
    agents: {
      "web-1": { address: "10.0.0.11:70000" },
      "web-2": { address: "10.0.0.12:50051", lables: ["web"] },
    },
    pools: {
      web: { members: ["web-1", "web-9"] },
      empty: {},
    },
  });
  assert.match(message, /^inventory conf\/inventory\.yaml has 4 problems:\n/);
  assert.deepEqual(problems(message), [
    "agents.web-1.address: has a port outside 1-65535",
    'agents.web-2: unknown field "lables". Did you mean "labels"?',
    'pools.web.members: "web-9" is not an agent of this inventory. Did you mean "web-1"?',
    "pools.empty: needs one of labels, members or dns",
  ]);
});

Deno.test("parseInventory() points to the README's inventory section in its hint", () => {
  try {
    parseInventory({ pools: { web: {} } }, WHERE);
    assert.fail("accepted");
  } catch (error) {
    assert.ok(error instanceof SlothError);
    assert.match(error.hint ?? "", /Running a fleet/);
  }
});

Deno.test("loadInventory() says a file that is not YAML is not, with the file's name and the line", async () => {
  await using ws = await tempWorkspace({
    "bad.yaml": "agents:\n  web-1: { address: 10.0.0.1:50051\n",
    "dup.yaml": "agents:\n  a: { address: 'h:1' }\n  a: { address: 'h:2' }\n",
  });
  for (const [name, line] of [["bad.yaml", /line \d+/], ["dup.yaml", /line 3/]] as const) {
    const error = await loadInventory(`${ws.dir}/${name}`, name).then(
      () => assert.fail(`${name} was accepted`),
      (e) => e,
    );
    assert.ok(error instanceof SlothError);
    assert.equal(error.code, "inventory_invalid");
    assert.ok(error.message.startsWith(`inventory ${name} is not valid YAML: `), error.message);
    assert.match(error.message, line);
    assert.ok(!error.message.includes("\n"), "one line, not the YAML library's excerpt");
  }
});

Deno.test("loadInventory() names a file it cannot read as it was given", async () => {
  await using ws = await tempWorkspace();
  const error = await loadInventory(`${ws.dir}/none.yaml`, "none.yaml").then(
    () => assert.fail("a missing file was read"),
    (e) => e,
  );
  assert.ok(error instanceof SlothError);
  assert.match(error.message, /^cannot read inventory none\.yaml: /);
});

Deno.test("loadInventory() names its problems with the name it was shown as", async () => {
  await using ws = await tempWorkspace({ "inv.yaml": "agents:\n  web-1: { address: nope }\n" });
  const error = await loadInventory(`${ws.dir}/inv.yaml`, "conf/inventory.yaml").then(
    () => assert.fail("accepted"),
    (e) => e,
  );
  assert.ok(problems(error.message).includes('agents.web-1.address: must be "host:port"'));
});

// --- where the inventory is ---------------------------------------------------

/** Runs `body` with the variable set (or unset), then puts it back as it was. */
function withEnv<T>(name: string, value: string | undefined, body: () => T): T {
  const before = Deno.env.get(name);
  if (value === undefined) Deno.env.delete(name);
  else Deno.env.set(name, value);
  try {
    return body();
  } finally {
    if (before === undefined) Deno.env.delete(name);
    else Deno.env.set(name, before);
  }
}

function findError(flag: string | undefined, cwd: string, env: string | undefined): SlothError {
  try {
    withEnv("SLOTH_INVENTORY", env, () => findInventory(flag, cwd));
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    return error;
  }
  assert.fail("an inventory was found");
}

Deno.test("findInventory() takes -i before SLOTH_INVENTORY before ./sloth-inventory.yaml", async () => {
  await using ws = await tempWorkspace({
    "flag.yaml": "",
    "env/inv.yaml": "",
    [DEFAULT_INVENTORY]: "",
  });
  const find = (flag: string | undefined, env: string | undefined) =>
    withEnv("SLOTH_INVENTORY", env, () => findInventory(flag, ws.dir));
  assert.equal(find("flag.yaml", "env/inv.yaml"), `${ws.dir}/flag.yaml`);
  assert.equal(find(undefined, "env/inv.yaml"), `${ws.dir}/env/inv.yaml`);
  assert.equal(find(undefined, `${ws.dir}/flag.yaml`), `${ws.dir}/flag.yaml`);
  assert.equal(find(undefined, undefined), `${ws.dir}/${DEFAULT_INVENTORY}`);
  // An empty variable is as good as none.
  assert.equal(find(undefined, ""), `${ws.dir}/${DEFAULT_INVENTORY}`);
});

Deno.test("findInventory() finds nothing when nothing names an inventory and there is none here", async () => {
  await using ws = await tempWorkspace({ "sloth-inventory.yml": "" });
  await Deno.mkdir(`${ws.dir}/sub/${DEFAULT_INVENTORY}`, { recursive: true });
  assert.equal(
    withEnv("SLOTH_INVENTORY", undefined, () => findInventory(undefined, ws.dir)),
    undefined,
  );
  // A directory of that name is not an inventory.
  assert.equal(
    withEnv("SLOTH_INVENTORY", undefined, () => findInventory(undefined, `${ws.dir}/sub`)),
    undefined,
  );
});

Deno.test("findInventory() refuses a missing -i file, saying -i gave it, even with a default file present", async () => {
  await using ws = await tempWorkspace({ [DEFAULT_INVENTORY]: "" });
  const error = findError("nope.yaml", ws.dir, undefined);
  assert.equal(error.code, "inventory_invalid");
  assert.equal(error.message, "inventory nope.yaml not found (given by -i/--inventory)");
});

Deno.test("findInventory() refuses a missing SLOTH_INVENTORY file, saying the variable gave it", async () => {
  await using ws = await tempWorkspace({ [DEFAULT_INVENTORY]: "" });
  const error = findError(undefined, ws.dir, "gone/inv.yaml");
  assert.equal(error.message, "inventory gone/inv.yaml not found (given by SLOTH_INVENTORY)");
});

Deno.test("findInventory() refuses a directory given with -i", async () => {
  await using ws = await tempWorkspace({ "conf/x": "" });
  const error = findError("conf", ws.dir, undefined);
  assert.match(error.message, /^inventory conf is not a file \(given by -i\/--inventory\)/);
});

import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import type { Inventory } from "../model/mod.ts";
import type { DnsMember } from "./dns.ts";
import { describeTarget, poolMembers, staticMembers } from "./members.ts";

function inventory(): Inventory {
  return {
    file: "/srv/sloth-inventory.yaml",
    agents: {
      "web-2": { address: "10.0.0.2:50051", labels: ["web", "eu"] },
      "web-1": {
        address: "10.0.0.1:50051",
        labels: ["eu", "web"],
        tokenEnv: "WEB1_TOKEN",
        tls: { ca: "/srv/ca.pem" },
        compress: true,
      },
      "web-3": { address: "10.0.0.3:50051", labels: ["web"] },
      db: { address: "10.0.0.9:50051", labels: ["db", "eu"] },
    },
    pools: {
      web: { source: { kind: "labels", labels: ["web"] } },
      "web-eu": { source: { kind: "labels", labels: ["web", "eu"] } },
      gpu: { source: { kind: "labels", labels: ["gpu"] } },
      picked: { source: { kind: "members", members: ["web-3", "db"] } },
      dyn: {
        source: { kind: "dns", dns: "agents.internal:50051" },
        tokenEnv: "DYN_TOKEN",
        tls: { ca: "/srv/dyn-ca.pem" },
        compress: true,
      },
    },
  };
}

function thrown(body: () => unknown): SlothError {
  try {
    body();
  } catch (error) {
    assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
    return error;
  }
  assert.fail("nothing was thrown");
}

Deno.test("staticMembers() takes every agent carrying all of a pool's labels, sorted by name", () => {
  const members = staticMembers(inventory(), "web-eu")!;
  assert.deepEqual(members.map((m) => m.name), ["web-1", "web-2"]);
  assert.deepEqual(staticMembers(inventory(), "web")!.map((m) => m.name), [
    "web-1",
    "web-2",
    "web-3",
  ]);
});

Deno.test("staticMembers() gives each member its agent's target, name and settings", () => {
  const [first] = staticMembers(inventory(), "web")!;
  assert.deepEqual(first, {
    name: "web-1",
    labels: ["eu", "web"],
    target: {
      kind: "remote",
      address: "10.0.0.1:50051",
      agent: "web-1",
      tokenEnv: "WEB1_TOKEN",
      tls: { ca: "/srv/ca.pem" },
      compress: true,
    },
  });
});

Deno.test("staticMembers() takes a members pool's agents in the order the file gives (a rolling fan-out goes in it)", () => {
  assert.deepEqual(staticMembers(inventory(), "picked")!.map((m) => m.name), ["web-3", "db"]);
});

Deno.test({
  name: "staticMembers() leaves the inventory's list of members as the file wrote it",
  fn: () => {
    const inv = inventory();
    staticMembers(inv, "picked");
    assert.deepEqual(inv.pools.picked.source, { kind: "members", members: ["web-3", "db"] });
  },
});

Deno.test("staticMembers() is undefined for a DNS pool: its members are known only by looking", () => {
  assert.equal(staticMembers(inventory(), "dyn"), undefined);
});

Deno.test("staticMembers() refuses a pool no agent belongs to, naming the pool and its labels", () => {
  const error = thrown(() => staticMembers(inventory(), "gpu"));
  assert.equal(error.code, "inventory_invalid");
  assert.match(error.message, /^pool "gpu" has no members: no agent of the inventory carries/);
  assert.match(error.message, /\[gpu\]/);
  assert.match(error.hint ?? "", /\/srv\/sloth-inventory\.yaml/);
});

Deno.test("staticMembers() refuses a pool the inventory does not have", () => {
  const error = thrown(() => staticMembers(inventory(), "cache"));
  assert.equal(error.message, 'no pool named "cache" in the inventory');
});

Deno.test({
  name:
    "staticMembers() and poolMembers() refuse, as unknown, a pool named like a property of every object",
  fn: async () => {
    const error = thrown(() => staticMembers(inventory(), "constructor"));
    assert.equal(error.message, 'no pool named "constructor" in the inventory');
    await assert.rejects(poolMembers(inventory(), "toString"), SlothError);
  },
});

Deno.test("poolMembers() looks a DNS pool up, giving its members the pool's settings", async () => {
  const specs: string[] = [];
  const resolve = (spec: string): Promise<DnsMember[]> => {
    specs.push(spec);
    return Promise.resolve([
      { name: "10.1.0.1:50051", address: "10.1.0.1:50051" },
      { name: "node-b.internal:7000", address: "10.1.0.2:7000" },
    ]);
  };
  const members = await poolMembers(inventory(), "dyn", resolve);
  assert.deepEqual(specs, ["agents.internal:50051"]);
  assert.deepEqual(members, [
    {
      name: "10.1.0.1:50051",
      labels: [],
      target: {
        kind: "remote",
        address: "10.1.0.1:50051",
        agent: "10.1.0.1:50051",
        tokenEnv: "DYN_TOKEN",
        tls: { ca: "/srv/dyn-ca.pem" },
        compress: true,
      },
    },
    {
      name: "node-b.internal:7000",
      labels: [],
      target: {
        kind: "remote",
        address: "10.1.0.2:7000",
        agent: "node-b.internal:7000",
        tokenEnv: "DYN_TOKEN",
        tls: { ca: "/srv/dyn-ca.pem" },
        compress: true,
      },
    },
  ]);
});

Deno.test("poolMembers() of a labels pool asks no resolver", async () => {
  const members = await poolMembers(inventory(), "web", () => {
    throw new Error("no DNS for a labels pool");
  });
  assert.deepEqual(members.map((m) => m.name), ["web-1", "web-2", "web-3"]);
});

Deno.test("poolMembers() rejects for a pool without members, naming it", async () => {
  await assert.rejects(poolMembers(inventory(), "gpu"), /pool "gpu" has no members/);
  await assert.rejects(poolMembers(inventory(), "cache"), /no pool named "cache"/);
});

Deno.test("describeTarget() lists a pool's members, and a fan-out's batch and max_failures", () => {
  assert.equal(
    describeTarget({ kind: "pool", pool: "web-eu" }, inventory()),
    "pool web-eu: web-1, web-2",
  );
  assert.equal(
    describeTarget({ kind: "each", pool: "picked", batch: 1, maxFailures: 2 }, inventory()),
    "each of pool picked: web-3, db (batch 1, max_failures 2)",
  );
  assert.equal(
    describeTarget({ kind: "each", pool: "dyn" }, inventory()),
    "each of pool dyn: members found by DNS at run time",
  );
  assert.match(describeTarget({ kind: "pool", pool: "gpu" }, inventory()), /has no members/);
  assert.equal(describeTarget({ kind: "pool", pool: "web" }, undefined), "pool web");
});

Deno.test("staticMembers() orders a labels pool's agents by name, numbers as numbers", () => {
  const inv: Inventory = {
    file: "/inv.yaml",
    agents: Object.fromEntries(
      ["web-10", "web-2", "web-1"].map((n) => [n, { address: `${n}:1`, labels: ["w"] }]),
    ),
    pools: { w: { source: { kind: "labels", labels: ["w"] } } },
  };
  assert.deepEqual(staticMembers(inv, "w")!.map((m) => m.name), ["web-1", "web-2", "web-10"]);
});

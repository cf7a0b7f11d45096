import assert from "node:assert/strict";
import type { Inventory } from "../model/mod.ts";
import type { PingInfo } from "./choose.ts";
import type { DnsMember } from "./dns.ts";
import { DOWN_RECHECK_MS, Fleet, POOL_PING_MS } from "./fleet.ts";
import type { Member } from "./members.ts";

function inventory(): Inventory {
  const agent = (n: number, labels = ["web"]) => ({
    address: `10.0.0.${n}:50051`,
    labels,
  });
  return {
    file: "/srv/sloth-inventory.yaml",
    agents: { a: agent(1), b: agent(2), c: agent(3), db: agent(9, ["db"]) },
    pools: {
      web: { source: { kind: "labels", labels: ["web"] } },
      dbs: { source: { kind: "members", members: ["db"] } },
      dyn: { source: { kind: "dns", dns: "agents.internal:50051" }, tokenEnv: "DYN_TOKEN" },
    },
  };
}

function info(running: number, maxConcurrent = 4): PingInfo {
  return { version: "1.0.0", protocol: 3, running, queued: 0, maxConcurrent, rttMs: 1 };
}

/**
 * A ping that answers from `answers` (by member name): a `PingInfo`, or a string to
 * reject with. Every call is recorded with its deadline.
 */
function fakePing(answers: Record<string, PingInfo | string>) {
  const calls: string[] = [];
  const deadlines: number[] = [];
  const ping = (member: Member, deadlineMs: number): Promise<PingInfo> => {
    calls.push(member.name);
    deadlines.push(deadlineMs);
    const answer = answers[member.name] ?? info(0);
    return typeof answer === "string" ? Promise.reject(new Error(answer)) : Promise.resolve(answer);
  };
  return { ping, calls, deadlines, answers };
}

/** A resolver that gives each answer in turn (the last one again after that). */
function fakeResolver(...answers: (DnsMember[] | Error)[]) {
  const calls: string[] = [];
  const resolve = (spec: string): Promise<DnsMember[]> => {
    calls.push(spec);
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  };
  return { resolve, calls };
}

const dns = (...ips: string[]): DnsMember[] =>
  ips.map((ip) => ({ name: `${ip}:50051`, address: `${ip}:50051` }));

const names = (list: { name: string }[]) => list.map((m) => m.name);
const ranked = async (fleet: Fleet, pool = "web", workdir = "/w", exclude: string[] = []) =>
  (await fleet.rank(pool, workdir, new Set(exclude))).map((c) => c.member.name);

/** Lets promises already settled run their callbacks (a background ping's, here). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Runs `body` with `Date.now()` `ms` ahead of the clock, then puts it back. */
async function later<T>(ms: number, body: () => Promise<T>): Promise<T> {
  const now = Date.now;
  Date.now = () => now() + ms;
  try {
    return await body();
  } finally {
    Date.now = now;
  }
}

Deno.test("Fleet.members() pings every member once on first use, however many ask at once", async () => {
  const ping = fakePing({});
  const fleet = new Fleet(inventory(), ping.ping);
  const [first, second] = await Promise.all([fleet.members("web"), fleet.members("web")]);
  assert.deepEqual(names(first), ["a", "b", "c"]);
  assert.deepEqual(names(second), ["a", "b", "c"]);
  assert.deepEqual(ping.calls.sort(), ["a", "b", "c"]);
  assert.ok(ping.deadlines.every((d) => d === POOL_PING_MS));
  await fleet.members("web");
  await fleet.rank("web", "/w", new Set());
  assert.equal(ping.calls.length, 3, "later uses do not ping again");
});

Deno.test("Fleet.rank() puts the least loaded reachable member first on the first choice", async () => {
  const fleet = new Fleet(
    inventory(),
    fakePing({ a: info(3), b: "unreachable: connection refused", c: info(1) }).ping,
  );
  assert.deepEqual(await ranked(fleet), ["c", "a", "b"]);
});

Deno.test("Fleet.rank() puts a member whose ping failed last and keeps the reason", async () => {
  const fleet = new Fleet(inventory(), fakePing({ a: "deadline exceeded after 1000ms" }).ping);
  const list = await fleet.rank("web", "/w", new Set());
  assert.deepEqual(list.map((c) => c.member.name), ["b", "c", "a"]);
  assert.deepEqual(
    { up: list[2].health?.up, reason: (list[2].health as { reason: string }).reason },
    { up: false, reason: "deadline exceeded after 1000ms" },
  );
});

Deno.test("Fleet.rank() leaves out the members it is told to", async () => {
  const fleet = new Fleet(inventory(), fakePing({}).ping);
  assert.deepEqual(await ranked(fleet, "web", "/w", ["a", "c"]), ["b"]);
  assert.deepEqual(await ranked(fleet, "web", "/w", ["a", "b", "c"]), []);
});

Deno.test("Fleet.begin() counts an attempt in flight, so that parallel choices spread over the members", async () => {
  const fleet = new Fleet(inventory(), fakePing({}).ping);
  const chosen: string[] = [];
  const ends: (() => void)[] = [];
  for (let i = 0; i < 4; i++) {
    const [best] = await fleet.rank("web", `/w${i}`, new Set());
    chosen.push(best.member.name);
    ends.push(fleet.begin(best.member, `/w${i}`));
  }
  assert.deepEqual(chosen, ["a", "b", "c", "a"]);
  const list = await fleet.rank("web", "/x", new Set());
  assert.deepEqual(list.map((c) => [c.member.name, c.inFlight]), [["b", 1], ["c", 1], ["a", 2]]);
  ends.forEach((end) => end());
  ends[0](); // A second call changes nothing.
  const after = await fleet.rank("web", "/x", new Set());
  assert.deepEqual(after.map((c) => c.inFlight), [0, 0, 0]);
});

Deno.test("Fleet.begin() counts its own attempts apart from the other masters' jobs the ping reported", async () => {
  // b reported 2 jobs running, none of them ours: a new attempt of ours there makes 3.
  const fleet = new Fleet(inventory(), fakePing({ a: info(0, 1), b: info(2, 4) }).ping);
  assert.deepEqual(await ranked(fleet), ["a", "c", "b"]);
  const [best] = await fleet.rank("web", "/w", new Set());
  const end = fleet.begin(best.member, "/w");
  // a: 1/1; b: 2/4; c: 0/4.
  assert.deepEqual(await ranked(fleet), ["c", "b", "a"]);
  end();
});

Deno.test("Fleet.rank() prefers, among equals, the member that last ran the task's directory", async () => {
  const fleet = new Fleet(inventory(), fakePing({}).ping);
  const [, second] = await fleet.rank("web", "/w", new Set());
  assert.equal(second.member.name, "b");
  fleet.begin(second.member, "/w")();
  assert.deepEqual(await ranked(fleet, "web", "/w"), ["b", "a", "c"]);
  const list = await fleet.rank("web", "/w", new Set());
  assert.deepEqual(list.map((c) => c.holdsWorkspace), [true, false, false]);
  // Another directory: no one holds it; b was chosen last, so it goes after the others.
  assert.deepEqual(await ranked(fleet, "web", "/other"), ["a", "c", "b"]);
});

Deno.test("Fleet.markDown() puts a member last with the reason the attempt gave", async () => {
  const ping = fakePing({});
  const fleet = new Fleet(inventory(), ping.ping);
  const [best] = await fleet.rank("web", "/w", new Set());
  fleet.markDown(best.member, "connection refused");
  const list = await fleet.rank("web", "/w", new Set());
  assert.deepEqual(list.map((c) => c.member.name), ["b", "c", "a"]);
  assert.deepEqual(list[2].health && { ...list[2].health, at: 0 }, {
    up: false,
    reason: "connection refused",
    at: 0,
  });
  // Not looked at again before DOWN_RECHECK_MS.
  assert.equal(ping.calls.length, 3);
});

Deno.test("Fleet.rank() pings a member marked down again once the mark is DOWN_RECHECK_MS old, without waiting for it", async () => {
  const ping = fakePing({ a: "connection refused" });
  const fleet = new Fleet(inventory(), ping.ping);
  assert.deepEqual(await ranked(fleet), ["b", "c", "a"]);
  assert.equal(ping.calls.filter((n) => n === "a").length, 1);
  ping.answers.a = info(0);
  // Just before the mark is old enough: not pinged.
  await later(DOWN_RECHECK_MS - 200, () => ranked(fleet));
  assert.equal(ping.calls.filter((n) => n === "a").length, 1);
  // Old enough: pinged in the background; this choice still sees it down.
  assert.deepEqual(await later(DOWN_RECHECK_MS + 1, () => ranked(fleet)), ["b", "c", "a"]);
  assert.equal(ping.calls.filter((n) => n === "a").length, 2);
  await settle();
  assert.deepEqual(await ranked(fleet), ["a", "b", "c"], "up again after it answered");
  assert.equal(ping.calls.length, 4, "only the down member was pinged again");
});

Deno.test("Fleet.members() refuses a pool the inventory does not have, naming it", async () => {
  const fleet = new Fleet(inventory(), fakePing({}).ping);
  await assert.rejects(fleet.members("webs"), /no pool named "webs"/);
  await assert.rejects(fleet.rank("webs", "/w", new Set()), /no pool named "webs"/);
});

Deno.test({
  name: "Fleet.members() refuses a pool named like a property of every object, as unknown",
  fn: async () => {
    const fleet = new Fleet(inventory(), fakePing({}).ping);
    await assert.rejects(fleet.members("constructor"), /no pool named "constructor"/);
  },
});

Deno.test("Fleet.members() of a DNS pool looks it up once, and again when asked for fresh members", async () => {
  const resolver = fakeResolver(dns("10.1.0.1"), dns("10.1.0.1", "10.1.0.2"));
  const ping = fakePing({});
  const fleet = new Fleet(inventory(), ping.ping, resolver.resolve);
  assert.deepEqual(names(await fleet.members("dyn")), ["10.1.0.1:50051"]);
  assert.deepEqual(names(await fleet.members("dyn")), ["10.1.0.1:50051"]);
  assert.deepEqual(resolver.calls, ["agents.internal:50051"]);
  const fresh = await fleet.members("dyn", { fresh: true });
  assert.deepEqual(names(fresh), ["10.1.0.1:50051", "10.1.0.2:50051"]);
  assert.equal(resolver.calls.length, 2);
  assert.ok(ping.calls.includes("10.1.0.2:50051"), "a new member is pinged before it is chosen");
  // What the pool carries goes to its DNS members.
  assert.equal(fresh[1].target.tokenEnv, "DYN_TOKEN");
  assert.deepEqual(await ranked(fleet, "dyn"), ["10.1.0.1:50051", "10.1.0.2:50051"]);
});

Deno.test("Fleet.members() keeps the members it had when a fresh DNS look-up fails", async () => {
  const resolver = fakeResolver(dns("10.1.0.1"), new Error("DNS look-up timed out"));
  const fleet = new Fleet(inventory(), fakePing({}).ping, resolver.resolve);
  await fleet.members("dyn");
  assert.deepEqual(names(await fleet.members("dyn", { fresh: true })), ["10.1.0.1:50051"]);
  assert.deepEqual(names(await fleet.members("dyn")), ["10.1.0.1:50051"]);
  assert.equal(resolver.calls.length, 2);
});

Deno.test("Fleet.members() looks a DNS pool up again after a first look-up that failed", async () => {
  const resolver = fakeResolver(new Error("SERVFAIL"), dns("10.1.0.7"));
  const fleet = new Fleet(inventory(), fakePing({}).ping, resolver.resolve);
  await assert.rejects(fleet.members("dyn"), /SERVFAIL/);
  assert.deepEqual(names(await fleet.members("dyn")), ["10.1.0.7:50051"]);
  assert.equal(resolver.calls.length, 2);
});

Deno.test("Fleet.members() does not look a labels pool up again when asked for fresh members", async () => {
  const ping = fakePing({});
  const fleet = new Fleet(inventory(), ping.ping);
  await fleet.members("web");
  await fleet.members("web", { fresh: true });
  assert.equal(ping.calls.length, 3);
});

Deno.test("Fleet keeps one view of an agent that is in two pools", async () => {
  const inv = inventory();
  inv.pools.all = { source: { kind: "members", members: ["a", "db"] } };
  const ping = fakePing({});
  const fleet = new Fleet(inv, ping.ping);
  const [a] = await fleet.members("web");
  const end = fleet.begin(a, "/w");
  const list = await fleet.rank("all", "/x", new Set());
  assert.deepEqual(list.map((c) => [c.member.name, c.inFlight]), [["db", 0], ["a", 1]]);
  end();
});

Deno.test({
  name: "Fleet pings a member again after a ping that threw at once instead of rejecting",
  fn: async () => {
    let calls = 0;
    const fleet = new Fleet(
      inventory(),
      (m) => {
        if (m.name !== "10.1.0.1:50051") return Promise.resolve(info(0));
        calls++;
        if (calls === 1) throw new Error("token_env DYN_TOKEN is not set");
        return Promise.resolve(info(0));
      },
      fakeResolver(dns("10.1.0.1")).resolve,
    );
    await fleet.members("dyn");
    assert.equal(calls, 1);
    await fleet.members("dyn", { fresh: true });
    assert.equal(calls, 2, "a fresh look-up pings its members again");
  },
});

import assert from "node:assert/strict";
import { type Candidate, type Health, load, type PingInfo, rankCandidates } from "./choose.ts";
import type { Member } from "./members.ts";

function member(name: string): Member {
  return {
    name,
    labels: [],
    target: { kind: "remote", address: `${name}.internal:50051`, agent: name },
  };
}

function up(running: number, maxConcurrent: number, others = running): Health {
  const info: PingInfo = {
    version: "1.0.0",
    protocol: 3,
    running,
    queued: 0,
    maxConcurrent,
    rttMs: 1,
  };
  return { up: true, info, others, at: 0 };
}

const down: Health = { up: false, reason: "unreachable: connection refused", at: 0 };

function candidate(name: string, fields: Partial<Candidate> = {}): Candidate {
  return { member: member(name), inFlight: 0, holdsWorkspace: false, ...fields };
}

const names = (ranked: Candidate[]) => ranked.map((c) => c.member.name);

Deno.test("rankCandidates() puts a member that did not answer last, however idle it looks", () => {
  const ranked = rankCandidates([
    candidate("a", { health: down }),
    candidate("b", { health: up(7, 8) }),
    candidate("c", { health: down, holdsWorkspace: true }),
    candidate("d", { health: up(1, 1), inFlight: 3 }),
  ]);
  assert.deepEqual(names(ranked), ["b", "d", "c", "a"]);
});

Deno.test("rankCandidates() takes a member not pinged yet as reachable", () => {
  const ranked = rankCandidates([candidate("a", { health: down }), candidate("b")]);
  assert.deepEqual(names(ranked), ["b", "a"]);
});

Deno.test("rankCandidates() puts the least loaded first, load being jobs over the jobs it runs at once", () => {
  // b runs fewer jobs than a, but a has room for more of them.
  const ranked = rankCandidates([
    candidate("b", { health: up(2, 2) }),
    candidate("a", { health: up(3, 8) }),
    candidate("c", { health: up(0, 1), inFlight: 1 }),
  ]);
  assert.deepEqual(names(ranked), ["a", "b", "c"]);
});

Deno.test("rankCandidates() counts this master's attempts in flight on top of the others' jobs", () => {
  const ranked = rankCandidates([
    candidate("a", { health: up(0, 2), inFlight: 2 }),
    candidate("b", { health: up(1, 2, 1), inFlight: 0 }),
  ]);
  assert.deepEqual(names(ranked), ["b", "a"]);
});

Deno.test("rankCandidates() prefers the member holding the workspace among equally loaded ones only", () => {
  assert.deepEqual(
    names(rankCandidates([
      candidate("a", { health: up(1, 4) }),
      candidate("b", { health: up(1, 4), holdsWorkspace: true }),
    ])),
    ["b", "a"],
  );
  // Busier: the workspace does not outweigh the load.
  assert.deepEqual(
    names(rankCandidates([
      candidate("a", { health: up(1, 4) }),
      candidate("b", { health: up(2, 4), holdsWorkspace: true }),
    ])),
    ["a", "b"],
  );
});

Deno.test("rankCandidates() orders equals by name, whatever order they came in", () => {
  const list = ["web-3", "web-1", "db", "web-2"].map((n) => candidate(n, { health: up(0, 4) }));
  assert.deepEqual(names(rankCandidates(list)), ["db", "web-1", "web-2", "web-3"]);
  assert.deepEqual(names(rankCandidates([...list].reverse())), ["db", "web-1", "web-2", "web-3"]);
});

Deno.test("rankCandidates() returns a new list and leaves its argument alone", () => {
  const list = [candidate("b"), candidate("a")];
  const ranked = rankCandidates(list);
  assert.deepEqual(names(list), ["b", "a"]);
  assert.notEqual(ranked, list);
});

Deno.test("load() divides every job on a member by what it runs at once", () => {
  assert.equal(load(candidate("a", { health: up(3, 4, 3), inFlight: 1 })), 1);
  assert.equal(load(candidate("a", { health: up(1, 4, 1), inFlight: 0 })), 0.25);
  // An agent saying it runs 0 at once is taken as 1, not as infinitely loaded.
  assert.equal(load(candidate("a", { health: up(2, 0, 2), inFlight: 0 })), 2);
});

Deno.test("load() counts only this master's attempts for a member not pinged, or down", () => {
  assert.equal(load(candidate("a", { inFlight: 2 })), 2);
  assert.equal(load(candidate("a", { health: down, inFlight: 1 })), 1);
  assert.equal(load(candidate("a")), 0);
});

Deno.test("rankCandidates() sends work round equally loaded members, least recently chosen first", () => {
  const c = (name: string, lastChosen: number) => ({
    member: { name, labels: [], target: { kind: "remote" as const, address: `${name}:1` } },
    inFlight: 0,
    holdsWorkspace: false,
    lastChosen,
  });
  assert.deepEqual(
    rankCandidates([c("a", 3), c("b", 0), c("c", 1)]).map((x) => x.member.name),
    ["b", "c", "a"],
  );
});

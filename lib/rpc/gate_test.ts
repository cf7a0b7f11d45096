import assert from "node:assert/strict";
import { PeerPenalties } from "./gate.ts";

Deno.test("PeerPenalties: a first refusal is answered at once, then later each time, up to 5 s", () => {
  let now = 0;
  const lines: string[] = [];
  const penalties = new PeerPenalties({ now: () => now, log: (line) => lines.push(line) });
  const waits = Array.from({ length: 9 }, () => penalties.failed("10.0.0.9"));
  assert.deepEqual(waits, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
  // Another address is not slowed by this one.
  assert.equal(penalties.failed("10.0.0.8"), 0);
  // One line per peer at first, then a summary at most every 10 s, naming the address.
  assert.equal(lines.length, 2);
  assert.match(lines[0], /refused a missing or wrong token from 10\.0\.0\.9/);
  now += 10_000;
  penalties.failed("10.0.0.9");
  assert.match(lines.at(-1)!, /from 10\.0\.0\.9 \(9 times since the last report\)/);
  // A minute without failures forgets the peer.
  now += 61_000;
  assert.equal(penalties.failed("10.0.0.9"), 0);
});

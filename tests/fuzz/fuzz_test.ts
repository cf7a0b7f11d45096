/** A few seconds of fuzzing in CI; `deno task fuzz SECONDS` runs longer. */
import assert from "node:assert/strict";
import { tempWorkspace } from "../_helpers/mod.ts";
import { fuzzArchives, fuzzLoader } from "./targets.ts";

const seconds = Number(Deno.env.get("SLOTH_FUZZ_SECONDS") ?? "3");
const seed = Number(Deno.env.get("SLOTH_FUZZ_SEED") ?? Date.now() % 1_000_000);

Deno.test(`fuzz: random and mutated archives never escape the unpacker (seed ${seed})`, async () => {
  await using ws = await tempWorkspace();
  const runs = await fuzzArchives({ seconds, seed, dir: ws.dir });
  assert.ok(runs > 10, `only ${runs} runs`);
});

Deno.test(`fuzz: mutated workflows load or fail with a SlothError (seed ${seed})`, async () => {
  await using ws = await tempWorkspace();
  const runs = await fuzzLoader({ seconds, seed, dir: ws.dir });
  assert.ok(runs > 10, `only ${runs} runs`);
});

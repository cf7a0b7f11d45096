/**
 * Longer fuzzing than CI's: `deno task fuzz [SECONDS] [SEED]` (default 60 s each,
 * a random seed). Prints the seed so a failure can be replayed.
 */
import { fuzzArchives, fuzzLoader } from "../tests/fuzz/targets.ts";

const seconds = Number(Deno.args[0] ?? "60");
const seed = Number(Deno.args[1] ?? Date.now() % 1_000_000);
const dir = await Deno.makeTempDir({ prefix: "sloth-fuzz-" });
console.log(`fuzzing ${seconds}s per target, seed ${seed}, in ${dir}`);
try {
  const archives = await fuzzArchives({ seconds, seed, dir: `${dir}/archives` });
  console.log(`archives: ${archives} inputs, none escaped`);
  await Deno.mkdir(`${dir}/loader`);
  const sources = await fuzzLoader({ seconds, seed, dir: `${dir}/loader` });
  console.log(`loader: ${sources} sources, all loaded or refused cleanly`);
} finally {
  await Deno.remove(dir, { recursive: true });
}

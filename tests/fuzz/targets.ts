/**
 * Fuzzing the two parsers that take untrusted input: the archive unpacker and
 * the workflow loader. Seeded, so a failure can be replayed; bounded in time.
 */
import { SlothError } from "../../lib/errors.ts";
import { loadWorkflow, LuaPool } from "../../lib/dsl/mod.ts";
import { SyncError, unpack } from "../../lib/sync/mod.ts";
import { HOSTILE_ARCHIVES } from "../fixtures/hostile/archives.ts";
import { snapshot } from "../_helpers/mod.ts";
import { hostileBytes, rawTar, streamOf } from "../_helpers/tar.ts";

/** Mulberry32: small, seedable, good enough to pick mutations. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(input: Uint8Array, rand: () => number): Uint8Array {
  const out = new Uint8Array(input);
  const kind = Math.floor(rand() * 4);
  if (kind === 0 || out.length === 0) {
    const junk = new Uint8Array(Math.floor(rand() * 2048));
    for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rand() * 256);
    return junk;
  }
  if (kind === 1) return out.subarray(0, Math.floor(rand() * out.length));
  const flips = 1 + Math.floor(rand() * 16);
  for (let i = 0; i < flips; i++) {
    // Headers are where the parser's decisions are; aim there half the time.
    const at = kind === 2
      ? Math.floor(rand() * Math.min(out.length, 512))
      : Math.floor(rand() * out.length);
    out[at] = Math.floor(rand() * 256);
  }
  return out;
}

const seeds: Uint8Array[] = [
  rawTar([{ path: "a.txt", data: "hello" }, { path: "d", type: "Directory" }, {
    path: "d/b.txt",
    data: "b",
  }]),
  rawTar([{ path: "link", type: "SymbolicLink", linkpath: "a.txt" }, {
    path: "a.txt",
    data: "x".repeat(700),
  }]),
  rawTar([{ path: "p/".repeat(60) + "long.txt", data: "long", pax: true }]),
  ...HOSTILE_ARCHIVES.map(hostileBytes),
];

/** Throws on the first input that does something other than unpack or fail with a SyncError. */
export async function fuzzArchives(
  options: { seconds: number; seed: number; dir: string },
): Promise<number> {
  const rand = random(options.seed);
  const deadline = Date.now() + options.seconds * 1000;
  const sentinel = `${options.dir}/outside`;
  await Deno.mkdir(sentinel, { recursive: true });
  await Deno.writeTextFile(`${sentinel}/keep.txt`, "keep");
  const before = JSON.stringify(await snapshot(sentinel));
  let runs = 0;
  while (Date.now() < deadline) {
    const input = mutate(seeds[Math.floor(rand() * seeds.length)], rand);
    const root = `${options.dir}/root-${runs}`;
    await Deno.mkdir(root);
    const mode = (["fresh", "check", "replace"] as const)[runs % 3];
    try {
      await unpack(root, streamOf(input), { mode });
    } catch (error) {
      if (!(error instanceof SyncError)) {
        throw new Error(`seed ${options.seed}, run ${runs} (${mode}): ${error}`, { cause: error });
      }
    }
    if (JSON.stringify(await snapshot(sentinel)) !== before) {
      throw new Error(`seed ${options.seed}, run ${runs}: something outside the root changed`);
    }
    await Deno.remove(root, { recursive: true });
    runs++;
  }
  return runs;
}

const workflowSeed = `
local base = { retries = 1 }
TaskDefinitions = {
  build = {
    description = "x",
    tasks = {
      { name = "a", command = "echo a", uses = base },
      { name = "b", depends_on = "a", command = function(p, i) return true, "ok", { v = 1 } end },
      c = { command = "true", timeout = "1s", async = true },
    },
  },
}`;

/** Throws on the first source that the loader neither loads nor rejects with a SlothError. */
export async function fuzzLoader(
  options: { seconds: number; seed: number; dir: string },
): Promise<number> {
  const rand = random(options.seed);
  const deadline = Date.now() + options.seconds * 1000;
  const pool = new LuaPool({ maxIdle: 1 });
  const alphabet = ` \n={}()[],."'-+*/#:;<>~0123456789abcdefghijklmnopqrstuvwxyz_`;
  let runs = 0;
  try {
    while (Date.now() < deadline) {
      let source = workflowSeed;
      const edits = 1 + Math.floor(rand() * 6);
      for (let i = 0; i < edits; i++) {
        const at = Math.floor(rand() * source.length);
        const insert = rand() < 0.5 ? alphabet[Math.floor(rand() * alphabet.length)] : "";
        source = source.slice(0, at) + insert + source.slice(at + 1 + Math.floor(rand() * 3));
      }
      await Deno.writeTextFile(`${options.dir}/workflow.lua`, source);
      try {
        await loadWorkflow(pool, { file: "workflow.lua", cwd: options.dir });
      } catch (error) {
        if (!(error instanceof SlothError) || error.code === "internal") {
          throw new Error(
            `seed ${options.seed}, run ${runs}: ${error}\n--- source ---\n${source}`,
            { cause: error },
          );
        }
      }
      runs++;
    }
  } finally {
    pool.close();
  }
  return runs;
}

/**
 * How long the master takes to apply a change set of many small files:
 * `deno run -A scripts/bench_apply.ts [files=2000] [runs=7]`.
 *
 * A workspace of `files` small files; the change set writes `files` new ones
 * (in 20 new directories), rewrites a tenth of the old ones and deletes another
 * tenth. Only `applyChanges` is timed (the change set is already in a file, as
 * after it arrived from an agent). Medians over `runs`, each on a fresh copy, of
 * wall time and of CPU time (user + system: steadier on a busy machine).
 */
import { cpuUsage } from "node:process";
import { applyChanges, packEntries, walkWorkspace } from "../lib/sync/mod.ts";

const files = Number(Deno.args[0] ?? 2000);
const runs = Number(Deno.args[1] ?? 7);

async function writeTree(root: string, prefix: string, n: number, text: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const dir = `${root}/${prefix}${i % 20}`;
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/f${i}.txt`, `${text} ${i}\n`.repeat(8));
  }
}

async function once(): Promise<{ wall: number; cpu: number }> {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-bench-apply-" }));
  try {
    const ws = `${base}/ws`;
    const agent = `${base}/agent`;
    await writeTree(ws, "old", files, "old");
    // The agent's side: the new files, and the rewritten ones, at their paths.
    await writeTree(agent, "new", files, "new");
    const rewritten: string[] = [];
    const deleted: string[] = [];
    for (let i = 0; i < files / 10; i++) {
      const path = `old${i % 20}/f${i}.txt`;
      await Deno.mkdir(`${agent}/old${i % 20}`, { recursive: true });
      await Deno.writeTextFile(`${agent}/${path}`, `rewritten ${i}\n`);
      rewritten.push(path);
      const gone = files - 1 - i;
      deleted.push(`old${gone % 20}/f${gone}.txt`);
    }
    const sent = await walkWorkspace(ws);
    const onAgent = (await walkWorkspace(agent)).entries.filter((e) =>
      e.path.startsWith("new") || rewritten.includes(e.path)
    );
    const archive = `${base}/changes.tar`;
    const file = await Deno.open(archive, { write: true, create: true });
    for await (const chunk of packEntries(agent, onAgent)) await file.write(chunk);
    file.close();

    const started = performance.now();
    const cpu = cpuUsage();
    await applyChanges(ws, archive, deleted, {
      sent: new Map(sent.entries.map((e) => [e.path, e])),
      ignored: sent.ignored,
    });
    const used = cpuUsage(cpu);
    return { wall: performance.now() - started, cpu: (used.user + used.system) / 1000 };
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

const results: { wall: number; cpu: number }[] = [];
for (let i = 0; i < runs; i++) results.push(await once());
const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return `median ${sorted[Math.floor(sorted.length / 2)].toFixed(0)} ms (min ${
    sorted[0].toFixed(0)
  }, max ${sorted.at(-1)!.toFixed(0)})`;
};
console.log(
  `apply ${files} new + ${files / 10} rewritten + ${files / 10} deleted files, ${runs} runs: ` +
    `wall ${summary(results.map((r) => r.wall))}; cpu ${summary(results.map((r) => r.cpu))}`,
);

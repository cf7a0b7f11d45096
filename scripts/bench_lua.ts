/**
 * The Lua rows of issue 13, quick to repeat while working on them (bench.ts is
 * the whole table): remote no-op Lua function p50 against the same task locally
 * (with and without bubblewrap), a chain of 100 such tasks remote against local,
 * and local Lua against local shell per task. Each pair runs interleaved, so
 * the machine's swings hit both sides alike.
 *
 *   deno run -A scripts/bench_lua.ts [--rounds=N] [--only=remote,chain,local]
 */
import { startAgent } from "../tests/_helpers/agent.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const MAIN = `${ROOT}/main.ts`;
const rounds = Number(Deno.args.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 3);
const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const want = (name: string) => !only || only.includes(name);

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
const ms = (n: number) => `${n.toFixed(2)} ms`;

async function scratch(): Promise<string> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-bench-lua-" }));
  await Deno.chmod(dir, 0o711);
  return dir;
}

interface Event {
  type: string;
  duration_ms?: number;
}

async function run(file: string, cwd: string): Promise<Event[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "run", "-f", file, "-o", "json"],
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) throw new Error(stdout + new TextDecoder().decode(out.stderr));
  return stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

const durations = (events: Event[]) =>
  events.filter((e) => e.type === "task_finished").slice(1).map((e) => e.duration_ms!);
const total = (events: Event[]) => events.find((e) => e.type === "run_finished")!.duration_ms!;

function workflow(count: number, task: (i: number) => string): string {
  return `TaskDefinitions = { bench = { tasks = {\n${
    Array.from({ length: count }, (_, i) => task(i)).join(",\n")
  }\n} } }\n`;
}

const lua = "command = function() return true end";

if (want("remote") || want("chain")) {
  for (const sandbox of ["none", "bwrap"]) {
    await using agent = await startAgent({ args: ["--sandbox", sandbox] });
    const dir = await scratch();
    const at = (remote: boolean) => remote ? `delegate_to = "${agent.address}", ` : "";
    if (want("remote")) {
      for (const remote of [true, false]) {
        await Deno.writeTextFile(
          `${dir}/${remote ? "remote" : "local"}.lua`,
          workflow(41, (i) => `{ name = "t${i}", ${at(remote)}${lua} }`),
        );
      }
      // The same tasks as shell commands, for what the Lua costs over a remote shell task.
      await Deno.writeTextFile(
        `${dir}/remote-shell.lua`,
        workflow(41, (i) => `{ name = "t${i}", ${at(true)}command = "true" }`),
      );
      const r: number[] = [];
      const l: number[] = [];
      const s: number[] = [];
      for (let i = 0; i < rounds; i++) {
        r.push(...durations(await run("remote.lua", dir)));
        l.push(...durations(await run("local.lua", dir)));
        s.push(...durations(await run("remote-shell.lua", dir)));
      }
      const ratio = (median(r) / median(l)).toFixed(2);
      console.log(
        `remote Lua no-op p50, sandbox ${sandbox}: ${ms(median(r))} vs local ${ms(median(l))} = ` +
          `${ratio}× (remote shell no-op ${ms(median(s))})`,
      );
    }
    if (want("chain")) {
      for (const remote of [true, false]) {
        await Deno.writeTextFile(
          `${dir}/chain-${remote ? "remote" : "local"}.lua`,
          workflow(
            100,
            (i) =>
              `{ name = "c${i}", ${at(remote)}${i ? `depends_on = "c${i - 1}", ` : ""}${lua} }`,
          ),
        );
      }
      const extra: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const r = total(await run("chain-remote.lua", dir));
        const l = total(await run("chain-local.lua", dir));
        extra.push((r - l) / 100);
      }
      console.log(`chain of 100 Lua, sandbox ${sandbox}: ${ms(median(extra))} extra per task`);
    }
    await Deno.remove(dir, { recursive: true });
  }
}

if (want("local")) {
  const dir = await scratch();
  await Deno.writeTextFile(
    `${dir}/shell.lua`,
    workflow(200, (i) => `{ name = "s${i}", command = "true" }`),
  );
  await Deno.writeTextFile(`${dir}/lua.lua`, workflow(200, (i) => `{ name = "l${i}", ${lua} }`));
  const s: number[] = [];
  const l: number[] = [];
  for (let i = 0; i < Math.max(rounds, 5); i++) {
    s.push(total(await run("shell.lua", dir)) / 200);
    l.push(total(await run("lua.lua", dir)) / 200);
  }
  console.log(
    `local per task: Lua ${ms(median(l))} vs shell ${ms(median(s))} = ${
      (median(l) / median(s)).toFixed(2)
    }×`,
  );
  await Deno.remove(dir, { recursive: true });
}

/**
 * What the check of globals (lib/dsl/globals.ts) costs each `run` and `validate`:
 * a generated workflow of about 2,000 lines (200 tasks of Lua functions and
 * helpers), checked once cold (luaparse loading and compiling, as a fresh
 * process pays it) and then warm.
 *
 *   deno run -A scripts/bench_globals.ts [--lines=2000] [--rounds=20]
 */
const arg = (name: string, fallback: number) =>
  Number(Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback);
const lines = arg("lines", 2000);
const rounds = arg("rounds", 20);

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** One task: a helper function and a task table whose command calls it (9 lines). */
function task(i: number): string {
  return `function helpers.step_${i}(params, inputs)
  local out = exec.run("echo " .. tostring(params.n or ${i}))
  for k, v in pairs(inputs or {}) do log.info(k, v) end
  if not out.success then return false, out.stderr end
  return true, "ok", { n = ${i}, text = string.format("%d", #out.stdout) }
end
tasks[#tasks + 1] = { name = "t${i}", command = function(params, inputs)
  return helpers.step_${i}(params, inputs)
end, depends_on = ${i > 0 ? `"t${i - 1}"` : "{}"} }
`;
}

const count = Math.ceil((lines - 2) / 9);
const text = `local tasks, helpers = {}, {}\n${
  Array.from({ length: count }, (_, i) => task(i)).join("")
}TaskDefinitions = { bench = { tasks = tasks } }\n`;
const file = { path: "/bench/workflow.lua", name: "workflow.lua", text };
const options = { defined: [], read: () => undefined };

const loadStart = performance.now();
const { checkGlobals } = await import("../lib/dsl/globals.ts");
const loadMs = performance.now() - loadStart;
const coldStart = performance.now();
const first = checkGlobals([file], options);
const coldMs = performance.now() - coldStart;
if (first.unknown.length || first.modules.length || first.notes.length) {
  throw new Error(`the generated workflow should be clean: ${JSON.stringify(first)}`);
}
const warm: number[] = [];
for (let i = 0; i < rounds; i++) {
  const start = performance.now();
  checkGlobals([file], options);
  warm.push(performance.now() - start);
}
console.log(`${text.split("\n").length - 1} lines, ${count} tasks`);
console.log(`module load (luaparse): ${loadMs.toFixed(1)} ms`);
console.log(`first check (cold):     ${coldMs.toFixed(1)} ms`);
console.log(`check, warm (median):   ${median(warm).toFixed(1)} ms over ${rounds}`);

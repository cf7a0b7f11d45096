/**
 * `deno task demo`: a real distributed run on this machine. Starts an agent on
 * 127.0.0.1 (a free port), runs examples/distributed/workflow.lua against it
 * from a scratch copy of that directory, shows the result, stops the agent.
 */
import { runArgs } from "./executables.ts";

const root = new URL("../", import.meta.url).pathname;
const scratch = await Deno.makeTempDir({ prefix: "sloth-demo-" });
const env = { RUST_BACKTRACE: "0" };

async function copy(from: string, to: string): Promise<void> {
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) {
      await Deno.mkdir(`${to}/${entry.name}`);
      await copy(`${from}/${entry.name}`, `${to}/${entry.name}`);
    } else await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

await copy(`${root}examples/distributed`, scratch);
const agent = new Deno.Command(Deno.execPath(), {
  args: [...runArgs("sloth-agent", root.replace(/\/$/, "")), "-p", "0"],
  env,
  stdin: "null",
  stdout: "inherit",
  stderr: "piped",
}).spawn();

let log = "";
const decoder = new TextDecoder();
const reader = agent.stderr.getReader();
let port = "";
while (!port) {
  const { value, done } = await reader.read();
  if (done) break;
  const text = decoder.decode(value, { stream: true });
  log += text;
  Deno.stderr.writeSync(new TextEncoder().encode(text.replace(/^(?=.)/gm, "agent | ")));
  port = /listening on 127\.0\.0\.1:(\d+)/.exec(log)?.[1] ?? "";
}
const pump = (async () => {
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    const text = decoder.decode(value, { stream: true });
    Deno.stderr.writeSync(new TextEncoder().encode(text.replace(/^(?=.)/gm, "agent | ")));
  }
})();

let code = 1;
if (port) {
  await Deno.writeTextFile(`${scratch}/values.yaml`, `agent: 127.0.0.1:${port}\n`);
  console.log(`\n$ sloth-runner run -f workflow.lua -v values.yaml     (in ${scratch})\n`);
  const run = await new Deno.Command(Deno.execPath(), {
    args: [
      ...runArgs("sloth-runner", root.replace(/\/$/, "")),
      "run",
      "-f",
      "workflow.lua",
      "-v",
      "values.yaml",
    ],
    cwd: scratch,
    env,
    stdin: "null",
  }).spawn().status;
  code = run.code;
} else {
  console.error("the agent did not start");
}
agent.kill("SIGTERM");
await agent.status;
await pump;
await Deno.remove(scratch, { recursive: true });
Deno.exit(code);

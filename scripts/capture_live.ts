/**
 * Records the live view for the README: starts an agent on 127.0.0.1 (a free
 * port), runs examples/live/workflow.lua on a 96×16 pseudo-terminal (util-linux
 * `script`), replays the bytes through tests/_helpers/screen.ts and prints the
 * busiest moment and the final screen as Markdown.
 *   deno run -A scripts/capture_live.ts
 */
import { Screen } from "../tests/_helpers/screen.ts";
import { runArgs } from "./executables.ts";

const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const scratch = await Deno.makeTempDir({ prefix: "sloth-capture-" });
await Deno.copyFile(`${root}/examples/live/workflow.lua`, `${scratch}/workflow.lua`);

const agent = new Deno.Command(Deno.execPath(), {
  args: [...runArgs("sloth-agent", root), "-p", "0"],
  stdin: "null",
  stdout: "null",
  stderr: "piped",
}).spawn();
let log = "";
const reader = agent.stderr.getReader();
let port = "";
while (!port) {
  const { value, done } = await reader.read();
  if (done) throw new Error(`the agent did not start:\n${log}`);
  log += new TextDecoder().decode(value);
  port = /listening on 127\.0\.0\.1:(\d+)/.exec(log)?.[1] ?? "";
}
const drain = (async () => {
  while (!(await reader.read()).done);
})();

try {
  await Deno.writeTextFile(`${scratch}/values.yaml`, `agent: 127.0.0.1:${port}\n`);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const command = "stty cols 96 rows 16; exec " +
    [Deno.execPath(), ...runArgs("sloth-runner", root), "run", "-v", "values.yaml"].map(quote)
      .join(" ");
  const out = await new Deno.Command("script", {
    args: ["-q", "-e", "-c", command, "/dev/null"],
    cwd: scratch,
    env: { TERM: "xterm-256color", NO_COLOR: "1" },
    stdout: "piped",
  }).output();
  const screen = new Screen().write(new TextDecoder().decode(out.stdout));
  const running = (frame: string) => frame.split("\n").filter((l) => / running \d/.test(l)).length;
  // A moment when the most tasks run, past the start so each shows its latest line.
  const most = Math.max(...screen.frames.map(running));
  const candidates = screen.frames.filter((f) => running(f) === most);
  const busiest = candidates[Math.floor(candidates.length * 0.6)] ?? "";
  // Addresses and ports change from run to run; the README shows the stable default.
  const tidy = (text: string) =>
    text.replaceAll(`127.0.0.1:${port}`, "127.0.0.1:50051").replace(/\s+$/, "\n");
  // The file's default agent is 127.0.0.1:50051; the capture's agent is on a free port,
  // given through values.yaml and shown as 50051.
  const prompt = "$ sloth-runner run -f examples/live/workflow.lua\n";
  console.log("While it runs:\n\n```console capture\n" + prompt + tidy(busiest) + "```\n");
  console.log("When it is done:\n\n```console capture\n" + prompt + tidy(screen.text()) + "```");
} finally {
  agent.kill("SIGTERM");
  await agent.status;
  await drain;
  await Deno.remove(scratch, { recursive: true });
}

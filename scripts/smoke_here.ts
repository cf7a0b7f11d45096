/**
 * `deno run -A scripts/smoke_here.ts`: the release smoke test (scripts/smoke.sh)
 * against this checkout, with main.ts and agent.ts started by `deno run` under
 * exactly the flags the release executables are compiled with (executables.ts).
 * The release workflow runs the same script against the compiled files.
 */
import { type ExecutableName, runArgs } from "./executables.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

/** A command line as smoke.sh takes it: words split on spaces. */
export function commandLine(command: string, args: string[]): string {
  const words = [command, ...args];
  const spaced = words.find((word) => /\s/.test(word));
  if (spaced !== undefined) {
    throw new Error(`smoke.sh splits commands on spaces, and "${spaced}" has one`);
  }
  return words.join(" ");
}

/** The environment that points smoke.sh at this checkout's entry points. */
export async function smokeEnv(root = ROOT): Promise<Record<string, string>> {
  const { version } = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  const line = (name: ExecutableName) => commandLine(Deno.execPath(), runArgs(name, root));
  return {
    SLOTH_RUNNER: line("sloth-runner"),
    SLOTH_AGENT: line("sloth-agent"),
    SLOTH_EXPECT_VERSION: version,
  };
}

if (import.meta.main) {
  const status = await new Deno.Command("bash", {
    args: [`${ROOT}/scripts/smoke.sh`],
    env: await smokeEnv(),
    stdin: "null",
  }).spawn().status;
  Deno.exit(status.code);
}

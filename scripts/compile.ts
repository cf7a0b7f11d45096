/**
 * `deno task compile [--target T ...] [--all]`: builds dist/sloth-runner and
 * dist/sloth-agent for this machine, or dist/<target>/… for each target asked.
 *
 * `deno compile` needs Deno's runtime (`denort`) for each target, downloaded from
 * dl.deno.land unless DENORT_BIN names one. Where that download is impossible this
 * says so in one line and exits 1, instead of a stack trace.
 */
import {
  compileArgs,
  type ExecutableName,
  EXECUTABLES,
  type Target,
  TARGETS,
} from "./executables.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

function parseArgs(args: string[]): Target[] | undefined {
  const targets: Target[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--all") targets.push(...TARGETS);
    else if (args[i] === "--target" && TARGETS.includes(args[i + 1] as Target)) {
      targets.push(args[++i] as Target);
    } else {
      console.error(
        `error: unknown argument ${args[i]}${
          args[i] === "--target" ? ` (targets: ${TARGETS.join(", ")})` : ""
        }\nusage: deno task compile [--target TARGET ...] [--all]`,
      );
      Deno.exit(2);
    }
  }
  return targets.length ? [...new Set(targets)] : undefined;
}

/** The one line to show for a failed `deno compile`, from its error output. */
export function explainFailure(stderr: string, target: string): string {
  // deno-lint-ignore no-control-regex
  const clean = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  if (/denort|dl\.deno\.land|Setting up base binary/i.test(clean)) {
    const url = /https:\/\/\S+denort\S+\.zip/.exec(clean)?.[0];
    return `cannot compile for ${target}: deno compile needs Deno's runtime (denort), ` +
      `and it could not be downloaded${url ? ` from ${url}` : ""}. ` +
      "Set DENORT_BIN to a denort of the same Deno version for this target, " +
      "or build on a machine that can reach dl.deno.land.";
  }
  const first = clean.split("\n").find((line) => /error/i.test(line)) ?? clean.split("\n")[0];
  return `cannot compile for ${target}: ${first.trim()}`;
}

async function compile(name: ExecutableName, target: Target | undefined): Promise<string> {
  const dir = target ? `${ROOT}/dist/${target}` : `${ROOT}/dist`;
  const suffix = target?.includes("windows") ? ".exe" : "";
  const output = `${dir}/${name}${suffix}`;
  await Deno.mkdir(dir, { recursive: true });
  const result = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(name, { root: ROOT, output, target }),
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (result.code !== 0) {
    throw new Error(
      explainFailure(new TextDecoder().decode(result.stderr), target ?? "this machine"),
    );
  }
  return output;
}

if (import.meta.main) {
  const targets = parseArgs(Deno.args);
  try {
    for (const target of targets ?? [undefined]) {
      for (const name of Object.keys(EXECUTABLES) as ExecutableName[]) {
        const output = await compile(name, target);
        console.log(`built ${output.slice(ROOT.length + 1)}`);
      }
    }
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(1);
  }
}

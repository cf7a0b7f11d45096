/**
 * `deno task compile [--target T ...] [--all] [--assets]`: builds dist/sloth-runner
 * and dist/sloth-agent for this machine, or dist/<target>/… for each target asked.
 * `--assets` also lays them out as a release: dist/release/<name>-<target>[.exe]
 * and dist/release/SHA256SUMS (what install.sh downloads and checks).
 *
 * `deno compile` needs Deno's runtime (`denort`) for each target, downloaded from
 * dl.deno.land unless DENORT_BIN names one. Where that download is impossible this
 * says so in one line and exits 1, instead of a stack trace.
 */
import { createHash } from "node:crypto";
import {
  assetName,
  compileArgs,
  type ExecutableName,
  EXECUTABLES,
  type Target,
  TARGETS,
} from "./executables.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

function parseArgs(args: string[]): { targets?: Target[]; assets: boolean } {
  const targets: Target[] = [];
  let assets = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--all") targets.push(...TARGETS);
    else if (args[i] === "--assets") assets = true;
    else if (args[i] === "--target" && TARGETS.includes(args[i + 1] as Target)) {
      targets.push(args[++i] as Target);
    } else {
      console.error(
        `error: unknown argument ${args[i]}${
          args[i] === "--target" ? ` (targets: ${TARGETS.join(", ")})` : ""
        }\nusage: deno task compile [--target TARGET ...] [--all] [--assets]`,
      );
      Deno.exit(2);
    }
  }
  return { targets: targets.length ? [...new Set(targets)] : undefined, assets };
}

/** Copies built files to dist/release under their asset names and writes SHA256SUMS. */
export async function writeAssets(
  root: string,
  built: { name: ExecutableName; target: Target; path: string }[],
): Promise<string> {
  const dir = `${root}/dist/release`;
  await Deno.mkdir(dir, { recursive: true });
  const sums: string[] = [];
  for (const { name, target, path } of built) {
    const asset = assetName(name, target);
    await Deno.copyFile(path, `${dir}/${asset}`);
    const digest = createHash("sha256").update(await Deno.readFile(path)).digest("hex");
    sums.push(`${digest}  ${asset}`);
  }
  await Deno.writeTextFile(`${dir}/SHA256SUMS`, sums.join("\n") + "\n");
  return dir;
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
  const lines = clean.split("\n").map((line) => line.trim());
  const at = lines.findIndex((line) => line.startsWith("error:"));
  const error = at >= 0 ? lines[at].replace(/^error:\s*/, "") : lines.find(Boolean) ?? "failed";
  // "Caused by:" is followed by the reason, when deno gives one.
  const cause = at >= 0
    ? lines.slice(at + 1).find((line) =>
      line !== "" && !/^(Caused by:|Stack backtrace:|\d+:)/.test(line)
    )
    : undefined;
  const denort = Deno.env.get("DENORT_BIN");
  return `cannot compile for ${target}: ${error}${cause ? `: ${cause}` : ""}` +
    (denort
      ? ` (is DENORT_BIN=${denort} the denort of Deno ${Deno.version.deno} for ${target}?)`
      : "");
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
  const { targets, assets } = parseArgs(Deno.args);
  if (assets && !targets) {
    console.error("error: --assets needs --target or --all (asset names carry the target)");
    Deno.exit(2);
  }
  try {
    const built: { name: ExecutableName; target: Target; path: string }[] = [];
    for (const target of targets ?? [undefined]) {
      for (const name of Object.keys(EXECUTABLES) as ExecutableName[]) {
        const output = await compile(name, target);
        console.log(`built ${output.slice(ROOT.length + 1)}`);
        if (target) built.push({ name, target, path: output });
      }
    }
    if (assets) {
      console.log(`release assets in ${(await writeAssets(ROOT, built)).slice(ROOT.length + 1)}`);
    }
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(1);
  }
}

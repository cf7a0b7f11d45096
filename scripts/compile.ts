/**
 * `deno task compile [--target T ...] [--all] [--assets]`: builds dist/sloth-runner
 * and dist/sloth-agent for this machine, or dist/<target>/… for each target asked.
 * `--assets` also lays them out as a release: dist/release/<name>-<target>[.exe]
 * and dist/release/SHA256SUMS (what install.sh downloads and checks).
 *
 * `deno compile` needs Deno's runtime (`denort`) for each target, downloaded from
 * dl.deno.land unless DENORT_BIN names one. Where that download is impossible, or
 * DENORT_BIN is not a file that could be one, this says so in one line and exits 1,
 * instead of a stack trace. A build for this machine is run once before it is kept:
 * `deno compile` accepts any executable of the right format as denort (/bin/true
 * makes a "sloth-runner" that does nothing and exits 0).
 *
 * `deno task` may print Deno's "Ignored build scripts … protobufjs" box before this
 * script starts (once per clone): that is `deno task` setting up the npm packages,
 * not this script. The same box from the `deno compile` children is captured with
 * the rest of their output and never shown.
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
import denoJson from "../deno.json" with { type: "json" };

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const VERSION: string = denoJson.version;
const DENO = Deno.version.deno;
/** This machine's target, as `deno compile --target` names it. */
const HERE = Deno.build.target;
/** How long a built executable gets to print its version. */
const RUN_TIMEOUT_MS = 30_000;

const USAGE = "usage: deno task compile [--target TARGET ...] [--all] [--assets] [--help]";

function denortUrl(target: string): string {
  return `https://dl.deno.land/release/v${DENO}/denort-${target}.zip`;
}

function help(): string {
  return `${USAGE}

Builds sloth-runner and sloth-agent with deno compile: one file each, nothing
else needed where they run.

  (no option)       dist/sloth-runner and dist/sloth-agent, for this machine (${HERE})
  --target TARGET   dist/TARGET/sloth-runner and dist/TARGET/sloth-agent (.exe on Windows);
                    may be given more than once
  --all             every target below
  --assets          also dist/release/<name>-<target>[.exe] and dist/release/SHA256SUMS,
                    the release assets install.sh downloads (needs --target or --all)
  -h, --help        this help

Targets:
${TARGETS.map((t) => `  ${t}`).join("\n")}

DENORT_BIN:
  deno compile puts the program into Deno's runtime, denort, which it downloads for each
  target from ${denortUrl("TARGET")}.
  Where that cannot be reached, download the zip elsewhere, unzip it, and set
  DENORT_BIN=/path/to/denort: it must be the denort of Deno ${DENO} (the Deno running this)
  and of the target being built, so one DENORT_BIN serves one target.
  A build for this machine is checked by running it (sloth-runner version,
  sloth-agent --version); one that does not run is removed.`;
}

function usageError(message: string): never {
  console.error(`error: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function parseArgs(args: string[]): { targets?: Target[]; assets: boolean } {
  const targets: Target[] = [];
  let assets = false;
  const known = `targets: ${TARGETS.join(", ")}`;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") {
      console.log(help());
      Deno.exit(0);
    } else if (arg === "--all") targets.push(...TARGETS);
    else if (arg === "--assets") assets = true;
    else if (arg === "--target") {
      const value = args[i + 1];
      if (value === undefined || value === "" || value.startsWith("-")) {
        usageError(`--target needs a value (${known})`);
      }
      if (!TARGETS.includes(value as Target)) usageError(`unknown target ${value} (${known})`);
      targets.push(value as Target);
      i++;
    } else usageError(`unknown argument ${arg} (deno task compile --help lists them)`);
  }
  if (assets && !targets.length) {
    usageError("--assets needs --target or --all (asset names carry the target)");
  }
  return { targets: targets.length ? [...new Set(targets)] : undefined, assets };
}

/**
 * Why DENORT_BIN cannot be a denort, or undefined if it might be. deno compile's own
 * "Could not find denort" would otherwise read as a failed download.
 */
export async function checkDenortBin(
  path: string,
  options: { target: string; runsHere: boolean },
): Promise<string | undefined> {
  const want = `set DENORT_BIN to the denort of Deno ${DENO} for ${options.target} ` +
    `(unzipped from ${denortUrl(options.target)}), or unset it to have deno compile download one`;
  if (path === "") return `DENORT_BIN is set but empty; ${want}`;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return `DENORT_BIN=${path} does not exist; ${want}`;
    return `DENORT_BIN=${path} cannot be read (${(error as Error).message}); ${want}`;
  }
  if (info.isDirectory) {
    return `DENORT_BIN=${path} is a directory, not the denort file; ${want}`;
  }
  if (!info.isFile) return `DENORT_BIN=${path} is not a regular file; ${want}`;
  const head = new Uint8Array(4);
  try {
    using file = await Deno.open(path);
    await file.read(head);
  } catch (error) {
    return `DENORT_BIN=${path} cannot be read (${(error as Error).message}); ${want}`;
  }
  if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4) {
    return `DENORT_BIN=${path} is the zip; unzip it and set DENORT_BIN to the denort inside`;
  }
  // Only a denort for this machine needs to be executable here (the build is run);
  // one for another OS may well have lost its mode bits on the way.
  if (options.runsHere && Deno.build.os !== "windows" && (info.mode! & 0o111) === 0) {
    return `DENORT_BIN=${path} is not executable; if it is the denort of Deno ${DENO} ` +
      `for ${options.target}, chmod +x it, else ${want}`;
  }
  return undefined;
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
export function explainFailure(stderr: string, target: string, triple: string = target): string {
  // deno-lint-ignore no-control-regex
  const clean = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  const denort = Deno.env.get("DENORT_BIN");
  // With DENORT_BIN set nothing is downloaded: its failures are the generic kind below.
  if (denort === undefined && /denort|dl\.deno\.land|Setting up base binary/i.test(clean)) {
    const url = /https:\/\/\S+denort\S+\.zip/.exec(clean)?.[0];
    return `cannot compile for ${target}: deno compile needs Deno's runtime (denort), ` +
      `and it could not be downloaded${url ? ` from ${url}` : ""}. ` +
      "Set DENORT_BIN to a denort of the same Deno version for this target, " +
      "or build on a machine that can reach dl.deno.land.";
  }
  // Deno's warning boxes ("╭ Warning", "│ …", "╰─") are not the error.
  const lines = clean.split("\n").map((line) => line.trim()).filter((line) => !/^[╭│╰]/.test(line));
  const at = lines.findIndex((line) => line.startsWith("error:"));
  const error = at >= 0 ? lines[at].replace(/^error:\s*/, "") : lines.find(Boolean) ?? "failed";
  // "Caused by:" is followed by numbered reasons, outermost first ("0: Writing binary
  // bytes", "1: Invalid object: Not an ELF file"): the first and the last say it.
  const rest = at >= 0 ? lines.slice(at + 1) : [];
  const causes = rest.filter((line) => /^\d+: /.test(line)).map((line) =>
    line.replace(/^\d+: /, "")
  );
  const cause = causes.length
    ? [...new Set([causes[0], causes[causes.length - 1]])].join(": ")
    : rest.find((line) => line !== "" && !/^(Caused by:|Stack backtrace:)/.test(line));
  return `cannot compile for ${target}: ${causes.length ? cause : error}` +
    (!causes.length && cause ? `: ${cause}` : "") +
    (denort !== undefined
      ? ` (is DENORT_BIN=${denort} the denort of Deno ${DENO} for ${triple}?)`
      : "");
}

/** Directories this run created, deepest last, so a failed run can take them away again. */
const created: string[] = [];

async function makeDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; d.startsWith(`${ROOT}/`); d = d.slice(0, d.lastIndexOf("/"))) {
    try {
      await Deno.stat(d);
      break;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      missing.unshift(d);
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  created.push(...missing);
}

/** Removes the directories this run created, where they are still empty. */
async function removeCreatedDirs(): Promise<void> {
  for (const dir of created.reverse()) {
    await Deno.remove(dir).catch(() => {}); // not empty: it holds something else, keep it
  }
}

function relative(path: string): string {
  return path.startsWith(`${ROOT}/`) ? path.slice(ROOT.length + 1) : path;
}

async function compile(name: ExecutableName, target: Target | undefined): Promise<string> {
  const dir = target ? `${ROOT}/dist/${target}` : `${ROOT}/dist`;
  const suffix = (target ?? HERE).includes("windows") ? ".exe" : "";
  const output = `${dir}/${name}${suffix}`;
  await makeDir(dir);
  const result = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(name, { root: ROOT, output, target }),
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (result.code !== 0) {
    throw new Error(
      explainFailure(
        new TextDecoder().decode(result.stderr),
        target ?? "this machine",
        target ?? HERE,
      ),
    );
  }
  return output;
}

/**
 * Runs a build for this machine the way a user would ask its version; undefined if it
 * answers with this version, else what it did instead.
 */
export async function runsAsBuilt(
  name: ExecutableName,
  file: string,
  version: string = VERSION,
): Promise<string | undefined> {
  const args = name === "sloth-runner" ? ["version"] : ["--version"];
  const want = name === "sloth-runner" ? `sloth-runner ${version}` : version;
  const ran = `\`${name} ${args[0]}\``;
  const timeout = AbortSignal.timeout(RUN_TIMEOUT_MS);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(file, {
      args,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: timeout,
    }).output();
  } catch (error) {
    return timeout.aborted
      ? `${ran} did not finish in ${RUN_TIMEOUT_MS / 1000} s`
      : `${ran} cannot be started (${(error as Error).message})`;
  }
  // Deno ends the child with SIGTERM when the signal aborts.
  if (timeout.aborted) return `${ran} did not finish in ${RUN_TIMEOUT_MS / 1000} s`;
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
  const first = decode(out.stdout).split("\n")[0];
  // sloth-runner adds "(deno X)" after its version.
  if (out.code === 0 && (first === want || first.startsWith(`${want} `))) return undefined;
  const stderr = decode(out.stderr).split("\n").find((line) => line.trim() !== "");
  const said = first
    ? `printed "${first}"`
    : stderr
    ? `printed nothing but "${stderr}" on stderr`
    : "printed nothing";
  const exit = out.signal ? `was killed by ${out.signal}` : `exited with ${out.code}`;
  return `${ran} ${said} and ${exit}, instead of "${want}"`;
}

if (import.meta.main) {
  const { targets, assets } = parseArgs(Deno.args);
  const denort = Deno.env.get("DENORT_BIN");
  if (denort !== undefined) {
    const target = targets?.length === 1 ? targets[0] : targets ? "TARGET" : HERE;
    const problem = await checkDenortBin(denort, {
      target,
      runsHere: !targets || targets.includes(HERE as Target),
    });
    if (problem) {
      console.error(`error: cannot compile: ${problem}`);
      Deno.exit(1);
    }
  }
  try {
    const built: { name: ExecutableName; target: Target; path: string }[] = [];
    for (const target of targets ?? [undefined]) {
      for (const name of Object.keys(EXECUTABLES) as ExecutableName[]) {
        const output = await compile(name, target);
        // Only a build for this machine can be run here.
        if (!target || target === HERE) {
          const wrong = await runsAsBuilt(name, output);
          if (wrong) {
            await Deno.remove(output).catch(() => {});
            const hint = denort !== undefined
              ? `is DENORT_BIN=${denort} the denort of Deno ${DENO} for ${HERE}?`
              : "is a file it loads at run time missing from INCLUDES in scripts/executables.ts?";
            throw new Error(
              `the built ${relative(output)} does not run: ${wrong}; ${hint} ` +
                `(${relative(output)} removed)`,
            );
          }
        }
        console.log(`built ${relative(output)}`);
        if (target) built.push({ name, target, path: output });
      }
    }
    if (assets) {
      console.log(`release assets in ${relative(await writeAssets(ROOT, built))}`);
    }
  } catch (error) {
    await removeCreatedDirs();
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(1);
  }
}

/** Shared by tests that cross modules: temp workspaces and the CLI, in and out of process. */
import { main } from "../../lib/cli/mod.ts";
import type { Io } from "../../lib/cli/mod.ts";
import { type ExecutableName, runArgs } from "../../scripts/executables.ts";

export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
export const FIXTURES = `${ROOT}/tests/fixtures`;
export const MAIN_TS = `${ROOT}/main.ts`;

/**
 * With DENORT_BIN set (a real `denort`, so `deno task compile` works), the tests
 * run the compiled executables in dist/ (`.ci/run` builds them first).
 */
export const COMPILED = Deno.env.get("DENORT_BIN") ? `${ROOT}/dist` : undefined;

/**
 * How to start an executable: its compiled file, or its entry point under
 * `deno run` with exactly the permissions it is compiled with (scripts/executables.ts).
 */
export function executable(
  name: ExecutableName,
  args: string[],
): { command: string; args: string[] } {
  if (COMPILED) return { command: `${COMPILED}/${name}`, args };
  return { command: Deno.execPath(), args: [...runArgs(name, ROOT), ...args] };
}

/** A temp directory holding `files` (path → content); removed by `Symbol.asyncDispose`. */
export async function tempWorkspace(
  files: Record<string, string> = {},
): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-test-" }));
  for (const [path, content] of Object.entries(files)) {
    const full = `${dir}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(full, content);
  }
  return {
    dir,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in this process, with its output captured. */
export async function cli(args: string[], options: { cwd: string }): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const io: Io = {
    out: (text) => stdout += text,
    err: (text) => stderr += text,
    color: false,
    cwd: options.cwd,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

/** Runs `main.ts` as its own process, exactly as a user starts it. */
export async function cliProcess(
  args: string[],
  options: { cwd: string; env?: Record<string, string> },
): Promise<CliResult> {
  const run = executable("sloth-runner", args);
  const output = await new Deno.Command(run.command, {
    args: run.args,
    cwd: options.cwd,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...options.env },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Starts `main.ts` without waiting, for tests that signal it. */
export function spawnCli(
  args: string[],
  options: { cwd: string; env?: Record<string, string> },
): Deno.ChildProcess {
  const run = executable("sloth-runner", args);
  return new Deno.Command(run.command, {
    args: run.args,
    cwd: options.cwd,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Whether a process with this pid exists (and is not a zombie). */
export function processAlive(pid: number): boolean {
  if (Deno.build.os !== "linux") {
    // No /proc on macOS: ask ps for the state ("Z" is a zombie; nothing, no such process).
    const ps = new Deno.Command("ps", { args: ["-o", "stat=", "-p", String(pid)], stderr: "null" })
      .outputSync();
    const state = new TextDecoder().decode(ps.stdout).trim();
    return ps.success && state !== "" && !state.startsWith("Z");
  }
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Waits until `check` holds, or throws after `ms`. */
export async function waitFor(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms}ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Every file under `dir` with its content, for checking that nothing else changed.
 * What vanishes while it is read (an agent removing a finished job's directory) is
 * left out, as if it had gone a moment earlier.
 */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const gone = (error: unknown) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  };
  const walk = async (path: string, rel: string) => {
    try {
      for await (const entry of Deno.readDir(path)) {
        const full = `${path}/${entry.name}`;
        const name = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory) await walk(full, name);
        else {
          await (entry.isSymlink
            ? Deno.readLink(full).then((t) => `-> ${t}`)
            : Deno.readTextFile(full))
            .then((content) => out[name] = content, gone);
        }
      }
    } catch (error) {
      if (rel === "") throw error; // The directory asked for must exist.
      gone(error);
    }
  };
  await walk(dir, "");
  return out;
}

/** A temp copy of `tests/fixtures/<name>`, so a test may change it freely. */
export function copyFixture(
  name: string,
): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  return copyDir(`${FIXTURES}/${name}`);
}

/** A temp copy of a directory of the repository (tests/compat/<style>, a fixture). */
export async function copyDir(
  from: string,
): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  const ws = await tempWorkspace();
  const copy = async (from: string, to: string) => {
    for await (const entry of Deno.readDir(from)) {
      if (entry.isDirectory) {
        await Deno.mkdir(`${to}/${entry.name}`);
        await copy(`${from}/${entry.name}`, `${to}/${entry.name}`);
      } else await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  };
  await copy(from, ws.dir);
  return ws;
}

/** Reads a process's stdout and stderr as they come, for tests that act on what it prints. */
export class LiveOutput {
  stdout = "";
  stderr = "";
  #done: Promise<void>;

  constructor(child: Deno.ChildProcess) {
    const read = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this[key] += decoder.decode(chunk, { stream: true });
    };
    this.#done = Promise.all([read(child.stdout, "stdout"), read(child.stderr, "stderr")]).then(
      () => {},
    );
  }

  /** Waits until stdout or stderr matches. */
  async waitFor(pattern: RegExp, ms = 15_000): Promise<RegExpExecArray> {
    let match: RegExpExecArray | null = null;
    await waitFor(
      () => (match = pattern.exec(this.stdout) ?? pattern.exec(this.stderr)) !== null,
      ms,
    )
      .catch(() => {
        throw new Error(
          `no ${pattern} within ${ms}ms; stdout:\n${this.stdout}\nstderr:\n${this.stderr}`,
        );
      });
    return match!;
  }

  done(): Promise<void> {
    return this.#done;
  }
}

/** Pids of processes whose command line contains `text` (ours are unique per test). */
export async function pgrep(text: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).replaceAll(
        "\0",
        " ",
      );
      if (cmdline.includes(text) && processAlive(Number(entry.name))) pids.push(Number(entry.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** A number unlikely to appear in any other process's command line. */
export function uniqueSeconds(): string {
  return `${30 + Math.floor(Math.random() * 1000)}.${Math.floor(Math.random() * 1e6)}`;
}

/** Whether util-linux `script` is here, to give the CLI a real terminal. */
export const HAS_SCRIPT = hasCommand("script");

/** Whether `name --version` runs here (tests that need a tool skip, named, without it). */
export function hasCommand(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/**
 * Runs sloth-runner on a pseudo-terminal of `columns`×`rows` (through util-linux
 * `script`) and returns every byte it wrote there, escapes included.
 */
export async function cliInTerminal(
  args: string[],
  options: { cwd: string; columns?: number; rows?: number; env?: Record<string, string> },
): Promise<{ code: number; raw: string }> {
  const run = executable("sloth-runner", args);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const command = `stty cols ${options.columns ?? 100} rows ${options.rows ?? 30}; exec ` +
    [run.command, ...run.args].map(quote).join(" ");
  const output = await new Deno.Command("script", {
    args: ["-q", "-e", "-c", command, "/dev/null"],
    cwd: options.cwd,
    env: { TERM: "xterm-256color", RUST_BACKTRACE: "0", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, raw: new TextDecoder().decode(output.stdout) };
}

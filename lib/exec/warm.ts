/**
 * A shell made ahead: the session, user switch and shell of the next command,
 * started before that command is known, so that running it costs a pipe write
 * and one exec on its way instead of a spawn and three (`setsid`, `setpriv`,
 * `sh`): about 1-2 ms less a command on an agent (scripts/bench_spawn.ts).
 *
 * The spare is `setsid [switchUserArgv…] /bin/sh -c STUB`: the same programs,
 * with the same arguments, as a command started directly, so its ids, groups,
 * capabilities, no_new_privs and session are set up exactly as they would be;
 * nothing of the switch moves into shell code. Its stub reads one line from
 * stdin and evaluates it: `cd` to the command's directory, its environment, then
 * `exec /bin/sh -c SCRIPT`, the shell a direct start would have run, with
 * stdin from /dev/null. Only a command sh can be given that way takes it (a
 * short script, variable names sh can export, no NUL); any other starts
 * directly. If the agent dies while a spare waits, the spare reads the end of
 * its stdin and exits; a spare is recorded as a tree (trees.ts) once it is
 * given a command, before the command is written to it.
 *
 * Only the agent keeps a spare (`keepShellsWarm`), one at a time, for
 * the user switch it was made with.
 */
/** Reads one line (sh's `read` takes a byte at a time: hence the limit) and runs it. */
const STUB = "nl='\n'; IFS= read -r l && eval \"$l\"";
const MAX_LINE_BYTES = 4096;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/**
 * When the next spare is made, after one is taken: not at once, as spawning
 * holds this thread for a while (~0.5 ms), and then the command just handed over
 * would wait for it to be seen ending; later, a task's result has gone out.
 * Remote no-op tasks measured p50 1-2 ms faster than with 0 here.
 */
const SPARE_DELAY_MS = 8;

interface Spare {
  child: Deno.ChildProcess;
  key: string;
  gone: boolean;
}

let keepers = 0;
let spare: Spare | undefined;
let making: ReturnType<typeof setTimeout> | undefined;
let taken = 0;

/**
 * From now on, keep a shell made ahead for the commands `runShell` starts
 * directly or in a `userSandbox`; the function returned stops it (and ends the
 * spare) once every caller has.
 */
export function keepShellsWarm(): () => Promise<void> {
  keepers++;
  let stopped = false;
  return async () => {
    if (stopped) return;
    stopped = true;
    if (--keepers > 0) return;
    clearTimeout(making);
    making = undefined;
    const last = spare;
    spare = undefined;
    if (last) await discard(last);
  };
}

/** Whether anyone keeps a shell made ahead (a master does not). */
export function shellsKeptWarm(): boolean {
  return keepers > 0;
}

/** How many commands ran in a shell made ahead (for tests and benchmarks). */
export function warmShellsTaken(): number {
  return taken;
}

/**
 * A shell already running `script` in `cwd` with `env` added to this process's
 * environment, after `argv` (`setsid` and the user switch): undefined when none was ready
 * for it (the caller starts it directly; a spare is made for the next one).
 * `onTaken` runs before the command is handed over (to record its tree).
 */
export function warmShell(
  argv: string[],
  script: string,
  options: { cwd: string; env: Record<string, string>; onTaken: (pid: number) => void },
): Deno.ChildProcess | undefined {
  if (keepers === 0) return undefined;
  const line = commandLine(script, options.cwd, options.env);
  if (line === undefined) return undefined;
  const key = argv.join("\0");
  const ready = spare;
  spare = undefined;
  // Made for another user switch, or ended: not for this command.
  if (ready && (ready.gone || ready.key !== key)) void discard(ready);
  making ??= setTimeout(() => {
    making = undefined;
    if (keepers > 0 && !spare) spare = makeSpare(argv, key);
  }, SPARE_DELAY_MS);
  if (!ready || ready.gone || ready.key !== key) return undefined;
  // A directory that is not there fails as a direct start would (spawn_failed);
  // the spare waits for the next command.
  try {
    if (!Deno.statSync(options.cwd).isDirectory) throw new Deno.errors.NotFound();
  } catch {
    spare = ready;
    return undefined;
  }
  options.onTaken(ready.child.pid);
  taken++;
  const writer = ready.child.stdin.getWriter();
  writer.write(line).then(() => writer.close()).catch(() => {
    // The stub is gone (its status says how); nothing more to hand it.
  });
  return ready.child;
}

function makeSpare(argv: string[], key: string): Spare | undefined {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: [...argv.slice(1), "/bin/sh", "-c", STUB],
      cwd: "/",
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch {
    return undefined;
  }
  const made: Spare = { child, key, gone: false };
  child.status.then(() => made.gone = true);
  return made;
}

async function discard(old: Spare): Promise<void> {
  try {
    Deno.kill(-old.child.pid, "SIGKILL");
  } catch {
    // It ended on its own.
  }
  await old.child.stdin.close().catch(() => {});
  await Promise.all([
    old.child.status,
    old.child.stdout.cancel().catch(() => {}),
    old.child.stderr.cancel().catch(() => {}),
  ]);
}

/**
 * The stub's line: one line (newlines inside quotes become `$nl`), ending in the
 * exec of the command's shell; undefined when sh cannot be given it that way.
 * The variables are those a direct start adds; OLDPWD, which `cd` changes, is
 * put back as this process has it.
 */
function commandLine(
  script: string,
  cwd: string,
  env: Record<string, string>,
): Uint8Array | undefined {
  if (script.includes("\0") || cwd.includes("\0")) return undefined;
  const oldpwd = env.OLDPWD ?? Deno.env.get("OLDPWD");
  let text = `exec </dev/null; cd -P -- ${quote(cwd)} || exit 127; ` +
    (oldpwd === undefined ? "unset OLDPWD; " : `export OLDPWD=${quote(oldpwd)}; `);
  for (const [name, value] of Object.entries(env)) {
    if (!NAME.test(name) || value.includes("\0")) return undefined;
    text += `export ${name}=${quote(value)}; `;
  }
  text += `exec /bin/sh -c ${quote(script)}\n`;
  const bytes = new TextEncoder().encode(text);
  return bytes.length <= MAX_LINE_BYTES ? bytes : undefined;
}

/** Single-quoted for sh, on one line. */
function quote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`).replaceAll("\n", `'"$nl"'`)}'`;
}

import assert from "node:assert/strict";
import { Argument, Command, type CommandUnknownOpts, Option } from "@commander-js/extra-typings";
import { executable, tempWorkspace } from "../../tests/_helpers/mod.ts";
import { completionScript, type Shell, SHELLS } from "./completion.ts";
import { buildProgram, defaultIo } from "./mod.ts";

// Debian packages: bash (always there), zsh, fish. Cases of a shell that is not
// installed are skipped, and say so in their name.
const HAVE = Object.fromEntries(
  await Promise.all(SHELLS.map(async (s) => [s, await installed(s)] as const)),
) as Record<Shell, boolean>;
const need = (shell: Shell) => HAVE[shell] ? "" : ` (skipped: ${shell} is not installed)`;

async function installed(shell: Shell): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(shell, { args: ["-c", "exit 0"] }).output();
    return success;
  } catch {
    return false;
  }
}

function realProgram() {
  return buildProgram({ ...defaultIo(), out: () => {}, err: () => {} }, () => {});
}

const HOSTILE = "$(touch PWNED)";
/** A task name that is a command, as far as names may go. */
const NAME = "$(id>PWNED)";

/** A program whose every text is something a careless generator would let the shell run. */
function hostileProgram() {
  const program = new Command().name("sloth-runner");
  program.command("odd")
    .alias("weird")
    .description(`it's "odd" \`touch PWNED\` ${HOSTILE} \\ [x] a:b\nsecond line`)
    .addOption(
      new Option("-m, --mode <mode>", `quotes ' " \` ${HOSTILE} ] [ : \\ %s`)
        .choices(["a b", HOSTILE, "it's", "x:y", "[z]", "back\\slash", "plain"]),
    )
    .option("--flag", "$HOME `touch PWNED` ] it's")
    .addArgument(new Argument("<kind>", `'${HOSTILE}'`).choices(["one", "two words"]))
    .action(() => {});
  return program;
}

/** A temp directory with the script, and `bin/sloth-runner` starting the real main.ts. */
async function setUp(shell: Shell, program: CommandUnknownOpts = realProgram()) {
  const ws = await tempWorkspace({
    "work/workflow.lua": "",
    "work/values.yaml": "",
    "work/sub/inner.lua": "",
  });
  const script = `${ws.dir}/completion.${shell}`;
  await Deno.writeTextFile(script, completionScript(program, shell));
  const run = executable("sloth-runner", []);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  await Deno.mkdir(`${ws.dir}/bin`);
  await Deno.writeTextFile(
    `${ws.dir}/bin/sloth-runner`,
    `#!/bin/sh\nexec ${[run.command, ...run.args].map(quote).join(" ")} "$@"\n`,
    { mode: 0o755 },
  );
  return {
    ...ws,
    script,
    work: `${ws.dir}/work`,
    env: {
      PATH: `${ws.dir}/bin:${Deno.env.get("PATH")}`,
      // fish keeps its variables here. Not HOME: Deno finds its cache through it.
      XDG_CONFIG_HOME: `${ws.dir}/config`,
      XDG_DATA_HOME: `${ws.dir}/data`,
    },
  };
}

type Setup = Awaited<ReturnType<typeof setUp>>;

async function shell(
  command: string,
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): Promise<string> {
  const result = await new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    // Guards against a hang (a zsh waiting for a prompt that never comes), not a timing.
    signal: AbortSignal.timeout(120_000),
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  assert(result.success, `${command} failed (${result.code}): ${stderr}`);
  assert.deepEqual(stderr, "", `${command} wrote to stderr`);
  return new TextDecoder().decode(result.stdout);
}

// ---------------------------------------------------------------- bash

const BASH_DRIVER = `
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
_sloth_runner
printf '%s\\n' "\${COMPREPLY[@]}"
`;

/** COMPREPLY for the words typed so far; the last is the word under the cursor. */
async function bash(
  s: Setup,
  words: string[],
  env: Record<string, string> = {},
): Promise<string[]> {
  const out = await shell("bash", [
    "--norc",
    "--noprofile",
    "-c",
    BASH_DRIVER,
    "bash",
    s.script,
    ...words,
  ], {
    cwd: s.work,
    env: { ...s.env, ...env },
  });
  return out.split("\n").filter(Boolean);
}

const sorted = (list: string[]) => [...list].sort();

Deno.test("bash: the script passes bash -n and says how to install it", async () => {
  await using s = await setUp("bash");
  await shell("bash", ["-n", s.script], { cwd: s.work, env: s.env });
  const text = await Deno.readTextFile(s.script);
  includes(text, "source <(sloth-runner completion bash)");
  includes(text, "~/.local/share/bash-completion/completions/sloth-runner");
  assert(!text.includes("\\${"), "a String.raw escape reached the script");
});

Deno.test('bash: "sloth-runner " completes every command', async () => {
  await using s = await setUp("bash");
  const got = await bash(s, ["sloth-runner", ""]);
  for (const c of ["run", "list", "validate", "agent", "version", "help"]) {
    assert(got.includes(c), `${c} missing from ${got}`);
  }
  assert.deepEqual(await bash(s, ["sloth-runner", "va"]), ["validate"]);
});

Deno.test('bash: "run --o" completes --output, "run --output " its choices', async () => {
  await using s = await setUp("bash");
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "--o"]), ["--output"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "--output", ""]), ["text", "json"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "-o", "j"]), ["json"]);
  // -y is a flag, so o is the option whose value comes next.
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "-yo", ""]), ["text", "json"]);
  // With '=' in COMP_WORDBREAKS (the default) and without it.
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "--output", "=", ""]), ["text", "json"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "--output", "=", "t"]), ["text"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "--output=j"]), ["--output=json"]);
  // The value of -o is not taken for a subcommand or an argument.
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "-o", "json", "--dry"]), ["--dry-run"]);
});

Deno.test('bash: "agent " completes start and ping; agent options go to the default start', async () => {
  await using s = await setUp("bash");
  assert.deepEqual(sorted(await bash(s, ["sloth-runner", "agent", ""])), ["help", "ping", "start"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "agent", "ping", "--token"]), ["--token-file"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "agent", "start", "--sandbox", ""]), [
    "auto",
    "bwrap",
    "none",
  ]);
  // `sloth-runner agent -p 1 --sandbox x` runs `agent start`.
  assert.deepEqual(await bash(s, ["sloth-runner", "agent", "--sa"]), ["--sandbox"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "agent", "-p", "1", "--task-network", ""]), [
    "on",
    "off",
  ]);
  assert.deepEqual(await bash(s, ["sloth-runner", "agent", "help", ""]), ["start", "ping"]);
});

Deno.test('bash: "run -f " completes file names, "--work-root " directories', async () => {
  await using s = await setUp("bash");
  assert.deepEqual(sorted(await bash(s, ["sloth-runner", "run", "-f", ""])), [
    "sub",
    "values.yaml",
    "workflow.lua",
  ]);
  assert.deepEqual(await bash(s, ["sloth-runner", "list", "--values", "v"]), ["values.yaml"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "-f", "sub/"]), ["sub/inner.lua"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "agent", "ping", "--tls-ca", "w"]), [
    "workflow.lua",
  ]);
  assert.deepEqual(await bash(s, ["sloth-runner", "agent", "--work-root", ""]), ["sub"]);
  // An option without a known kind of value completes nothing, not file names.
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "-j", ""]), []);
});

Deno.test("bash: every visible option of every command is completed after -", async () => {
  const program = realProgram();
  await using s = await setUp("bash", program);
  const visit = async (cmd: CommandUnknownOpts, path: string[]) => {
    const help = cmd.createHelp();
    const flags = help.visibleOptions(cmd).flatMap((o) => [o.short, o.long]).filter(
      (f): f is string => !!f,
    );
    const got = await bash(s, ["sloth-runner", ...path, "-"]);
    for (const f of flags) assert(got.includes(f), `${path.join(" ")} ${f} missing from ${got}`);
    for (const sub of help.visibleCommands(cmd)) await visit(sub, [...path, sub.name()]);
  };
  await visit(program, []);
});

Deno.test("bash: -t and -g complete the names that `list` prints for the -f workflow", async () => {
  await using s = await setUp("bash");
  await Deno.writeTextFile(
    `${s.work}/other.lua`,
    // Names hold no spaces or commas (the loader refuses them), but quotes and $( are fine.
    `TaskDefinitions = {
      build = { description = "it's — a group", tasks = {
        { name = "compile", command = "true" },
        { name = "it's", command = "true" },
        { name = "${NAME}", command = "true" },
      } },
      deploy = { tasks = { { name = "compile", command = "true" }, { name = "push", command = "true" } } },
    }`,
  );
  const run = ["sloth-runner", "run", "-f", "other.lua"];
  assert.deepEqual(sorted(await bash(s, [...run, "-g", ""])), ["build", "deploy"]);
  const tasks = await bash(s, [...run, "-t", ""]);
  // Each name once, and quoted so that it stays one word and does not run.
  assert.deepEqual(
    sorted(tasks),
    sorted(["compile", "it\\'s", "\\$\\(id\\>PWNED\\)", "push"]),
  );
  assert.deepEqual(await bash(s, [...run, "-t", "compile,p"]), ["compile,push"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "--file=other.lua", "--group=d"]), [
    "--group=deploy",
  ]);
  assert.deepEqual(await bash(s, [...run, "-t", ""], { SLOTH_COMPLETION_NO_LIST: "1" }), []);
  // The default workflow.lua here is empty, so `list` fails: nothing, and no error.
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "-t", ""]), []);
  assert.deepEqual(await bash(s, ["sloth-runner", "run", "-f", "missing.lua", "-t", ""]), []);
  assert(!(await exists(`${s.work}/PWNED`)), "a task name ran as a command");
});

Deno.test("bash: hostile descriptions and choices are inert and completed literally", async () => {
  await using s = await setUp("bash", hostileProgram());
  await shell("bash", ["-n", s.script], { cwd: s.work, env: s.env });
  assert.deepEqual(await bash(s, ["sloth-runner", "o"]), ["odd"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "weird", "--f"]), ["--flag"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "odd", "--mode", ""]), [
    "a\\ b",
    "\\$\\(touch\\ PWNED\\)",
    "it\\'s",
    "x:y",
    "\\[z\\]",
    "back\\\\slash",
    "plain",
  ]);
  // The word typed so far is a literal prefix, not a pattern or code.
  assert.deepEqual(await bash(s, ["sloth-runner", "odd", "-m", "$("]), ["\\$\\(touch\\ PWNED\\)"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "odd", "-m", "["]), ["\\[z\\]"]);
  assert.deepEqual(await bash(s, ["sloth-runner", "odd", "-m", "*"]), []);
  assert.deepEqual(await bash(s, ["sloth-runner", "odd", "t"]), ["two\\ words"]);
  assert(!(await exists(`${s.work}/PWNED`)), "a description or choice ran as a command");
});

Deno.test(
  `bash: the completion command completes bash, zsh and fish${
    realProgram().commands.some((c) => c.name() === "completion")
      ? ""
      : " (skipped: mod.ts has no completion command yet)"
  }`,
  { ignore: !realProgram().commands.some((c) => c.name() === "completion") },
  async () => {
    await using s = await setUp("bash");
    assert.deepEqual(await bash(s, ["sloth-runner", "completion", ""]), ["bash", "zsh", "fish"]);
  },
);

function includes(text: string, part: string) {
  assert.ok(text.includes(part), `expected ${JSON.stringify(part)} in:\n${text}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- zsh

// Drives an interactive zsh in a pseudo-terminal (zsh/zpty): types each line and a
// TAB, and logs every match the completion functions hand to compadd. Each line
// waits for the prompt, so the terminal is in zle's raw mode when the keys arrive.
const ZSH_DRIVER = String.raw`
zmodload zsh/zpty || exit 3
mode=$1 script=$2 log=$3; shift 3
zpty z zsh -f -i
# The prompt shows "%%" as "%": the typed PS1=... (echoed) does not match it.
prompt_seen() { zpty -r z _ "*<zle%-$1>*" }
zpty -w z "PS1='<zle%%-ready>'"
prompt_seen ready
if [[ $mode == fpath ]]; then
  mkdir -p -- "$script.d" && cp -- "$script" "$script.d/_sloth-runner"
  zpty -w z "fpath=(\${(q)script}.d \$fpath); autoload -Uz compinit && compinit -u -D"
else
  zpty -w z "autoload -Uz compinit && compinit -u -D && source \${(q)script}"
fi
zpty -w z "zstyle ':completion:*' list-prompt ''; LISTMAX=100000"
# Calls of compadd that only ask (-O, -A) or describe (-D) add nothing.
zpty -w z 'compadd() {
  local -a matches
  if (( \${@[(I)-[OAD]*]} )); then builtin compadd "$@"; return; fi
  builtin compadd -O matches "$@"
  print -rl -- "\${matches[@]}" >> '\${(q)log}'
  builtin compadd "$@"
}'
n=0
for line in "$@"; do
  n=$((n + 1))
  zpty -w z "print -r -- @@@ >> \${(q)log}; PS1='<zle%%-$n>'"
  prompt_seen $n
  zpty -n -w z "$line"$'\t'
  zpty -n -w z $'\C-u'
  zpty -w z "PS1='<zle%%-done-$n>'"
  prompt_seen done-$n
done
zpty -d z
`.replaceAll("\\${", "${");

/** What zsh completes for each line, typed at a prompt and followed by TAB. */
async function zsh(s: Setup, lines: string[], mode: "source" | "fpath" = "source") {
  const log = `${s.dir}/zsh.log`;
  await Deno.writeTextFile(log, "");
  await Deno.writeTextFile(`${s.dir}/driver.zsh`, ZSH_DRIVER);
  await shell("zsh", ["-f", `${s.dir}/driver.zsh`, mode, s.script, log, ...lines], {
    cwd: s.work,
    env: s.env,
  });
  const blocks = (await Deno.readTextFile(log)).split("@@@\n").slice(1);
  assert.deepEqual(blocks.length, lines.length, "zsh did not complete every line");
  return blocks.map((b) => [...new Set(b.split("\n").filter(Boolean))].sort());
}

Deno.test(`zsh: the script passes zsh -n and says how to install it${need("zsh")}`, {
  ignore: !HAVE.zsh,
}, async () => {
  await using s = await setUp("zsh");
  await shell("zsh", ["-n", s.script], { cwd: s.work, env: s.env });
  const text = await Deno.readTextFile(s.script);
  assert(text.startsWith("#compdef sloth-runner\n"), "compinit needs #compdef on the first line");
  includes(text, "_sloth-runner");
  includes(text, "fpath");
});

Deno.test(`zsh: commands, options, choices, files and names complete${need("zsh")}`, {
  ignore: !HAVE.zsh,
}, async () => {
  await using s = await setUp("zsh");
  await Deno.writeTextFile(
    `${s.work}/other.lua`,
    `TaskDefinitions = { build = { tasks = { { name = "compile", command = "true" },
      { name = "lint", command = "true" } } } }`,
  );
  const got = await zsh(s, [
    "sloth-runner ",
    "sloth-runner run --o",
    "sloth-runner run --output ",
    "sloth-runner run --output=",
    "sloth-runner agent ",
    "sloth-runner agent -p 1 --sandbox ",
    "sloth-runner run -f ",
    "sloth-runner run -f other.lua -t ",
    "sloth-runner run -f other.lua -t compile,l",
    "sloth-runner help ",
  ]);
  for (const c of ["run", "list", "validate", "agent", "version"]) {
    assert(got[0].includes(c), `${c} missing from ${got[0]}`);
  }
  assert.deepEqual(got[1], ["--output"]);
  assert.deepEqual(got[2], ["json", "text"]);
  assert.deepEqual(got[3], ["json", "text"]);
  assert.deepEqual(got[4], ["help", "ping", "start"]);
  assert.deepEqual(got[5], ["auto", "bwrap", "none"]);
  assert.deepEqual(got[6], ["other.lua", "sub", "values.yaml", "workflow.lua"]);
  assert.deepEqual(got[7], ["compile", "lint"]);
  assert.deepEqual(got[8], ["lint"]);
  assert(got[9].includes("validate") && !got[9].includes("help"), `${got[9]}`);
});

Deno.test(`zsh: the script works autoloaded from $fpath${need("zsh")}`, {
  ignore: !HAVE.zsh,
}, async () => {
  await using s = await setUp("zsh");
  const got = await zsh(s, ["sloth-runner agent --sandbox ", "sloth-runner agent "], "fpath");
  assert.deepEqual(got, [["auto", "bwrap", "none"], ["help", "ping", "start"]]);
});

Deno.test(`zsh: hostile descriptions and choices are inert and completed literally${need("zsh")}`, {
  ignore: !HAVE.zsh,
}, async () => {
  await using s = await setUp("zsh", hostileProgram());
  await shell("zsh", ["-n", s.script], { cwd: s.work, env: s.env });
  const got = await zsh(s, [
    "sloth-runner odd --mode ",
    "sloth-runner weird --",
    "sloth-runner odd ",
    "sloth-runner ",
  ]);
  assert.deepEqual(got[0], sorted(["a b", HOSTILE, "it's", "x:y", "[z]", "back\\slash", "plain"]));
  assert(got[1].includes("--flag") && got[1].includes("--mode"), `${got[1]}`);
  assert.deepEqual(got[2], ["one", "two words"]);
  assert(got[3].includes("odd"), `${got[3]}`);
  assert(!(await exists(`${s.work}/PWNED`)), "a description or choice ran as a command");
});

// ---------------------------------------------------------------- fish

/** What `complete -C LINE` (fish's --do-complete) offers, without descriptions. */
async function fish(s: Setup, line: string, env: Record<string, string> = {}): Promise<string[]> {
  const out = await shell(
    "fish",
    ["--no-config", "-c", "source $argv[1]; and complete -C $argv[2]", s.script, line],
    { cwd: s.work, env: { ...s.env, ...env } },
  );
  return out.split("\n").filter(Boolean).map((l) => l.split("\t")[0]);
}

Deno.test(`fish: the script passes fish --no-execute and says how to install it${need("fish")}`, {
  ignore: !HAVE.fish,
}, async () => {
  await using s = await setUp("fish");
  await shell("fish", ["--no-config", "--no-execute", s.script], { cwd: s.work, env: s.env });
  includes(
    await Deno.readTextFile(s.script),
    "~/.config/fish/completions/sloth-runner.fish",
  );
});

Deno.test(`fish: commands, options, choices, files and names complete${need("fish")}`, {
  ignore: !HAVE.fish,
}, async () => {
  await using s = await setUp("fish");
  await Deno.writeTextFile(
    `${s.work}/other.lua`,
    `TaskDefinitions = { build = { tasks = { { name = "compile", command = "true" },
      { name = "lint", command = "true" } } } }`,
  );
  const root = await fish(s, "sloth-runner ");
  for (const c of ["run", "list", "validate", "agent", "version"]) {
    assert(root.includes(c), `${c} missing from ${root}`);
  }
  assert.deepEqual(await fish(s, "sloth-runner ru"), ["run"]);
  assert.deepEqual(await fish(s, "sloth-runner run --o"), ["--output"]);
  assert.deepEqual(await fish(s, "sloth-runner run --output "), ["json", "text"]);
  assert.deepEqual(await fish(s, "sloth-runner run -yo "), ["json", "text"]);
  assert.deepEqual(await fish(s, "sloth-runner agent "), ["help", "ping", "start"]);
  assert.deepEqual(await fish(s, "sloth-runner agent -p 1 --sandbox "), ["auto", "bwrap", "none"]);
  assert.deepEqual(await fish(s, "sloth-runner agent --sa"), ["--sandbox"]);
  assert.deepEqual(await fish(s, "sloth-runner agent ping --token"), ["--token-file"]);
  assert.deepEqual(await fish(s, "sloth-runner run -f "), [
    "other.lua",
    "sub/",
    "values.yaml",
    "workflow.lua",
  ]);
  assert.deepEqual(await fish(s, "sloth-runner agent --work-root "), ["sub/"]);
  // A value is not a subcommand: "agent" here is the name of a file.
  assert.deepEqual(await fish(s, "sloth-runner run -f agent --dry"), ["--dry-run"]);
  assert.deepEqual(await fish(s, "sloth-runner run -f other.lua -t "), ["compile", "lint"]);
  assert.deepEqual(await fish(s, "sloth-runner run --file=other.lua -t compile,l"), [
    "compile,lint",
  ]);
  assert.deepEqual(await fish(s, "sloth-runner run -f other.lua -g "), ["build"]);
  assert.deepEqual(
    await fish(s, "sloth-runner run -f other.lua -t ", { SLOTH_COMPLETION_NO_LIST: "1" }),
    [],
  );
  assert.deepEqual(await fish(s, "sloth-runner help va"), ["validate"]);
});

Deno.test(
  `fish: hostile descriptions and choices are inert and completed literally${need("fish")}`,
  {
    ignore: !HAVE.fish,
  },
  async () => {
    await using s = await setUp("fish", hostileProgram());
    await shell("fish", ["--no-config", "--no-execute", s.script], { cwd: s.work, env: s.env });
    assert.deepEqual(
      sorted(await fish(s, "sloth-runner odd --mode ")),
      sorted(["a b", HOSTILE, "it's", "x:y", "[z]", "back\\slash", "plain"]),
    );
    assert.deepEqual(await fish(s, "sloth-runner weird --f"), ["--flag"]);
    assert.deepEqual(await fish(s, "sloth-runner odd "), ["one", "two words"]);
    const out = await shell(
      "fish",
      [
        "--no-config",
        "-c",
        "source $argv[1]; and complete -C $argv[2]",
        s.script,
        "sloth-runner o",
      ],
      { cwd: s.work, env: s.env },
    );
    includes(out, `odd\tit's "odd" \`touch PWNED\` ${HOSTILE} \\ [x] a:b second line`);
    assert(!(await exists(`${s.work}/PWNED`)), "a description or choice ran as a command");
  },
);

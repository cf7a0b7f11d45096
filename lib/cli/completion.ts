/**
 * Shell completion scripts, generated from the commander tree at the moment they are
 * printed: a new command, option, choice or `<file>` value is completed without
 * touching this file. The scripts carry the tree as data (no call back into
 * sloth-runner per key press, which would cost a Deno start each time), except for
 * group and task names, which only the workflow knows.
 */
import type { CommandUnknownOpts, Option } from "@commander-js/extra-typings";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = typeof SHELLS[number];

/** How a value (of an option or a positional argument) is completed. */
type ValueKind = "choice" | "file" | "dir" | "groups" | "tasks" | "any";

interface OptionSpec {
  short?: string;
  long?: string;
  description: string;
  /** `undefined` for a flag that takes no value. */
  value?: { name: string; kind: ValueKind; choices: string[]; optional: boolean };
}

interface ArgumentSpec {
  name: string;
  kind: ValueKind;
  choices: string[];
  variadic: boolean;
  optional: boolean;
}

interface CommandSpec {
  /** Names from the program down, without the program's own: `["agent", "start"]`. */
  path: string[];
  name: string;
  aliases: string[];
  description: string;
  options: OptionSpec[];
  args: ArgumentSpec[];
  subcommands: CommandSpec[];
  /** The subcommand that runs when none is named (`agent` → `start`). */
  defaultSubcommand?: string;
}

/** Options whose value is the workflow, forwarded to `list` to complete group and task names. */
interface ListSource {
  forwarded: string[];
  /** Where `list` looks when no `--file` is given; absent if `list` has no `--file`. */
  defaultFile?: string;
}

/**
 * Returns a completion script for `program` in `shell`'s language. The script
 * completes subcommands, options, choices, file and directory values, and (when the
 * program has a `list` command) group and task names read from `list`'s output.
 */
export function completionScript(program: CommandUnknownOpts, shell: Shell): string {
  const root = describe(program, []);
  const list = listSource(program);
  switch (shell) {
    case "bash":
      return bashScript(root, list);
    case "zsh":
      return zshScript(root, list);
    case "fish":
      return fishScript(root, list);
  }
}

// ---------------------------------------------------------------- the commander tree

function describe(cmd: CommandUnknownOpts, path: string[]): CommandSpec {
  const help = cmd.createHelp();
  // Help lists what the user can type, including the implicit help option and command.
  const visible = help.visibleCommands(cmd);
  const siblings = visible.filter((c) => cmd.commands.includes(c)).map((c) => c.name());
  const subcommands = visible.map((sub) => {
    const spec = describe(sub, [...path, sub.name()]);
    if (!cmd.commands.includes(sub)) {
      // commander's own `help [command]`: its argument is one of the other commands.
      spec.args = spec.args.map((a) => ({ ...a, kind: "choice", choices: siblings }));
    }
    return spec;
  });
  // commander keeps the default subcommand in a private field, so it is read warily:
  // should it go, `agent -p` merely stops completing start's options.
  const defaultName = (cmd as unknown as { _defaultCommandName?: unknown })._defaultCommandName;
  return {
    path,
    name: cmd.name(),
    aliases: cmd.aliases(),
    description: oneLine(cmd.description()),
    options: help.visibleOptions(cmd).map(optionSpec),
    args: cmd.registeredArguments.map((a) => {
      const choices = a.argChoices ?? [];
      return {
        name: a.name(),
        kind: valueKind(a.name(), choices),
        choices,
        variadic: a.variadic,
        optional: !a.required,
      };
    }),
    subcommands,
    defaultSubcommand: typeof defaultName === "string" &&
        subcommands.some((s) => s.name === defaultName)
      ? defaultName
      : undefined,
  };
}

function optionSpec(o: Option): OptionSpec {
  const spec: OptionSpec = { short: o.short, long: o.long, description: oneLine(o.description) };
  if (o.required || o.optional) {
    const name = /[<[]([^>\]]*)[>\]]/.exec(o.flags)?.[1].replace(/\.\.\.$/, "") || "value";
    const choices = o.argChoices ?? [];
    spec.value = { name, kind: valueKind(name, choices), choices, optional: o.optional };
  }
  return spec;
}

/** Decided by the value's name in the flags (`<file>`, `<dir>`, `<groups>`), so new options follow. */
function valueKind(name: string, choices: readonly string[]): ValueKind {
  if (choices.length > 0) return "choice";
  const n = name.toLowerCase();
  if (/^(files?|paths?)$|[-_](file|path)$/.test(n)) return "file";
  if (/^(dir|directory|folder)$|[-_]dir$/.test(n)) return "dir";
  if (n === "group" || n === "groups") return "groups";
  if (n === "task" || n === "tasks") return "tasks";
  return "any";
}

function listSource(program: CommandUnknownOpts): ListSource | undefined {
  const list = program.commands.find((c) => c.name() === "list");
  if (!list) return undefined;
  const fileOptions = list.options.map(optionSpec).filter((o) =>
    o.long && (o.value?.kind === "file")
  );
  const file = list.options.find((o) => o.long === "--file");
  return {
    forwarded: fileOptions.map((o) => o.long!),
    defaultFile: typeof file?.defaultValue === "string" ? file.defaultValue : undefined,
  };
}

/**
 * The fixed parts of the scripts are written as String.raw templates; \${ and \` in
 * them stand for the shell's own ${ and `.
 */
function shellCode(text: string): string {
  return text.replaceAll("\\${", "${").replaceAll("\\`", "`");
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function walk(spec: CommandSpec): CommandSpec[] {
  return [spec, ...spec.subcommands.flatMap(walk)];
}

function hasNames(root: CommandSpec): boolean {
  return walk(root).some((c) =>
    c.options.some((o) => o.value?.kind === "groups" || o.value?.kind === "tasks") ||
    c.args.some((a) => a.kind === "groups" || a.kind === "tasks")
  );
}

/** `sloth-runner` → `sloth_runner`, for function names. */
function identifier(name: string): string {
  return name.replace(/[^A-Za-z0-9_]/g, "_");
}

/** Characters that mean nothing to sh, bash, zsh or fish (zsh expands a leading `=`). */
const BARE = /^[A-Za-z0-9_.,:/@+-][A-Za-z0-9_.,:/@+=-]*$/;

/** One word for sh, bash and zsh: bare when it can be, else in single quotes (`'` as `'\''`). */
function shQuote(s: string): string {
  if (BARE.test(s)) return s;
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** One word for fish: bare when it can be, else in single quotes (where `\` and `'` are special). */
function fishQuote(s: string): string {
  if (BARE.test(s)) return s;
  return `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

function header(comment: string, lines: string[]): string {
  return lines.map((l) => l ? `${comment} ${l}` : comment).join("\n") + "\n";
}

function namesNote(program: string, root: CommandSpec, list: ListSource | undefined): string[] {
  if (!list || !hasNames(root)) return [];
  const flags = walk(root).flatMap((c) => c.options)
    .filter((o) => o.value?.kind === "groups" || o.value?.kind === "tasks")
    .map((o) => [o.short, o.long].filter(Boolean).join("/"));
  return [
    "",
    `Values of ${[...new Set(flags)].join(" and ")} are the names that \`${program} list\` prints;`,
    "it loads the workflow file, so its top-level Lua runs on that key press.",
    "SLOTH_COMPLETION_NO_LIST=1 turns this off.",
  ];
}

// ---------------------------------------------------------------- bash

function key(path: string[]): string {
  return path.map((p) => ` ${p}`).join("");
}

function bashScript(root: CommandSpec, list: ListSource | undefined): string {
  const program = root.name;
  const fn = `_${identifier(program)}`;
  const all = walk(root);
  const lines: string[] = [];
  const out = (s = "") => lines.push(s);

  out(header("#", [
    `bash completion for ${program}, generated by \`${program} completion bash\``,
    "from the command definitions; regenerate it after an upgrade. Needs bash 4.1 or later.",
    "",
    "Install, either of:",
    `  echo 'source <(${program} completion bash)' >> ~/.bashrc`,
    `  ${program} completion bash > ~/.local/share/bash-completion/completions/${program}`,
    "(the second loads on first use, with the bash-completion package)",
    ...namesNote(program, root, list),
  ]));

  out(`# PATH WORD: sets sub to the command that WORD names under PATH (" agent").`);
  out(`_${fn}_sub() {`);
  out(`  case "$1|$2" in`);
  for (const c of all) {
    for (const s of c.subcommands) {
      const pats = [s.name, ...s.aliases].map((n) => shQuote(`${key(c.path)}|${n}`));
      out(`    ${pats.join(" | ")}) sub=${shQuote(s.name)} ;;`);
    }
  }
  out(`    *) return 1 ;;`);
  out(`  esac`);
  out(`}`);
  out();

  out(`# PATH WORD: sets kind (flag, choice, file, dir, groups, tasks, any), long and choices.`);
  out(`_${fn}_option() {`);
  out(`  choices=()`);
  out(`  case "$1|$2" in`);
  for (const c of all) {
    for (const o of c.options) {
      const names = [o.short, o.long].filter((n): n is string => !!n);
      const pats = names.map((n) => shQuote(`${key(c.path)}|${n}`));
      const kind = o.value?.kind ?? "flag";
      const choices = o.value?.choices.length
        ? `; choices=(${o.value.choices.map(shQuote).join(" ")})`
        : "";
      out(
        `    ${pats.join(" | ")}) kind=${kind}; long=${shQuote(o.long ?? names[0])}${choices} ;;`,
      );
    }
  }
  out(`    *) return 1 ;;`);
  out(`  esac`);
  out(`}`);
  out();

  out(`# PATH N: sets kind and choices for positional argument N (from 0) of PATH.`);
  out(`_${fn}_argument() {`);
  out(`  choices=()`);
  out(`  case "$1" in`);
  for (const c of all) {
    if (c.args.length === 0) continue;
    out(`    ${shQuote(key(c.path))})`);
    out(`      case $2 in`);
    c.args.forEach((a, i) => {
      const last = i === c.args.length - 1;
      const choices = a.choices.length ? `; choices=(${a.choices.map(shQuote).join(" ")})` : "";
      out(`        ${last && a.variadic ? "*" : i}) kind=${a.kind}${choices} ;;`);
    });
    out(`        *) return 1 ;;`);
    out(`      esac ;;`);
  }
  out(`    *) return 1 ;;`);
  out(`  esac`);
  out(`}`);
  out();

  out(`# PATH: sets subs, opts and default (the subcommand run when none is named).`);
  out(`_${fn}_command() {`);
  out(`  subs=() opts=() default=''`);
  out(`  case "$1" in`);
  for (const c of all) {
    const parts: string[] = [];
    if (c.subcommands.length) {
      parts.push(`subs=(${c.subcommands.map((s) => shQuote(s.name)).join(" ")})`);
    }
    const opts = c.options.flatMap((o) => [o.short, o.long].filter((n): n is string => !!n));
    if (opts.length) parts.push(`opts=(${opts.map(shQuote).join(" ")})`);
    if (c.defaultSubcommand) parts.push(`default=${shQuote(c.defaultSubcommand)}`);
    if (parts.length) out(`    ${shQuote(key(c.path))}) ${parts.join("; ")} ;;`);
  }
  out(`  esac`);
  out(`}`);
  out();

  const forwarded = list?.forwarded ?? [];
  out(`# LONG: whether \`${program} list\` needs this option's value to find the workflow.`);
  out(`_${fn}_forwarded() {`);
  if (forwarded.length) {
    out(`  case $1 in ${forwarded.map(shQuote).join(" | ")}) return 0 ;; esac`);
  }
  out(`  return 1`);
  out(`}`);
  out();

  out(
    BASH_BODY.replaceAll("@FN@", fn).replaceAll("@PROGRAM@", shQuote(program))
      .replaceAll("@DEFAULT_FILE@", shQuote(list?.defaultFile ?? ""))
      .replaceAll("@LIST@", list ? "1" : ""),
  );
  out(`complete -F ${fn} ${shQuote(program)}`);
  return lines.join("\n") + "\n";
}

// The fixed part: walks the words before the cursor with the tables above, the way
// commander parses them (`--opt=value`, `-abc` bundles, `--`, default subcommands).
// Variables set by the table functions are the caller's locals (bash scoping), which
// spares a subshell per lookup.
const BASH_BODY = shellCode(
  String.raw`# KIND LIST-ARGS...: prints the group or task names that the list command prints.
_@FN@_names() {
  [[ -z \${SLOTH_COMPLETION_NO_LIST-} && -n '@LIST@' ]] || return 0
  local kind=$1 line header='' out file=@DEFAULT_FILE@ i
  local -a args=("\${@:2}")
  local -A seen=()
  for ((i = 1; i < \${#args[@]}; i += 2)); do
    [[ \${args[i]} == '~/'* ]] && args[i]=$HOME/\${args[i]#\~/}
    [[ \${args[i - 1]} == --file ]] && file=\${args[i]}
  done
  # Spares a Deno start (and an error) where there is no workflow.
  [[ -z $file || -f $file ]] || return 0
  out=$(SLOTH_LUA_TIMEOUT=2s @PROGRAM@ list "\${args[@]}" 2>/dev/null </dev/null) || return 0
  # A group is a line of its own ("name — description"), followed by a table of its
  # tasks indented by two spaces: a header row, then one row per task whose columns
  # are separated by two or more spaces.
  while IFS= read -r line; do
    case $line in
      '') ;;
      '  '*)
        if [[ -n $header ]]; then
          header=''
        elif [[ $kind == tasks ]]; then
          line=\${line#  }
          line=\${line%%  *}
          [[ -n \${seen[$line]-} ]] || { seen[$line]=1; printf '%s\n' "$line"; }
        fi
        ;;
      *)
        header=1
        [[ $kind == groups ]] && printf '%s\n' "\${line%% — *}"
        ;;
    esac
  done <<<"$out"
}

# CANDIDATES...: adds those that start with $cur, with $prefix in front.
_@FN@_add() {
  local c
  for c in "$@"; do
    [[ $c == "$cur"* ]] || continue
    c=$prefix$c
    # Names from a workflow can hold anything; they must reach the line as one word.
    [[ $c == *[!A-Za-z0-9_.,:/@%+=-]* ]] && printf -v c '%q' "$c"
    COMPREPLY+=("$c")
  done
}

# Completes $cur as a value of kind $kind (with $choices).
_@FN@_values() {
  local -a names=()
  case $kind in
    choice) _@FN@_add "\${choices[@]}" ;;
    file)
      compopt -o filenames 2>/dev/null
      mapfile -t -O "\${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -P "$prefix" -- "$cur")
      ;;
    dir)
      compopt -o filenames 2>/dev/null
      mapfile -t -O "\${#COMPREPLY[@]}" COMPREPLY < <(compgen -d -P "$prefix" -- "$cur")
      ;;
    groups | tasks)
      # A comma-separated list: complete its last name.
      if [[ $cur == *,* ]]; then
        prefix+=\${cur%,*},
        cur=\${cur##*,}
      fi
      mapfile -t names < <(_@FN@_names "$kind" "\${forward[@]}")
      _@FN@_add "\${names[@]}"
      ;;
  esac
}

# WORD: looks WORD up as an option of $path, or of its default subcommand (which it
# then enters, as commander does).
_@FN@_find_option() {
  _@FN@_option "$path" "$1" && return 0
  ((nargs == 0)) || return 1
  _@FN@_command "$path"
  [[ -n $default ]] && _@FN@_option "$path $default" "$1" || return 1
  path+=" $default"
}

@FN@() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path='' word sub kind long default='' i j
  local nargs=0 expect='' dashdash='' prefix=''
  local -a choices=() subs=() opts=() forward=() all=()
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=\${COMP_WORDS[i]}
    if [[ -n $expect ]]; then
      # '=' is in COMP_WORDBREAKS by default: --file=x arrives as --file, =, x.
      [[ $word == = ]] && continue
      _@FN@_forwarded "$expect" && forward+=("$expect" "$word")
      expect=''
      continue
    fi
    if [[ -z $dashdash && $word == -- ]]; then
      dashdash=1
    elif [[ -z $dashdash && $word == --?* ]]; then
      _@FN@_find_option "\${word%%=*}" && [[ $kind != flag ]] || continue
      if [[ $word == *=* ]]; then
        _@FN@_forwarded "$long" && forward+=("$long" "\${word#*=}")
      else
        expect=$long
      fi
    elif [[ -z $dashdash && $word == -?* ]]; then
      # -yo json: flags, then at most one option that takes the rest or the next word.
      for ((j = 1; j < \${#word}; j++)); do
        _@FN@_find_option "-\${word:j:1}" || break
        [[ $kind == flag ]] && continue
        if ((j + 1 < \${#word})); then
          _@FN@_forwarded "$long" && forward+=("$long" "\${word:j+1}")
        else
          expect=$long
        fi
        break
      done
    elif ((nargs == 0)) && _@FN@_sub "$path" "$word"; then
      path+=" $sub"
    else
      _@FN@_command "$path"
      ((nargs == 0 && \${#subs[@]})) && [[ -n $default ]] && path+=" $default"
      nargs=$((nargs + 1))
    fi
  done

  if [[ -n $expect ]]; then
    [[ $cur == = ]] && cur=''
    _@FN@_option "$path" "$expect"
    _@FN@_values
  elif [[ -z $dashdash && $cur == --*=* ]]; then
    _@FN@_find_option "\${cur%%=*}" && [[ $kind != flag ]] || return 0
    prefix=\${cur%%=*}=
    cur=\${cur#*=}
    _@FN@_values
  elif [[ -z $dashdash && $cur == -* ]]; then
    _@FN@_command "$path"
    all=("\${opts[@]}")
    if ((nargs == 0)) && [[ -n $default ]]; then
      _@FN@_command "$path $default"
      all+=("\${opts[@]}")
    fi
    _@FN@_add "\${all[@]}"
  else
    _@FN@_command "$path"
    if ((nargs == 0 && \${#subs[@]})); then
      _@FN@_add "\${subs[@]}"
    elif _@FN@_argument "$path" "$nargs"; then
      _@FN@_values
    elif [[ -z $cur && -z $dashdash ]]; then
      _@FN@_add "\${opts[@]}"
    fi
  fi
  return 0
}
`,
);

// ---------------------------------------------------------------- zsh

/** Text inside `[...]` of an _arguments spec. */
function zshBracket(s: string): string {
  return s.replace(/([\\\]\[])/g, "\\$1");
}

/** A message or name between colons of an _arguments spec. */
function zshField(s: string): string {
  return s.replace(/([\\:])/g, "\\$1");
}

/** One item of an `(a b c)` action, which _arguments splits and unquotes like shell words. */
function zshWord(s: string): string {
  return s === "" ? "''" : s.replace(/[^A-Za-z0-9_.,/@%+=-]/g, "\\$&");
}

function zshAction(kind: ValueKind, choices: string[], fn: string): string {
  switch (kind) {
    case "choice":
      return `(${choices.map(zshWord).join(" ")})`;
    case "file":
      return "_files";
    case "dir":
      return "_files -/";
    case "groups":
    case "tasks":
      return `${fn}_names ${kind}`;
    case "any":
      return " ";
  }
}

function zshFunction(c: CommandSpec, program: string): string {
  return `_${program}${c.path.map((p) => `_${identifier(p)}`).join("")}`;
}

function zshScript(root: CommandSpec, list: ListSource | undefined): string {
  const program = root.name;
  const fn = `_${program}`;
  const lines: string[] = [];
  const out = (s = "") => lines.push(s);
  // #compdef must be the first line for compinit to pick the file up from $fpath.
  out(`#compdef ${program}`);
  out(header("#", [
    `zsh completion for ${program}, generated by \`${program} completion zsh\``,
    "from the command definitions; regenerate it after an upgrade.",
    "",
    "Install, either of:",
    `  ${program} completion zsh > ~/.zfunc/_${program}`,
    "  with fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc (any directory in",
    `  $fpath will do; the file must be named _${program}), or`,
    `  source <(${program} completion zsh)   in ~/.zshrc, after compinit.`,
    ...namesNote(program, root, list),
  ]));

  for (const c of walk(root)) {
    const name = zshFunction(c, program);
    const specs: string[] = [];
    for (const o of c.options) {
      const names = [o.short, o.long].filter((n): n is string => !!n);
      const desc = `[${zshBracket(o.description)}]`;
      for (const n of names) {
        if (!o.value) {
          specs.push(`(${names.join(" ")})${n}${desc}`);
        } else {
          // A value may follow in the same word (-ojson, --output=json) or the next.
          const form = n.startsWith("--") ? `${n}=` : `${n}+`;
          const colon = o.value.optional ? "::" : ":";
          const action = zshAction(o.value.kind, o.value.choices, fn);
          specs.push(`*${form}${desc}${colon}${zshField(o.value.name)}:${action}`);
        }
      }
    }
    if (c.subcommands.length) {
      specs.push(": :->command", "*:: :->argument");
    } else {
      for (const a of c.args) {
        const action = zshAction(a.kind, a.choices, fn);
        const lead = a.variadic ? "*" : a.optional ? ":" : "";
        specs.push(`${lead}:${zshField(a.name)}:${action}`);
      }
    }

    out(`${name}() {`);
    if (c.defaultSubcommand) {
      // commander runs the default subcommand when an option comes first (`agent -p 1`).
      const target = c.subcommands.find((s) => s.name === c.defaultSubcommand)!;
      out(`  if [[ $words[2] == -* ]]; then`);
      out(`    ${zshFunction(target, program)}`);
      out(`    return`);
      out(`  fi`);
    }
    out(`  local curcontext=$curcontext state state_descr line ret=1`);
    out(`  typeset -A opt_args`);
    out(`  _arguments -C -s -S : \\`);
    for (const s of specs) out(`    ${shQuote(s)} \\`);
    out(`    && ret=0`);
    if (c.subcommands.length) {
      out(`  case $state in`);
      out(`    command)`);
      out(`      local -a commands=(`);
      for (const s of c.subcommands) {
        out(`        ${shQuote(`${zshField(s.name)}:${s.description}`)}`);
      }
      out(`      )`);
      out(`      _describe -t commands command commands && ret=0`);
      out(`      ;;`);
      out(`    argument)`);
      out(`      curcontext=\${curcontext%:*:*}:${program}-$words[1]:`);
      out(`      case $words[1] in`);
      for (const s of c.subcommands) {
        const pats = [s.name, ...s.aliases].map(shQuote).join("|");
        out(`        ${pats}) ${zshFunction(s, program)} && ret=0 ;;`);
      }
      out(`      esac`);
      out(`      ;;`);
      out(`  esac`);
    }
    out(`  return ret`);
    out(`}`);
    out();
  }

  const forwarded = list?.forwarded ?? [];
  const listOptions = walk(root).flatMap((c) => c.options)
    .filter((o) => o.long && forwarded.includes(o.long));
  const keys = [...new Map(listOptions.map((o) => [o.long!, o])).values()]
    .flatMap((o) => [o.short, o.long].filter(Boolean).map((k) => `${k}=${o.long}`));
  out(
    ZSH_NAMES.replaceAll("@FN@", fn).replaceAll("@PROGRAM@", shQuote(program))
      .replaceAll("@DEFAULT_FILE@", shQuote(list?.defaultFile ?? ""))
      .replaceAll("@KEYS@", keys.map(shQuote).join(" "))
      .replaceAll("@LIST@", list ? "1" : ""),
  );
  out(`# Autoloaded from $fpath, this file is the body of ${fn}; sourced, it registers it.`);
  out(`if [[ $funcstack[1] == ${fn} ]]; then`);
  out(`  ${fn} "$@"`);
  out(`else`);
  out(`  compdef ${fn} ${shQuote(program)}`);
  out(`fi`);
  return lines.join("\n") + "\n";
}

const ZSH_NAMES = shellCode(
  String.raw`# [compadd options] groups|tasks: the names that the list command prints, for a
# comma-separated list (an action of _arguments gets compadd options first).
@FN@_names() {
  [[ -z $SLOTH_COMPLETION_NO_LIST && -n '@LIST@' ]] || return 1
  local kind=\${argv[-1]} line header= out file=@DEFAULT_FILE@ entry value expl
  local -a args names
  # option=its long name, for the options whose value the list command needs.
  for entry in @KEYS@; do
    value=\${opt_args[\${entry%%=*}]-}
    [[ -n $value ]] || continue
    value=\${(Q)\${value//\\:/:}}
    [[ $value == '~/'* ]] && value=$HOME/\${value#\~/}
    args+=(\${entry#*=} $value)
    [[ \${entry#*=} == --file ]] && file=$value
  done
  [[ -z $file || -f $file ]] || return 1
  out=$(SLOTH_LUA_TIMEOUT=2s @PROGRAM@ list "\${args[@]}" 2>/dev/null </dev/null) || return 1
  # A group is a line of its own ("name — description"), followed by its tasks indented
  # by two spaces: a header row, then one row per task, columns two or more spaces apart.
  for line in "\${(@f)out}"; do
    case $line in
      '') ;;
      '  '*)
        if [[ -n $header ]]; then
          header=
        elif [[ $kind == tasks ]]; then
          line=\${line#  }
          names+=("\${line%%  *}")
        fi
        ;;
      *)
        header=1
        [[ $kind == groups ]] && names+=("\${line%% — *}")
        ;;
    esac
  done
  argv[-1]=()
  compset -P '*,'
  _wanted $kind expl \${kind%s} compadd "$@" -a names
}
`,
);

// ---------------------------------------------------------------- fish

function fishScript(root: CommandSpec, list: ListSource | undefined): string {
  const program = root.name;
  const fn = `__${identifier(program)}`;
  const all = walk(root);
  const lines: string[] = [];
  const out = (s = "") => lines.push(s);
  out(header("#", [
    `fish completion for ${program}, generated by \`${program} completion fish\``,
    "from the command definitions; regenerate it after an upgrade.",
    "",
    "Install:",
    `  ${program} completion fish > ~/.config/fish/completions/${program}.fish`,
    ...namesNote(program, root, list),
  ]));

  out(`# PATH WORD: prints the command that WORD names under PATH (" agent").`);
  out(`function ${fn}_sub`);
  out(`    switch "$argv[1]|$argv[2]"`);
  for (const c of all) {
    for (const s of c.subcommands) {
      const pats = [s.name, ...s.aliases].map((n) => fishQuote(`${key(c.path)}|${n}`));
      out(`        case ${pats.join(" ")}`);
      out(`            echo ${fishQuote(s.name)}`);
    }
  }
  out(`        case '*'`);
  out(`            return 1`);
  out(`    end`);
  out(`end`);
  out();

  out(`# PATH WORD: prints the kind of option WORD of PATH (flag or value), then its long name.`);
  out(`function ${fn}_option`);
  out(`    switch "$argv[1]|$argv[2]"`);
  for (const c of all) {
    for (const o of c.options) {
      const names = [o.short, o.long].filter((n): n is string => !!n);
      out(`        case ${names.map((n) => fishQuote(`${key(c.path)}|${n}`)).join(" ")}`);
      out(
        `            printf '%s\\n' ${o.value ? "value" : "flag"} ${fishQuote(o.long ?? names[0])}`,
      );
    }
  }
  out(`        case '*'`);
  out(`            return 1`);
  out(`    end`);
  out(`end`);
  out();

  out(`# PATH: prints the subcommand that runs when PATH names none.`);
  out(`function ${fn}_default`);
  out(`    switch "$argv[1]"`);
  for (const c of all.filter((c) => c.defaultSubcommand)) {
    out(`        case ${fishQuote(key(c.path))}`);
    out(`            echo ${fishQuote(c.defaultSubcommand!)}`);
  }
  out(`        case '*'`);
  out(`            return 1`);
  out(`    end`);
  out(`end`);
  out();

  out(`# PATH: whether PATH has subcommands.`);
  out(`function ${fn}_has_subcommands`);
  const parents = all.filter((c) => c.subcommands.length).map((c) => fishQuote(key(c.path)));
  out(`    contains -- "$argv[1]" ${parents.join(" ")}`);
  out(`end`);
  out();

  const forwarded = list?.forwarded ?? [];
  out(
    FISH_BODY.replaceAll("@FN@", fn).replaceAll("@PROGRAM@", fishQuote(program))
      .replaceAll("@DEFAULT_FILE@", fishQuote(list?.defaultFile ?? ""))
      .replaceAll("@FORWARDED@", forwarded.map(fishQuote).join(" "))
      .replaceAll("@LIST@", list ? "1" : ""),
  );

  const c0 = `complete -c ${fishQuote(program)}`;
  // No file names unless an option or argument asks for them.
  out(`${c0} -f`);
  for (const c of all) {
    const here = key(c.path);
    for (const s of c.subcommands) {
      const cond = fishQuote(`${fn}_at ${fishQuote(here)} 0`);
      out(`${c0} -n ${cond} -a ${fishQuote(fishQuote(s.name))} -d ${fishQuote(s.description)}`);
    }
    // A default subcommand's options are offered before it is named, as commander takes them.
    const parent = all.find((p) => p.subcommands.some((s) => s === c));
    const paths = [here, ...(parent?.defaultSubcommand === c.name ? [`${key(parent.path)}`] : [])];
    for (const o of c.options) {
      const cond = fishQuote(`${fn}_in ${paths.map(fishQuote).join(" ")}`);
      let line = `${c0} -n ${cond}`;
      if (o.short) line += ` -s ${fishQuote(o.short.slice(1))}`;
      if (o.long) line += ` -l ${fishQuote(o.long.slice(2))}`;
      line += ` -d ${fishQuote(o.description)}`;
      if (o.value) line += ` ${fishValue(o.value.kind, o.value.choices, fn)}`;
      out(line);
    }
    c.args.forEach((a, i) => {
      const at = a.variadic && i === c.args.length - 1 ? `${i}+` : `${i}`;
      const cond = fishQuote(`${fn}_at ${fishQuote(here)} ${at}`);
      if (a.kind !== "any") out(`${c0} -n ${cond} ${fishValue(a.kind, a.choices, fn)}`);
    });
  }
  return lines.join("\n") + "\n";
}

function fishValue(kind: ValueKind, choices: string[], fn: string): string {
  switch (kind) {
    case "choice":
      return `-x -a ${fishQuote(choices.map(fishQuote).join(" "))}`;
    case "file":
      return "-r -F";
    case "dir":
      return `-x -a ${fishQuote("(__fish_complete_directories)")}`;
    case "groups":
    case "tasks":
      return `-x -a ${fishQuote(`(${fn}_names ${kind})`)}`;
    case "any":
      return "-x";
  }
}

// The fixed part: the command path and the count of positional arguments before the
// cursor, walked the way commander parses them and cached per command line (every
// `complete` condition below asks for it).
const FISH_BODY = shellCode(
  String.raw`# Sets @FN@_path, @FN@_nargs (positional arguments so far), @FN@_expect (an option
# waiting for its value) and @FN@_forward, for the words before the cursor.
function @FN@_state
    set -l line (commandline -pc)
    # Every condition below asks; walk each command line once.
    test "$line" = "$@FN@_cached_line"; and return
    set -g @FN@_cached_line $line
    set -l path ''
    set -l nargs 0
    set -l expect ''
    set -l dashdash 0
    set -l found
    set -l sub
    set -l default
    set -g @FN@_forward
    set -l tokens (commandline -opc)
    for word in $tokens[2..-1]
        if test -n "$expect"
            contains -- $expect @FORWARDED@; and set -a @FN@_forward $expect $word
            set expect ''
        else if test $dashdash = 0; and test "$word" = '--'
            set dashdash 1
        else if test $dashdash = 0; and string match -q -- '--?*' $word
            set found (@FN@_find_option "$path" $nargs (string split -m 1 = -- $word)[1]); or continue
            set path $found[3]
            test $found[1] = value; or continue
            if string match -q -- '*=*' $word
                contains -- $found[2] @FORWARDED@
                and set -a @FN@_forward $found[2] (string split -m 1 = -- $word)[2]
            else
                set expect $found[2]
            end
        else if test $dashdash = 0; and string match -q -- '-?*' $word
            # -yo json: flags, then at most one option that takes the rest or the next word.
            set -l chars (string split '' -- (string sub -s 2 -- $word))
            for j in (seq (count $chars))
                set found (@FN@_find_option "$path" $nargs -$chars[$j]); or break
                set path $found[3]
                test $found[1] = value; or continue
                if test $j -lt (count $chars)
                    contains -- $found[2] @FORWARDED@
                    and set -a @FN@_forward $found[2] (string join '' $chars[(math $j + 1)..-1])
                else
                    set expect $found[2]
                end
                break
            end
        else if test $nargs = 0; and set sub (@FN@_sub "$path" $word)
            set path "$path $sub"
        else
            if test $nargs = 0; and set default (@FN@_default "$path")
                set path "$path $default"
            end
            set nargs (math $nargs + 1)
        end
    end
    set -g @FN@_path $path
    set -g @FN@_nargs $nargs
    set -g @FN@_expect $expect
end

# PATH NARGS WORD: prints the kind and long name of option WORD, then the command it
# belongs to: PATH, or PATH's default subcommand (which commander then enters).
function @FN@_find_option --argument-names path nargs word
    set -l found (@FN@_option "$path" $word)
    if test $status = 0
        printf '%s\n' $found "$path"
        return
    end
    test $nargs = 0; or return 1
    set -l default (@FN@_default "$path"); or return 1
    set found (@FN@_option "$path $default" $word); or return 1
    printf '%s\n' $found "$path $default"
end

# PATH N (or N+): whether the cursor is at positional argument N of PATH.
function @FN@_at
    @FN@_state
    test -z "$@FN@_expect"; and test "$@FN@_path" = "$argv[1]"; or return 1
    if string match -q -- '*+' $argv[2]
        test $@FN@_nargs -ge (string trim -r -c + -- $argv[2])
    else
        test $@FN@_nargs = $argv[2]
    end
end

# PATH...: whether the cursor is in one of these commands.
function @FN@_in
    @FN@_state
    contains -- "$@FN@_path" $argv
end

# groups|tasks: the names that the list command prints, for a comma-separated list.
function @FN@_names
    set -q SLOTH_COMPLETION_NO_LIST; and return
    test -n '@LIST@'; or return
    @FN@_state
    set -l forward
    set -l file @DEFAULT_FILE@
    for i in (seq 2 2 (count $@FN@_forward))
        set -l value (string replace -r -- '^~/' "$HOME/" $@FN@_forward[$i])
        set -a forward $@FN@_forward[(math $i - 1)] $value
        test $@FN@_forward[(math $i - 1)] = --file; and set file $value
    end
    # Spares a Deno start (and an error) where there is no workflow.
    test -z "$file" -o -f "$file"; or return
    set -l out (SLOTH_LUA_TIMEOUT=2s @PROGRAM@ list $forward 2>/dev/null </dev/null); or return
    set -l prefix (string match -r -- '^.*,' (commandline -ct))
    set -l header 0
    set -l seen
    # A group is a line of its own ("name — description"), followed by its tasks indented
    # by two spaces: a header row, then one row per task, columns two or more spaces apart.
    for line in $out
        if test -z "$line"
            continue
        else if string match -q -- '  *' $line
            if test $header = 1
                set header 0
            else if test $argv[1] = tasks
                set -l name (string replace -r -- '^  (.*?)(  .*)?$' '$1' $line)
                contains -- $name $seen; and continue
                set -a seen $name
                printf '%s%s\n' "$prefix" $name
            end
        else
            set header 1
            test $argv[1] = groups
            and printf '%s%s\n' "$prefix" (string replace -r -- ' — .*$' '' $line)
        end
    end
end
`,
);

/** The `sloth-runner` command line. Only this folder and the entry points print or exit. */
import {
  Argument,
  Command,
  CommanderError,
  type CommandUnknownOpts,
  InvalidArgumentError,
  Option,
} from "@commander-js/extra-typings";
import { completionScript, SHELLS } from "./completion.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { ExitCode } from "../errors.ts";
import { parseDuration } from "../model/mod.ts";
import { defaultIo, type Io } from "./io.ts";
import {
  DEFAULT_AGENT_PORT,
  masterTls,
  masterTlsOptions,
  positiveInt,
  withAgentOptions,
} from "./options.ts";
import { reportError } from "./report.ts";
import {
  AGENT_HELP,
  AGENT_START_HELP,
  AGENTS_HELP,
  COMPLETION_HELP,
  EXEC_HELP,
  LIST_HELP,
  NEW_HELP,
  PING_HELP,
  RUN_HELP,
  TOP_HELP,
  TYPES_HELP,
  VALIDATE_HELP,
  VERSION_HELP,
} from "./help.ts";

export const VERSION = denoJson.version;
export { reportError } from "./report.ts";

/**
 * A compiled executable started again by an agent as a job's Lua worker process
 * (dsl/process_worker.ts): serves that and returns true instead of reading a
 * command line. Under `deno run` the worker module is started directly.
 */
export async function serveLuaWorkerIfAsked(): Promise<boolean> {
  if (Deno.env.get("SLOTH_LUA_WORKER") !== "1") return false;
  const { serveLuaOverStdio } = await import("../dsl/worker_process.ts");
  await serveLuaOverStdio();
  return true;
}
export { defaultIo } from "./io.ts";
export type { Io } from "./io.ts";

/** Tasks running at once by default (`-j`). */
const DEFAULT_MAX_PARALLEL = 8;

// The commands load their modules when they run, so `--help` and `version` stay fast;
// those that load a workflow start their Lua worker first, so the two overlap.
const workflowCommands = async () => {
  (await import("../dsl/mod.ts")).LuaPool.prestart();
  return await import("./workflow.ts");
};
const agentCommands = () => import("./agent.ts");

function reports(
  value: string,
  previous: { format: "junit" | "json"; file: string }[] | undefined,
): { format: "junit" | "json"; file: string }[] {
  const match = /^(junit|json)=(.+)$/.exec(value);
  if (!match) throw new InvalidArgumentError("expected junit=FILE or json=FILE.");
  return [...(previous ?? []), { format: match[1] as "junit" | "json", file: match[2] }];
}

function durationMs(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) {
    throw new InvalidArgumentError('expected a duration such as "800ms" or "2s".');
  }
  return ms;
}

function names(value: string, previous: string[] | undefined): string[] {
  const list = value.split(",").map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new InvalidArgumentError("expected one or more names.");
  return [...(previous ?? []), ...list];
}

const fileOption = () => new Option("-f, --file <file>", "workflow file").default("workflow.lua");
const inventoryOption = () =>
  new Option(
    "-i, --inventory <file>",
    "YAML file of agents and pools (else SLOTH_INVENTORY, else ./sloth-inventory.yaml)",
  );
const valuesOption = () =>
  new Option("-v, --values <file>", "YAML file whose content becomes the `values` global");

export function buildProgram(io: Io, setExit: (code: number) => void) {
  const program = new Command()
    .name("sloth-runner")
    .description("Run Lua-defined workflows of shell and Lua tasks, here or on remote agents.")
    .version(VERSION, "--version", "print the version")
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride()
    .addHelpText("after", TOP_HELP);

  program.command("run")
    .description("run a workflow's tasks (all groups unless -g is given)")
    .addOption(fileOption())
    .option("-g, --group <groups>", "only these groups (comma-separated, repeatable)", names)
    .option(
      "-t, --task <tasks>",
      "only these tasks and what they depend on (comma-separated, repeatable)",
      names,
    )
    .addOption(valuesOption())
    .addOption(inventoryOption())
    .option(
      "-j, --max-parallel <n>",
      "most tasks running at once",
      positiveInt,
      DEFAULT_MAX_PARALLEL,
    )
    .option("--dry-run", "print the plan (order and where each task runs); run nothing")
    .option("-y, --yes", "answer yes to every prompt (nothing prompts today)")
    .addOption(
      new Option("-o, --output <format>", "text for people, json for one event per line")
        .choices(["text", "json"] as const).default("text" as const),
    )
    .option(
      "--verbose",
      "stream every task's full output on a terminal too, and show log.debug lines",
    )
    .option("--plain", "plain prefixed lines even on a terminal (no live progress view)")
    .option(
      "--report <format=file>",
      "also write a report when the run ends: junit=FILE (JUnit XML for CI), json=FILE (the run record); repeatable",
      reports,
    )
    .option(
      "--compress",
      "gzip workspaces and change sets to and from agents (for slow links; `compress` in an agent's definition overrides)",
    )
    .addOption(masterTlsOptions.ca())
    .addOption(masterTlsOptions.cert())
    .addOption(masterTlsOptions.key())
    .addHelpText("after", RUN_HELP)
    .action(async (o) => {
      const { runCommand } = await workflowCommands();
      setExit(
        await runCommand(io, {
          file: o.file,
          values: o.values,
          inventory: o.inventory,
          groups: o.group,
          tasks: o.task,
          maxParallel: o.maxParallel,
          dryRun: o.dryRun,
          output: o.output,
          verbose: o.verbose,
          plain: o.plain,
          reports: o.report,
          compress: o.compress,
          tls: masterTls(o),
        }),
      );
    });

  program.command("list")
    .description("list groups and tasks, their dependencies and where each runs")
    .addOption(fileOption())
    .addOption(valuesOption())
    .addOption(inventoryOption())
    .addHelpText("after", LIST_HELP)
    .action(async (o) => {
      const { listCommand } = await workflowCommands();
      setExit(await listCommand(io, { file: o.file, values: o.values, inventory: o.inventory }));
    });

  program.command("validate")
    .description("check a workflow without running anything or contacting any agent")
    .addOption(fileOption())
    .addOption(valuesOption())
    .addOption(inventoryOption())
    .addHelpText("after", VALIDATE_HELP)
    .action(async (o) => {
      const { validateCommand } = await workflowCommands();
      setExit(
        await validateCommand(io, { file: o.file, values: o.values, inventory: o.inventory }),
      );
    });

  const agent = program.command("agent")
    .description("run an agent that executes tasks for masters (see `agent start --help`)")
    .addHelpText("after", AGENT_HELP);
  withAgentOptions(
    agent.command("start", { isDefault: true })
      .description("listen for tasks from masters (the default: `sloth-runner agent -p PORT`)")
      .addHelpText("after", AGENT_START_HELP),
  ).action(async (o) => {
    const { agentStartCommand } = await agentCommands();
    setExit(await agentStartCommand(io, VERSION, o));
  });
  agent.command("ping")
    .description("check that an agent is reachable; print its version and running jobs")
    .argument("<address>", "host:port of the agent, or an agent's name in the inventory")
    .addOption(inventoryOption())
    .option("--token-file <file>", "file holding the agent's token (else SLOTH_AGENT_TOKEN)")
    .addOption(masterTlsOptions.ca())
    .addOption(masterTlsOptions.cert())
    .addOption(masterTlsOptions.key())
    .addHelpText("after", PING_HELP)
    .action(async (address, o) => {
      const { agentPingCommand } = await agentCommands();
      setExit(await agentPingCommand(io, address, o));
    });

  program.command("agents")
    .description("list the inventory's agents (and DNS pools' members): reachable, version, load")
    .addOption(inventoryOption())
    .addOption(
      new Option("-o, --output <format>", "text for people, json for programs")
        .choices(["text", "json"] as const).default("text" as const),
    )
    .option(
      "--timeout <duration>",
      'how long each agent may take to answer ("800ms", "2s")',
      durationMs,
      1000,
    )
    .addOption(masterTlsOptions.ca())
    .addOption(masterTlsOptions.cert())
    .addOption(masterTlsOptions.key())
    .addHelpText("after", AGENTS_HELP)
    .action(async (o) => {
      const { agentsCommand } = await import("./fleet.ts");
      setExit(
        await agentsCommand(io, {
          inventory: o.inventory,
          output: o.output,
          timeoutMs: o.timeout,
          tls: masterTls(o),
        }),
      );
    });

  program.command("exec")
    .description("run one command on an agent, a pool's member, or every member (--each)")
    .argument("<target>", "an agent or pool of the inventory, or host:port")
    .argument("<command...>", "the command and its arguments, after --")
    .addOption(inventoryOption())
    .option("--each", "run on every member of the pool (like delegate_to = { each = POOL })")
    .option("--sync <dir>", "send this directory as the command's working directory")
    .option("-j, --max-parallel <n>", "hosts running at once", positiveInt, 16)
    .option("--timeout <duration>", 'stop the command after this long ("30s", "2m")')
    .option("--compress", "gzip what goes to and from agents")
    .addOption(masterTlsOptions.ca())
    .addOption(masterTlsOptions.cert())
    .addOption(masterTlsOptions.key())
    .addHelpText("after", EXEC_HELP)
    .action(async (target, command, o) => {
      const { execCommand } = await import("./fleet.ts");
      setExit(
        await execCommand(io, target, command, {
          inventory: o.inventory,
          each: o.each,
          sync: o.sync,
          maxParallel: o.maxParallel,
          timeout: o.timeout,
          compress: o.compress,
          tls: masterTls(o),
        }),
      );
    });

  program.command("new")
    .description("write a starter workflow, NAME/workflow.lua, that runs as it is")
    .argument("<name>", "directory to create it in (made if missing)")
    .option(
      "--agent <host:port>",
      "the agent its remote task runs on",
      `127.0.0.1:${DEFAULT_AGENT_PORT}`,
    )
    .option("--force", "overwrite NAME/workflow.lua if it exists")
    .option(
      "--builder",
      'write it in the builder DSL (task("x"):command(...):build(), workflow.define)',
    )
    .addHelpText("after", NEW_HELP)
    .action(async (name, o) => {
      const { newCommand } = await import("./new.ts");
      setExit(
        await newCommand(io, name, { agent: o.agent, force: o.force, builder: o.builder }),
      );
    });

  program.command("types")
    .description(
      "write LuaLS annotations (and a .luarc.json if there is none) so editors complete and check workflows",
    )
    .option("-o, --output <file>", "where to write them; - for stdout", ".sloth/sloth.lua")
    .addHelpText("after", TYPES_HELP)
    .action(async (o) => {
      const { typesCommand } = await import("./types.ts");
      setExit(await typesCommand(io, { output: o.output }));
    });

  program.command("completion")
    .description("print a shell completion script for bash, zsh or fish")
    .addArgument(new Argument("<shell>", "bash, zsh or fish").choices(SHELLS))
    .addHelpText("after", COMPLETION_HELP)
    .action((shell) => {
      io.out(completionScript(program, shell));
      setExit(ExitCode.ok);
    });

  program.command("version")
    .description("print the version")
    .addHelpText("after", VERSION_HELP)
    .action(() => {
      io.out(`sloth-runner ${VERSION} (deno ${Deno.version.deno})\n`);
      setExit(ExitCode.ok);
    });

  // A usage error names the command whose --help has the answer.
  const hintHelp = (command: CommandUnknownOpts, path: string) => {
    command.showHelpAfterError(
      command === program
        ? `(${path} --help lists the commands)`
        : `(${path} --help shows its options)`,
    );
    for (const sub of command.commands) hintHelp(sub, `${path} ${sub.name()}`);
  };
  hintHelp(program, "sloth-runner");
  return program;
}

/** Runs the CLI with `args` (without the program name) and returns the exit code. */
export async function main(args: string[], io: Io = defaultIo()): Promise<number> {
  let exitCode: number = ExitCode.ok;
  const program = buildProgram(io, (code) => exitCode = code);
  try {
    if (args.length === 0) {
      program.outputHelp();
      return ExitCode.usage;
    }
    if (args[0] === "help" && args[1] && !program.commands.some((c) => c.name() === args[1])) {
      const known = program.commands.map((c) => c.name()).join(", ");
      io.err(`error: unknown command '${args[1]}' (commands: ${known}, help)\n`);
      return ExitCode.usage;
    }
    // `agent` runs `start` by default, which would read a mistyped subcommand as an
    // argument ("too many arguments for 'start'"): name the real ones instead.
    const agentCommands = ["start", "ping", "help"];
    if (args[0] === "agent" && /^[a-z]/.test(args[1] ?? "") && !agentCommands.includes(args[1])) {
      io.err(
        `error: unknown agent command '${args[1]}' (agent commands: start, ping)\n` +
          "(sloth-runner agent --help shows them; an agent stops with Ctrl-C or SIGTERM)\n",
      );
      return ExitCode.usage;
    }
    await program.parseAsync(args, { from: "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    return reportError(error, io.err);
  }
}

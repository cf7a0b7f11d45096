/** `sloth-agent`: the agent on its own, with the options of `sloth-runner agent start`. */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { defaultIo, reportError, serveLuaWorkerIfAsked, VERSION } from "./lib/cli/mod.ts";
import { withAgentOptions } from "./lib/cli/options.ts";
import { AGENT_START_HELP } from "./lib/cli/help.ts";
import { ExitCode } from "./lib/errors.ts";

export async function agentMain(args: string[]): Promise<number> {
  const io = defaultIo();
  let exitCode: number = ExitCode.ok;
  const program = withAgentOptions(
    new Command()
      .name("sloth-agent")
      .description("Run tasks for sloth-runner masters.")
      .version(VERSION, "--version", "print the version")
      .configureOutput({ writeOut: io.out, writeErr: io.err })
      .exitOverride()
      .showHelpAfterError("(sloth-agent takes options only: sloth-agent --help lists them)")
      .addHelpText("after", AGENT_START_HELP.replaceAll("sloth-runner agent", "sloth-agent")),
  ).action(async (o) => {
    const { agentStartCommand } = await import("./lib/cli/agent.ts");
    exitCode = await agentStartCommand(io, VERSION, o);
  });
  try {
    await program.parseAsync(args, { from: "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    return reportError(error, io.err);
  }
}

if (import.meta.main) {
  if (await serveLuaWorkerIfAsked()) Deno.exit(0);
  Deno.exit(await agentMain(Deno.args));
}

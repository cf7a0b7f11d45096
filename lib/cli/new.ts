/** `sloth-runner new NAME`: a starter workflow that runs as it is written. */
import { ExitCode, SlothError } from "../errors.ts";
import { isLoopbackHost, parseAddress } from "../model/mod.ts";
import type { Io } from "./io.ts";

export interface NewOptions {
  /** The agent the remote task runs on. */
  agent: string;
  force?: boolean;
  /** In the builder DSL (`task():...:build()`, `workflow.define`) instead of TaskDefinitions. */
  builder?: boolean;
}

const LUA_KEYWORDS = new Set(
  ("and break do else elseif end false for function goto if in local nil not or repeat " +
    "return then true until while").split(" "),
);

/** A Lua identifier for the group name: the directory's name, tidied. */
function groupName(dir: string): string {
  const base = dir.replace(/\/+$/, "").split("/").at(-1) ?? "";
  const name = base.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
  if (LUA_KEYWORDS.has(name)) return `${name}_workflow`;
  return /^[a-z_]/.test(name) ? name : `workflow_${name || "starter"}`;
}

/** Quotes a path for a shell command line, when it needs it. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:@%+=-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The commands that start the agent for `host:port`, with a comment each. */
function agentSteps(host: string, port: string): string[] {
  return isLoopbackHost(host)
    ? [`sloth-runner agent -p ${port}          # in another terminal: the agent for "build"`]
    : [
      `sloth-runner agent -p ${port} --bind 0.0.0.0 --token-file TOKEN    # on ${host}`,
      `export SLOTH_AGENT_TOKEN=...          # here: the token in TOKEN`,
    ];
}

export function starterWorkflow(dir: string, agent: string): string {
  const group = groupName(dir);
  const [, host, port] = /^(.*):(\d+)$/.exec(agent) ?? [agent, agent, "50051"];
  const steps = agentSteps(host, port).map((line) => `--   ${line}`).join("\n");
  return `-- ${group}: a starter sloth-runner workflow. It runs as it is:
${steps}
--   sloth-runner run -f ${shellWord(`${dir}/workflow.lua`)}
-- Editor completion and checks: sloth-runner types --output .sloth/sloth.lua
-- (then point your Lua language server at .sloth; see the README).

TaskDefinitions = {
  ${group} = {
    description = "Prepare here, build on an agent, report here",
    workdir = ".", -- this file's directory: what is sent to the agent, and where its changes land
    agents = {
      builder = { address = "${agent}" },
    },
    tasks = {
      {
        name = "prepare",
        description = "A shell command, here",
        command = "mkdir -p out && echo 'hello from the master' > out/input.txt && echo prepared",
      },
      {
        name = "flaky",
        description = "Fails its first attempt on purpose, to show a retry",
        depends_on = "prepare",
        retries = 2,
        command = "if [ -f out/.tried ]; then rm out/.tried; echo 'worked on a retry'; "
          .. "else touch out/.tried; echo 'first attempt fails' >&2; exit 1; fi",
      },
      {
        name = "build",
        description = "Runs on the agent, in a copy of this directory; its changes come back",
        agent = "builder",
        depends_on = "prepare",
        retries = 1,
        timeout = "2m",
        command = "echo \\"building on $(hostname)\\" && tr a-z A-Z < out/input.txt > out/build.txt",
      },
      {
        name = "report",
        description = "A Lua function, here, after both",
        depends_on = { "build", "flaky" },
        command = function(params)
          local text = fs.read("out/build.txt")
          log.info("the agent wrote: " .. text:gsub("\\n$", ""))
          return true, "reported", { bytes = #text }
        end,
      },
    },
  },
}
`;
}

/** The same starter in the builder DSL (the Go sloth-runner's form). */
export function starterBuilderWorkflow(dir: string, agent: string): string {
  const group = groupName(dir);
  const [, host, port] = /^(.*):(\d+)$/.exec(agent) ?? [agent, agent, "50051"];
  const steps = agentSteps(host, port).map((line) => `--   ${line}`).join("\n");
  return `-- ${group}: a starter sloth-runner workflow in the builder DSL. It runs as it is:
${steps}
--   sloth-runner run -f ${shellWord(`${dir}/workflow.lua`)}
-- Editor completion and checks: sloth-runner types --output .sloth/sloth.lua
-- (then point your Lua language server at .sloth; see the README).

local prepare = task("prepare")
  :description("A shell command, here")
  :command("mkdir -p out && echo 'hello from the master' > out/input.txt && echo prepared")
  :build()

local flaky = task("flaky")
  :description("Fails its first attempt on purpose, to show a retry")
  :depends_on("prepare")
  :retries(2, "fixed")
  :command("if [ -f out/.tried ]; then rm out/.tried; echo 'worked on a retry'; "
    .. "else touch out/.tried; echo 'first attempt fails' >&2; exit 1; fi")
  :build()

local build = task("build")
  :description("Runs on the agent, in a copy of this directory; its changes come back")
  :agent("builder")
  :depends_on("prepare")
  :retries(1)
  :timeout("2m")
  :command("echo \\"building on $(hostname)\\" && tr a-z A-Z < out/input.txt > out/build.txt")
  :build()

local report = task("report")
  :description("A Lua function, here, after both")
  :depends_on({ "build", "flaky" })
  :command(function(this, params)
    local text = fs.read("out/build.txt")
    log.info("the agent wrote: " .. text:gsub("\\n$", ""))
    return true, "reported", { bytes = #text }
  end)
  :build()

workflow.define("${group}")
  :description("Prepare here, build on an agent, report here")
  :workdir(".") -- this file's directory: what is sent to the agent, and where its changes land
  :agents({ builder = { address = "${agent}" } })
  :tasks({ prepare, flaky, build, report })
`;
}

export async function newCommand(io: Io, dir: string, options: NewOptions): Promise<number> {
  if (dir.trim() === "") {
    throw new SlothError("usage", "the new workflow needs a name", {
      hint: "sloth-runner new NAME writes NAME/workflow.lua",
    });
  }
  const agent = parseAddress(options.agent);
  if (!agent) {
    throw new SlothError("usage", `--agent ${options.agent} is not an agent address`, {
      hint: "give it as host:port with a port from 1 to 65535, e.g. 127.0.0.1:50051",
    });
  }
  const path = `${dir.replace(/\/+$/, "")}/workflow.lua`;
  const full = path.startsWith("/") ? path : `${io.cwd}/${path}`;
  const parent = full.slice(0, full.lastIndexOf("/"));
  const existing = await Deno.stat(parent).catch(() => undefined);
  if (existing && !existing.isDirectory) {
    throw new SlothError("usage", `${dir} exists and is not a directory; nothing was written`, {
      hint: "new NAME writes NAME/workflow.lua: choose a NAME that is free or a directory",
    });
  }
  try {
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    const starter = options.builder ? starterBuilderWorkflow : starterWorkflow;
    await Deno.writeTextFile(full, starter(dir.replace(/\/+$/, ""), options.agent), {
      createNew: !options.force,
    });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new SlothError("usage", `${path} already exists; nothing was written`, {
        hint: "choose another name, or pass --force to overwrite it",
      });
    }
    throw new SlothError("usage", `cannot write ${path}: ${(error as Error).message}`, {
      hint: "choose a directory you can write to",
    });
  }
  const start = agentSteps(agent.host, String(agent.port)).map((line) => `  ${line}\n`).join("");
  io.out(`created ${path}\n\nnext:\n${start}  sloth-runner run -f ${shellWord(path)}\n`);
  return ExitCode.ok;
}

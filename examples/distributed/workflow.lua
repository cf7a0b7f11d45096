-- A distributed run: the build happens on an agent, the rest here.
--   deno task demo     (starts an agent on 127.0.0.1, then runs this file against it)
-- By hand:
--   deno run -A main.ts agent -p 50051 &
--   deno run -A main.ts run -f examples/distributed/workflow.lua -v values.yaml
-- where values.yaml says:  agent: 127.0.0.1:50051

local agent_address = values.agent or "127.0.0.1:50051"

TaskDefinitions = {
  pipeline = {
    description = "Build remotely, check locally",
    agents = {
      builder = { address = agent_address },
    },
    tasks = {
      {
        name = "prepare",
        description = "Runs here: writes the build's input",
        command = "mkdir -p out && date -u +%Y-%m-%dT%H:%M:%SZ > out/started-at.txt && echo prepared",
      },
      {
        name = "build",
        description = "Runs on the agent, in a copy of this directory",
        agent = "builder",
        depends_on = "prepare",
        command = "echo \"building on $(hostname) in $PWD\" && "
          .. "cat src/*.txt | tr a-z A-Z > out/build.txt && chmod +x src/run.sh && echo built",
      },
      {
        name = "measure",
        description = "A Lua function on the agent; its outputs come back",
        delegate_to = agent_address,
        depends_on = "build",
        command = function(params)
          local text = fs.read("out/build.txt")
          log.info("measuring " .. #text .. " bytes in " .. params.workdir)
          return true, "measured", { bytes = #text, lines = select(2, text:gsub("\n", "")) }
        end,
      },
      {
        name = "report",
        description = "Runs here, with the agent's files and outputs",
        depends_on = "measure",
        command = function(params, inputs)
          print("build.txt came back: " .. fs.read("out/build.txt"):gsub("\n", " | "))
          print(("measure said: %d bytes, %d lines"):format(inputs.measure.bytes, inputs.measure.lines))
          return true
        end,
      },
    },
  },
}

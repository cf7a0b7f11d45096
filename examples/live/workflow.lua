-- A pipeline slow enough to watch: run it on a terminal to see the live view.
--   deno run -A main.ts agent -p 50051 &
--   deno run -A main.ts run -f examples/live/workflow.lua
-- (scripts/capture_live.ts runs it against its own agent and records the screen for the README.)

local agent = values.agent or "127.0.0.1:50051"

local function steps(name, n, pause)
  return ("for i in $(seq 1 %d); do echo \"%s: step $i of %d\"; sleep %s; done"):format(n, name, n, pause)
end

TaskDefinitions = {
  ci = {
    description = "Fetch, check and build (on an agent), then package",
    workdir = ".",
    agents = { builder = { address = agent } },
    tasks = {
      { name = "fetch", command = steps("fetching dependencies", 3, "0.3") },
      { name = "lint", async = true, depends_on = "fetch", command = steps("checking style", 6, "0.3") },
      { name = "unit_tests", async = true, depends_on = "fetch", command = steps("running tests", 8, "0.3") },
      {
        name = "build",
        async = true,
        depends_on = "fetch",
        agent = "builder",
        command = steps("compiling module", 7, "0.3") .. " && mkdir -p dist && echo binary > dist/app",
      },
      {
        name = "package",
        depends_on = { "lint", "unit_tests", "build" },
        command = function()
          log.info("dist/app came back from the agent: " .. fs.read("dist/app"):gsub("\n", ""))
          return true, "packaged"
        end,
      },
    },
  },
}

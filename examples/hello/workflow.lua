-- A local tour of sloth-runner: shell and Lua tasks, dependencies, outputs
-- flowing into inputs, parallel tasks, retries and a timeout.
--   deno task example        (or: deno run -A main.ts run -f examples/hello/workflow.lua)

local greeting = values.greeting or "Hello"

TaskDefinitions = {
  hello = {
    description = "A first workflow",
    workdir = ".", -- this file's directory
    tasks = {
      {
        name = "prepare",
        description = "Make a scratch directory",
        command = "mkdir -p build && echo \"preparing in $PWD\"",
      },
      {
        name = "count_files",
        description = "A Lua task whose outputs feed the next task",
        depends_on = "prepare",
        command = function(params)
          local files = fs.ls(".")
          log.info("found " .. #files .. " entries in " .. params.workdir)
          return true, "counted", { count = #files }
        end,
      },
      {
        name = "lint",
        async = true,
        depends_on = "prepare",
        command = "sleep 0.3; echo 'lint: clean'",
      },
      {
        name = "unit_tests",
        async = true,
        depends_on = "prepare",
        retries = 2,
        timeout = "10s",
        command = "sleep 0.3; echo 'tests: 12 passed'",
      },
      {
        name = "report",
        description = "Uses the outputs of count_files",
        depends_on = { "count_files", "lint", "unit_tests" },
        command = function(params, inputs)
          local text = greeting .. ", sloth! " .. inputs.count_files.count .. " entries here.\n"
          fs.write("build/report.txt", text)
          print(text)
          return true, "report written"
        end,
      },
    },
  },
}

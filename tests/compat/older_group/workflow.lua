-- The older Go sloth-runner's TaskDefinitions, with a group directory made before the run
-- and removed after it when clean_workdir_after_run says so (here: only when all went well).
local AGENT = os.getenv("SLOTH_COMPAT_AGENT")

TaskDefinitions = {
  release = {
    description = "Build in a fresh directory, keep it only if something failed",
    workdir = "build",
    create_workdir_before_run = true,
    clean_workdir_after_run = function(result)
      fs.write("../clean_result.txt", tostring(result.success) .. " " .. tostring(result.error))
      return result.success
    end,
    tasks = {
      { name = "fetch", command = "echo fetched > fetched.txt" },
      {
        name = "compile",
        depends_on = "fetch",
        delegate_to = AGENT,
        command = function(params, inputs)
          local text = fs.read("fetched.txt")
          fs.write("compiled.txt", "compiled from " .. text)
          if values.fail then return false, "asked to fail" end
          return true, "compiled", { size = #text }
        end,
      },
      {
        name = "report",
        depends_on = "compile",
        command = function(params, inputs)
          fs.write("../report.txt", fs.read("compiled.txt") .. "size " .. inputs.compile.size ..
            " in " .. params.workdir:match("[^/]+$"))
          return true
        end,
      },
    },
  },
}

-- The Go tool's older agents examples: workflow({ name = ..., tasks = { { run = ... } } }),
-- functions returning { changed = ..., failed = ..., message = ... }, and task({ ... }).
workflow({
  name = "legacy",
  description = "older agents style",
  tasks = {
    { name = "a", run = function() log.info("ran a") return { changed = true, message = "did a" } end },
    { name = "b", depends_on = "a", run = "echo shell b" },
    { name = "c", depends_on = "b", run = function() return { failed = true, message = "c broke" } end },
  },
})
local t = task({ name = "solo", description = "one call", command = function() log.info("solo ran") end })
workflow.define("other", { tasks = { t } })

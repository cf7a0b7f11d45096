-- A builder function whose first parameter is named this gets (this, params[, value]);
-- any other gets the table form's arguments, as many of the Go tool's examples write them.
workflow.define("conventions", {
  tasks = {
    task("produce")
      :command(function(params, deps)
        return true, "made", { value = params.task_name .. ":" .. tostring(next(deps) == nil) }
      end)
      :on_success(function(params, output) fs.write("a_on_success.txt", output.value) end)
      :build(),
    task("consume")
      :depends_on("produce")
      :pre_hook(function(params, deps) fs.write("b_pre.txt", deps.produce.value) return true end)
      :run_if(function(params, deps) return deps.produce.value ~= nil end)
      :command(function(this, params)
        fs.write("b_command.txt", this.name .. " " .. this.inputs.produce.value .. " " .. params.task_name)
      end)
      :post_hook(function(this, params, outputs) fs.write("b_post.txt", this.workflow) end)
      :build(),
  },
})

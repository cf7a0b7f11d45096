/**
 * Globals that nothing defines, through the real CLI: a module of the Go
 * sloth-runner stops `validate` and `run` before any task runs; other unknown
 * globals fail `validate` and are warnings for `run`.
 */
import assert from "node:assert/strict";
import { cliProcess, tempWorkspace } from "../_helpers/mod.ts";

const PULUMI = 'workflow.lua:6: "pulumi" is a module of the Go sloth-runner that sloth-runner ' +
  'does not provide; use exec.run("pulumi ...")';

Deno.test("a task using pulumi fails validate and run with one line and exit 2, running nothing", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = {
  deploy = { tasks = {
    { name = "first", command = "touch first-ran" },
    { name = "up", depends_on = "first", command = function()
        fs.write("up-ran", "yes")
        local result = pulumi.up({ stack = "dev" })
        return true
      end },
  } },
}
`,
  });
  const validate = await cliProcess(["validate", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(validate.code, 2);
  assert.equal(validate.stderr, `error: ${PULUMI}\n`);
  assert.equal(validate.stdout, "");

  const run = await cliProcess(["run", "-f", "workflow.lua", "--plain"], { cwd: ws.dir });
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stderr, `error: ${PULUMI}\n`);
  assert.deepEqual(
    [...Deno.readDirSync(ws.dir)].map((e) => e.name).sort(),
    ["workflow.lua"],
    "no task ran",
  );
});

Deno.test("validate reports a misspelt module with file:line and a guess; run warns and runs", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = {
  build = { tasks = {
    { name = "ok", command = function() fs.write("ok-ran", "") return true end },
    { name = "typo", command = function()
        exce.run("make")
        return true
      end },
  } },
}
`,
  });
  const line = 'workflow.lua:5: task code reads global "exce", which nothing defines. ' +
    'Did you mean "exec"?';
  const validate = await cliProcess(["validate", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(validate.code, 2);
  assert.match(validate.stderr, new RegExp(`^error: ${escape(line)}\nhint: `));

  const run = await cliProcess(["run", "-f", "workflow.lua", "--plain"], { cwd: ws.dir });
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, new RegExp(`^warning: ${escape(line)}$`, "m"));
  assert.ok(Deno.statSync(`${ws.dir}/ok-ran`).isFile, "the other task ran");
});

Deno.test("globals an imported or required file defines count as defined", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `import("lib/helpers.lua")
TaskDefinitions = { g = { tasks = { { name = "t", command = function()
  local tools = require("lib.tools")
  return shout(tools.word()) == "HI" and tool_version ~= nil
end } } } }
`,
    "lib/helpers.lua": `function shout(s) return s:upper() end\n`,
    "lib/tools.lua": `tool_version = "1"\nreturn { word = function() return "hi" end }\n`,
  });
  const validate = await cliProcess(["validate", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(validate.stderr, "");
  assert.equal(validate.code, 0);
  const run = await cliProcess(["run", "-f", "workflow.lua", "--plain"], { cwd: ws.dir });
  assert.equal(run.code, 0, run.stderr);
  assert.doesNotMatch(run.stderr, /warning/);
});

Deno.test("a file that Lua reads and the check's parser does not still validates, with a note", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `local wide = "\\u{7FFFFFFF}"
TaskDefinitions = { g = { tasks = { { name = "t", command = function() return #wide == 6 end } } } }
`,
  });
  const validate = await cliProcess(["validate", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(validate.code, 0, validate.stderr);
  assert.equal(validate.stdout, "workflow.lua is valid: 1 group, 1 task\n");
  assert.match(
    validate.stderr,
    /^warning: workflow\.lua:1: not checked for globals that nothing defines \(the check's Lua parser stops here: /,
  );
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

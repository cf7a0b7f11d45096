/**
 * A root agent gives each job's directory to its task user once the workspace is
 * filled, walking a kept workspace only once (lib/agent/exchange.ts,
 * handOverFilled): whatever the agent made this job, and whatever it found still
 * its own, must be the task user's when the task starts; the rest already is.
 */
import assert from "node:assert/strict";
import { probeBwrap } from "../../lib/exec/mod.ts";
import { startAgent } from "../_helpers/agent.ts";
import { cliProcess, tempWorkspace } from "../_helpers/mod.ts";

const IS_ROOT = Deno.uid() === 0;
// Without bubblewrap, a root agent hands the job's directory over again before each
// command (for what Lua's fs made meanwhile): only in the sandbox is this the only one.
const noBwrap = await probeBwrap();

// Entries of the job's directory (the workspace, and TMPDIR) not the task user's.
const NOT_THEIRS =
  'echo "not theirs: $(find . .. "$TMPDIR" ! -user "$(id -u)" | sort | tr "\\n" " ")"';

Deno.test({
  name:
    "everything in a job's directory is the task user's when the task starts: first run, after changes of every kind, and a kept workspace with an entry of the agent's in it",
  ignore: !IS_ROOT || noBwrap !== undefined,
}, async () => {
  await using root = await tempWorkspace();
  await Deno.chmod(root.dir, 0o711);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await using agent = await startAgent({
    args: ["--sandbox", "bwrap", "--work-root", root.dir],
    port,
  });
  await using ws = await tempWorkspace({
    "a.txt": "a",
    "d/e/f.txt": "f",
    "target.txt": "t",
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "look",
      delegate_to = "${agent.address}", command = ${JSON.stringify(NOT_THEIRS)} } } } }`,
  });
  await Deno.symlink("target.txt", `${ws.dir}/link`);
  const look = async (why: string) => {
    const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    assert.equal(r.code, 0, `${why}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /\] not theirs: $/m, `${why}: ${r.stdout}`);
  };
  await look("first run");
  await Deno.writeTextFile(`${ws.dir}/a.txt`, "changed");
  await Deno.mkdir(`${ws.dir}/new/deeper`, { recursive: true });
  await Deno.writeTextFile(`${ws.dir}/new/deeper/g.txt`, "g");
  await Deno.remove(`${ws.dir}/link`);
  await Deno.symlink("a.txt", `${ws.dir}/link`);
  await Deno.remove(`${ws.dir}/target.txt`);
  await Deno.mkdir(`${ws.dir}/target.txt`);
  await look("after changes");
  // A file of the agent's (root's) in the kept workspace, with the content the master has.
  const shelf = `${root.dir}/sloth-agent-${port}/workspaces`;
  const kept = [...Deno.readDirSync(shelf)].find((e) => e.isDirectory)!.name;
  await Deno.remove(`${shelf}/${kept}/d/e/f.txt`);
  await Deno.writeTextFile(`${shelf}/${kept}/d/e/f.txt`, "f");
  // Its mtime as the master has it: nothing for the agent to set, so it is not "written".
  const { mtime } = Deno.statSync(`${ws.dir}/d/e/f.txt`);
  Deno.utimeSync(`${shelf}/${kept}/d/e/f.txt`, mtime!, mtime!);
  assert.equal(Deno.lstatSync(`${shelf}/${kept}/d/e/f.txt`).uid, 0);
  await look("a kept entry of the agent's");
  await look("nothing changed");
});

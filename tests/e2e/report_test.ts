/** `run --report junit=FILE --report json=FILE` on a real run with a remote task. */
import assert from "node:assert/strict";
import { startAgent } from "../_helpers/agent.ts";
import { cliProcess, FIXTURES, hasCommand, tempWorkspace } from "../_helpers/mod.ts";

const hasXmllint = hasCommand("xmllint");

async function xmllint(args: string[]): Promise<{ ok: boolean; out: string }> {
  const r = await new Deno.Command("xmllint", { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { ok: r.success, out: d.decode(r.stdout) + d.decode(r.stderr) };
}

Deno.test({
  name:
    "run --report writes a JUnit file that validates against JUnit schemas, and the JSON run record",
  ignore: !hasXmllint,
  fn: async () => {
    await using agent = await startAgent();
    await using ws = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = {
        build = { tasks = {
          { name = "compile", command = "echo 'compiling <main> & \\"co\\"'; echo built > out.txt" },
          { name = "remote", depends_on = "compile", delegate_to = "${agent.address}",
            command = "cat out.txt; echo on the agent" },
        } },
        check = { tasks = {
          { name = "unit", command = "echo 3 tests; echo 'assert failed' >&2; exit 4" },
          { name = "after", depends_on = "unit", command = "true" },
        } },
      }`,
    });
    const r = await cliProcess(
      ["run", "--report", "junit=reports/junit.xml", "--report", "json=reports/run.json"],
      { cwd: ws.dir },
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const junit = `${ws.dir}/reports/junit.xml`;
    for (const schema of ["sloth-junit.xsd", "jenkins-junit.xsd"]) {
      const check = await xmllint(["--noout", "--schema", `${FIXTURES}/junit/${schema}`, junit]);
      assert.ok(check.ok, `${schema}: ${check.out}`);
    }
    const xml = await Deno.readTextFile(junit);
    assert.match(xml, /<testsuites name="[^"]*workflow\.lua" tests="4" failures="1" errors="0"/);
    assert.match(xml, /<testsuite name="build" tests="2" failures="0" errors="0" skipped="0" /);
    assert.match(xml, /<testsuite name="check" tests="2" failures="1" errors="0" skipped="1" /);
    const text = async (xpath: string) =>
      (await xmllint(["--xpath", xpath, junit])).out.replace(/\n$/, "");
    assert.equal(
      await text('string(//testcase[@name="compile"]/system-out)'),
      'compiling <main> & "co"\n',
    );
    assert.equal(
      await text('string(//testcase[@name="remote"]/system-out)'),
      "built\non the agent\n",
    );
    assert.equal(await text('string(//testcase[@name="unit"]/failure/@message)'), "exit code 4");
    assert.equal(await text('string(//testcase[@name="unit"]/system-err)'), "assert failed\n");
    assert.match(
      await text('string(//testcase[@name="after"]/skipped)'),
      /dependency "unit" failed/,
    );

    const record = JSON.parse(await Deno.readTextFile(`${ws.dir}/reports/run.json`));
    assert.equal(record.version, 1);
    assert.equal(record.status, "failed");
    assert.equal(record.exit_code, 1);
    const byName = Object.fromEntries(
      record.tasks.map((t: { task: string }) => [t.task, t]),
    );
    assert.equal(byName.remote.where, `agent ${agent.address}`);
    assert.equal(byName.remote.status, "success");
    assert.ok(byName.remote.transfer.sent_bytes > 0);
    assert.equal(byName.unit.exit.code, 4);
    assert.equal(byName.after.status, "skipped");
  },
});

Deno.test("run --report refuses a format it does not know, and says when a report cannot be written", async () => {
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "a", command = "true" } } } }`,
    "blocked": "a file, not a directory\n",
  });
  const bad = await cliProcess(["run", "--report", "xml=out.xml"], { cwd: ws.dir });
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /argument 'xml=out\.xml' is invalid\. expected junit=FILE or json=FILE\./,
  );
  const unwritable = await cliProcess(["run", "--report", "junit=blocked/junit.xml"], {
    cwd: ws.dir,
  });
  // Found before anything runs.
  assert.equal(unwritable.code, 2);
  assert.equal(unwritable.stdout, "");
  assert.match(
    unwritable.stderr,
    /^error: cannot write the junit report blocked\/junit\.xml: .*\nhint: choose a file in a directory you can write to/m,
  );
  const twice = await cliProcess(["run", "--report", "junit=r.xml", "--report", "json=r.xml"], {
    cwd: ws.dir,
  });
  assert.equal(twice.code, 2);
  assert.equal(
    twice.stderr,
    "error: the junit and json reports would both be r.xml\nhint: give each --report its own file\n",
  );
  assert.deepEqual(
    (await Array.fromAsync(Deno.readDir(ws.dir))).map((e) => e.name).sort(),
    ["blocked", "workflow.lua"],
  );
});

Deno.test({
  name:
    "a workflow that does not load still gets reports that say so (not an empty, green JUnit file)",
  ignore: !hasXmllint,
  fn: async () => {
    await using ws = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "a", cmd = "true" } } } }`,
    });
    const r = await cliProcess(["run", "--report", "junit=j.xml", "--report", "json=r.json"], {
      cwd: ws.dir,
    });
    assert.equal(r.code, 2);
    const junit = `${ws.dir}/j.xml`;
    for (const schema of ["sloth-junit.xsd", "jenkins-junit.xsd"]) {
      const check = await xmllint(["--noout", "--schema", `${FIXTURES}/junit/${schema}`, junit]);
      assert.ok(check.ok, `${schema}: ${check.out}`);
    }
    const xml = await Deno.readTextFile(junit);
    assert.match(xml, /<testsuites name="workflow\.lua" tests="1" failures="0" errors="1"/);
    assert.match(
      xml,
      /<error message="the workflow did not load: workflow\.lua is not a valid workflow: - group &quot;g&quot; task &quot;a&quot;: unknown field &quot;cmd&quot;\. Did you mean &quot;command&quot;\?" type="workflow">/,
    );
    const record = JSON.parse(await Deno.readTextFile(`${ws.dir}/r.json`));
    assert.equal(record.status, "failed");
    assert.equal(record.exit_code, 2);
    assert.match(
      record.reason,
      /^the workflow did not load: workflow\.lua is not a valid workflow/,
    );
  },
});

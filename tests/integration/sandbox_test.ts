/** What a task on an agent can and cannot touch. Needs bubblewrap (CI installs it). */
import assert from "node:assert/strict";
import { probeBwrap } from "../../lib/exec/mod.ts";
import { startAgent } from "../_helpers/agent.ts";
import { makeCerts } from "../_helpers/certs.ts";
import { cliProcess, tempWorkspace } from "../_helpers/mod.ts";

const noBwrap = await probeBwrap();
if (noBwrap) console.log(`sandbox_test: bwrap tests skipped: ${noBwrap}`);

const SECRET = "top-secret-token-value";

Deno.test({
  name:
    "a sandboxed shell task cannot read the token file, the TLS key, the token env var or home directories",
  ignore: noBwrap !== undefined,
}, async () => {
  await using secrets = await tempWorkspace({ "agent.token": `${SECRET}\n` });
  await using certs = await makeCerts();
  await using agent = await startAgent({
    args: [
      "--token-file",
      `${secrets.dir}/agent.token`,
      "--tls-cert",
      certs.agentCert,
      "--tls-key",
      certs.agentKey,
    ],
    env: { SLOTH_AGENT_TOKEN: "ignored-because-token-file-wins", CLOUD_SECRET: SECRET },
  });
  assert.match(agent.log(), /shell sandbox bwrap/);
  await using ws = await tempWorkspace({
    "workflow.lua":
      `TaskDefinitions = { g = { tasks = { { name = "snoop", delegate_to = "${agent.address}",
      command = "cat ${secrets.dir}/agent.token; cat ${certs.agentKey}; echo env=$SLOTH_AGENT_TOKEN; " ..
        "echo root=$(ls -A /root | wc -l) home=$(ls -A /home | wc -l) run=$(ls -A /run | wc -l); " ..
        "echo cloud=$CLOUD_SECRET task=$SLOTH_TASK; echo x > $HOME/cache && echo home-writable; echo done" } } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.ca], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: SECRET },
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, new RegExp(SECRET));
  assert.doesNotMatch(r.stdout + r.stderr, /PRIVATE KEY/);
  assert.match(r.stdout, /\] env=$/m);
  assert.match(r.stdout, /\] root=0 home=0 run=0$/m);
  assert.match(r.stdout, /\] cloud= task=snoop$/m);
  assert.match(r.stdout, /\] home-writable$/m);
  assert.match(r.stdout, /\] done$/m);
});

Deno.test({
  name: "a sandboxed task cannot see another job's workspace nor write outside its own",
  ignore: noBwrap !== undefined,
}, async () => {
  await using root = await tempWorkspace();
  await using agent = await startAgent({ args: ["--work-root", root.dir] });
  const escape = `/tmp/sloth-escape-${crypto.randomUUID()}`;
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { delegate_to = "${agent.address}", tasks = {
      { name = "holder", async = true, command = "echo private > mine.txt; sleep 2" },
      { name = "prober", async = true,
        command = "sleep 0.5; echo jobs=$(ls ${root.dir} | wc -l); " ..
          "cat ${root.dir}/*/ws/mine.txt 2>/dev/null || echo no-peeking; " ..
          "touch ${escape} 2>/dev/null || echo no-escape; " ..
          "echo x > /etc/sloth-x 2>/dev/null || echo no-etc; " ..
          "echo ok > inside.txt && echo wrote-inside" },
    } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\[prober@[^\]]+\] jobs=1$/m);
  assert.match(r.stdout, /\] no-peeking$/m);
  assert.match(r.stdout, /\] no-escape$/m);
  assert.match(r.stdout, /\] no-etc$/m);
  assert.match(r.stdout, /\] wrote-inside$/m);
  await assert.rejects(Deno.stat(escape), Deno.errors.NotFound);
  await assert.rejects(Deno.stat("/etc/sloth-x"), Deno.errors.NotFound);
  assert.equal(await Deno.readTextFile(`${ws.dir}/inside.txt`), "ok\n");
});

Deno.test("Lua on an agent touches only its job's directory, and sees no environment", async () => {
  await using secrets = await tempWorkspace({ "agent.token": `${SECRET}\n` });
  await using agent = await startAgent({ args: ["--token-file", `${secrets.dir}/agent.token`] });
  const escape = `/tmp/sloth-lua-escape-${crypto.randomUUID()}`;
  await using ws = await tempWorkspace({
    "workflow.lua":
      `TaskDefinitions = { g = { tasks = { { name = "lua", delegate_to = "${agent.address}",
      command = function()
        local ok1, e1 = pcall(fs.read, "${secrets.dir}/agent.token")
        local ok2, e2 = pcall(fs.write, "${escape}", "x")
        fs.write("inside.txt", "written by lua")
        exec.run("ln -s ${secrets.dir}/agent.token via-link; ln -s /etc via-dir")
        local ok3, e3 = pcall(fs.read, "via-link")
        local ok4, e4 = pcall(fs.write, "via-dir/sloth-x", "x")
        local tmp = fs.tmpname()
        log.info("read=" .. tostring(ok1) .. " " .. e1)
        log.info("write=" .. tostring(ok2) .. " " .. e2)
        log.info("link=" .. tostring(ok3) .. " " .. e3)
        log.info("dirlink=" .. tostring(ok4) .. " " .. e4)
        log.info("home=" .. tostring(os.getenv("HOME")) .. " task=" .. tostring(os.getenv("SLOTH_TASK")))
        log.info("tmp-ok=" .. tostring(fs.exists(tmp)))
        return true
      end } } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: SECRET },
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, new RegExp(SECRET));
  assert.match(
    r.stdout,
    /\] read=false .*fs\.read: .*agent\.token: outside what this task may touch \(the agent's sandbox\)$/m,
  );
  assert.match(r.stdout, /\] write=false .*fs\.write: .*outside what this task may touch/m);
  assert.match(r.stdout, /\] link=false .*fs\.read: via-link: outside what this task may touch/m);
  assert.match(
    r.stdout,
    /\] dirlink=false .*fs\.write: via-dir\/sloth-x: outside what this task may touch/m,
  );
  assert.match(r.stdout, /\] home=nil task=lua$/m);
  assert.match(r.stdout, /\] tmp-ok=true$/m);
  await assert.rejects(Deno.stat(escape), Deno.errors.NotFound);
  assert.equal(await Deno.readTextFile(`${ws.dir}/inside.txt`), "written by lua");
});

Deno.test({
  name: "--task-network off takes the network away from shell and Lua tasks",
  ignore: noBwrap !== undefined,
}, async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("hello"),
  );
  const url = `http://127.0.0.1:${server.addr.port}/`;
  const workflow = (address: string) =>
    `TaskDefinitions = { g = { delegate_to = "${address}", tasks = {
      { name = "sh", command = "exec 3<>/dev/tcp/127.0.0.1/${server.addr.port} 2>/dev/null && echo sh-connected || echo sh-blocked" },
      { name = "lua", command = function()
          local ok, res = pcall(net.http_get, "${url}")
          log.info(ok and ("lua-got " .. res.body) or ("lua-blocked " .. res))
          return true
        end },
    } } }`;
  await using off = await startAgent({ args: ["--task-network", "off"] });
  await using ws = await tempWorkspace({ "workflow.lua": workflow(off.address) });
  // /dev/tcp is bash's; use bash inside the sandbox for the shell probe.
  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    (await Deno.readTextFile(`${ws.dir}/workflow.lua`)).replace(
      /command = "exec 3<>([^"]*)"/,
      (_, rest) =>
        `command = "bash -c 'exec 3<>${
          rest.replace(/ 2>\/dev\/null.*$/, "")
        }' 2>/dev/null && echo sh-connected || echo sh-blocked"`,
    ),
  );
  const blocked = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(blocked.code, 0, blocked.stdout + blocked.stderr);
  assert.match(blocked.stdout, /\] sh-blocked$/m);
  assert.match(
    blocked.stdout,
    /\] lua-blocked .*tasks on this agent have no network \(--task-network off\)$/m,
  );

  await using on = await startAgent();
  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    (await Deno.readTextFile(`${ws.dir}/workflow.lua`)).replaceAll(off.address, on.address),
  );
  const open = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.match(open.stdout, /\] sh-connected$/m);
  assert.match(open.stdout, /\] lua-got hello$/m);
});

Deno.test("--sandbox bwrap refuses to start without bubblewrap; auto warns; none must be asked for", async () => {
  const env = { PATH: "/nonexistent" };
  const strict = await cliProcess(["agent", "-p", "0", "--sandbox", "bwrap"], { cwd: "/tmp", env });
  assert.equal(strict.code, 2);
  assert.match(
    strict.stderr,
    /--sandbox bwrap, but bubblewrap cannot run here: bwrap is not installed/,
  );
  await using auto = await startAgent({ env });
  assert.match(
    auto.log(),
    /WARNING: shell commands of tasks run WITHOUT a sandbox: bwrap is not installed/,
  );
  assert.match(auto.log(), /shell sandbox none/);
  await using none = await startAgent({ args: ["--sandbox", "none"] });
  assert.match(none.log(), /WARNING: --sandbox none/);
});

Deno.test("Lua jobs on the agent each get a worker of their own, made ahead, that reaches only their directory", async () => {
  await using root = await tempWorkspace();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const agent = await startAgent({ args: ["--work-root", root.dir], port });
  const task = (name: string) =>
    `{ name = "${name}", delegate_to = "${agent.address}", command = function(params)
        local seen = tostring(rawget(_G, "left_behind"))
        left_behind = "${name}"
        local ok = pcall(fs.write, params.workdir .. "/../../escape-${name}.txt", "x")
        log.info("${name} seen=" .. seen .. " escaped=" .. tostring(ok))
        return true
      end }`;
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { ${
      ["one", "two", "three"].map(task).join(", ")
    } } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const name of ["one", "two", "three"]) {
    assert.match(r.stdout, new RegExp(`\\] ${name} seen=nil escaped=false$`, "m"));
  }
  await agent.stop();
  const jobs = `${root.dir}/sloth-agent-${port}/jobs`;
  assert.deepEqual([...Deno.readDirSync(jobs)], [], "no job or standby directory is left");
});

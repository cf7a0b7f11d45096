/**
 * Who an agent's tasks run as, and what of the agent they can reach: an agent
 * started as root runs tasks' commands as `nobody` (or --task-user), outside the
 * sandbox too; its HOME, token file, TLS files and local token directory are not
 * there for tasks; the token is in no environment a task can read. Cases that
 * need the agent to run as root say so and are skipped otherwise; CI runs them
 * as root.
 */
import assert from "node:assert/strict";
import { probeBwrap } from "../../lib/exec/mod.ts";
import { jobDirs, startAgent } from "../_helpers/agent.ts";
import { makeCerts } from "../_helpers/certs.ts";
import { cliProcess, pgrep, ROOT, spawnCli, tempWorkspace, waitFor } from "../_helpers/mod.ts";

const IS_ROOT = Deno.uid() === 0;
const notRoot = IS_ROOT ? undefined : "the agent must run as root to switch users";
const noBwrap = await probeBwrap();
if (notRoot) console.log(`task_user_test: root-only cases skipped: ${notRoot}`);
if (noBwrap) console.log(`task_user_test: bwrap cases skipped: ${noBwrap}`);

/** The sandbox modes to try here: bwrap when it works, and none. */
const MODES = noBwrap ? ["none"] : ["bwrap", "none"];

const NOBODY = await idOf("nobody");

/** Deno's cache where it is now: an agent started with another HOME must still find it. */
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;

async function idOf(user: string): Promise<{ uid: string; gid: string } | undefined> {
  const id = (flag: string) =>
    new Deno.Command("id", { args: [flag, user], stdout: "piped", stderr: "null" }).output();
  const [uid, gid] = await Promise.all([id("-u"), id("-g")]);
  if (!uid.success || !gid.success) return undefined;
  const text = (out: Deno.CommandOutput) => new TextDecoder().decode(out.stdout).trim();
  return { uid: text(uid), gid: text(gid) };
}

/**
 * A directory that no sandbox rule hides (not under /home, /root, /tmp, /var/tmp,
 * /run): under /var/lib as root, else in the checkout. Mode 0755, so that only
 * the sandbox keeps tasks out of what is in it.
 */
async function openDir(
  files: Record<string, string> = {},
): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await Deno.makeTempDir({
    dir: IS_ROOT ? "/var/lib" : ROOT,
    prefix: IS_ROOT ? "sloth-test-" : ".sloth-test-",
  });
  await Deno.chmod(dir, 0o755);
  for (const [path, content] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${path}`, content, { mode: 0o644 });
    await Deno.chmod(`${dir}/${path}`, 0o644);
  }
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** An agent that should refuse to start: its exit code and log (killed, and a failure, if it starts). */
async function refusedAgent(args: string[]): Promise<{ code: number; stderr: string }> {
  const child = spawnCli(["agent", "-p", "0", ...args], { cwd: "/" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = new Promise<"started">((resolve) => {
    timer = setTimeout(() => resolve("started"), 20_000);
  });
  const output = child.output();
  const first = await Promise.race([child.status, started]);
  clearTimeout(timer);
  if (first === "started") child.kill("SIGTERM");
  const out = await output;
  const stderr = new TextDecoder().decode(out.stderr);
  if (first === "started") assert.fail(`the agent started:\n${stderr}`);
  return { code: out.code, stderr };
}

Deno.test({
  name:
    "an agent running as root runs tasks as nobody, sandboxed or not: /etc/shadow is unreadable from a shell task and from exec.run, id -u is nobody's, and /proc says so from outside",
  ignore: notRoot !== undefined || NOBODY === undefined,
}, async () => {
  for (const mode of MODES) {
    await using agent = await startAgent({ args: ["--sandbox", mode] });
    assert.match(agent.log(), new RegExp(`shell sandbox ${mode}, tasks as nobody,`));
    const marker = `2.${Math.floor(Math.random() * 1e6)}`;
    await using ws = await tempWorkspace({
      "workflow.lua": `TaskDefinitions = { g = { delegate_to = "${agent.address}", tasks = {
        { name = "sh", command = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); " ..
          "cat /etc/shadow >/dev/null 2>&1 && echo shadow-read || echo shadow-denied; sleep ${marker}" },
        { name = "lua", depends_on = { "sh" }, command = function()
            local id = exec.run("id -u")
            local shadow = exec.run("cat /etc/shadow")
            log.info("lua-uid=" .. id.stdout:gsub("%s+$", "") .. " shadow-exit=" .. shadow.exit_code ..
              " shadow-out=" .. #shadow.stdout)
            return true
          end },
      } } }`,
    });
    const run = spawnCli(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    const output = run.output();
    // The task's sleep, seen from outside the sandbox: its real ids and capabilities.
    let status = "";
    await waitFor(async () => {
      for (const pid of await pgrep(`sleep ${marker}`)) {
        try {
          status = await Deno.readTextFile(`/proc/${pid}/status`);
          if (/^Name:\s+sleep$/m.test(status)) return true;
        } catch {
          // Gone meanwhile.
        }
      }
      return false;
    }, 20_000);
    const out = await output;
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, `${mode}: ${stdout}${new TextDecoder().decode(out.stderr)}`);
    const { uid, gid } = NOBODY!;
    assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, "m"), mode);
    assert.match(status, new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, "m"), mode);
    assert.match(status, /^Groups:\s*$/m, mode);
    assert.match(status, /^CapEff:\s+0+$/m, mode);
    assert.match(status, /^CapBnd:\s+0+$/m, mode);
    assert.match(status, /^NoNewPrivs:\s+1$/m, mode);
    assert.match(stdout, new RegExp(`\\] uid=${uid} gid=${gid} groups=${gid}$`, "m"), mode);
    assert.match(stdout, /\] shadow-denied$/m, mode);
    assert.match(stdout, new RegExp(`\\] lua-uid=${uid} shadow-exit=1 shadow-out=0$`, "m"), mode);
  }
});

Deno.test({
  name:
    "tasks as nobody write their workspace: files the master sent, new ones, Lua's then a shell command's; changes come back, also from a kept workspace, and the job directories go",
  ignore: notRoot !== undefined || NOBODY === undefined,
}, async () => {
  for (const mode of MODES) {
    await using root = await tempWorkspace();
    // Unsandboxed, nobody reaches its job's directory by the real path.
    await Deno.chmod(root.dir, 0o711);
    // A port of our own, so that the agent's directory outlasts it (with -p 0 it goes).
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const agent = await startAgent({ args: ["--sandbox", mode, "--work-root", root.dir], port });
    await using ws = await tempWorkspace({
      "sent.txt": "from the master\n",
      "ro/kept.txt": "x\n",
      "workflow.lua": `TaskDefinitions = { g = { delegate_to = "${agent.address}", tasks = {
        { name = "sh", command = "echo appended >> sent.txt && mkdir -p out/deep && " ..
          "echo made > out/deep/new.txt && rm -f ro/kept.txt && echo tmp > $TMPDIR/t && " ..
          "echo owners=$(stat -c %u sent.txt out/deep/new.txt . $TMPDIR | sort -u) && echo sh-ok" },
        { name = "lua", depends_on = { "sh" }, command = function()
            fs.mkdir("lua-dir")
            fs.write("lua-dir/a.txt", "lua ")
            local r = exec.run("echo shell >> lua-dir/a.txt && echo b > lua-dir/b.txt && echo lua-sh-ok")
            log.info(r.stdout .. r.stderr)
            return r.exit_code == 0
          end },
      } } }`,
    });
    for (const round of [1, 2]) {
      const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
      assert.equal(r.code, 0, `${mode} round ${round}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, new RegExp(`\\] owners=${NOBODY!.uid}$`, "m"), r.stdout);
      assert.match(r.stdout, /\] sh-ok$/m);
      assert.match(r.stdout, /\] lua-sh-ok$/m);
    }
    assert.equal(
      await Deno.readTextFile(`${ws.dir}/sent.txt`),
      "from the master\nappended\nappended\n",
    );
    assert.equal(await Deno.readTextFile(`${ws.dir}/out/deep/new.txt`), "made\n");
    await assert.rejects(Deno.stat(`${ws.dir}/ro/kept.txt`), Deno.errors.NotFound);
    assert.equal(await Deno.readTextFile(`${ws.dir}/lua-dir/a.txt`), "lua shell\n");
    assert.equal(await Deno.readTextFile(`${ws.dir}/lua-dir/b.txt`), "b\n");
    await agent.stop();
    assert.deepEqual(jobDirs(agent, root.dir), [], "no job or standby directory is left");
    assert.ok(Deno.statSync(`${root.dir}/sloth-agent-${port}/jobs`).isDirectory);
  }
});

Deno.test({
  name:
    "ulimit -u binds tasks of an agent running as root: a bounded fork loop under a limit of 20 starts fewer than 60 processes",
  ignore: notRoot !== undefined,
}, async () => {
  for (const mode of MODES) {
    await using agent = await startAgent({ args: ["--sandbox", mode] });
    // dash calls RLIMIT_NPROC -p, bash -u. The limit is the subshell's: the task's own
    // shell needs no fork after it (read and echo are built in). At most 60 sleeps, killed
    // when the task ends. Other processes of nobody count too, so fewer may start, never 60.
    const script = [
      "echo 0 > started",
      "( ulimit -u 20 2>/dev/null || ulimit -p 20; i=0; " +
      "while [ $i -lt 60 ]; do i=$((i+1)); sleep 5 & echo $i > started; done ) 2>/dev/null",
      "read n < started; echo started=$n",
    ].join("\n");
    await using ws = await tempWorkspace({
      "forks.sh": script,
      "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "forks",
        delegate_to = "${agent.address}", command = "sh forks.sh" } } } }`,
    });
    const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const started = Number(/\] started=(\d+)$/m.exec(r.stdout)?.[1]);
    assert.ok(started >= 0 && started < 60, `${mode}: ${r.stdout}`);
  }
});

Deno.test({
  name:
    "tasks cannot see the agent's HOME, its token file, TLS certificate, key and CA, or its local token directory, even where their modes would let them",
  ignore: noBwrap !== undefined,
}, async () => {
  await using home = await openDir({ "secret.txt": "home-secret-value\n" });
  await using secrets = await openDir({ "agent.token": "file-token-value\n" });
  await using certs = await makeCerts();
  const copy = async (from: string, name: string) => {
    await Deno.copyFile(from, `${secrets.dir}/${name}`);
    await Deno.chmod(`${secrets.dir}/${name}`, 0o644);
    return `${secrets.dir}/${name}`;
  };
  const tls = {
    cert: await copy(certs.agentCert, "agent.pem"),
    key: await copy(certs.agentKey, "agent.key"),
    ca: await copy(certs.ca, "ca.pem"),
  };
  await using agent = await startAgent({
    args: [
      "--token-file",
      `${secrets.dir}/agent.token`,
      "--tls-cert",
      tls.cert,
      "--tls-key",
      tls.key,
      "--tls-client-ca",
      tls.ca,
    ],
    env: { HOME: home.dir, DENO_DIR },
  });
  const snoop = [
    `cat ${home.dir}/secret.txt`,
    `echo home-entries=$(ls -A ${home.dir} | wc -l)`,
    `cat ${secrets.dir}/agent.token ${tls.cert} ${tls.key} ${tls.ca}`,
    "echo done",
  ].join("; ");
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "snoop",
      delegate_to = "${agent.address}", command = "${snoop}" } } } }`,
  });
  const r = await cliProcess(
    [
      "run",
      "-f",
      "workflow.lua",
      "--tls-ca",
      certs.ca,
      "--tls-cert",
      certs.clientCert,
      "--tls-key",
      certs.clientKey,
    ],
    { cwd: ws.dir, env: { SLOTH_AGENT_TOKEN: "file-token-value" } },
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /home-secret-value|file-token-value|BEGIN/);
  assert.match(r.stdout, /\] home-entries=0$/m);
  assert.match(r.stdout, /\] done$/m);

  // A loopback agent's own token, in its local token directory; as root, tasks that
  // run as root too (only the sandbox keeps them from a 0600 file of root's).
  await using home2 = await openDir();
  await using runtime = await openDir();
  const env = { XDG_RUNTIME_DIR: runtime.dir };
  await using local = await startAgent({
    args: IS_ROOT ? ["--task-user", "root"] : [],
    env: { ...env, HOME: home2.dir, DENO_DIR },
  });
  const tokenFile = `${runtime.dir}/sloth-runner/agent-127.0.0.1-${local.port}.token`;
  const token = (await Deno.readTextFile(tokenFile)).trim();
  await using ws2 = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "snoop",
      delegate_to = "${local.address}",
      command = "echo uid=$(id -u) entries=$(ls -A ${runtime.dir}/sloth-runner | wc -l); cat ${tokenFile}; echo done" } } } }`,
  });
  const r2 = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws2.dir, env });
  assert.equal(r2.code, 0, r2.stdout + r2.stderr);
  assert.ok(!r2.stdout.includes(token), r2.stdout);
  assert.match(r2.stdout, new RegExp(`\\] uid=${IS_ROOT ? 0 : Deno.uid()} entries=0$`, "m"));
  assert.match(r2.stdout, /\] done$/m);
});

Deno.test({
  name:
    "with SLOTH_AGENT_TOKEN set, the agent warns that it stays in its /proc environ, and no task can read it from any /proc/*/environ: in the sandbox, nor unsandboxed as another user",
  ignore: noBwrap !== undefined && notRoot !== undefined,
}, async () => {
  const secret = `env-token-${crypto.randomUUID()}`;
  const canary = `sloth-canary-${crypto.randomUUID()}`;
  // A control: a process of the task's own, with the canary in its environment,
  // shows that the scan can read environments where it may.
  const scan = [
    `SLOTH_CANARY=${canary} sleep 5 &`,
    "control=$!",
    "sleep 0.3",
    "found=0; canary=0",
    "for f in /proc/[0-9]*/environ; do " +
    `if grep -qa ${secret} $f 2>/dev/null; then found=$((found+1)); fi; ` +
    `if grep -qa ${canary} $f 2>/dev/null; then canary=$((canary+1)); fi; done`,
    "echo found=$found canary=$canary",
    "kill $control",
  ].join("\n");
  const modes = [
    ...(noBwrap ? [] : [["--sandbox", "bwrap"]]),
    ...(notRoot ? [] : [["--sandbox", "none", "--task-user", "nobody"]]),
  ];
  for (const args of modes) {
    await using agent = await startAgent({ args, env: { SLOTH_AGENT_TOKEN: secret } });
    assert.match(
      agent.log(),
      /WARNING: SLOTH_AGENT_TOKEN stays readable in \/proc\/\d+\/environ, .*--token-file instead/,
    );
    await using ws = await tempWorkspace({
      "scan.sh": scan,
      "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "scan",
        delegate_to = "${agent.address}", command = "sh scan.sh" } } } }`,
    });
    const r = await cliProcess(["run", "-f", "workflow.lua"], {
      cwd: ws.dir,
      env: { SLOTH_AGENT_TOKEN: secret },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const [, found, seen] = /\] found=(\d+) canary=(\d+)$/m.exec(r.stdout) ?? [];
    assert.equal(found, "0", `${args.join(" ")}: ${r.stdout}`);
    assert.ok(Number(seen) >= 1, `${args.join(" ")}: the scan read no environment: ${r.stdout}`);
  }
});

Deno.test({
  name:
    "--task-user root runs tasks as root and warns at start; a user that does not exist is refused",
  ignore: notRoot !== undefined,
}, async () => {
  await using agent = await startAgent({ args: ["--task-user", "root"] });
  assert.match(agent.log(), /WARNING: --task-user root: tasks' shell commands run as root/);
  assert.match(agent.log(), /, tasks as root,/);
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "who",
      delegate_to = "${agent.address}", command = "echo uid=$(id -u)" } } } }`,
  });
  const r = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\] uid=0$/m);

  const missing = await refusedAgent(["--task-user", "no-such-user-sloth"]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /--task-user no-such-user-sloth: no such user/);
});

Deno.test({
  name:
    "an agent whose task user cannot pass through to its work root refuses to start, saying why",
  ignore: notRoot !== undefined,
}, async () => {
  await using closed = await openDir();
  await Deno.chmod(closed.dir, 0o700);
  const workRoot = `${closed.dir}/work`;
  await Deno.mkdir(workRoot);
  for (const mode of MODES) {
    const r = await refusedAgent(["--sandbox", mode, "--work-root", workRoot]);
    assert.equal(r.code, 2, `${mode}: ${r.stderr}`);
    assert.match(
      r.stderr,
      /tasks cannot run in this agent's job directories as nobody: .*[Pp]ermission denied/,
    );
    assert.match(r.stderr, /nobody must be able to pass through .* \(chmod o\+x\)/);
  }
  // Passable (not readable), it works.
  await Deno.chmod(closed.dir, 0o711);
  await using agent = await startAgent({ args: ["--work-root", workRoot] });
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "w",
      delegate_to = "${agent.address}", command = "echo x > f && echo wrote" } } } }`,
  });
  const ok = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /\] wrote$/m);
});

/**
 * Escapes from a job's directory, tried as a master holding a valid token would,
 * against real agents: what a task leaves in a kept workspace (symlinks out,
 * FIFOs, files rewritten behind the agent's back), a file too big to hash, and a
 * second master naming the first one's workspace. After each: the host file is
 * untouched, the content store holds only what its names say, and the same agent
 * answers and runs the next task.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { closeSync, constants, openSync } from "node:fs";
import { AgentClient } from "../../lib/rpc/mod.ts";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { makeCerts } from "../_helpers/certs.ts";
import { hasCommand, spawnCli, tempWorkspace, waitFor } from "../_helpers/mod.ts";

const BWRAP = hasCommand("bwrap");

function sha256(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A loopback agent with a token of its own, keeping what it keeps under `root`. */
async function tokenAgent(
  root: string,
  options: { token?: string; port?: number; args?: string[] } = {},
): Promise<TestAgent & { token: string }> {
  const token = options.token ?? crypto.randomUUID();
  const file = `${root}/token-${sha256(token).slice(0, 8)}`;
  await Deno.writeTextFile(file, `${token}\n`, { mode: 0o600 });
  const agent = await startAgent({
    port: options.port,
    args: ["--work-root", `${root}/work`, "--token-file", file, ...(options.args ?? [])],
  });
  return Object.assign(agent, { token });
}

async function makeRoot() {
  const root = await tempWorkspace();
  await Deno.mkdir(`${root.dir}/work`);
  return root;
}

/** A workflow of one shell task on `address` that runs `sh step.sh` in the workspace. */
function stepWorkflow(address: string): string {
  return `TaskDefinitions = { g = { tasks = { { name = "step", delegate_to = "${address}",
    command = "sh step.sh" } } } }`;
}

/** A run of the workflow in `dir`; one that takes over a minute (a stuck agent) is killed. */
async function run(dir: string, token?: string, args: string[] = []) {
  const master = spawnCli(["run", "-f", "workflow.lua", ...args], {
    cwd: dir,
    env: token ? { SLOTH_AGENT_TOKEN: token } : {},
  });
  const output = Promise.all([
    new Response(master.stdout).text(),
    new Response(master.stderr).text(),
  ]);
  const timer = setTimeout(() => master.kill("SIGKILL"), 60_000);
  const status = await master.status;
  clearTimeout(timer);
  const [stdout, stderr] = await output;
  if (status.signal === "SIGKILL") throw new Error(`the run did not end:\n${stdout}${stderr}`);
  return { code: status.code, stdout, stderr };
}

/** Asks the agent for a ping; throws if it does not answer within `ms`. */
async function ping(agent: TestAgent & { token: string }, ms = 3000): Promise<void> {
  const client = new AgentClient(agent.address, { token: agent.token });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    // The client's own deadline is not enough: a failed ping asks the agent more.
    await Promise.race([
      client.ping(ms),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer to a ping within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

/** Every entry of the agent's content store holds the content its name says. */
async function assertStoreIntact(root: string, agent: TestAgent): Promise<number> {
  const blobs = `${root}/work/sloth-agent-${agent.port}/blobs`;
  let count = 0;
  for await (const entry of Deno.readDir(blobs)) {
    if (!/^[0-9a-f]{64}$/.test(entry.name)) continue;
    const info = await Deno.lstat(`${blobs}/${entry.name}`);
    assert.ok(info.isFile, `${entry.name} is a regular file`);
    assert.equal(sha256(await Deno.readFile(`${blobs}/${entry.name}`)), entry.name);
    count++;
  }
  return count;
}

/**
 * Opens every FIFO under `dir` for writing and closes it at once: a reader stuck
 * opening one (an agent without these fixes) gets its end of file, so that a
 * failing test still lets its agent stop.
 */
function unblockFifos(dir: string): void {
  const walk = (path: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(path)];
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = `${path}/${entry.name}`;
      if (entry.isDirectory) walk(full);
      else if (!entry.isFile && !entry.isSymlink) {
        try {
          closeSync(openSync(full, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {
          // No reader, or not a FIFO.
        }
      }
    }
  };
  walk(dir);
}

Deno.test({
  name:
    "symlinks a task leaves in a kept workspace are removed, never written through: the host file and the content store stay as they were",
  ignore: !BWRAP,
  async fn() {
    await using root = await makeRoot();
    await using host = await tempWorkspace({ "victim.txt": "victim\n" });
    const victim = `${host.dir}/victim.txt`;
    await Deno.chmod(victim, 0o600);
    await using agent = await tokenAgent(root.dir);
    const shared = "shared content\n";
    const blob = `${root.dir}/work/sloth-agent-${agent.port}/blobs/${sha256(shared)}`;
    await using ws = await tempWorkspace({
      "a.txt": shared,
      "workflow.lua": stepWorkflow(agent.address),
      // Symlinks out: to a host file, and into the agent's content store.
      "step.sh": `ln -sfn ${victim} evil; ln -sfn ${victim} fresh; ln -sfn ${blob} poison\n`,
    });
    const first = await run(ws.dir, agent.token);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    // The store takes a.txt's content after the job.
    await waitFor(async () => (await Deno.lstat(blob).catch(() => undefined))?.isFile === true);

    // On the master, the same names become files: one whose content the store has
    // (copied in), two whose content comes from the master (written in place).
    await Deno.writeTextFile(`${ws.dir}/evil`, shared);
    await Deno.writeTextFile(`${ws.dir}/fresh`, "fresh from the master\n");
    await Deno.writeTextFile(`${ws.dir}/poison`, "not what the store holds\n");
    await Deno.chmod(`${ws.dir}/evil`, 0o777);
    await Deno.writeTextFile(`${ws.dir}/step.sh`, "cat evil fresh poison; ls -l evil\n");
    const second = await run(ws.dir, agent.token);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /\] shared content$/m);
    assert.match(second.stdout, /\] fresh from the master$/m);
    assert.match(second.stdout, /\] not what the store holds$/m);
    assert.match(second.stdout, /\] -rwxrwxrwx .* evil$/m);

    assert.equal(await Deno.readTextFile(victim), "victim\n");
    assert.equal((await Deno.stat(victim)).mode! & 0o777, 0o600);
    await waitFor(async () => (await assertStoreIntact(root.dir, agent)) >= 3);
    await ping(agent);
    await Deno.writeTextFile(`${ws.dir}/step.sh`, "echo next\n");
    const next = await run(ws.dir, agent.token);
    assert.equal(next.code, 0, next.stdout + next.stderr);
    assert.match(next.stdout, /\] next$/m);
  },
});

Deno.test({
  name:
    "FIFOs a task leaves in a kept workspace never block the agent: it answers pings and runs the next job",
  ignore: !BWRAP,
  async fn() {
    await using root = await makeRoot();
    await using agent = await tokenAgent(root.dir);
    try {
      await using ws = await tempWorkspace({
        "data.txt": "data from the master\n",
        "workflow.lua": stepWorkflow(agent.address),
        // data.txt was fetched (the store copies it after the job); the task fails,
        // so nothing comes back and the master keeps its files.
        "step.sh": "rm data.txt && mkfifo data.txt && mkfifo pipe && mkfifo later; exit 1\n",
      });
      const first = await run(ws.dir, agent.token);
      assert.equal(first.code, 1, first.stdout + first.stderr);
      // After the call, the agent stores what was fetched: a FIFO is never opened.
      for (let i = 0; i < 5; i++) {
        await ping(agent);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await Deno.writeTextFile(`${ws.dir}/later`, "a file on the master\n");
      await Deno.writeTextFile(`${ws.dir}/step.sh`, "cat data.txt later; ls\n");
      const second = await run(ws.dir, agent.token);
      assert.equal(second.code, 0, second.stdout + second.stderr);
      assert.match(second.stdout, /\] data from the master$/m);
      assert.match(second.stdout, /\] a file on the master$/m);
      assert.doesNotMatch(second.stdout, /\] pipe$/m);
      await ping(agent);
      assert.equal(await assertStoreIntact(root.dir, agent) >= 1, true);
    } finally {
      unblockFifos(`${root.dir}/work`);
    }
  },
});

Deno.test({
  name:
    "a 16 GB sparse file a task leaves is refused by its size before it is read: the agent keeps answering, the result says why",
  ignore: !BWRAP,
  async fn() {
    await using root = await makeRoot();
    // The default file limit is 16 GiB, which a file of exactly 16 GiB does not exceed
    // (it would be hashed, without stopping the agent, and sent back); a lower one here.
    await using agent = await tokenAgent(root.dir, { args: ["--max-file-bytes", "8G"] });
    await using ws = await tempWorkspace({
      "workflow.lua": stepWorkflow(agent.address),
      "step.sh": "truncate -s 16G big.img && echo made\n",
    });
    const master = spawnCli(["run", "-f", "workflow.lua"], {
      cwd: ws.dir,
      env: { SLOTH_AGENT_TOKEN: agent.token, SLOTH_SYNC_MAX_FILE_BYTES: "8G" },
    });
    const output = Promise.all([
      new Response(master.stdout).text(),
      new Response(master.stderr).text(),
    ]);
    let exited = false;
    const status = master.status.finally(() => exited = true);
    let pings = 0;
    try {
      while (!exited) {
        await ping(agent, 2000);
        pings++;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } catch (error) {
      master.kill("SIGKILL");
      await status;
      await output;
      throw error;
    }
    const [stdout, stderr] = await output;
    assert.equal((await status).code, 1, stdout + stderr);
    assert.ok(pings > 0);
    assert.match(stdout, /\] made$/m);
    assert.match(
      stdout,
      /its changes were not sent back: the task left "big\.img" of 17179869184 bytes, over this agent's 8589934592-byte file limit/,
    );
    await assert.rejects(Deno.lstat(`${ws.dir}/big.img`), Deno.errors.NotFound);
    await ping(agent);
    await Deno.writeTextFile(`${ws.dir}/step.sh`, "ls; echo next\n");
    const next = await run(ws.dir, agent.token);
    assert.equal(next.code, 0, next.stdout + next.stderr);
    assert.match(next.stdout, /\] next$/m);
    assert.doesNotMatch(next.stdout, /big\.img/);
  },
});

Deno.test({
  name:
    "a task that rewrites kept files at the same size and mtime (touch -r) does not change what the next run executes",
  ignore: !BWRAP,
  async fn() {
    await using root = await makeRoot();
    await using agent = await tokenAgent(root.dir);
    await using ws = await tempWorkspace({
      "build.sh": "echo ORIGINAL-A\n",
      "tool.sh": "echo ORIGINAL-B\n",
      "workflow.lua": stepWorkflow(agent.address),
      // At once (within the second the agent wrote them), and after a second; both
      // keep inode, size and mtime. The task fails: nothing is sent back.
      "step.sh": [
        "sh build.sh; sh tool.sh",
        "touch -r build.sh ref-a; touch -r tool.sh ref-b",
        "printf 'echo TAMPERED-A\\n' > build.sh; touch -r ref-a build.sh",
        "sleep 1.2",
        "printf 'echo TAMPERED-B\\n' > tool.sh; touch -r ref-b tool.sh",
        "exit 1",
      ].join("\n"),
    });
    const first = await run(ws.dir, agent.token);
    assert.equal(first.code, 1, first.stdout + first.stderr);
    assert.match(first.stdout, /\] ORIGINAL-A$/m);

    await Deno.writeTextFile(`${ws.dir}/step.sh`, "sh build.sh; sh tool.sh\n");
    const second = await run(ws.dir, agent.token);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /\] ORIGINAL-A$/m);
    assert.match(second.stdout, /\] ORIGINAL-B$/m);
    assert.doesNotMatch(second.stdout, /TAMPERED/);
    assert.equal(await Deno.readTextFile(`${ws.dir}/build.sh`), "echo ORIGINAL-A\n");
    await ping(agent);
  },
});

Deno.test({
  name:
    "a master with another token that sends the first master's workspace key gets a workspace of its own",
  ignore: !BWRAP,
  async fn() {
    await using root = await makeRoot();
    // A port chosen here, so that the agent comes back on it with what it kept.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const first = "first-master-token";
    const second = "second-master-token";
    await using ws = await tempWorkspace({ "data.txt": "the first master's data\n" });
    // The same directory, host and user: both masters send the same workspace key.
    const inode = async (token: string) => {
      await using agent = await tokenAgent(root.dir, { token, port });
      await Deno.writeTextFile(
        `${ws.dir}/workflow.lua`,
        `TaskDefinitions = { g = { tasks = { { name = "ino", delegate_to = "${agent.address}",
          command = "echo inode=$(stat -c %i data.txt)" } } } }`,
      );
      const r = await run(ws.dir, token);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return /\] inode=(\d+)$/m.exec(r.stdout)![1];
    };
    const kept = await inode(first);
    assert.equal(await inode(first), kept, "the first master's workspace is kept");
    assert.notEqual(await inode(second), kept, "the second master gets a fresh one");
    // The agent's secret outlasts its restarts: the first master finds its own again.
    assert.equal(await inode(first), kept);
  },
});

Deno.test({
  name: "with mutual TLS, a master with another client certificate gets a workspace of its own",
  ignore: !BWRAP,
  async fn() {
    await using certs = await makeCerts();
    // A second client certificate from the same CA: a second master the agent accepts.
    const openssl = async (...args: string[]) => {
      const out = await new Deno.Command("openssl", { args, cwd: certs.dir }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
    };
    await openssl(
      "req",
      ..."-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes".split(" "),
      ..."-keyout second.key -out second.csr -subj /CN=second".split(" "),
    );
    await Deno.writeTextFile(`${certs.dir}/second.ext`, "extendedKeyUsage=clientAuth\n");
    await openssl(
      ..."x509 -req -in second.csr -CA ca.pem -CAkey ca.key -CAcreateserial".split(" "),
      ..."-out second.pem -days 30 -extfile second.ext".split(" "),
    );
    await using root = await makeRoot();
    await using agent = await startAgent({
      args: [
        "--work-root",
        `${root.dir}/work`,
        "--tls-cert",
        certs.agentCert,
        "--tls-key",
        certs.agentKey,
        "--tls-client-ca",
        certs.ca,
      ],
    });
    assert.match(agent.log(), /mutual TLS/);
    await using ws = await tempWorkspace({
      "data.txt": "the first master's data\n",
      "workflow.lua": `TaskDefinitions = { g = { tasks = { { name = "ino",
        delegate_to = "${agent.address}", command = "echo inode=$(stat -c %i data.txt)" } } } }`,
    });
    const inode = async (cert: string, key: string) => {
      const r = await run(ws.dir, undefined, [
        "--tls-ca",
        certs.ca,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return /\] inode=(\d+)$/m.exec(r.stdout)![1];
    };
    const kept = await inode(certs.clientCert, certs.clientKey);
    assert.equal(await inode(certs.clientCert, certs.clientKey), kept);
    assert.notEqual(
      await inode(`${certs.dir}/second.pem`, `${certs.dir}/second.key`),
      kept,
      "another certificate, another workspace",
    );
    assert.equal(await inode(certs.clientCert, certs.clientKey), kept);
  },
});

/** TLS and mutual TLS between a master and agents, with certificates made at test time. */
import assert from "node:assert/strict";
import { serveAgent } from "../../lib/rpc/mod.ts";
import { startAgent } from "../_helpers/agent.ts";
import { makeCerts } from "../_helpers/certs.ts";
import { cliProcess, executable, snapshot, tempWorkspace } from "../_helpers/mod.ts";

const certs = await makeCerts();
globalThis.addEventListener("unload", () => Deno.removeSync(certs.dir, { recursive: true }));

function workflow(address: string, agentFields = ""): string {
  return `TaskDefinitions = { g = { agents = { a = { address = "${address}" ${agentFields} } }, tasks = {
    { name = "t", agent = "a", command = "echo over tls; touch ran" } } } }`;
}

Deno.test("TLS: a master that trusts the agent's CA runs the task; one without TLS gets one clear line", async () => {
  await using agent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey],
  });
  assert.match(agent.log(), /, TLS, /);
  await using ws = await tempWorkspace({ "workflow.lua": workflow(agent.address) });
  const ok = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.ca], { cwd: ws.dir });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /\] over tls$/m);

  const plain = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(plain.code, 1);
  assert.match(
    plain.stdout,
    /^t\s+failed .* unreachable: it serves TLS and this master talked plaintext \(pass --tls-ca with the CA that signed its certificate\)$/m,
  );
});

Deno.test("TLS: SLOTH_TLS_CA and a tls table in the agent's definition work like --tls-ca", async () => {
  await using agent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey],
  });
  await using ws = await tempWorkspace({ "workflow.lua": workflow(agent.address) });
  const env = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { SLOTH_TLS_CA: certs.ca },
  });
  assert.equal(env.code, 0, env.stdout + env.stderr);
  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    workflow(agent.address, `, tls = { ca = "${certs.ca}" }`),
  );
  const table = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(table.code, 0, table.stdout + table.stderr);
});

Deno.test("TLS: the token keeps working over TLS", async () => {
  await using agent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey],
    env: { SLOTH_AGENT_TOKEN: "tls-token" },
  });
  await using ws = await tempWorkspace({ "workflow.lua": workflow(agent.address) });
  const wrong = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.ca], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: "nope" },
  });
  assert.match(wrong.stdout, /refused the token/);
  const right = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.ca], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: "tls-token" },
  });
  assert.equal(right.code, 0, right.stdout + right.stderr);
});

Deno.test("mutual TLS: the agent accepts only client certificates its CA signed", async () => {
  await using agent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey, "--tls-client-ca", certs.ca],
  });
  assert.match(agent.log(), /mutual TLS/);
  await using ws = await tempWorkspace({ "workflow.lua": workflow(agent.address) });
  const none = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.ca], {
    cwd: ws.dir,
  });
  assert.equal(none.code, 1);
  assert.match(
    none.stderr,
    /requires a client certificate \(mutual TLS\); pass --tls-cert and --tls-key/,
  );

  const stranger = await cliProcess([
    "run",
    "-f",
    "workflow.lua",
    "--tls-ca",
    certs.ca,
    "--tls-cert",
    certs.strangerCert,
    "--tls-key",
    certs.strangerKey,
  ], { cwd: ws.dir });
  assert.equal(stranger.code, 1);
  assert.match(
    stranger.stderr,
    /the agent refused this master's client certificate .*stranger\.pem/,
  );
  assert.ok(!(await snapshot(ws.dir))["ran"]);
  assert.doesNotMatch(agent.log(), /job \d/);

  await Deno.writeTextFile(
    `${ws.dir}/workflow.lua`,
    workflow(
      agent.address,
      `, tls = { ca = "${certs.ca}", cert = "${certs.clientCert}", key = "${certs.clientKey}" }`,
    ),
  );
  const good = await cliProcess(["run", "-f", "workflow.lua"], { cwd: ws.dir });
  assert.equal(good.code, 0, good.stdout + good.stderr);
  assert.equal((await snapshot(ws.dir))["ran"], "");
});

Deno.test("TLS: a certificate from another CA, or for another name, is named with the reason", async () => {
  await using agent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey],
  });
  await using ws = await tempWorkspace({ "workflow.lua": workflow(agent.address) });
  const otherCa = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.otherCa], {
    cwd: ws.dir,
  });
  assert.equal(otherCa.code, 1);
  assert.match(
    otherCa.stderr,
    /TLS handshake failed: the agent's certificate \(CN=test agent\) was rejected: it is not signed by the CA in .*other-ca\.pem \(CN=other-ca\)/,
  );

  await using wrongName = await startAgent({
    args: ["--tls-cert", certs.wrongNameCert, "--tls-key", certs.agentKey],
  });
  await Deno.writeTextFile(`${ws.dir}/workflow.lua`, workflow(wrongName.address));
  const name = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.ca], {
    cwd: ws.dir,
  });
  assert.equal(name.code, 1);
  assert.match(
    name.stderr,
    /was rejected: it is not for 127\.0\.0\.1 \(subjectAltName: DNS:elsewhere\.example/,
  );
  assert.doesNotMatch(agent.log() + wrongName.log(), /job \d/);
});

Deno.test("an agent refuses to start with a v1 or an expired certificate, saying which and why", async () => {
  const v1 = await cliProcess([
    "agent",
    "-p",
    "0",
    "--tls-cert",
    certs.agentV1Cert,
    "--tls-key",
    certs.agentKey,
  ], {
    cwd: "/tmp",
  });
  assert.equal(v1.code, 2);
  assert.match(
    v1.stderr,
    /agent certificate .*agent-v1\.pem \(CN=test agent\) is X\.509 v1; Deno's TLS needs v3/,
  );
  const expired = await cliProcess([
    "agent",
    "-p",
    "0",
    "--tls-cert",
    certs.expiredCert,
    "--tls-key",
    certs.agentKey,
  ], {
    cwd: "/tmp",
  });
  assert.equal(expired.code, 2);
  assert.match(expired.stderr, /expired on 2020-02-01/);
});

for (
  const [label, cert, reason] of [
    ["a v1 certificate", certs.agentV1Cert, /it is an X\.509 v1 certificate \(Deno's TLS needs v3/],
    ["an expired certificate", certs.expiredCert, /it expired on 2020-02-01/],
  ] as const
) {
  Deno.test({
    name: `the master says when an agent serves ${label}`,
    sanitizeOps: false,
    sanitizeResources: false,
  }, async () => {
    // Our agent refuses such certificates, so this one is a bare server.
    const server = await serveAgent({
      runTask: () => Promise.reject(new Error("not reached")),
      ping: () => ({
        version: "x",
        protocol: 2,
        running_jobs: 0,
        queued_jobs: 0,
        max_concurrent: 1,
      }),
    }, { host: "127.0.0.1", port: 0, tls: { cert, key: certs.agentKey } });
    try {
      await using ws = await tempWorkspace({
        "workflow.lua": workflow(`127.0.0.1:${server.port}`),
      });
      const r = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", certs.ca], {
        cwd: ws.dir,
      });
      assert.equal(r.code, 1);
      assert.match(r.stderr, reason);
    } finally {
      await server.close(100);
    }
  });
}

/** `agent ping ADDRESS ...args` from `cwd`. */
function ping(address: string, args: string[], cwd: string) {
  return cliProcess(["agent", "ping", address, ...args], { cwd });
}

/**
 * `sloth-runner agent -p 0 ...args`, expected to refuse to start. One that starts
 * anyway is stopped once it says it listens, so that the test fails instead of hanging.
 */
async function agentRefuses(args: string[], cwd: string) {
  const run = executable("sloth-runner", ["agent", "-p", "0", ...args]);
  const child = new Deno.Command(run.command, {
    args: run.args,
    cwd,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stderr) {
      stderr += decoder.decode(chunk, { stream: true });
      if (/listening on/.test(stderr)) child.kill("SIGTERM");
    }
  })();
  const [status, stdout] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    reading,
  ]);
  return { code: status.code, stdout, stderr };
}

Deno.test("a --tls-ca that is not a certificate is one line naming the file, not a crash", async () => {
  await using agent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey],
  });
  await using ws = await tempWorkspace({
    "junk.pem": "garbage\n",
    "workflow.lua": workflow(agent.address),
  });
  const junk = await ping(agent.address, ["--tls-ca", "junk.pem"], ws.dir);
  assert.equal(junk.code, 2);
  assert.equal(
    junk.stderr,
    "error: CA certificate junk.pem is not a PEM certificate (it has no BEGIN CERTIFICATE block)\n" +
      "hint: --tls-ca (or SLOTH_TLS_CA, or tls.ca of the agent) takes the PEM certificate of the " +
      "CA that signed the agent's certificate\n",
  );
  const key = await ping(agent.address, ["--tls-ca", certs.agentKey], ws.dir);
  assert.equal(key.code, 2);
  assert.match(
    key.stderr,
    /^error: CA certificate .*agent\.key is not a PEM certificate \(it holds a private key\)\n/,
  );

  const run = await cliProcess(["run", "-f", "workflow.lua", "--tls-ca", "junk.pem"], {
    cwd: ws.dir,
  });
  assert.notEqual(run.code, 0);
  assert.doesNotMatch(run.stderr, /Uncaught|certFacts|internal error/);
  assert.match(
    run.stdout + run.stderr,
    /CA certificate junk\.pem is not a PEM certificate \(it has no BEGIN CERTIFICATE block\)/,
  );
  assert.ok(!(await snapshot(ws.dir))["ran"]);
  assert.doesNotMatch(agent.log(), /job \d/);
});

Deno.test("an agent refuses to start with a key that is not its certificate's, naming both files", async () => {
  const r = await agentRefuses(
    ["--tls-cert", certs.agentCert, "--tls-key", certs.clientKey],
    certs.dir,
  );
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `error: agent key ${certs.clientKey} does not match agent certificate ${certs.agentCert} ` +
      "(CN=test agent)\n" +
      `hint: --tls-key takes the private key that ${certs.agentCert} was issued for ` +
      "(the one its certificate request was made with)\n",
  );
  assert.doesNotMatch(r.stderr, /listening/);
});

Deno.test("an agent refuses to start when --tls-client-ca is not a certificate", async () => {
  await using ws = await tempWorkspace({ "junk.pem": "garbage\n" });
  const r = await agentRefuses([
    "--tls-cert",
    certs.agentCert,
    "--tls-key",
    certs.agentKey,
    "--tls-client-ca",
    "junk.pem",
  ], ws.dir);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "error: client CA junk.pem is not a PEM certificate (it has no BEGIN CERTIFICATE block)\n" +
      "hint: --tls-client-ca takes the PEM certificate of the CA that signed the masters' " +
      "client certificates\n",
  );
});

Deno.test("missing TLS files are usage errors with a hint, on the agent and on the master", async () => {
  await using ws = await tempWorkspace();
  const cert = await agentRefuses(["--tls-cert", "nope.pem", "--tls-key", certs.agentKey], ws.dir);
  assert.equal(cert.code, 2);
  assert.equal(
    cert.stderr,
    "error: cannot read agent certificate nope.pem: it does not exist\n" +
      "hint: --tls-cert takes the agent's certificate (PEM, X.509 v3); check the path\n",
  );
  const key = await agentRefuses(["--tls-cert", certs.agentCert, "--tls-key", "nope.key"], ws.dir);
  assert.equal(key.code, 2);
  assert.equal(
    key.stderr,
    "error: cannot read agent key nope.key: it does not exist\n" +
      "hint: --tls-key takes the PEM private key of --tls-cert; check the path\n",
  );

  await using agent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey],
  });
  const ca = await ping(agent.address, ["--tls-ca", "nope.pem"], ws.dir);
  assert.equal(ca.code, 2);
  assert.equal(
    ca.stderr,
    "error: cannot read CA certificate nope.pem: it does not exist\n" +
      "hint: --tls-ca (or SLOTH_TLS_CA, or tls.ca of the agent) takes the PEM certificate of the " +
      "CA that signed the agent's certificate; check the path\n",
  );
  // A client certificate with another certificate's key, found before connecting.
  const wrongKey = await ping(agent.address, [
    "--tls-ca",
    certs.ca,
    "--tls-cert",
    certs.clientCert,
    "--tls-key",
    certs.agentKey,
  ], ws.dir);
  assert.equal(wrongKey.code, 2);
  assert.match(
    wrongKey.stderr,
    /^error: client key .*agent\.key does not match client certificate .*client\.pem \(CN=test master\)\n/,
  );
  assert.doesNotMatch(agent.log(), /job \d/);
});

Deno.test("TLS to a plaintext agent, and plaintext to a TLS agent, each say so", async () => {
  await using plainAgent = await startAgent();
  await using ws = await tempWorkspace();
  const tlsToPlain = await ping(plainAgent.address, ["--tls-ca", certs.ca], ws.dir);
  assert.equal(tlsToPlain.code, 1);
  assert.equal(
    tlsToPlain.stderr,
    `error: agent ${plainAgent.address} does not serve TLS ` +
      "(drop --tls-ca, or start the agent with --tls-cert and --tls-key)\n",
  );

  await using tlsAgent = await startAgent({
    args: ["--tls-cert", certs.agentCert, "--tls-key", certs.agentKey],
  });
  const plainToTls = await ping(tlsAgent.address, [], ws.dir);
  assert.equal(plainToTls.code, 1);
  assert.equal(
    plainToTls.stderr,
    `error: agent ${tlsAgent.address} unreachable: it serves TLS and this master talked ` +
      "plaintext (pass --tls-ca with the CA that signed its certificate)\n",
  );
});

Deno.test({
  name: "plaintext to something that is not an agent asks whether an agent listens there",
  // The listener's connections end when the child process does.
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  // An HTTP/1 server: answers 400 to anything and closes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          await conn.read(new Uint8Array(4096));
          await conn.write(new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
        } catch {
          // The client went first.
        } finally {
          try {
            conn.close();
          } catch {
            // Already closed.
          }
        }
      })();
    }
  })();
  try {
    await using ws = await tempWorkspace();
    const address = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    const r = await ping(address, [], ws.dir);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: agent ${address.replaceAll(".", "\\.")} unreachable: [^(]+ ` +
          "\\(is a sloth-runner agent listening there\\? if it serves TLS, pass --tls-ca\\)\\n$",
      ),
    );
    assert.doesNotMatch(r.stderr, /\d{4}-\d\d-\d\dT/);
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});

Deno.test("run refuses bad TLS files before any task runs: --tls-ca, and an agent's own tls table", async () => {
  await using ws = await tempWorkspace({
    "junk.pem": "garbage\n",
    "flag.lua": `TaskDefinitions = { g = { tasks = {
      { name = "here", command = "touch ran" },
      { name = "there", delegate_to = "127.0.0.1:1", command = "true" } } } }`,
    "table.lua": `TaskDefinitions = { g = {
      agents = { a = { address = "127.0.0.1:1", tls = { ca = "junk.pem" } } },
      tasks = {
        { name = "here", command = "touch ran" },
        { name = "there", agent = "a", command = "true" } } } }`,
  });
  for (const args of [["-f", "flag.lua", "--tls-ca", "junk.pem"], ["-f", "table.lua"]]) {
    const r = await cliProcess(["run", ...args], { cwd: ws.dir });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /^error: CA certificate (\S*\/)?junk\.pem is not a PEM certificate \(it has no BEGIN CERTIFICATE block\)\nhint: /,
    );
    await assert.rejects(Deno.stat(`${ws.dir}/ran`), Deno.errors.NotFound);
  }
});

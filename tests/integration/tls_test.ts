/** TLS and mutual TLS between a master and agents, with certificates made at test time. */
import assert from "node:assert/strict";
import { serveAgent } from "../../lib/rpc/mod.ts";
import { startAgent } from "../_helpers/agent.ts";
import { makeCerts } from "../_helpers/certs.ts";
import { cliProcess, snapshot, tempWorkspace } from "../_helpers/mod.ts";

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
  assert.match(plain.stdout, /^t\s+failed .* \(does it use TLS\? pass --tls-ca\)$/m);
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

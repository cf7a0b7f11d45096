import assert from "node:assert/strict";
import { SlothError } from "../errors.ts";
import { dnsServerSkip, startDnsServer, startSilentServer } from "../../tests/_helpers/dns.ts";
import { dnsSpecProblem, formatDnsServer, parseDnsServer, resolveDnsPool } from "./dns.ts";

const skip = await dnsServerSkip();
if (skip) console.log(`dns_test: name server cases skipped: ${skip}`);

/** A dnsmasq on loopback for one test; every look-up in these tests goes to it. */
async function withDns(
  records: Parameters<typeof startDnsServer>[0],
  body: (dns: { server: string; update: (r: typeof records) => Promise<void> }) => Promise<void>,
): Promise<void> {
  const dns = await startDnsServer(records);
  if ("skipped" in dns) throw new Error(dns.skipped);
  try {
    await body(dns);
  } finally {
    await dns.stop();
  }
}

async function dnsFailure(promise: Promise<unknown>): Promise<SlothError> {
  const error = await promise.then(() => undefined, (e) => e);
  assert.ok(error instanceof SlothError, `expected a SlothError, got ${error}`);
  return error;
}

Deno.test({
  name: 'resolveDnsPool() makes every A record of "name:port" a member with that port, sorted',
  ignore: skip !== undefined,
  fn: () =>
    withDns(
      { hosts: { "agents.sloth.test": ["127.0.0.3", "127.0.0.10", "127.0.0.2"] } },
      async (dns) => {
        assert.deepEqual(await resolveDnsPool("agents.sloth.test:50051", { server: dns.server }), [
          { name: "127.0.0.2:50051", address: "127.0.0.2:50051", host: "agents.sloth.test" },
          { name: "127.0.0.3:50051", address: "127.0.0.3:50051", host: "agents.sloth.test" },
          { name: "127.0.0.10:50051", address: "127.0.0.10:50051", host: "agents.sloth.test" },
        ]);
      },
    ),
});

Deno.test({
  name: "resolveDnsPool() takes AAAA records as bracketed addresses, alone or beside A records",
  ignore: skip !== undefined,
  fn: () =>
    withDns({
      hosts: { "six.sloth.test": ["::1"], "both.sloth.test": ["127.0.0.2", "fd00::5"] },
    }, async (dns) => {
      assert.deepEqual(await resolveDnsPool("six.sloth.test:7000", { server: dns.server }), [
        { name: "[::1]:7000", address: "[::1]:7000", host: "six.sloth.test" },
      ]);
      assert.deepEqual(await resolveDnsPool("both.sloth.test.:7000", { server: dns.server }), [
        { name: "[fd00::5]:7000", address: "[fd00::5]:7000", host: "both.sloth.test" },
        { name: "127.0.0.2:7000", address: "127.0.0.2:7000", host: "both.sloth.test" },
      ]);
    }),
});

Deno.test({
  name: "resolveDnsPool() turns SRV records into their targets' addresses with each record's port",
  ignore: skip !== undefined,
  fn: () =>
    withDns({
      hosts: {
        "b.sloth.test": ["127.0.0.3"],
        "a.sloth.test": ["127.0.0.2"],
        "multi.sloth.test": ["127.0.0.4", "::1"],
        "alias.sloth.test": ["127.0.0.2"],
      },
      srv: [
        { name: "_sloth._tcp.sloth.test", target: "b.sloth.test", port: 50052 },
        { name: "_sloth._tcp.sloth.test", target: "a.sloth.test", port: 50051, priority: 1 },
        { name: "_sloth._tcp.sloth.test", target: "a.sloth.test", port: 50055, weight: 5 },
        { name: "_sloth._tcp.sloth.test", target: "multi.sloth.test", port: 6000 },
        // The same address and port as a.sloth.test:50051: one member, not two.
        { name: "_sloth._tcp.sloth.test", target: "alias.sloth.test", port: 50051 },
      ],
    }, async (dns) => {
      assert.deepEqual(await resolveDnsPool("_sloth._tcp.sloth.test", { server: dns.server }), [
        { name: "[::1]:6000", address: "[::1]:6000", host: "multi.sloth.test" },
        { name: "127.0.0.4:6000", address: "127.0.0.4:6000", host: "multi.sloth.test" },
        { name: "a.sloth.test:50051", address: "127.0.0.2:50051", host: "a.sloth.test" },
        { name: "a.sloth.test:50055", address: "127.0.0.2:50055", host: "a.sloth.test" },
        { name: "b.sloth.test:50052", address: "127.0.0.3:50052", host: "b.sloth.test" },
      ]);
    }),
});

Deno.test({
  name: "resolveDnsPool() says which name does not exist, on which server",
  ignore: skip !== undefined,
  fn: () =>
    withDns({
      hosts: { "a.sloth.test": ["127.0.0.2"] },
      srv: [
        { name: "_sloth._tcp.sloth.test", target: "a.sloth.test", port: 1 },
        { name: "_sloth._tcp.sloth.test", target: "gone.sloth.test", port: 2 },
      ],
    }, async (dns) => {
      const error = await dnsFailure(
        resolveDnsPool("nope.sloth.test:50051", { server: dns.server }),
      );
      assert.equal(error.code, "dns_failed");
      assert.equal(error.exitCode, 1);
      assert.equal(
        error.message,
        `cannot resolve DNS pool "nope.sloth.test:50051" with ${dns.server}: no such name`,
      );
      assert.equal(
        (await dnsFailure(resolveDnsPool("_nope._tcp.sloth.test", { server: dns.server }))).message,
        `cannot resolve DNS pool "_nope._tcp.sloth.test" with ${dns.server}: no such name`,
      );
      assert.equal(
        (await dnsFailure(resolveDnsPool("_sloth._tcp.sloth.test", { server: dns.server })))
          .message,
        `cannot resolve DNS pool "_sloth._tcp.sloth.test" with ${dns.server}: ` +
          `SRV target "gone.sloth.test": no such name`,
      );
    }),
});

Deno.test({
  name: "resolveDnsPool() tells a name without address records, and a refusal, from a missing name",
  ignore: skip !== undefined,
  fn: () =>
    withDns({
      hosts: { "a.sloth.test": ["127.0.0.2"] },
      // A name that exists (it has an SRV record) but has no A or AAAA records.
      srv: [{ name: "srv-only.sloth.test", target: "a.sloth.test", port: 1 }],
    }, async (dns) => {
      assert.equal(
        (await dnsFailure(resolveDnsPool("srv-only.sloth.test:1", { server: dns.server }))).message,
        `cannot resolve DNS pool "srv-only.sloth.test:1" with ${dns.server}: no A or AAAA records`,
      );
      assert.equal(
        (await dnsFailure(resolveDnsPool("_x._tcp.a.sloth.test", { server: dns.server }))).message,
        `cannot resolve DNS pool "_x._tcp.a.sloth.test" with ${dns.server}: no such name`,
      );
      // Outside .test the helper's dnsmasq has no upstream to ask, and refuses.
      assert.equal(
        (await dnsFailure(resolveDnsPool("agents.example:50051", { server: dns.server }))).message,
        `cannot resolve DNS pool "agents.example:50051" with ${dns.server}: refused`,
      );
    }),
});

Deno.test({
  name: 'resolveDnsPool() calls a pool whose every SRV target is "." empty, an error',
  ignore: skip !== undefined,
  fn: () =>
    withDns({ srv: [{ name: "_off._tcp.sloth.test", target: "", port: 1 }] }, async (dns) => {
      const error = await dnsFailure(
        resolveDnsPool("_off._tcp.sloth.test", { server: dns.server }),
      );
      assert.equal(error.code, "dns_failed");
      assert.equal(
        error.message,
        `cannot resolve DNS pool "_off._tcp.sloth.test" with ${dns.server}: ` +
          `the pool has no members (every SRV target is ".")`,
      );
    }),
});

Deno.test("resolveDnsPool() gives up on a server that never answers by its deadline", async () => {
  const silent = await startSilentServer();
  try {
    const started = Date.now();
    const error = await dnsFailure(
      resolveDnsPool("agents.sloth.test:50051", { server: silent.server, timeoutMs: 300 }),
    );
    const took = Date.now() - started;
    assert.equal(
      error.message,
      `cannot resolve DNS pool "agents.sloth.test:50051" with ${silent.server}: ` +
        `no answer within 300ms`,
    );
    assert.ok(silent.received() > 0, "the query reached the silent server");
    // Deno's resolver would wait about 2s on its own: the deadline is what ended it.
    assert.ok(took < 1800, `took ${took}ms`);
  } finally {
    await silent.stop();
  }
});

Deno.test({
  name: "resolveDnsPool() asks SLOTH_DNS_SERVER when no server is given, and the option wins",
  ignore: skip !== undefined,
  fn: () =>
    withDns({ hosts: { "agents.sloth.test": ["127.0.0.2"] } }, async (dns) => {
      const silent = await startSilentServer();
      try {
        Deno.env.set("SLOTH_DNS_SERVER", dns.server);
        assert.deepEqual(await resolveDnsPool("agents.sloth.test:1"), [
          { name: "127.0.0.2:1", address: "127.0.0.2:1", host: "agents.sloth.test" },
        ]);
        Deno.env.set("SLOTH_DNS_SERVER", silent.server);
        assert.equal(
          (await resolveDnsPool("agents.sloth.test:1", { server: dns.server })).length,
          1,
        );
        assert.equal(silent.received(), 0);
      } finally {
        Deno.env.delete("SLOTH_DNS_SERVER");
        await silent.stop();
      }
    }),
});

Deno.test("resolveDnsPool() names SLOTH_DNS_SERVER when it is malformed, before any look-up", async () => {
  Deno.env.set("SLOTH_DNS_SERVER", "dns.internal:53");
  try {
    const error = await dnsFailure(resolveDnsPool("agents.sloth.test:1"));
    assert.equal(error.code, "usage");
    assert.equal(
      error.message,
      'SLOTH_DNS_SERVER="dns.internal:53" is not a name server: expected an IP address and port, ' +
        'such as "127.0.0.1:5353" or "[::1]:5353", or an IP address alone for port 53',
    );
    assert.match(error.hint ?? "", /by its IP address/);
  } finally {
    Deno.env.delete("SLOTH_DNS_SERVER");
  }
});

Deno.test("resolveDnsPool() refuses a malformed spec before any look-up", async () => {
  const error = await dnsFailure(resolveDnsPool("agents.sloth.test", { server: "127.0.0.1:9" }));
  assert.equal(error.code, "usage");
  assert.equal(
    error.message,
    'DNS pool "agents.sloth.test" must be "name:port" or an SRV name "_service._proto.name"',
  );
});

Deno.test({
  name: "the test name server's update() changes the answer the next look-up gets",
  ignore: skip !== undefined,
  fn: () =>
    withDns({
      hosts: { "agents.sloth.test": ["127.0.0.2", "127.0.0.3"], "c.sloth.test": ["127.0.0.4"] },
      srv: [{ name: "_sloth._tcp.sloth.test", target: "c.sloth.test", port: 1 }],
    }, async (dns) => {
      const members = async (spec: string) =>
        (await resolveDnsPool(spec, { server: dns.server })).map((m) => m.address);
      assert.deepEqual(await members("agents.sloth.test:1"), ["127.0.0.2:1", "127.0.0.3:1"]);
      // New hosts: re-read on SIGHUP.
      await dns.update({
        hosts: { "agents.sloth.test": ["127.0.0.3", "127.0.0.5"], "c.sloth.test": ["127.0.0.4"] },
        srv: [{ name: "_sloth._tcp.sloth.test", target: "c.sloth.test", port: 1 }],
      });
      assert.deepEqual(await members("agents.sloth.test:1"), ["127.0.0.3:1", "127.0.0.5:1"]);
      assert.deepEqual(await members("_sloth._tcp.sloth.test"), ["127.0.0.4:1"]);
      // New SRV records: dnsmasq restarted on the same port.
      await dns.update({
        hosts: { "c.sloth.test": ["127.0.0.4"] },
        srv: [{ name: "_sloth._tcp.sloth.test", target: "c.sloth.test", port: 2 }],
      });
      assert.deepEqual(await members("_sloth._tcp.sloth.test"), ["127.0.0.4:2"]);
      assert.match(
        (await dnsFailure(members("agents.sloth.test:1"))).message,
        /: no such name$/,
      );
    }),
});

Deno.test("parseDnsServer() reads ip:port, [v6]:port and a bare address for port 53", () => {
  assert.deepEqual(parseDnsServer("127.0.0.1:5353", "X"), { ipAddr: "127.0.0.1", port: 5353 });
  assert.deepEqual(parseDnsServer("10.0.0.2", "X"), { ipAddr: "10.0.0.2", port: 53 });
  assert.deepEqual(parseDnsServer("[::1]:5353", "X"), { ipAddr: "::1", port: 5353 });
  assert.deepEqual(parseDnsServer("[fd00::53]", "X"), { ipAddr: "fd00::53", port: 53 });
  assert.deepEqual(parseDnsServer("fd00::53", "X"), { ipAddr: "fd00::53", port: 53 });
  assert.deepEqual(parseDnsServer(" 127.0.0.1:53 ", "X"), { ipAddr: "127.0.0.1", port: 53 });
});

Deno.test("parseDnsServer() refuses names, bad ports and broken addresses, naming the source", () => {
  for (
    const bad of [
      "",
      "dns.internal",
      "127.0.0.1:0",
      "127.0.0.1:65536",
      "127.0.0.1:dns",
      "256.0.0.1:53",
      "127.1:53",
      "[::1",
      "[::g]:53",
      "fd00:::53:1::2",
      "[127.0.0.1]:53",
    ]
  ) {
    assert.throws(
      () => parseDnsServer(bad, "SLOTH_DNS_SERVER"),
      (e: unknown) =>
        e instanceof SlothError && e.code === "usage" &&
        e.message.startsWith(`SLOTH_DNS_SERVER="${bad}" is not a name server`),
      bad,
    );
  }
});

Deno.test("formatDnsServer() brackets IPv6 and names the system resolver", () => {
  assert.equal(formatDnsServer({ ipAddr: "127.0.0.1", port: 53 }), "127.0.0.1:53");
  assert.equal(formatDnsServer({ ipAddr: "::1", port: 5353 }), "[::1]:5353");
  assert.equal(formatDnsServer(undefined), "the system resolver");
});

Deno.test("dnsSpecProblem() accepts name:port and SRV names, and says what is wrong otherwise", () => {
  for (
    const good of [
      "sloth-agents.ci.svc.cluster.local:50051",
      "agents:50051",
      "agents.example.:1",
      "_sloth._tcp.agents.example",
      "_sloth._tcp.agents.example.",
      "_grpc._udp.x",
    ]
  ) {
    assert.equal(dnsSpecProblem(good), undefined, good);
  }
  const shape = 'must be "name:port" or an SRV name "_service._proto.name"';
  assert.equal(dnsSpecProblem(""), shape);
  assert.equal(dnsSpecProblem("agents.example"), shape);
  assert.equal(dnsSpecProblem("agents.example:"), shape);
  assert.equal(dnsSpecProblem("agents.example:http"), shape);
  assert.equal(dnsSpecProblem("agents.example:0"), "has port 0: a port is 1 to 65535");
  assert.equal(dnsSpecProblem("agents.example:70000"), "has port 70000: a port is 1 to 65535");
  assert.equal(
    dnsSpecProblem("_sloth._tcp.agents.example:50051"),
    'is an SRV name, whose records carry the ports: drop ":port"',
  );
  const notName = (name: string) =>
    `has "${name}", which is not a DNS name (letters, digits, "-" and "_" between dots)`;
  const ip = "is an IP address, not a name to look up: list it as an agent instead";
  assert.equal(dnsSpecProblem("10.0.0.5:50051"), ip);
  assert.equal(dnsSpecProblem("[fd00::5]:50051"), ip);
  assert.equal(dnsSpecProblem("fd00::5:50051"), ip);
  assert.equal(dnsSpecProblem("not:a:name:1"), notName("not:a:name"));
  assert.equal(dnsSpecProblem("bad..name:1"), notName("bad..name"));
  assert.equal(dnsSpecProblem("-dash.example:1"), notName("-dash.example"));
  assert.equal(dnsSpecProblem("sp ace.example:1"), notName("sp ace.example"));
  assert.equal(dnsSpecProblem(`${"a".repeat(64)}.example:1`), notName(`${"a".repeat(64)}.example`));
  assert.equal(dnsSpecProblem("_sloth._tcp..x"), notName("_sloth._tcp..x"));
});

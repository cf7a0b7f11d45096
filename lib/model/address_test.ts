import assert from "node:assert/strict";
import { hasAddressShape, isLoopbackHost, parseAddress } from "./address.ts";

Deno.test("parseAddress() takes host:port and [v6]:port with a port from 1 to 65535", () => {
  assert.deepEqual(parseAddress("127.0.0.1:50051"), { host: "127.0.0.1", port: 50051 });
  assert.deepEqual(parseAddress("build-1.example.com:7000"), {
    host: "build-1.example.com",
    port: 7000,
  });
  assert.deepEqual(parseAddress("[::1]:1"), { host: "[::1]", port: 1 });
  for (const bad of ["localhost", "127.0.0.1:0", "127.0.0.1:99999", "h:port", "a b:1", ":1"]) {
    assert.equal(parseAddress(bad), undefined, bad);
  }
  assert.ok(hasAddressShape("127.0.0.1:99999"));
  assert.ok(!hasAddressShape("h:port"));
});

Deno.test("isLoopbackHost() knows 127/8, ::1 and localhost, and nothing else", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]) {
    assert.ok(isLoopbackHost(host), host);
  }
  for (const host of ["0.0.0.0", "10.0.0.5", "127.example.com", "localhost.evil"]) {
    assert.ok(!isLoopbackHost(host), host);
  }
});

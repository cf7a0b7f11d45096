import assert from "node:assert/strict";
import { AgentClient, cleanDetails } from "./client.ts";

/**
 * grpc-js's own texts, captured from real failing calls against real agents
 * (grpc-js 1.14.7, Deno 2.9.6): `code` and `details` as the callback got them.
 */
const CAPTURED = {
  /** Ping to a port where no agent was started. */
  notStarted: {
    code: 14,
    details:
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ",
  },
  /** A second channel to that port, while the first is in its back-off. */
  newChannelDuringBackoff: {
    code: 14,
    details: "No connection established. Last error: null. Resolution note: ",
  },
  /** A port that accepted the connection, then closed it. */
  closedAfterConnect: {
    code: 14,
    details:
      "No connection established. Last error: write EPIPE (2026-12-06T00:43:57.312Z). Resolution note: ",
  },
  /** The agent SIGKILLed while a RunTask call waited for its result. */
  killedMidCall: { code: 14, details: "Connection dropped" },
  killedMidCallReset: { code: 14, details: "read ECONNRESET" },
  killedMidUpload: { code: 14, details: "Write error: write ECANCELED" },
  /** A call on a connection whose agent was SIGKILLed a moment before. */
  killedBeforeCall: {
    code: 13,
    details:
      "Received RST_STREAM with code 2 triggered by internal client error: This socket has been ended by the other party",
  },
  killedBeforeCallEpipe: {
    code: 13,
    details: "Received RST_STREAM with code 2 triggered by internal client error: write EPIPE",
  },
  /** The agent ended the stream of a running call without a status. */
  endedWithoutStatus: {
    code: 13,
    details: "Received RST_STREAM with code 0 (Call ended without gRPC status)",
  },
};

function describe(error: unknown) {
  const client = new AgentClient("127.0.0.1:1");
  try {
    return client.describe(error);
  } finally {
    client.close();
  }
}

function asServiceError(captured: { code: number; details: string }) {
  return Object.assign(new Error(`${captured.code} UNAVAILABLE: ${captured.details}`), captured);
}

const HINT = "(did the agent stop or restart? its log says why; the task's retries apply)";

Deno.test("describe() says an agent that was never started is unreachable, with the port to start it on", () => {
  const error = describe(asServiceError(CAPTURED.notStarted));
  assert.equal(error.kind, "unreachable");
  assert.equal(
    error.message,
    "agent 127.0.0.1:1 unreachable: connect ECONNREFUSED 127.0.0.1:1 " +
      "(is an agent running there? start one with: sloth-runner agent -p 1)",
  );
});

Deno.test('describe() never says "null" for a channel that shares a failed connection', () => {
  const error = describe(asServiceError(CAPTURED.newChannelDuringBackoff));
  assert.equal(error.kind, "unreachable");
  assert.equal(error.message, "agent 127.0.0.1:1 unreachable: no connection could be made");
});

Deno.test("describe() drops grpc-js's timestamp from a connection closed after connect", () => {
  const error = describe(asServiceError(CAPTURED.closedAfterConnect));
  assert.equal(error.kind, "unreachable");
  assert.equal(error.message, "agent 127.0.0.1:1 unreachable: write EPIPE");
});

Deno.test("describe() says an agent killed under a call is lost, so that retries wait for it", () => {
  const expected: [keyof typeof CAPTURED, string][] = [
    ["killedMidCall", "Connection dropped"],
    ["killedMidCallReset", "read ECONNRESET"],
    ["killedMidUpload", "Write error: write ECANCELED"],
    ["killedBeforeCall", "This socket has been ended by the other party"],
    ["killedBeforeCallEpipe", "write EPIPE"],
    ["endedWithoutStatus", "Received RST_STREAM with code 0 (Call ended without gRPC status)"],
  ];
  for (const [name, details] of expected) {
    const error = describe(asServiceError(CAPTURED[name]));
    assert.equal(error.kind, "lost", name);
    assert.equal(error.message, `agent 127.0.0.1:1 lost: ${details} ${HINT}`, name);
  }
});

Deno.test("describe() says a write to a call that ended is a lost agent, not a protocol error", () => {
  for (const message of ["the stream closed", "the call is over"]) {
    const error = describe(new Error(message));
    assert.equal(error.kind, "lost");
    assert.equal(error.message, `agent 127.0.0.1:1 lost: the connection closed ${HINT}`);
  }
});

Deno.test("describe() keeps an internal error that is not a lost connection a protocol error", () => {
  const error = describe(
    asServiceError({
      code: 13,
      details: "Received RST_STREAM with code 2 (Internal server error)",
    }),
  );
  assert.equal(error.kind, "protocol");
  assert.equal(
    error.message,
    "agent 127.0.0.1:1: Received RST_STREAM with code 2 (Internal server error)",
  );
});

Deno.test('describe() never puts "null" or "undefined" in a message, whatever it is given', () => {
  const odd: unknown[] = [
    null,
    undefined,
    {},
    { code: 14 },
    { code: 14, details: null },
    { code: 14, details: "null" },
    { code: 2, details: "undefined" },
    { code: 14, details: "No connection established. Last error: undefined. Resolution note: " },
    new Error(),
  ];
  for (const error of odd) {
    const described = describe(error);
    assert.doesNotMatch(described.message, /\bnull\b|\bundefined\b/, JSON.stringify(error));
    assert.match(described.message, /^agent 127\.0\.0\.1:1[: ]/);
    assert.doesNotMatch(described.message, /\[object Object\]|: $/);
  }
});

Deno.test("cleanDetails() reads grpc-js's last error and never returns nothing", () => {
  assert.equal(cleanDetails(CAPTURED.notStarted.details), "connect ECONNREFUSED 127.0.0.1:1");
  assert.equal(
    cleanDetails(CAPTURED.newChannelDuringBackoff.details),
    "no connection could be made",
  );
  assert.equal(cleanDetails(""), "the call failed without details");
  assert.equal(cleanDetails(null), "the call failed without details");
  assert.equal(cleanDetails("Connection dropped."), "Connection dropped");
});

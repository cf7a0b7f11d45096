import assert from "node:assert/strict";
import { exitStatusText } from "./result.ts";

Deno.test("exitStatusText() says which signal ended a process, never 'exit code null'", () => {
  assert.equal(exitStatusText({ reason: "exited", code: 2, signal: null }), "exit code 2");
  assert.equal(
    exitStatusText({ reason: "exited", code: null, signal: "SIGKILL" }),
    "killed by SIGKILL",
  );
  assert.equal(
    exitStatusText({ reason: "exited", code: null, signal: "SIGSEGV" }),
    "killed by SIGSEGV",
  );
  assert.equal(
    exitStatusText({ reason: "exited", code: null, signal: null }),
    "ended without an exit code",
  );
});

import assert from "node:assert/strict";
import { closest, didYouMean, ExitCode, SlothError } from "./errors.ts";

Deno.test("closest() picks a near typo or an abbreviation, and nothing when far off", () => {
  assert.equal(closest("biuld", ["build", "test"]), "build");
  assert.equal(closest("cmd", ["name", "command"]), "command");
  assert.equal(closest("dep", ["description", "depends_on"]), "depends_on");
  assert.equal(closest("zzzz", ["build", "test"]), undefined);
  assert.equal(didYouMean("tset", ["test"]), ' Did you mean "test"?');
  assert.equal(didYouMean("qqq", ["test"]), "");
});

Deno.test("SlothError maps its code to the documented exit code", () => {
  assert.equal(new SlothError("dependency_cycle", "x").exitCode, ExitCode.usage);
  assert.equal(new SlothError("lua_syntax", "x").exitCode, 2);
});

Deno.test("closest() counts a swap of neighbouring letters as one edit, so the closest name wins", () => {
  assert.equal(closest("wbe", ["db", "web"]), "web");
  assert.equal(closest("adress", ["address", "token_env", "tls", "compress"]), "address");
  assert.equal(closest("comamnd", ["command", "name"]), "command");
});

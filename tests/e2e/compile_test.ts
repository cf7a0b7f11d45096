/**
 * `deno task compile` where Deno's runtime (denort) cannot be had: one line saying
 * so, exit 1, no stack trace. Downloads go to a proxy on 127.0.0.1 that is not
 * there, so nothing leaves the machine. With DENORT_BIN set, `.ci/run` compiles
 * for real and the e2e tests run the results instead; these cases then skip.
 */
import assert from "node:assert/strict";
import { ROOT } from "../_helpers/mod.ts";

const REAL_DENORT = Deno.env.get("DENORT_BIN") !== undefined;
const OFFLINE = {
  HTTPS_PROXY: "http://127.0.0.1:9",
  HTTP_PROXY: "http://127.0.0.1:9",
  ALL_PROXY: "http://127.0.0.1:9",
  NO_PROXY: "",
  NO_COLOR: "1",
};

async function compileTask(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile", ...args],
    cwd: ROOT,
    env: { ...OFFLINE, ...env },
    stdin: "null",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  // `deno task` itself prints "Task compile <command>" first.
  const stderr = decode(out.stderr).split("\n").filter((l) => l && !/^Task compile /.test(l));
  return { code: out.code, stdout: decode(out.stdout), lines: stderr };
}

Deno.test({
  name: "deno task compile without a reachable denort says so in one line and exits 1",
  ignore: REAL_DENORT,
  fn: async () => {
    const r = await compileTask([], {});
    assert.equal(r.code, 1, r.lines.join("\n"));
    assert.equal(r.lines.length, 1, r.lines.join("\n"));
    assert.match(
      r.lines[0],
      /^error: cannot compile for this machine: deno compile needs Deno's runtime \(denort\), and it could not be downloaded from https:\/\/dl\.deno\.land\/release\/v[\d.]+\/denort-[\w-]+\.zip\. Set DENORT_BIN to a denort of the same Deno version for this target, or build on a machine that can reach dl\.deno\.land\.$/,
    );
    await assert.rejects(Deno.stat(`${ROOT}/dist/sloth-runner`), Deno.errors.NotFound);
  },
});

Deno.test({
  name: "deno task compile with a DENORT_BIN that is not a denort names it, in one line",
  ignore: REAL_DENORT,
  fn: async () => {
    const fake = await Deno.makeTempFile({ prefix: "not-denort-" });
    try {
      const r = await compileTask([], { DENORT_BIN: fake });
      assert.equal(r.code, 1);
      assert.equal(r.lines.length, 1, r.lines.join("\n"));
      assert.match(
        r.lines[0],
        new RegExp(
          `^error: cannot compile for this machine: .* \\(is DENORT_BIN=${fake} the denort of Deno [\\d.]+ for this machine\\?\\)$`,
        ),
      );
      await assert.rejects(Deno.stat(`${ROOT}/dist/sloth-runner`), Deno.errors.NotFound);
    } finally {
      await Deno.remove(fake);
    }
  },
});

Deno.test("deno task compile refuses a target it does not build, listing those it does", async () => {
  const r = await compileTask(["--target", "sparc-sun-solaris"], {});
  assert.equal(r.code, 2);
  assert.match(
    r.lines[0],
    /^error: unknown argument --target \(targets: x86_64-unknown-linux-gnu, /,
  );
  assert.match(r.lines[1], /^usage: deno task compile /);
  const assets = await compileTask(["--assets"], {});
  assert.equal(assets.code, 2);
  assert.match(assets.lines[0], /--assets needs --target or --all/);
});

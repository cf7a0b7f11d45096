/**
 * `deno task compile` where Deno's runtime (denort) cannot be had, or DENORT_BIN is
 * not one: one line saying so, exit 1, no stack trace, and nothing left in dist/.
 * Downloads go to a proxy on 127.0.0.1 that is not there, so nothing leaves the
 * machine. With DENORT_BIN set, `.ci/run` compiles for real and the e2e tests run
 * the results instead; the cases that would compile into dist/ then skip.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import denoJson from "../../deno.json" with { type: "json" };
import { runsAsBuilt } from "../../scripts/compile.ts";
import { TARGETS } from "../../scripts/executables.ts";
import { ROOT, tempWorkspace } from "../_helpers/mod.ts";

const REAL_DENORT = Deno.env.get("DENORT_BIN") !== undefined;
const VERSION = denoJson.version;
const DENO = Deno.version.deno;
const HERE = Deno.build.target;
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
  // `deno task` itself prints "Task compile <command>" first, and in a fresh clone
  // once before that its "Ignored build scripts" box (╭ … │ … ╰─), before compile.ts runs.
  const stderr = decode(out.stderr).split("\n")
    .filter((l) => l && !/^Task compile /.test(l) && !/^[╭│╰]/.test(l));
  return { code: out.code, stdout: decode(out.stdout), lines: stderr };
}

/** dist/ and every path under it, to show a failed build left it as it was. */
function distFiles(): string[] {
  const found: string[] = [];
  if (existsSync(`${ROOT}/dist`)) found.push(`${ROOT}/dist`);
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      found.push(`${dir}/${entry.name}`);
      if (entry.isDirectory) walk(`${dir}/${entry.name}`);
    }
  };
  if (existsSync(`${ROOT}/dist`)) walk(`${ROOT}/dist`);
  return found.sort();
}

const DENORT_HINT =
  `set DENORT_BIN to the denort of Deno ${DENO} for ${HERE} (unzipped from https://dl.deno.land/release/v${DENO}/denort-${HERE}.zip), or unset it to have deno compile download one`;

Deno.test({
  name: "deno task compile without a reachable denort says so in one line and exits 1",
  ignore: REAL_DENORT,
  fn: async () => {
    const before = distFiles();
    const r = await compileTask([], {});
    assert.equal(r.code, 1, r.lines.join("\n"));
    assert.equal(r.lines.length, 1, r.lines.join("\n"));
    assert.match(
      r.lines[0],
      /^error: cannot compile for this machine: deno compile needs Deno's runtime \(denort\), and it could not be downloaded from https:\/\/dl\.deno\.land\/release\/v[\d.]+\/denort-[\w-]+\.zip\. Set DENORT_BIN to a denort of the same Deno version for this target, or build on a machine that can reach dl\.deno\.land\.$/,
    );
    // Not even the dist/ directory it made for the output stays behind.
    assert.deepEqual(distFiles(), before);
  },
});

Deno.test({
  name: "deno task compile with a DENORT_BIN that is not a denort names it, in one line",
  ignore: REAL_DENORT,
  fn: async () => {
    // Executable, so it passes the checks before deno compile, which then refuses it.
    const fake = await Deno.makeTempFile({ prefix: "not-denort-" });
    await Deno.chmod(fake, 0o755);
    try {
      const before = distFiles();
      const r = await compileTask([], { DENORT_BIN: fake });
      assert.equal(r.code, 1);
      assert.equal(r.lines.length, 1, r.lines.join("\n"));
      assert.match(
        r.lines[0],
        new RegExp(
          `^error: cannot compile for this machine: .* \\(is DENORT_BIN=${fake} the denort of Deno ${DENO} for ${HERE}\\?\\)$`,
        ),
      );
      assert.doesNotMatch(r.lines[0], /could not be downloaded/);
      assert.deepEqual(distFiles(), before);
    } finally {
      await Deno.remove(fake);
    }
  },
});

Deno.test("deno task compile says what is wrong with DENORT_BIN before compiling", async () => {
  await using work = await tempWorkspace({ "denort.zip": "PK\x03\x04 a zip, not unzipped" });
  const notExecutable = `${work.dir}/denort`;
  await Deno.writeTextFile(notExecutable, "\x7fELF");
  await Deno.chmod(notExecutable, 0o644);
  const cases: [string, string][] = [
    [
      `${work.dir}/missing/denort`,
      `error: cannot compile: DENORT_BIN=${work.dir}/missing/denort does not exist; ${DENORT_HINT}`,
    ],
    [
      work.dir,
      `error: cannot compile: DENORT_BIN=${work.dir} is a directory, not the denort file; ${DENORT_HINT}`,
    ],
    ["", `error: cannot compile: DENORT_BIN is set but empty; ${DENORT_HINT}`],
    [
      `${work.dir}/denort.zip`,
      `error: cannot compile: DENORT_BIN=${work.dir}/denort.zip is the zip; unzip it and set DENORT_BIN to the denort inside`,
    ],
  ];
  if (Deno.build.os !== "windows") {
    cases.push([
      notExecutable,
      `error: cannot compile: DENORT_BIN=${notExecutable} is not executable; if it is the denort of Deno ${DENO} for ${HERE}, chmod +x it, else ${DENORT_HINT}`,
    ]);
  }
  const before = distFiles();
  for (const [denort, line] of cases) {
    const r = await compileTask([], { DENORT_BIN: denort });
    assert.equal(r.code, 1, denort);
    assert.deepEqual(r.lines, [line]);
    assert.equal(r.stdout, "");
  }
  // Refused before deno compile ran: dist/ is as it was.
  assert.deepEqual(distFiles(), before);
});

// A denort must be an executable of this machine's format: deno compile puts the
// program into any such file. /bin/true becomes a "sloth-runner" that does nothing.
// Skipped where the files it would replace exist (a real build, .ci/run with DENORT_BIN).
const REPLACES_BUILD = ["", `/${HERE}`].some((dir) =>
  ["sloth-runner", "sloth-agent"].some((name) => existsSync(`${ROOT}/dist${dir}/${name}`))
);

Deno.test({
  name: "deno task compile runs what it built for this machine, and removes it if it does not run",
  ignore: REAL_DENORT || REPLACES_BUILD || Deno.build.os !== "linux" ||
    !existsSync("/bin/true") || !existsSync("/bin/echo"),
  fn: async () => {
    const before = distFiles();
    const want = `instead of "sloth-runner ${VERSION}"`;
    const hint = (denort: string) =>
      `is DENORT_BIN=${denort} the denort of Deno ${DENO} for ${HERE}?`;
    const quiet = await compileTask([], { DENORT_BIN: "/bin/true" });
    assert.equal(quiet.code, 1);
    assert.deepEqual(quiet.lines, [
      "error: the built dist/sloth-runner does not run: `sloth-runner version` printed nothing " +
      `and exited with 0, ${want}; ${hint("/bin/true")} (dist/sloth-runner removed)`,
    ]);
    assert.doesNotMatch(quiet.stdout, /built/);
    // --target naming this machine is this machine.
    const echo = await compileTask(["--target", HERE], { DENORT_BIN: "/bin/echo" });
    assert.equal(echo.code, 1);
    assert.deepEqual(echo.lines, [
      `error: the built dist/${HERE}/sloth-runner does not run: \`sloth-runner version\` ` +
      `printed "version" and exited with 0, ${want}; ${hint("/bin/echo")} ` +
      `(dist/${HERE}/sloth-runner removed)`,
    ]);
    assert.deepEqual(distFiles(), before);
  },
});

Deno.test("a built executable passes only if it prints this version", async () => {
  await using work = await tempWorkspace();
  const script = async (name: string, body: string) => {
    const file = `${work.dir}/${name}`;
    await Deno.writeTextFile(file, `#!/bin/sh\n${body}\n`);
    await Deno.chmod(file, 0o755);
    return file;
  };
  // What the real ones print: sloth-runner version, sloth-agent --version.
  const runner = await script("runner", `[ "$1" = version ] && echo "sloth-runner 1.2.3 (deno 9)"`);
  assert.equal(await runsAsBuilt("sloth-runner", runner, "1.2.3"), undefined);
  const agent = await script("agent", `[ "$1" = --version ] && echo 1.2.3`);
  assert.equal(await runsAsBuilt("sloth-agent", agent, "1.2.3"), undefined);
  // Another version, a failure, a file that cannot be started.
  assert.equal(
    await runsAsBuilt("sloth-agent", agent, "1.2.4"),
    '`sloth-agent --version` printed "1.2.3" and exited with 0, instead of "1.2.4"',
  );
  assert.equal(
    await runsAsBuilt("sloth-runner", runner, "1.2"),
    '`sloth-runner version` printed "sloth-runner 1.2.3 (deno 9)" and exited with 0, instead of "sloth-runner 1.2"',
  );
  const broken = await script("broken", 'echo "error: Module not found" >&2; exit 3');
  assert.equal(
    await runsAsBuilt("sloth-agent", broken, "1.2.3"),
    '`sloth-agent --version` printed nothing but "error: Module not found" on stderr and exited with 3, instead of "1.2.3"',
  );
  assert.match(
    (await runsAsBuilt("sloth-agent", `${work.dir}/missing`, "1.2.3"))!,
    /^`sloth-agent --version` cannot be started \(.+\)$/,
  );
});

Deno.test("deno task compile --help explains the options, the targets and DENORT_BIN", async () => {
  const r = await compileTask(["--help"], {});
  assert.equal(r.code, 0);
  assert.deepEqual(r.lines, []);
  assert.match(
    r.stdout,
    /^usage: deno task compile \[--target TARGET \.\.\.\] \[--all\] \[--assets\] \[--help\]\n/,
  );
  for (const target of TARGETS) assert.match(r.stdout, new RegExp(`^  ${target}$`, "m"));
  assert.match(r.stdout, /^DENORT_BIN:$/m);
  assert.ok(r.stdout.includes(`https://dl.deno.land/release/v${DENO}/denort-TARGET.zip`));
  assert.ok(r.stdout.includes(`the denort of Deno ${DENO}`));
});

Deno.test("deno task compile refuses a target it does not build, listing those it does", async () => {
  const usage = "usage: deno task compile [--target TARGET ...] [--all] [--assets] [--help]";
  const targets = `targets: ${TARGETS.join(", ")}`;
  const r = await compileTask(["--target", "sparc-sun-solaris"], {});
  assert.equal(r.code, 2);
  assert.deepEqual(r.lines, [`error: unknown target sparc-sun-solaris (${targets})`, usage]);
  for (const args of [["--target"], ["--target", "--all"]]) {
    const missing = await compileTask(args, {});
    assert.equal(missing.code, 2, args.join(" "));
    assert.deepEqual(missing.lines, [`error: --target needs a value (${targets})`, usage]);
  }
  const unknown = await compileTask(["--frobnicate"], {});
  assert.equal(unknown.code, 2);
  assert.deepEqual(unknown.lines, [
    "error: unknown argument --frobnicate (deno task compile --help lists them)",
    usage,
  ]);
  const assets = await compileTask(["--assets"], {});
  assert.equal(assets.code, 2);
  assert.match(assets.lines[0], /--assets needs --target or --all/);
});

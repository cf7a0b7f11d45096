/**
 * The release: scripts/smoke.sh (which the release workflow runs on every target's
 * own runner) passes against main.ts and agent.ts here, and fails when it should;
 * the workflows still agree with the repository (the targets, the Deno version,
 * the files and tasks they name, the tag check, the order of build, smoke and
 * publish); the systemd unit starts sloth-agent with flags it has and hardening
 * that leaves V8 and bubblewrap working.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { assetName, type ExecutableName, type Target, TARGETS } from "../../scripts/executables.ts";
import { commandLine } from "../../scripts/smoke_here.ts";
import { executable, ROOT } from "../_helpers/mod.ts";

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}

interface Job {
  "runs-on": string;
  needs?: string | string[];
  permissions?: Record<string, string>;
  strategy?: { matrix: { include?: Record<string, string>[]; os?: string[] } };
  steps: Step[];
}

interface Workflow {
  on: Record<string, { tags?: string[] } | null>;
  permissions?: Record<string, string>;
  jobs: Record<string, Job>;
}

const WORKFLOWS = `${ROOT}/.github/workflows`;
const ci = parse(await Deno.readTextFile(`${WORKFLOWS}/ci.yml`)) as Workflow;
const release = parse(await Deno.readTextFile(`${WORKFLOWS}/release.yml`)) as Workflow;
const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
const DENO_VERSION = /^DENO_VERSION=(\S+)$/m.exec(await Deno.readTextFile(`${ROOT}/.ci/run`))?.[1];

const steps = (workflow: Workflow) => Object.values(workflow.jobs).flatMap((job) => job.steps);
const runs = (workflow: Workflow) => steps(workflow).flatMap((step) => step.run ?? []);
const asList = (value: string | string[] | undefined) =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

// --- the smoke test --------------------------------------------------------------

/** Runs scripts/smoke.sh with SLOTH_RUNNER/SLOTH_AGENT as the other e2e tests start them. */
async function smoke(env: Record<string, string> = {}) {
  const line = (name: ExecutableName) => {
    const run = executable(name, []);
    return commandLine(run.command, run.args);
  };
  const output = await new Deno.Command("bash", {
    args: [`${ROOT}/scripts/smoke.sh`],
    cwd: ROOT,
    env: {
      SLOTH_RUNNER: line("sloth-runner"),
      SLOTH_AGENT: line("sloth-agent"),
      SLOTH_EXPECT_VERSION: `v${denoJson.version}`,
      ...env,
    },
    stdin: "null",
    // A hung agent must fail the test, not hold the suite.
    signal: AbortSignal.timeout(240_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test({
  name: "scripts/smoke.sh passes against main.ts and agent.ts: version, a local run, an agent",
  ignore: Deno.build.os === "windows",
}, async () => {
  const r = await smoke();
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (
    const line of [
      `ok - version: sloth-runner ${denoJson.version} `,
      "ok - local workflow",
      "ok - a failing task exits 1",
      "ok - agent round trip on 127.0.0.1:",
      "ok - the agent refuses a wrong token and answers the right one",
      "ok - the agent stops on SIGTERM and leaves its work root empty",
      "ok - a loopback agent without a token: its token file lets this user in",
    ]
  ) {
    assert.ok(r.stdout.includes(line), `missing "${line}" in:\n${r.stdout}`);
  }
  assert.match(r.stdout, /^smoke test passed$/m);
});

Deno.test({
  name: "scripts/smoke.sh without shell tasks, as it runs on Windows, passes on Lua tasks alone",
  ignore: Deno.build.os === "windows",
}, async () => {
  const r = await smoke({ SLOTH_SMOKE_NO_SHELL: "1" });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^ok - agent round trip on 127\.0\.0\.1:\d+: output shown here/m);
  assert.match(r.stdout, /^smoke test passed$/m);
});

Deno.test({
  name: "scripts/smoke.sh fails, saying why, for a wrong version or an agent that does not start",
  ignore: Deno.build.os === "windows",
}, async () => {
  const version = await smoke({ SLOTH_EXPECT_VERSION: "v0.0.0-not-this" });
  assert.equal(version.code, 1);
  assert.match(
    version.stderr,
    /smoke: FAILED: sloth-runner version: expected to find "sloth-runner 0\.0\.0-not-this"/,
  );
  assert.doesNotMatch(version.stdout, /smoke test passed/);

  // sloth-runner in sloth-agent's place: it prints the same --version, then has no --bind.
  const run = executable("sloth-runner", []);
  const agent = await smoke({ SLOTH_AGENT: commandLine(run.command, run.args) });
  assert.equal(agent.code, 1);
  assert.match(agent.stdout, /^ok - local workflow$/m);
  assert.match(agent.stderr, /unknown option '--bind'/);
  assert.match(agent.stderr, /smoke: FAILED: the agent exited before listening/);
});

// --- the workflows ---------------------------------------------------------------

/** The kind of machine each runner label is; a new label must be added here. */
const RUNNERS: Record<string, { os: string; arch: string }> = {
  "ubuntu-latest": { os: "linux", arch: "x86_64" },
  "ubuntu-24.04": { os: "linux", arch: "x86_64" },
  "ubuntu-24.04-arm": { os: "linux", arch: "aarch64" },
  "macos-15-intel": { os: "darwin", arch: "x86_64" },
  "macos-latest": { os: "darwin", arch: "aarch64" },
  "macos-15": { os: "darwin", arch: "aarch64" },
  "windows-latest": { os: "windows", arch: "x86_64" },
};

function targetMachine(target: Target): { os: string; arch: string } {
  const os = target.includes("linux") ? "linux" : target.includes("darwin") ? "darwin" : "windows";
  return { os, arch: target.split("-")[0] };
}

Deno.test("the release smoke-tests exactly TARGETS, each on its own kind of runner and asset", () => {
  const smokeJob = release.jobs.smoke;
  const matrix = smokeJob.strategy?.matrix.include ?? [];
  assert.deepEqual(matrix.map((entry) => entry.target).sort(), [...TARGETS].sort());
  assert.equal(smokeJob["runs-on"], "${{ matrix.runner }}");
  const smokeStep = smokeJob.steps.find((step) => step.run?.includes("scripts/smoke.sh"));
  assert.ok(smokeStep?.env, "a step runs scripts/smoke.sh with SLOTH_RUNNER and SLOTH_AGENT");
  for (const entry of matrix) {
    const target = entry.target as Target;
    const machine = RUNNERS[entry.runner];
    assert.ok(machine, `unknown runner ${entry.runner}: add it to RUNNERS in this test`);
    assert.deepEqual(machine, targetMachine(target), `${entry.runner} cannot run ${target}`);
    const expand = (text: string) =>
      text.replace(/\$\{\{\s*matrix\.(\w+)\s*\}\}/g, (_, key) => entry[key] ?? `<no ${key}>`);
    assert.equal(
      expand(smokeStep.env.SLOTH_RUNNER),
      `dist/release/${assetName("sloth-runner", target)}`,
    );
    assert.equal(
      expand(smokeStep.env.SLOTH_AGENT),
      `dist/release/${assetName("sloth-agent", target)}`,
    );
  }
});

Deno.test("the release builds every target with deno task compile into what smoke and publish use", async () => {
  const build = release.jobs.build;
  assert.ok(
    build.steps.some((step) => /\bdeno task compile --all --assets\b/.test(step.run ?? "")),
    "the build job runs deno task compile --all --assets",
  );
  // compile.ts writes the release there; the upload and both downloads use the same place.
  assert.match(await Deno.readTextFile(`${ROOT}/scripts/compile.ts`), /\/dist\/release`/);
  const upload = build.steps.find((step) => step.uses?.startsWith("actions/upload-artifact@"));
  assert.equal(upload?.with?.path, "dist/release/");
  for (const job of [release.jobs.smoke, release.jobs.publish]) {
    const download = job.steps.find((step) => step.uses?.startsWith("actions/download-artifact@"));
    assert.equal(download?.with?.name, upload?.with?.name);
    assert.equal(download?.with?.path, "dist/release");
  }
});

Deno.test("a release is published for a v* tag, only after the build and every smoke test", () => {
  assert.deepEqual(Object.keys(release.on), ["push"]);
  assert.deepEqual(release.on.push?.tags, ["v*"]);
  assert.deepEqual(asList(release.jobs.smoke.needs), ["build"]);
  assert.deepEqual(asList(release.jobs.publish.needs).sort(), ["build", "smoke"]);
  // Only publish may write to the repository.
  assert.deepEqual(release.permissions, { contents: "read" });
  for (const [name, job] of Object.entries(release.jobs)) {
    assert.equal(job.permissions?.contents === "write", name === "publish", name);
  }
  const publish = release.jobs.publish.steps.map((step) => step.run ?? "").join("\n");
  assert.match(publish, /gh release create "\$TAG"/);
  assert.match(publish, /sloth-\* SHA256SUMS/);
  assert.ok(
    release.jobs.publish.steps.some((step) => step.env?.GH_TOKEN === "${{ github.token }}"),
  );
});

Deno.test("the release build stops at a tag that is not v + deno.json's version, saying both", async () => {
  const check = release.jobs.build.steps.find((step) => step.run?.includes("deno.json"));
  assert.ok(check?.run, "a build step compares the tag with deno.json");
  const denoDir = Deno.execPath().replace(/\/[^/]*$/, "");
  const run = async (tag: string) => {
    // As GitHub runs a step: `bash -e`, in the checkout.
    const output = await new Deno.Command("bash", {
      args: ["-e", "-c", check.run!],
      cwd: ROOT,
      env: { TAG: tag, PATH: `${denoDir}:${Deno.env.get("PATH") ?? ""}` },
      stdin: "null",
    }).output();
    return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
  };
  const wrong = await run("v0.0.0-wrong");
  assert.notEqual(wrong.code, 0);
  assert.ok(
    wrong.stdout.includes(
      `::error::tag v0.0.0-wrong does not match deno.json's version ${denoJson.version}`,
    ),
    wrong.stdout,
  );
  const right = await run(`v${denoJson.version}`);
  assert.equal(right.code, 0, right.stdout);
  assert.equal(await run(denoJson.version).then((r) => r.code === 0), false, "the v is required");
});

Deno.test("every workflow runs the Deno version .ci/run pins", () => {
  assert.ok(DENO_VERSION, ".ci/run sets DENO_VERSION=");
  let pins = 0;
  for (const [file, workflow] of [["ci.yml", ci], ["release.yml", release]] as const) {
    for (const step of steps(workflow)) {
      if (step.uses?.startsWith("denoland/setup-deno@")) {
        pins++;
        assert.equal(String(step.with?.["deno-version"]), DENO_VERSION, `${file}: setup-deno`);
      }
      for (const match of (step.run ?? "").matchAll(/\bdeno@([\w.-]+)/g)) {
        pins++;
        assert.equal(match[1], DENO_VERSION, `${file}: ${match[0]}`);
      }
    }
  }
  assert.ok(pins > 0);
  // CI gets Deno through .ci/run itself; the release build through setup-deno.
  assert.ok(runs(ci).some((run) => /\bbash \.ci\/run\b/.test(run)));
  assert.ok(release.jobs.build.steps.some((step) => step.uses?.startsWith("denoland/setup-deno@")));
});

Deno.test("every file and deno task the workflows name exists, and actions are pinned", async () => {
  for (const [file, workflow] of [["ci.yml", ci], ["release.yml", release]] as const) {
    for (const run of runs(workflow)) {
      for (
        const [path] of run.matchAll(/(?<![\w./-])(?:\.ci|scripts|tests|examples)\/[\w./-]*\w/g)
      ) {
        const info = await Deno.stat(`${ROOT}/${path}`).catch(() => undefined);
        assert.ok(info?.isFile, `${file} runs ${path}, which does not exist`);
      }
      for (const [, task] of run.matchAll(/\bdeno task ([\w:-]+)/g)) {
        assert.ok(task in denoJson.tasks, `${file} runs deno task ${task}, not in deno.json`);
      }
    }
    for (const step of steps(workflow)) {
      if (step.uses) assert.match(step.uses, /^[\w.-]+\/[\w.-]+@v\d+$/, `${file}: ${step.uses}`);
    }
  }
});

Deno.test("CI runs .ci/run on every push and pull request, on Linux as root with bubblewrap and on macOS", () => {
  assert.deepEqual(Object.keys(ci.on).sort(), ["pull_request", "push"]);
  const job = Object.values(ci.jobs)[0];
  assert.deepEqual(job.strategy?.matrix.os, ["ubuntu-latest", "macos-latest"]);
  const linux = job.steps.filter((step) => step.if === "runner.os == 'Linux'");
  assert.ok(linux.some((step) => /apt-get install[\s\S]*\bbubblewrap\b/.test(step.run ?? "")));
  assert.ok(linux.some((step) => /^sudo .*bash \.ci\/run$/.test(step.run ?? "")));
  const macos = job.steps.filter((step) => step.if === "runner.os == 'macOS'");
  assert.ok(macos.some((step) => step.run === "bash .ci/run"));
});

// --- the systemd unit ------------------------------------------------------------

const UNIT_FILE = `${ROOT}/examples/systemd/sloth-agent.service`;

/** `Key=value` settings of a unit file (continuation lines joined), in order. */
function unitSettings(text: string): [string, string][] {
  const joined = text.replace(/\\\n/g, " ");
  return joined.split("\n")
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => {
      const at = line.indexOf("=");
      return [line.slice(0, at), line.slice(at + 1).trim()];
    });
}

Deno.test("the systemd unit starts sloth-agent with flags it has, a token credential and a cache", async () => {
  const settings = unitSettings(await Deno.readTextFile(UNIT_FILE));
  const get = (key: string) => settings.filter(([k]) => k === key).map(([, v]) => v);
  const [execStart] = get("ExecStart");
  assert.match(execStart, /^\/usr\/local\/bin\/sloth-agent /, "where install.sh --system puts it");
  const run = executable("sloth-agent", ["--help"]);
  const help = new TextDecoder().decode(
    (await new Deno.Command(run.command, { args: run.args, stdin: "null" }).output()).stdout,
  );
  for (const [flag] of execStart.matchAll(/--[\w-]+/g)) {
    assert.ok(help.includes(`${flag} `), `ExecStart passes ${flag}, which sloth-agent lacks`);
  }
  assert.deepEqual(get("LoadCredential"), ["token:/etc/sloth-agent/token"]);
  assert.match(execStart, /--token-file \$\{CREDENTIALS_DIRECTORY\}\/token /);
  assert.match(execStart, /--work-root \$\{CACHE_DIRECTORY\} /);
  assert.deepEqual(get("CacheDirectory"), ["sloth-agent"]);
  assert.match(execStart, /--bind \$\{SLOTH_AGENT_BIND\} /);
  assert.ok(get("Environment").includes("SLOTH_AGENT_BIND=127.0.0.1"));
  assert.match(execStart, /--sandbox bwrap /);
  assert.deepEqual(get("User"), ["sloth-agent"]);
  assert.deepEqual(get("Restart"), ["on-failure"]);
});

Deno.test("the systemd unit's hardening leaves V8's JIT and bubblewrap's namespaces working", async () => {
  const settings = unitSettings(await Deno.readTextFile(UNIT_FILE));
  const get = (key: string) => settings.filter(([k]) => k === key).map(([, v]) => v);
  // V8 writes machine code, then runs it.
  assert.deepEqual(get("MemoryDenyWriteExecute"), []);
  // Covering parts of /proc makes the kernel refuse bwrap's own /proc.
  for (const key of ["ProtectKernelTunables", "ProtectKernelLogs", "ProcSubset"]) {
    assert.deepEqual(get(key), [], `${key} breaks bwrap --proc`);
  }
  const namespaces = get("RestrictNamespaces").join(" ").split(/\s+/);
  for (const ns of ["user", "mnt", "pid", "ipc", "uts", "net", "cgroup"]) {
    assert.ok(namespaces.includes(ns), `RestrictNamespaces must allow ${ns} for bwrap`);
  }
  const filter = get("SystemCallFilter").join(" ").split(/\s+/);
  for (const group of ["@system-service", "@mount"]) assert.ok(filter.includes(group), group);
  assert.ok(get("RestrictAddressFamilies").join(" ").includes("AF_NETLINK"));
  for (const key of ["NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"]) {
    assert.equal(get(key).length, 1, `${key} is set`);
  }
});

const systemdAnalyze = await new Deno.Command("systemd-analyze", { args: ["--version"] })
  .output().then((r) => r.code === 0, () => false);

Deno.test({
  name: "systemd-analyze verify accepts the unit",
  ignore: !systemdAnalyze,
}, async () => {
  // verify also checks that ExecStart's file exists: point it at one that does.
  const dir = await Deno.makeTempDir({ prefix: "sloth-unit-" });
  try {
    const text = await Deno.readTextFile(UNIT_FILE);
    await Deno.writeTextFile(
      `${dir}/sloth-agent.service`,
      text.replace("ExecStart=/usr/local/bin/sloth-agent", `ExecStart=${Deno.execPath()}`),
    );
    const output = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/sloth-agent.service`],
      env: { SYSTEMD_LOG_COLOR: "0" },
    }).output();
    const said = new TextDecoder().decode(output.stderr) + new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, said);
    assert.doesNotMatch(said, /sloth-agent\.service/, said);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

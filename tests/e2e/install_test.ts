/**
 * install.sh against a fake release served on 127.0.0.1: the latest or a given
 * version, this machine's build or another target's, and the refusals (a bad
 * checksum, a missing release, no server, an unknown OS or target, no HOME) that
 * must leave nothing installed. Downloads go through curl, and through wget where
 * the test hides curl.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { assetName, type ExecutableName, type Target, TARGETS } from "../../scripts/executables.ts";
import { ROOT, tempWorkspace } from "../_helpers/mod.ts";

const NAMES: ExecutableName[] = ["sloth-runner", "sloth-agent"];

/** A fake executable: a shell script that says what it is. */
function fakeBinary(name: string, version: string, target: string): string {
  return `#!/bin/sh\necho "${name} ${version} ${target}"\n`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

interface Release {
  version: string;
  targets: Target[];
  /** Replaces one asset's bytes after SHA256SUMS was written (a corrupted download). */
  corrupt?: string;
}

/** Serves releases the way GitHub lays them out: /latest/download/A, /download/V/A. */
function serveReleases(releases: Release[], latest: string) {
  const files = new Map<string, string>();
  for (const release of releases) {
    const sums: string[] = [];
    const assets = new Map<string, string>();
    for (const target of release.targets) {
      for (const name of NAMES) {
        const asset = assetName(name, target);
        const body = fakeBinary(name, release.version, target);
        sums.push(`${sha256(body)}  ${asset}`);
        assets.set(asset, release.corrupt === asset ? body + "tampered\n" : body);
      }
    }
    assets.set("SHA256SUMS", sums.join("\n") + "\n");
    for (const [asset, body] of assets) {
      files.set(`/releases/download/${release.version}/${asset}`, body);
      if (release.version === latest) files.set(`/releases/latest/download/${asset}`, body);
    }
  }
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    const body = files.get(path);
    return body === undefined ? new Response("Not Found", { status: 404 }) : new Response(body);
  });
  return {
    requests,
    url: `http://127.0.0.1:${server.addr.port}/releases`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A directory with a `uname` that claims another machine, to put first on PATH. */
async function fakeUname(dir: string, system: string, machine: string): Promise<string> {
  const bin = `${dir}/fake-bin`;
  await Deno.mkdir(bin, { recursive: true });
  await Deno.writeTextFile(
    `${bin}/uname`,
    `#!/bin/sh\ncase "$1" in -s) echo ${system} ;; -m) echo ${machine} ;; *) echo ${system} ;; esac\n`,
  );
  await Deno.chmod(`${bin}/uname`, 0o755);
  return bin;
}

/** Where a command is on this PATH, if anywhere. */
function which(tool: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${tool}`).isFile) return `${dir}/${tool}`;
    } catch {
      // not in this directory
    }
  }
}

const HAS_WGET = which("wget") !== undefined;

/** A directory with only the commands install.sh uses, wget but not curl: it downloads with wget. */
async function wgetOnly(dir: string): Promise<string> {
  const tools = ["sh", "uname", "mktemp", "rm", "awk", "cut", "sed", "head", "tail", "cat"]
    .concat(["chmod", "mv", "mkdir", "sha256sum", "shasum", "wget"]);
  const bin = `${dir}/wget-only`;
  await Deno.mkdir(bin, { recursive: true });
  for (const tool of tools) {
    const file = which(tool);
    if (file) await Deno.symlink(file, `${bin}/${tool}`);
  }
  return bin;
}

/** A port on 127.0.0.1 where nothing listens: connections to it are refused. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function install(
  args: string[],
  options: { home: string | undefined; path?: string },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("sh", {
    args: [`${ROOT}/install.sh`, ...args],
    clearEnv: true,
    env: {
      ...(options.home === undefined ? {} : { HOME: options.home }),
      PATH: options.path ?? Deno.env.get("PATH") ?? "/usr/bin:/bin",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

async function run(file: string): Promise<string> {
  const out = await new Deno.Command(file, { stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

const THIS_TARGET: Target | undefined = ({
  "linux-x86_64": "x86_64-unknown-linux-gnu",
  "linux-aarch64": "aarch64-unknown-linux-gnu",
  "darwin-x86_64": "x86_64-apple-darwin",
  "darwin-aarch64": "aarch64-apple-darwin",
} as Record<string, Target>)[`${Deno.build.os}-${Deno.build.arch}`];

const ALL_UNIX: Target[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
];

Deno.test({
  name: "install.sh installs this machine's build of the latest release to ~/.local/bin",
  ignore: THIS_TARGET === undefined || Deno.build.os === "windows",
  fn: async () => {
    await using home = await tempWorkspace();
    await using releases = serveReleases([
      { version: "v0.1.0", targets: ALL_UNIX },
      { version: "v0.2.0", targets: ALL_UNIX },
    ], "v0.2.0");
    const r = await install(["--base-url", releases.url], { home: home.dir });
    assert.equal(r.code, 0, r.stderr);
    const bin = `${home.dir}/.local/bin`;
    assert.deepEqual(await listDir(bin), ["sloth-agent", "sloth-runner"]);
    for (const name of NAMES) {
      assert.equal(await run(`${bin}/${name}`), `${name} v0.2.0 ${THIS_TARGET}`);
      assert.equal((await Deno.stat(`${bin}/${name}`)).mode! & 0o777, 0o755);
      assert.match(r.stdout, new RegExp(`^installed ${bin}/${name}$`, "m"));
    }
    assert.ok(releases.requests.every((p) => p.startsWith("/releases/latest/download/")));
    // The temporary PATH does not hold ~/.local/bin: the script says how to add it.
    assert.match(r.stdout, /is not on your PATH; add it, e\.g\.: export PATH=/);
  },
});

Deno.test("install.sh --version installs that release, and --dir puts it where asked", async () => {
  await using home = await tempWorkspace();
  await using releases = serveReleases([
    { version: "v0.1.0", targets: ALL_UNIX },
    { version: "v0.2.0", targets: ALL_UNIX },
  ], "v0.2.0");
  const dir = `${home.dir}/tools/bin`;
  const r = await install(
    ["--version", "v0.1.0", "--dir", dir, "--base-url", releases.url],
    { home: home.dir, path: await fakeUname(home.dir, "Linux", "x86_64") + ":/usr/bin:/bin" },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await run(`${dir}/sloth-runner`), "sloth-runner v0.1.0 x86_64-unknown-linux-gnu");
  assert.ok(releases.requests.every((p) => p.startsWith("/releases/download/v0.1.0/")));
  assert.deepEqual(await listDir(`${home.dir}/.local`), []);
});

Deno.test("install.sh maps the OS and CPU names uname gives to release targets", async () => {
  await using releases = serveReleases([{ version: "v0.2.0", targets: ALL_UNIX }], "v0.2.0");
  const cases: [string, string, Target][] = [
    ["Linux", "x86_64", "x86_64-unknown-linux-gnu"],
    ["Linux", "aarch64", "aarch64-unknown-linux-gnu"],
    ["Linux", "arm64", "aarch64-unknown-linux-gnu"],
    ["Darwin", "x86_64", "x86_64-apple-darwin"],
    ["Darwin", "arm64", "aarch64-apple-darwin"],
  ];
  for (const [system, machine, target] of cases) {
    await using home = await tempWorkspace();
    const path = await fakeUname(home.dir, system, machine) + ":/usr/bin:/bin";
    const r = await install(["--base-url", releases.url], { home: home.dir, path });
    assert.equal(r.code, 0, `${system} ${machine}: ${r.stderr}`);
    // The fake executables print their target; they are shell scripts, so they run anywhere.
    const installed = await run(`${home.dir}/.local/bin/sloth-agent`);
    assert.equal(installed, `sloth-agent v0.2.0 ${target}`, `${system} ${machine}`);
  }
});

Deno.test("install.sh refuses a machine it has no build for, saying which", async () => {
  await using home = await tempWorkspace();
  await using releases = serveReleases([{ version: "v0.2.0", targets: ALL_UNIX }], "v0.2.0");
  const cpu = await install(["--base-url", releases.url], {
    home: home.dir,
    path: await fakeUname(home.dir, "Linux", "riscv64") + ":/usr/bin:/bin",
  });
  assert.equal(cpu.code, 1);
  assert.match(cpu.stderr, /^install\.sh: no release build for CPU riscv64/m);
  const os = await install(["--base-url", releases.url], {
    home: home.dir,
    path: await fakeUname(home.dir, "FreeBSD", "x86_64") + ":/usr/bin:/bin",
  });
  assert.equal(os.code, 1);
  assert.match(os.stderr, /^install\.sh: no release build for FreeBSD/m);
  assert.deepEqual(releases.requests, []);
  assert.deepEqual(await listDir(`${home.dir}/.local`), []);
});

Deno.test("install.sh refuses a download whose checksum does not match, and installs nothing", async () => {
  await using home = await tempWorkspace();
  const target: Target = "x86_64-unknown-linux-gnu";
  await using releases = serveReleases(
    [{ version: "v0.2.0", targets: ALL_UNIX, corrupt: assetName("sloth-agent", target) }],
    "v0.2.0",
  );
  // A version installed earlier must survive the refused upgrade untouched.
  const bin = `${home.dir}/.local/bin`;
  await Deno.mkdir(bin, { recursive: true });
  await Deno.writeTextFile(`${bin}/sloth-runner`, "old runner\n");
  const r = await install(["--base-url", releases.url, "--target", target], { home: home.dir });
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^install\.sh: checksum mismatch for sloth-agent-x86_64-unknown-linux-gnu \(expected [0-9a-f]{64}, got [0-9a-f]{64}\); nothing installed$/m,
  );
  assert.deepEqual(await listDir(bin), ["sloth-runner"]);
  assert.equal(await Deno.readTextFile(`${bin}/sloth-runner`), "old runner\n");
});

for (const fetcher of ["curl", "wget"] as const) {
  Deno.test({
    name: `install.sh says which release or build is missing (HTTP 404, ${fetcher})`,
    ignore: fetcher === "wget" && !HAS_WGET,
    fn: async () => {
      await using home = await tempWorkspace();
      const path = fetcher === "wget" ? await wgetOnly(home.dir) : undefined;
      await using releases = serveReleases([
        { version: "v0.2.0", targets: ["x86_64-unknown-linux-gnu"] },
      ], "v0.2.0");
      const missing = await install(
        ["--base-url", releases.url, "--version", "v9.9.9", "--target", "x86_64-unknown-linux-gnu"],
        { home: home.dir, path },
      );
      assert.equal(missing.code, 1);
      assert.equal(
        missing.stderr,
        `install.sh: cannot download ${releases.url}/download/v9.9.9/SHA256SUMS: HTTP 404; ` +
          `is v9.9.9 a release? (releases: ${releases.url})\n`,
      );
      const noAsset = await install(
        ["--base-url", releases.url, "--target", "aarch64-apple-darwin"],
        { home: home.dir, path },
      );
      assert.equal(noAsset.code, 1);
      assert.equal(
        noAsset.stderr,
        `install.sh: cannot download ${releases.url}/latest/download/sloth-runner-aarch64-apple-darwin: ` +
          `HTTP 404; the latest release has no build for aarch64-apple-darwin (see ${releases.url})\n`,
      );
      const noRelease = await install(
        ["--base-url", `${releases.url}/nothing-here`, "--target", "aarch64-apple-darwin"],
        { home: home.dir, path },
      );
      assert.equal(noRelease.code, 1);
      assert.equal(
        noRelease.stderr,
        `install.sh: cannot download ${releases.url}/nothing-here/latest/download/SHA256SUMS: ` +
          `HTTP 404; ${releases.url}/nothing-here has no latest release (check --base-url)\n`,
      );
      assert.deepEqual(await listDir(`${home.dir}/.local`), []);
    },
  });

  Deno.test({
    name: `install.sh blames the network, not the version, when it cannot connect (${fetcher})`,
    ignore: fetcher === "wget" && !HAS_WGET,
    fn: async () => {
      await using home = await tempWorkspace();
      const path = fetcher === "wget" ? await wgetOnly(home.dir) : undefined;
      const host = `127.0.0.1:${closedPort()}`;
      const r = await install(
        ["--base-url", `http://${host}/releases`, "--version", "v0.2.0"],
        { home: home.dir, path },
      );
      assert.equal(r.code, 1);
      // One line: the fetcher's own message is folded into it.
      assert.equal(r.stderr.split("\n").filter(Boolean).length, 1, r.stderr);
      const reason = fetcher === "curl" ? "Failed to connect to .*" : "Connection refused";
      assert.match(
        r.stderr,
        new RegExp(
          `^install\\.sh: cannot download http://${host}/releases/download/v0\\.2\\.0/SHA256SUMS: ` +
            `cannot reach ${host} \\(${reason}\\); ` +
            `check the network, the proxy settings \\(HTTPS_PROXY\\), or --base-url\n$`,
        ),
      );
      assert.doesNotMatch(r.stderr, /a release\?/);
      assert.deepEqual(await listDir(`${home.dir}/.local`), []);
    },
  });
}

Deno.test("install.sh takes a version without its v (0.1.0) as the tag v0.1.0", async () => {
  await using home = await tempWorkspace();
  await using releases = serveReleases([
    { version: "v0.1.0", targets: ALL_UNIX },
    { version: "v0.2.0", targets: ALL_UNIX },
  ], "v0.2.0");
  const r = await install(
    ["--version", "0.1.0", "--base-url", releases.url, "--target", "x86_64-unknown-linux-gnu"],
    { home: home.dir },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sloth-runner v0\.1\.0 for x86_64-unknown-linux-gnu, from /);
  assert.equal(
    await run(`${home.dir}/.local/bin/sloth-runner`),
    "sloth-runner v0.1.0 x86_64-unknown-linux-gnu",
  );
  assert.ok(releases.requests.every((p) => p.startsWith("/releases/download/v0.1.0/")));
});

Deno.test("install.sh fetches and installs a Windows build under its .exe names", async () => {
  await using home = await tempWorkspace();
  const target: Target = "x86_64-pc-windows-msvc";
  await using releases = serveReleases([{ version: "v0.2.0", targets: [...TARGETS] }], "v0.2.0");
  const dir = `${home.dir}/win`;
  const r = await install(["--base-url", releases.url, "--target", target, "--dir", dir], {
    home: home.dir,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await listDir(dir), ["sloth-agent.exe", "sloth-runner.exe"]);
  for (const name of NAMES) {
    // Asset names as the compile task writes them (scripts/executables.ts).
    assert.ok(releases.requests.includes(`/releases/latest/download/${assetName(name, target)}`));
    assert.equal(await Deno.readTextFile(`${dir}/${name}.exe`), fakeBinary(name, "v0.2.0", target));
    assert.match(r.stdout, new RegExp(`^installed ${dir}/${name}\\.exe$`, "m"));
  }
});

Deno.test("install.sh refuses a target it has no builds for, listing those it has", async () => {
  await using home = await tempWorkspace();
  await using releases = serveReleases([{ version: "v0.2.0", targets: ALL_UNIX }], "v0.2.0");
  const r = await install(["--base-url", releases.url, "--target", "x86_64-pc-windows"], {
    home: home.dir,
  });
  assert.equal(r.code, 1);
  // The same five targets, in the same order, as the compile task builds.
  assert.equal(
    r.stderr,
    `install.sh: unknown target x86_64-pc-windows (targets: ${TARGETS.join(", ")})\n`,
  );
  const empty = await install(["--base-url", releases.url, "--target", ""], { home: home.dir });
  assert.equal(empty.code, 1);
  assert.equal(empty.stderr, "install.sh: --target needs a value (see install.sh --help)\n");
  assert.deepEqual(releases.requests, []);
  assert.deepEqual(await listDir(`${home.dir}/.local`), []);
});

Deno.test("install.sh without HOME refuses instead of installing to /.local/bin", async () => {
  await using releases = serveReleases([{ version: "v0.2.0", targets: ALL_UNIX }], "v0.2.0");
  for (const home of ["", undefined]) {
    const r = await install(["--base-url", releases.url], { home });
    assert.equal(r.code, 1, `HOME=${home}: ${r.stdout}`);
    assert.equal(
      r.stderr,
      "install.sh: no install directory: HOME is not set; use --dir DIR or --system\n",
    );
    assert.equal(r.stdout, "");
  }
  // Refused before any download, so nothing can have been installed anywhere.
  assert.deepEqual(releases.requests, []);
  // With --dir, HOME is not needed.
  await using work = await tempWorkspace();
  const r = await install(
    ["--base-url", releases.url, "--dir", `${work.dir}/bin`, "--target", "aarch64-apple-darwin"],
    { home: "" },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await listDir(`${work.dir}/bin`), ["sloth-agent", "sloth-runner"]);
});

Deno.test("install.sh rejects unknown options with its usage", async () => {
  await using home = await tempWorkspace();
  const r = await install(["--frobnicate"], { home: home.dir });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^usage: install\.sh /m);
  assert.match(r.stderr, /^install\.sh: unknown option --frobnicate$/m);
  const help = await install(["--help"], { home: home.dir });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--system\s+install to \/usr\/local\/bin/);
  // Piped, options go after `sh -s --`: the usage shows how.
  assert.match(
    help.stdout,
    /^ +or: curl -fsSL https:\/\/\S+\/install\.sh \| sh -s -- \[OPTION \.\.\.\]$/m,
  );
  assert.match(help.stdout, /\| sh -s -- --system$/m);
  for (const target of TARGETS) assert.ok(help.stdout.includes(target), target);
  assert.match(
    await Deno.readTextFile(`${ROOT}/install.sh`),
    /^# +curl -fsSL \S+\/install\.sh \| sh -s -- --system$/m,
  );
});

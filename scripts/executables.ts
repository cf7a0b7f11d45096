/**
 * The two executables: their entry points, the permissions each runs with, what
 * `deno compile` must embed, and the targets releases are built for. The compile
 * task, the release workflow and the tests all read this file, so what the tests
 * run is what ships.
 */

export type ExecutableName = "sloth-runner" | "sloth-agent";

export interface Executable {
  entry: string;
  /** Deno permission flags: the same under `deno run` (tests) and in the compiled file. */
  permissions: string[];
}

/**
 * Neither needs FFI, or importing code from the network, and neither gets them.
 * The master runs the workflow's commands and Lua: files, processes, the network,
 * the environment, and of the system only the host name and user id that name its
 * workspaces on agents (and the group id its npm dependencies ask for), and, as
 * `sloth-runner agent` serves as an agent too, what the agent gets.
 * The agent needs files, processes and the network for the tasks it runs, and the
 * environment: its npm dependencies read variables of their own (tar, grpc-js).
 * Of the system it gets the user and group ids (without them protobufjs quietly
 * fails to find the .proto files) and the free space of its work root (statfs: its
 * disk budget makes room before a workspace does not fit), nothing else.
 * `Deno.kill` needs `--allow-run` whole, so processes cannot be narrowed to a list;
 * files and the network cannot either (the work root and the listening address are
 * options, tasks use the network). What stays narrow is inside: each job's Lua
 * runs in a worker that may touch only that job's directory, with no environment,
 * processes or FFI (lib/agent).
 */
const BOTH = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-run"];

export const EXECUTABLES: Record<ExecutableName, Executable> = {
  "sloth-runner": {
    entry: "main.ts",
    permissions: [...BOTH, "--allow-sys=hostname,uid,gid,statfs"],
  },
  "sloth-agent": { entry: "agent.ts", permissions: [...BOTH, "--allow-sys=uid,gid,statfs"] },
};

/**
 * Loaded at run time by path or URL rather than imported, so `deno compile` must be
 * told: the Lua worker module (a Worker's entry) and the proto files. glue.wasm
 * comes with the wasmoon npm package, which is embedded whole.
 */
export const INCLUDES = ["lib/dsl/worker.ts", "proto"];

/** Flags every run needs (also in deno.json's "unstable" for `deno run`). */
export const UNSTABLE = ["--unstable-worker-options"];

/** Release targets (`deno compile --target`). */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;
export type Target = (typeof TARGETS)[number];

/**
 * A release asset's file name: `sloth-runner-x86_64-unknown-linux-gnu`, `….exe` on
 * Windows. install.sh builds the same names (tests/e2e/install_test.ts holds them together).
 */
export function assetName(name: ExecutableName, target: Target): string {
  return `${name}-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/** Arguments for `deno run` of an executable's entry point, as the tests start it. */
export function runArgs(name: ExecutableName, root: string): string[] {
  const { entry, permissions } = EXECUTABLES[name];
  return ["run", ...UNSTABLE, ...permissions, `${root}/${entry}`];
}

/** Arguments for `deno compile` of an executable. */
export function compileArgs(
  name: ExecutableName,
  options: { root: string; output: string; target?: Target },
): string[] {
  const { entry, permissions } = EXECUTABLES[name];
  return [
    "compile",
    ...UNSTABLE,
    ...permissions,
    ...INCLUDES.flatMap((path) => ["--include", `${options.root}/${path}`]),
    ...(options.target ? ["--target", options.target] : []),
    "--output",
    options.output,
    `${options.root}/${entry}`,
  ];
}

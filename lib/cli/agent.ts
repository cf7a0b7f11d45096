/** `sloth-runner agent [start|ping]` and the `sloth-agent` entry point. */
import { type Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { startAgent } from "../agent/mod.ts";
import { DEFAULT_LIMITS } from "../sync/mod.ts";
import { parseDuration } from "../model/mod.ts";
import { ExitCode, SlothError } from "../errors.ts";
import { AgentClient, readLocalToken, type ServerTlsFiles, type TlsFiles } from "../rpc/mod.ts";
import type { Io } from "./workflow.ts";

export const DEFAULT_AGENT_PORT = 50051;

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError("expected a port number (0-65535; 0 picks a free one).");
  }
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number ≥ 1.");
  return n;
}

/** The options of `agent start` and of `sloth-agent`, in one place. */
export function withAgentOptions<C extends Command>(command: C) {
  return command
    .addOption(
      new Option("-p, --port <port>", "port to listen on").argParser(port).default(
        DEFAULT_AGENT_PORT,
      ),
    )
    .addOption(new Option("--bind <addr>", "address to listen on").default("127.0.0.1"))
    .addOption(
      new Option("--max-concurrent <n>", "jobs that run at once; the rest wait in order")
        .argParser(positiveInt)
        .default(navigator.hardwareConcurrency, "number of CPUs"),
    )
    .addOption(
      new Option("--work-root <dir>", "where job directories are made").default(
        tempDir(),
        "the OS temp dir",
      ),
    )
    .addOption(
      new Option(
        "--token-file <file>",
        "file holding the token masters must send (else SLOTH_AGENT_TOKEN)",
      ),
    )
    .addOption(new Option("--insecure", "allow a non-loopback --bind without a token (dangerous)"))
    .addOption(new Option("--tls-cert <file>", "serve TLS with this certificate (PEM, X.509 v3)"))
    .addOption(new Option("--tls-key <file>", "the private key of --tls-cert (PEM)"))
    .addOption(
      new Option(
        "--tls-client-ca <file>",
        "mutual TLS: accept only clients whose certificate this CA signed",
      ),
    )
    .addOption(
      new Option(
        "--sandbox <mode>",
        "run tasks' shell commands under bubblewrap: auto (when it works), bwrap, none",
      )
        .choices(["auto", "bwrap", "none"] as const).default("auto" as const),
    )
    .addOption(
      new Option("--task-network <on|off>", "whether tasks (shell and Lua) may use the network")
        .choices(["on", "off"] as const).default("on" as const),
    )
    .addOption(
      new Option("--max-workspace-bytes <n>", "largest workspace a master may send (file content)")
        .argParser(byteCount).default(DEFAULT_LIMITS.maxTotalBytes, "64 GiB"),
    )
    .addOption(
      new Option("--max-workspace-entries <n>", "most files, directories and links in a workspace")
        .argParser(positiveInt).default(DEFAULT_LIMITS.maxEntries),
    )
    .addOption(
      new Option("--idle-timeout <duration>", "end an upload that sends nothing for this long")
        .argParser(duration).default(30_000, "30s"),
    )
    .addOption(
      new Option("--max-file-bytes <n>", "largest single file in a workspace")
        .argParser(byteCount).default(DEFAULT_LIMITS.maxFileBytes, "16 GiB"),
    );
}

function duration(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) {
    throw new InvalidArgumentError('expected a duration such as "500ms", "30s" or "2m".');
  }
  return ms;
}

/** `1048576`, `512k`, `100M`, `2G` (powers of 1024). */
function byteCount(value: string): number {
  const match = /^(\d+)([kKmMgGtT]?)i?[bB]?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError("expected a size such as 1048576, 512K, 100M or 2G.");
  const power = " kmgt".indexOf(match[2].toLowerCase() || " ");
  return Number(match[1]) * 1024 ** power;
}

/** `--tls-ca/--tls-cert/--tls-key` of a master, falling back to SLOTH_TLS_CA/CERT/KEY. */
export const masterTlsOptions = {
  ca: () =>
    new Option("--tls-ca <file>", "talk TLS to agents, trusting this CA (else SLOTH_TLS_CA)"),
  cert: () =>
    new Option("--tls-cert <file>", "client certificate for mutual TLS (else SLOTH_TLS_CERT)"),
  key: () => new Option("--tls-key <file>", "key of --tls-cert (else SLOTH_TLS_KEY)"),
};

export function masterTls(
  o: { tlsCa?: string; tlsCert?: string; tlsKey?: string },
): TlsFiles | undefined {
  const pick = (flag: string | undefined, env: string) => flag ?? (Deno.env.get(env) || undefined);
  const files = {
    ca: pick(o.tlsCa, "SLOTH_TLS_CA"),
    cert: pick(o.tlsCert, "SLOTH_TLS_CERT"),
    key: pick(o.tlsKey, "SLOTH_TLS_KEY"),
  };
  if (!files.ca && !files.cert && !files.key) return undefined;
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new SlothError("usage", "a client certificate needs both --tls-cert and --tls-key");
  }
  return files;
}

export interface AgentStartOptions {
  port: number;
  bind: string;
  maxConcurrent: number;
  workRoot: string;
  tokenFile?: string;
  insecure?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  sandbox: "auto" | "bwrap" | "none";
  taskNetwork: "on" | "off";
  maxWorkspaceBytes: number;
  maxWorkspaceEntries: number;
  maxFileBytes: number;
  idleTimeout: number;
}

/** Runs an agent until SIGINT or SIGTERM. */
export async function agentStartCommand(
  io: Io,
  version: string,
  o: AgentStartOptions,
): Promise<number> {
  const token = await readToken(o.tokenFile);
  // Tasks inherit the agent's environment: the token must not be in it.
  Deno.env.delete("SLOTH_AGENT_TOKEN");
  const agent = await startAgent({
    version,
    port: o.port,
    bind: o.bind,
    maxConcurrent: o.maxConcurrent,
    workRoot: o.workRoot,
    token,
    tokenFile: o.tokenFile,
    insecure: o.insecure ?? false,
    tls: agentTls(o),
    sandbox: o.sandbox,
    taskNetwork: o.taskNetwork === "on",
    idleTimeoutMs: o.idleTimeout,
    limits: {
      maxTotalBytes: o.maxWorkspaceBytes,
      maxEntries: o.maxWorkspaceEntries,
      maxFileBytes: o.maxFileBytes,
    },
    log: (line) => io.err(`${new Date().toISOString()} ${line}\n`),
  });
  const signal = await new Promise<Deno.Signal>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => resolve(sig));
    }
  });
  io.err(`${new Date().toISOString()} ${signal}: stopping (running jobs are cancelled)\n`);
  await agent.stop();
  io.err(`${new Date().toISOString()} stopped\n`);
  return ExitCode.ok;
}

function agentTls(o: AgentStartOptions): ServerTlsFiles | undefined {
  if (!o.tlsCert && !o.tlsKey && !o.tlsClientCa) return undefined;
  if (!o.tlsCert || !o.tlsKey) {
    throw new SlothError("usage", "TLS needs both --tls-cert and --tls-key");
  }
  return { cert: o.tlsCert, key: o.tlsKey, clientCa: o.tlsClientCa };
}

export async function agentPingCommand(
  io: Io,
  address: string,
  o: { tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string },
): Promise<number> {
  const token = (await readToken(o.tokenFile)) ?? readLocalToken(address);
  const client = new AgentClient(address, { token, tls: masterTls(o) });
  try {
    const reply = await client.ping();
    io.out(
      `agent ${address} is reachable: sloth-runner ${reply.version}, protocol ${reply.protocol}, ` +
        `${reply.running_jobs} running, ${reply.queued_jobs} waiting, ${reply.max_concurrent} at once\n`,
    );
    return ExitCode.ok;
  } catch (error) {
    io.err(`error: ${(error as Error).message}\n`);
    return ExitCode.taskFailed;
  } finally {
    client.close();
  }
}

/** `--token-file` wins over `SLOTH_AGENT_TOKEN`; an empty token is an error, not "no token". */
export async function readToken(file?: string): Promise<string | undefined> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (error) {
      throw new SlothError("usage", `cannot read token file ${file}: ${(error as Error).message}`);
    }
    const token = text.trim();
    if (token === "") throw new SlothError("usage", `token file ${file} is empty`);
    return token;
  }
  const fromEnv = Deno.env.get("SLOTH_AGENT_TOKEN");
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}

function tempDir(): string {
  return Deno.env.get("TMPDIR") || "/tmp";
}

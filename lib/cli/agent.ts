/** `sloth-runner agent [start|ping]` and the `sloth-agent` entry point. */
import { readServeConfig, readyLine, SERVE_ENV, startAgent, superviseAgent } from "../agent/mod.ts";
import { didYouMean, ExitCode, SlothError } from "../errors.ts";
import { findInventory, loadInventory } from "../fleet/mod.ts";
import {
  AgentClient,
  checkMasterTls,
  OLDEST_PROTOCOL,
  PROTOCOL_VERSION,
  readLocalToken,
  type ServerTlsFiles,
} from "../rpc/mod.ts";
import { type AgentDef, findAgent, findPool, parseAddress } from "../model/mod.ts";
import { killRecordedTrees } from "../exec/mod.ts";
import { oneLine } from "../log/mod.ts";
import { masterTls } from "./options.ts";
import type { Io } from "./io.ts";

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
  taskUser?: string;
  taskNetwork: "on" | "off";
  maxWorkspaceBytes?: number;
  maxWorkspaceEntries?: number;
  maxFileBytes?: number;
  idleTimeout: number;
  cacheSize?: number;
  keptWorkspaces?: number;
}

/**
 * Runs an agent until SIGINT or SIGTERM: a supervisor that starts the serving
 * process (this same program, told so by SERVE_ENV) and restarts it if it dies.
 */
export async function agentStartCommand(
  io: Io,
  version: string,
  o: AgentStartOptions,
): Promise<number> {
  if (Deno.env.get(SERVE_ENV) === "1") return await serveCommand(io, version, o);
  const token = await readToken(o.tokenFile, "agent");
  const log = (line: string) => io.err(`${stamp()} ${oneLine(line)}\n`);
  if (Deno.env.get("SLOTH_AGENT_TOKEN")) {
    // Deno can neither re-execute this process without it nor overwrite what the
    // kernel shows; the serving process and tasks never get it (it goes by pipe).
    log(
      `WARNING: SLOTH_AGENT_TOKEN${o.tokenFile ? " (unused: --token-file wins)" : ""} stays ` +
        `readable in /proc/${Deno.pid}/environ, this process's environment as it started, to ` +
        "root and this user's other processes (not to tasks in the sandbox or run as another " +
        "user); give the agent its token with --token-file instead",
    );
  }
  // The serving process gets the token through a pipe; tasks must never find it.
  Deno.env.delete("SLOTH_AGENT_TOKEN");
  const env = Deno.env.toObject();
  return await superviseAgent({ token, env, log });
}

/** The serving process: listens, runs jobs, and ends with its supervisor. */
async function serveCommand(io: Io, version: string, o: AgentStartOptions): Promise<number> {
  const { config, orphaned } = await readServeConfig();
  const token = config.token ?? await readToken(o.tokenFile, "agent");
  Deno.env.delete("SLOTH_AGENT_TOKEN");
  const agent = await startAgent({
    version,
    port: config.port ?? o.port,
    bind: o.bind,
    maxConcurrent: o.maxConcurrent,
    workRoot: o.workRoot,
    token,
    localToken: config.localToken,
    ephemeral: config.ephemeral,
    tokenFile: o.tokenFile,
    insecure: o.insecure ?? false,
    tls: agentTls(o),
    sandbox: o.sandbox,
    taskUser: o.taskUser,
    taskNetwork: o.taskNetwork === "on",
    idleTimeoutMs: o.idleTimeout,
    cacheBytes: o.cacheSize,
    keptWorkspaces: o.keptWorkspaces,
    limits: {
      maxTotalBytes: o.maxWorkspaceBytes,
      maxEntries: o.maxWorkspaceEntries,
      maxFileBytes: o.maxFileBytes,
    },
    // One line per entry whatever it holds (a stack, a peer's words): nothing forges lines.
    log: (line) => io.err(`${stamp()} ${oneLine(line)}\n`),
  });
  io.out(readyLine({
    port: agent.port,
    localToken: agent.localToken,
    ephemeral: config.ephemeral ?? o.port === 0,
    trees: agent.trees,
  }));
  const signal = await Promise.race([
    new Promise<Deno.Signal>((resolve) => {
      for (const sig of ["SIGINT", "SIGTERM"] as const) {
        Deno.addSignalListener(sig, () => resolve(sig));
      }
    }),
    orphaned.then(() => "orphaned" as const),
  ]);
  if (signal === "orphaned") {
    // The supervisor is gone (killed): end now, as it would have wanted, jobs and all.
    killRecordedTrees(agent.trees, { fresh: true });
    return ExitCode.taskFailed;
  }
  io.err(`${stamp()} ${signal}: stopping (running jobs are cancelled)\n`);
  await agent.stop();
  io.err(`${stamp()} stopped\n`);
  return ExitCode.ok;
}

function stamp(): string {
  return new Date().toISOString();
}

function agentTls(o: AgentStartOptions): ServerTlsFiles | undefined {
  if (!o.tlsCert && !o.tlsKey && !o.tlsClientCa) return undefined;
  if (!o.tlsCert || !o.tlsKey) {
    throw new SlothError("usage", "TLS needs both --tls-cert and --tls-key", {
      hint: !o.tlsCert && !o.tlsKey
        ? "--tls-client-ca only adds client checks to a TLS agent; give it a certificate and key too"
        : o.tlsCert
        ? "give the private key of the certificate too (--tls-key)"
        : "give the certificate of the key too (--tls-cert)",
    });
  }
  return { cert: o.tlsCert, key: o.tlsKey, clientCa: o.tlsClientCa };
}

export async function agentPingCommand(
  io: Io,
  address: string,
  o: {
    tokenFile?: string;
    tlsCa?: string;
    tlsCert?: string;
    tlsKey?: string;
    inventory?: string;
  },
): Promise<number> {
  const given = address;
  // An inventory agent's name: its address, token variable and TLS files.
  const named = parseAddress(address) ? undefined : await inventoryAgent(io, address, o.inventory);
  if (named) address = named.address;
  const tls = named?.tls ?? masterTls(o);
  if (tls) await checkMasterTls(tls);
  const fromEnv = named?.tokenEnv && !o.tokenFile
    ? Deno.env.get(named.tokenEnv)?.trim()
    : undefined;
  if (named?.tokenEnv && !o.tokenFile && !fromEnv) {
    throw new SlothError(
      "usage",
      `token_env ${named.tokenEnv} is not set (the token for ${given})`,
    );
  }
  const token = fromEnv ?? (await readToken(o.tokenFile, "master")) ?? readLocalToken(address);
  const client = new AgentClient(address, { token, tls });
  try {
    const reply = await client.ping();
    io.out(
      `agent ${address} is reachable: sloth-runner ${reply.version}, protocol ${reply.protocol}, ` +
        `${reply.running_jobs} running, ${reply.queued_jobs} waiting, ${reply.max_concurrent} at once\n`,
    );
    if (reply.protocol < OLDEST_PROTOCOL) {
      io.err(
        `error: this master speaks protocol ${OLDEST_PROTOCOL} to ${PROTOCOL_VERSION}: it cannot ` +
          `run tasks on that agent (upgrade the agent)\n`,
      );
      return ExitCode.taskFailed;
    }
    return ExitCode.ok;
  } catch (error) {
    io.err(`error: ${(error as Error).message}\n`);
    return ExitCode.taskFailed;
  }
  // The connection ends with the process, without a GOAWAY (see AgentClient.close).
}

/**
 * `--token-file` wins over `SLOTH_AGENT_TOKEN`; an empty token is an error, not "no token".
 * An agent's missing file can be made anew; a master's must hold the agent's token.
 */
/** The inventory's agent of this name; a usage error when there is none. */
async function inventoryAgent(
  io: Io,
  name: string,
  flag: string | undefined,
): Promise<AgentDef | undefined> {
  const path = findInventory(flag, io.cwd);
  if (!path) {
    throw new SlothError("usage", `"${name}" is not an agent address`, {
      hint: "give it as host:port with a port from 1 to 65535, e.g. 127.0.0.1:50051 " +
        "(or an agent's name, with an inventory: -i FILE)",
    });
  }
  const inventory = await loadInventory(path);
  const agent = findAgent(inventory, name);
  if (agent) return agent;
  const known = Object.keys(inventory?.agents ?? {});
  if (findPool(inventory, name)) {
    throw new SlothError("usage", `"${name}" is a pool, not an agent`, {
      hint: `sloth-runner agents pings every agent (and every member of a DNS pool)`,
    });
  }
  throw new SlothError(
    "usage",
    `"${name}" is neither an agent address nor an agent of the inventory ${path}`,
    {
      hint: known.length
        ? `its agents: ${known.join(", ")}.${didYouMean(name, known)}`
        : "give it as host:port with a port from 1 to 65535, e.g. 127.0.0.1:50051",
    },
  );
}

export async function readToken(
  file: string | undefined,
  side: "agent" | "master",
): Promise<string | undefined> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (error) {
      const why = error instanceof Deno.errors.NotFound
        ? "it does not exist"
        : error instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : (error as Error).message;
      throw new SlothError("usage", `cannot read token file ${file}: ${why}`, {
        hint: side === "agent"
          ? `make one with: openssl rand -hex 32 > ${file} && chmod 600 ${file}`
          : "give --token-file the file the agent was started with (or a copy of it), " +
            "or set SLOTH_AGENT_TOKEN to the agent's token",
      });
    }
    const token = text.trim();
    if (token === "") {
      throw new SlothError("usage", `token file ${file} is empty`, {
        hint: side === "agent"
          ? `put the token in it, e.g.: openssl rand -hex 32 > ${file}`
          : "put the agent's token in it (the content of the agent's --token-file), " +
            "or set SLOTH_AGENT_TOKEN",
      });
    }
    return token;
  }
  // Trimmed like a token file: a token passed through `$(cat file)` or a Secret may end
  // in a newline, which no gRPC header can carry.
  const fromEnv = Deno.env.get("SLOTH_AGENT_TOKEN")?.trim();
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}

/**
 * Command-line options and their parsers, kept apart from the commands so that
 * `--help` and `version` load no more than commander.
 */
import { type Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { SlothError } from "../errors.ts";
import { parseDuration, parseSize } from "../model/mod.ts";

export const DEFAULT_AGENT_PORT = 50051;

export function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError("expected a port number (0-65535; 0 picks a free one).");
  }
  return n;
}

export function positiveInt(value: string): number {
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
      new Option(
        "--task-user <user>",
        "user tasks' shell commands run as (USER, UID, USER:GROUP or UID:GID); root: no switch " +
          "(warns)",
      ).default(undefined, "nobody when the agent runs as root, else the agent's own user"),
    )
    .addOption(
      new Option("--task-network <on|off>", "whether tasks (shell and Lua) may use the network")
        .choices(["on", "off"] as const).default("on" as const),
    )
    .addOption(
      new Option(
        "--max-workspace-bytes <n>",
        "largest workspace a master may send, in file content (default: 64G)",
      ).argParser(byteCount),
    )
    .addOption(
      new Option(
        "--max-workspace-entries <n>",
        "most files, directories and links in a workspace (default: 1000000)",
      ).argParser(positiveInt),
    )
    .addOption(
      new Option(
        "--cache-size <n>",
        "disk kept for later jobs: the content store and kept workspaces together, " +
          "least recently used first (default: 4G)",
      )
        .argParser(byteCount),
    )
    .addOption(
      new Option(
        "--kept-workspaces <n>",
        "workspaces kept for later runs of the same master directory, at most, within " +
          "--cache-size (default: 16)",
      )
        .argParser(positiveInt),
    )
    .addOption(
      new Option("--idle-timeout <duration>", "end an upload that sends nothing for this long")
        .argParser(duration).default(30_000, "30s"),
    )
    .addOption(
      new Option(
        "--max-file-bytes <n>",
        "largest single file in a workspace, sent or sent back (default: 16G)",
      )
        .argParser(byteCount),
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
  const size = parseSize(value);
  if (size === undefined) {
    throw new InvalidArgumentError("expected a size such as 1048576, 512K, 100M or 2G.");
  }
  return size;
}

function tempDir(): string {
  return Deno.env.get("TMPDIR") || "/tmp";
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
): { ca?: string; cert?: string; key?: string } | undefined {
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

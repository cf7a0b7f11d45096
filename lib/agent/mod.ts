/** Starting and stopping an agent: the service, its Lua workers and its gRPC server. */
import { SlothError } from "../errors.ts";
import {
  bwrapSandbox,
  chooseTaskUser,
  handOver,
  hardlinksProtected,
  keepShellsWarm,
  killRecordedTrees,
  probeBwrap,
  recordTreesIn,
  runShell,
  runTasksAs,
  taskUser,
  type TaskUserChoice,
  TaskUserError,
  userSandbox,
} from "../exec/mod.ts";
import { exitStatusText } from "../model/mod.ts";
import { DEFAULT_LIMITS, type Limits } from "../sync/mod.ts";
import {
  checkServerTls,
  isLoopbackHost,
  localTokenDir,
  newToken,
  serveAgent,
  type ServerTlsFiles,
  TlsConfigError,
  writeLocalToken,
} from "../rpc/mod.ts";
import { agentHome, AgentService } from "./service.ts";

export { AgentService } from "./service.ts";
export { readServeConfig, readyLine, SERVE_ENV, superviseAgent } from "./supervisor.ts";
export type { ServeConfig, ServeReady } from "./supervisor.ts";
export type { AgentOptions } from "./service.ts";

export interface StartAgentOptions {
  version: string;
  port: number;
  bind: string;
  maxConcurrent: number;
  workRoot: string;
  token?: string;
  /** Allow a non-loopback address without a token. */
  insecure: boolean;
  tls?: ServerTlsFiles;
  /** The token file, if the token came from one: tasks must not see it. */
  tokenFile?: string;
  /** Shell commands under bubblewrap: when it works (auto), always, or never. */
  sandbox: "auto" | "bwrap" | "none";
  taskNetwork: boolean;
  /**
   * `--task-user`: who tasks' commands run as. Default: `nobody` for an agent
   * running as root, else the agent's own user (which cannot switch).
   */
  taskUser?: string;
  /** Limits on what a master may send; each missing one is the default. */
  limits?: Partial<Limits>;
  /** Bytes of file content kept for later jobs (default 4 GiB). */
  cacheBytes?: number;
  /** Workspaces kept for later runs of the same master directory (default 16). */
  keptWorkspaces?: number;
  /** Longest wait for the next message while a master uploads a workspace. */
  idleTimeoutMs?: number;
  /** A loopback agent's own token, made by an earlier start of this agent (a restart keeps it). */
  localToken?: string;
  /** The port was picked by the system at an earlier start: the agent's files go when it stops. */
  ephemeral?: boolean;
  log(line: string): void;
}

export interface RunningAgent {
  port: number;
  /** The token it made for this user's masters (a loopback agent without one). */
  localToken?: string;
  /** Where it records its jobs' process trees (for its supervisor). */
  trees: string;
  /**
   * Cancels running jobs (their process trees are killed, directories removed) and
   * lets their calls end; the process should exit next, which closes the port.
   */
  stop(): Promise<void>;
}

export async function startAgent(options: StartAgentOptions): Promise<RunningAgent> {
  // A file that can never work is refused here, naming it: later, every handshake
  // would fail with words about the protocol and nothing in this agent's log.
  if (options.tls) checkServerTls(options.tls);
  const mutualTls = options.tls?.clientCa !== undefined;
  if (!isLoopbackHost(options.bind) && options.token === undefined && !mutualTls) {
    if (!options.insecure) {
      throw new SlothError(
        "usage",
        `refusing to listen on ${options.bind} without a token: anyone who can reach it could run commands`,
        {
          hint:
            "Set one with --token-file FILE or SLOTH_AGENT_TOKEN (and give the master the same), " +
            "or pass --insecure if you really mean it.",
        },
      );
    }
    options.log(
      `WARNING: listening on ${options.bind} WITHOUT A TOKEN (--insecure): anyone who can reach ` +
        "this port can run commands as this user",
    );
  }
  try {
    const info = await Deno.stat(options.workRoot);
    if (!info.isDirectory) throw new Error("not a directory");
  } catch {
    throw new SlothError("usage", `work root ${options.workRoot} is not a directory`, {
      hint: "create it, or pass --work-root with a directory the agent may write to",
    });
  }
  const tasksAs = await chooseTasksUser(options);
  const bwrap = await chooseSandbox(options, tasksAs);
  const workRoot = await Deno.realPath(options.workRoot);
  // The agent's HOME too: wherever it is (a service user's /var/lib/..., not only
  // under /home or /root), it may hold credentials of the agent's user.
  const secrets = [
    options.tokenFile,
    options.tls?.cert,
    options.tls?.key,
    options.tls?.clientCa,
    localTokenDir(),
    Deno.env.get("HOME") || undefined,
  ].filter((p): p is string => p !== undefined).map((p) =>
    p.startsWith("/") ? p : `${Deno.cwd()}/${p}`
  );
  const service = new AgentService({
    version: options.version,
    maxConcurrent: options.maxConcurrent,
    workRoot,
    bwrap,
    taskNetwork: options.taskNetwork,
    secrets,
    limits: { ...DEFAULT_LIMITS, ...definedOnly(options.limits ?? {}) },
    cacheBytes: options.cacheBytes ?? 4 * 1024 ** 3,
    keptWorkspaces: options.keptWorkspaces ?? 16,
    log: options.log,
  });
  // On loopback without a token, a token is made before the port opens (so no call ever
  // gets in without one) and written where this user's masters find it (local_token.ts).
  const makeLocalToken = options.token === undefined && !mutualTls &&
    isLoopbackHost(options.bind);
  const token = makeLocalToken ? options.localToken ?? newToken() : options.token;
  let localTokenFile: string | undefined;
  let server;
  try {
    server = await serveAgent(service, {
      host: options.bind,
      port: options.port,
      token,
      idleTimeoutMs: options.idleTimeoutMs,
      tls: options.tls,
      log: options.log,
      onInternalError: (error) =>
        options.log(
          `internal error: ${error instanceof Error ? error.stack ?? error.message : error}`,
        ),
    });
  } catch (error) {
    if (error instanceof TlsConfigError) throw error;
    throw listenError(options.bind, options.port, error as Error);
  }
  // Process trees of jobs an earlier serving process left when it died go first,
  // then their directories (open); this one's trees are recorded from now on.
  const home = agentHome(workRoot, options.bind, server.port);
  const trees = `${home}/trees`;
  killRecordedTrees(trees);
  service.open(home, options.ephemeral ?? options.port === 0);
  const jobs = `${home}/jobs`;
  if (tasksAs.user && !bwrap) {
    // Unsandboxed, the task user reaches its job's directory by its real path (in
    // the sandbox, by the way bwrap makes): it may pass through, not list; the
    // store, kept workspaces and trees stay 0700.
    Deno.chmodSync(home, 0o711);
    Deno.chmodSync(jobs, 0o711);
  }
  recordTreesIn(trees);
  const problem = await tryTask(jobs, {
    workRoot,
    hide: secrets,
    network: options.taskNetwork,
    bwrap,
  });
  if (problem) {
    await server.close(0);
    throw new SlothError(
      "usage",
      `tasks cannot run in this agent's job directories as ${tasksAs.name}: ${problem}`,
      {
        hint: tasksAs.user
          ? `${tasksAs.name} must be able to pass through ${options.workRoot} and every ` +
            "directory above it (chmod o+x), or choose another --work-root or --task-user"
          : "check that the work root is writable and bubblewrap works (--sandbox none to try without)",
      },
    );
  }
  if (makeLocalToken) {
    try {
      localTokenFile = await writeLocalToken(options.bind, server.port, token!);
    } catch (error) {
      await server.close(0);
      throw new SlothError(
        "usage",
        `cannot write the local token file: ${(error as Error).message}`,
      );
    }
  }
  options.log(
    `sloth-agent ${options.version} listening on ${options.bind}:${server.port} ` +
      `(${options.maxConcurrent} jobs at once, work root ${options.workRoot}` +
      `${options.token ? ", token required" : ""}` +
      `${localTokenFile ? `, token for this user's masters in ${localTokenFile}` : ""}` +
      `${options.tls ? (mutualTls ? ", mutual TLS" : ", TLS") : ""}` +
      `, shell sandbox ${bwrap ? "bwrap" : "none"}, tasks as ${tasksAs.name}, task network ${
        options.taskNetwork ? "on" : "off"
      })`,
  );
  // Each command's session, user switch and shell, made ahead of it (exec/warm.ts).
  const stopWarm = keepShellsWarm();
  return {
    port: server.port,
    localToken: makeLocalToken ? token : undefined,
    trees,
    stop: async () => {
      await service.stop();
      await stopWarm();
      // Results (cancelled, agent_lost) reach the masters; the connections end with
      // the process, without the GOAWAY that `close` would send (see AgentServer.settle).
      await server.settle(1000);
      if (localTokenFile) await Deno.remove(localTokenFile).catch(() => {});
    },
  };
}

/**
 * Who tasks run as (see `chooseTaskUser`), now set for every command this process
 * starts; a warning when that is root by request.
 */
async function chooseTasksUser(options: StartAgentOptions): Promise<TaskUserChoice> {
  let choice: TaskUserChoice;
  try {
    choice = await chooseTaskUser(options.taskUser);
    runTasksAs(choice.user);
  } catch (error) {
    if (!(error instanceof TaskUserError)) throw error;
    throw new SlothError("usage", error.message, { hint: error.hint });
  }
  if (choice.warning) options.log(choice.warning);
  return choice;
}

/** bwrap when asked for (or, with auto, when it works here); a loud warning when auto finds none. */
async function chooseSandbox(
  options: StartAgentOptions,
  tasksAs: TaskUserChoice,
): Promise<boolean> {
  if (options.sandbox === "none") {
    options.log(
      `WARNING: --sandbox none: shell commands of tasks run unconfined, as ${
        tasksAs.user ? tasksAs.name : "this user"
      }`,
    );
    await warnHardlinks(options, tasksAs);
    return false;
  }
  const problem = await probeBwrap(tasksAs.user);
  if (problem === undefined) return true;
  if (options.sandbox === "bwrap") {
    throw new SlothError("usage", `--sandbox bwrap, but bubblewrap cannot run here: ${problem}`, {
      hint: "Install it (Debian: apt-get install bubblewrap), or choose --sandbox none explicitly.",
    });
  }
  options.log(
    `WARNING: shell commands of tasks run WITHOUT a sandbox: ${problem}. ` +
      "Install bubblewrap (apt-get install bubblewrap) to confine them to their workspace.",
  );
  await warnHardlinks(options, tasksAs);
  return false;
}

/**
 * Unconfined tasks of another user could hard-link a file of the agent's user
 * (root's) into their job's directory, which the agent then hands over to them,
 * unless the kernel refuses such links (fs.protected_hardlinks = 1, the default
 * of most distributions).
 */
async function warnHardlinks(options: StartAgentOptions, tasksAs: TaskUserChoice): Promise<void> {
  if (!tasksAs.user || await hardlinksProtected()) return;
  options.log(
    "WARNING: fs.protected_hardlinks is not 1: unsandboxed tasks could hard-link root's files " +
      "into their job directory, which the agent hands over to the task user; set it " +
      "(sysctl fs.protected_hardlinks=1) or install bubblewrap",
  );
}

/**
 * Runs one command the way a job's commands run (a job directory made and handed
 * over the same way, the same sandbox, the same user), so that an agent whose
 * tasks could not work refuses to start, saying why, instead of failing every
 * task. The reason when it fails.
 */
async function tryTask(
  jobs: string,
  options: { workRoot: string; hide: string[]; network: boolean; bwrap: boolean },
): Promise<string | undefined> {
  const jobRoot = `${jobs}/sloth-probe-${crypto.randomUUID().slice(0, 13)}`;
  try {
    Deno.mkdirSync(jobRoot, { mode: 0o700 });
    Deno.mkdirSync(`${jobRoot}/tmp`);
    Deno.mkdirSync(`${jobRoot}/ws`);
    await handOver([`${jobRoot}/tmp`, `${jobRoot}/ws`, jobRoot]);
    const user = taskUser();
    const sandbox = options.bwrap
      ? bwrapSandbox({
        jobRoot,
        workRoot: options.workRoot,
        hide: options.hide,
        network: options.network,
      })
      : user
      ? userSandbox(jobRoot, user)
      : undefined;
    const { exit, stderr } = await runShell('echo x > "$TMPDIR/probe" && echo x > probe', {
      cwd: `${jobRoot}/ws`,
      env: { TMPDIR: `${jobRoot}/tmp` },
      sandbox,
      capture: true,
    });
    if (exit.reason === "exited" && exit.code === 0) return undefined;
    return stderr.trim().split("\n").pop() || exitStatusText(exit);
  } catch (error) {
    return (error as Error).message;
  } finally {
    await Deno.remove(jobRoot, { recursive: true }).catch(() => {});
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Why the agent could not listen, in words, and what to do instead. */
function listenError(bind: string, port: number, error: Error): SlothError {
  const where = `${bind}:${port}`;
  if (/EADDRINUSE/.test(error.message)) {
    return new SlothError("usage", `cannot listen on ${where}: the port is already in use`, {
      hint:
        `stop what uses it (another agent?), or choose another port: -p PORT (-p 0 picks a free one)`,
    });
  }
  if (/EACCES/.test(error.message)) {
    return new SlothError("usage", `cannot listen on ${where}: permission denied`, {
      hint: "ports below 1024 need root; choose a higher port with -p",
    });
  }
  if (/EADDRNOTAVAIL|ENOTFOUND|resol/i.test(error.message)) {
    return new SlothError("usage", `cannot listen on ${where}: no such address on this machine`, {
      hint: "--bind takes an address of this machine (127.0.0.1, 0.0.0.0, or an interface's)",
    });
  }
  return new SlothError("usage", `cannot listen on ${where}: ${error.message}`);
}

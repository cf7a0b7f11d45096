/**
 * A real name server for DNS pool tests: dnsmasq on 127.0.0.1 and a free port,
 * answering names under ".test" (RFC 6761) from the records given, "no such name"
 * for other ".test" names, and REFUSED for everything else: it has no upstream, so
 * no look-up ever leaves the machine.
 */
import dgram from "node:dgram";

const NOT_INSTALLED = "dnsmasq is not installed (apt-get install dnsmasq-base)";

export interface DnsRecords {
  /** Name → its addresses, IPv4 or IPv6 (A and AAAA records). */
  hosts?: Record<string, string[]>;
  srv?: { name: string; target: string; port: number; priority?: number; weight?: number }[];
}

export interface TestDnsServer {
  /** "127.0.0.1:PORT". */
  server: string;
  port: number;
  /**
   * New records, answered from when this returns: new hosts are re-read on SIGHUP;
   * new SRV records (command-line flags dnsmasq reads once) restart it on the same port.
   */
  update(records: DnsRecords): Promise<void>;
  /** Everything dnsmasq logged so far. */
  log(): string;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A running dnsmasq, or why there is none (for a test's `ignore`). */
export async function startDnsServer(
  records: DnsRecords,
): Promise<TestDnsServer | { skipped: string }> {
  const dnsmasq = await findDnsmasq();
  if (!dnsmasq) return { skipped: NOT_INSTALLED };
  const dir = await Deno.makeTempDir({ prefix: "sloth-dns-" });
  let srv = JSON.stringify(records.srv ?? []);
  await writeHosts(dir, records);
  let running: Dnsmasq | undefined;
  try {
    // A port free now may be taken before dnsmasq binds it: try a few.
    const failures: string[] = [];
    for (let attempt = 0; attempt < 5 && !running; attempt++) {
      const started = await launch(dnsmasq, dir, records, await freePort());
      if ("failed" in started) failures.push(started.failed);
      else running = started;
    }
    if (!running) throw new Error(`dnsmasq did not start:\n${failures.join("\n")}`);
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  let current: Dnsmasq = running;
  const stop = async () => {
    await current.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return {
    server: `127.0.0.1:${current.port}`,
    port: current.port,
    log: () => current.log(),
    async update(next) {
      await writeHosts(dir, next);
      if (JSON.stringify(next.srv ?? []) === srv) return await current.reload();
      srv = JSON.stringify(next.srv ?? []);
      await current.stop();
      const started = await launch(dnsmasq, dir, next, current.port);
      if ("failed" in started) throw new Error(`dnsmasq did not restart:\n${started.failed}`);
      current = started;
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

interface Dnsmasq {
  port: number;
  log(): string;
  /** SIGHUP, then wait until the log says the hosts file was read again. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

async function launch(
  dnsmasq: string,
  dir: string,
  records: DnsRecords,
  port: number,
): Promise<Dnsmasq | { failed: string }> {
  const child = new Deno.Command(dnsmasq, {
    args: [
      "--keep-in-foreground", // no fork, but not --no-daemon's debug mode
      "--conf-file=/dev/null", // not /etc/dnsmasq.conf nor /etc/dnsmasq.d
      `--port=${port}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces", // that address only, not the wildcard
      "--no-resolv", // no upstream: nothing is forwarded off the machine
      "--no-hosts", // not /etc/hosts
      `--addn-hosts=${dir}/hosts`,
      "--local=/test/", // unknown .test names: NXDOMAIN (others: REFUSED)
      "--user=", // keep our user: as root it would become "nobody", unable to read dir
      `--pid-file=${dir}/dnsmasq.pid`,
      "--log-facility=-", // stderr
      ...(records.srv ?? []).map((r) =>
        `--srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}`
      ),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await status;
    await reading;
  };
  const deadline = Date.now() + 10_000;
  while (!await answers(port)) {
    if (exited || Date.now() > deadline) {
      await stop();
      return { failed: text || `dnsmasq exited with ${(await status).code}` };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const reads = () => text.split(`read ${dir}/hosts`).length - 1;
  return {
    port,
    log: () => text,
    async reload() {
      const before = reads();
      child.kill("SIGHUP");
      const until = Date.now() + 5_000;
      while (reads() === before) {
        if (exited || Date.now() > until) throw new Error(`dnsmasq did not reload:\n${text}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    stop,
  };
}

/** Whether a name server answers on the port at all (any answer, even "no such name"). */
async function answers(port: number): Promise<boolean> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 200);
  try {
    await Deno.resolveDns("ready.test", "A", {
      nameServer: { ipAddr: "127.0.0.1", port },
      signal: controller.signal,
    });
    return true;
  } catch (error) {
    return error instanceof Deno.errors.NotFound;
  } finally {
    clearTimeout(timer);
  }
}

async function writeHosts(dir: string, records: DnsRecords): Promise<void> {
  const lines = Object.entries(records.hosts ?? {}).flatMap(([name, ips]) =>
    ips.map((ip) => `${ip} ${name}\n`)
  );
  // Written whole then renamed, so a reload never reads half a file.
  await Deno.writeTextFile(`${dir}/hosts.new`, lines.join(""));
  await Deno.rename(`${dir}/hosts.new`, `${dir}/hosts`);
}

/** A port free on 127.0.0.1 for both TCP and UDP, as dnsmasq binds both. */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const socket = dgram.createSocket("udp4");
    const free = await new Promise<boolean>((resolve) => {
      socket.once("error", () => resolve(false));
      socket.bind(port, "127.0.0.1", () => resolve(true));
    });
    await new Promise<void>((done) => socket.close(() => done()));
    if (free) return port;
  }
  throw new Error("no port free for both TCP and UDP on 127.0.0.1");
}

/** dnsmasq on PATH, or in an sbin directory a non-root PATH may leave out. */
async function findDnsmasq(): Promise<string | undefined> {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/usr/local/sbin"];
  for (const dir of dirs.filter((d) => d.startsWith("/"))) {
    try {
      const info = await Deno.stat(`${dir}/dnsmasq`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return `${dir}/dnsmasq`;
    } catch {
      // not in this one
    }
  }
  return undefined;
}

/** A UDP socket on 127.0.0.1 that takes queries and never answers. */
export async function startSilentServer(): Promise<
  { server: string; received(): number; stop(): Promise<void> }
> {
  const socket = dgram.createSocket("udp4");
  let received = 0;
  socket.on("message", () => received++);
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve());
  });
  const { port } = socket.address();
  return {
    server: `127.0.0.1:${port}`,
    received: () => received,
    stop: () => new Promise<void>((done) => socket.close(() => done())),
  };
}

/** Why DNS tests cannot run here, or undefined when they can (for `ignore` at load time). */
export async function dnsServerSkip(): Promise<string | undefined> {
  return await findDnsmasq() ? undefined : NOT_INSTALLED;
}

/**
 * DNS pools: `dns: "name:port"` makes every A and AAAA record of the name a member,
 * `dns: "_service._proto.name"` every SRV record (its target's addresses, its port).
 * Pools resolve at run start and again before a failover, so look-ups are short
 * and bounded; `SLOTH_DNS_SERVER=ip:port` sends them all to one name server.
 */
import dgram from "node:dgram";
import { SlothError } from "../errors.ts";
import { hasAddressShape, parseAddress } from "../model/address.ts";

export interface DnsOptions {
  /** "host:port" (IPv6 as "[::1]:5353"), or "host" for port 53; default: SLOTH_DNS_SERVER, else the system resolver. */
  server?: string;
  /** Whole look-up deadline; default 2000. */
  timeoutMs?: number;
}

export interface DnsMember {
  /**
   * For people and summaries: "10.0.0.5:50051" for A/AAAA, "<srv target without
   * trailing dot>:<port>" for SRV; a target with several addresses gives one member
   * each, named by its address ("[::1]:6000"), so that names stay unique and hold no
   * spaces (they become part of a fan-out's task names).
   */
  name: string;
  /** What to dial: "10.0.0.5:50051", "[fd00::5]:50051". */
  address: string;
  /** The name DNS gave the address for (the SRV target, or the name looked up): with TLS, the name its certificate must carry. */
  host?: string;
}

export type DnsServer = { ipAddr: string; port: number };

const SHAPE_PROBLEM = 'must be "name:port" or an SRV name "_service._proto.name"';
const LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const SRV_NAME = /^_[A-Za-z0-9-]+\._[A-Za-z0-9-]+\./;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Checks the shape of a pool's `dns` value without any look-up; a problem phrase or undefined. */
export function dnsSpecProblem(spec: string): string | undefined {
  if (SRV_NAME.test(spec)) {
    if (/:\d*$/.test(spec)) return `is an SRV name, whose records carry the ports: drop ":port"`;
    return nameProblem(spec);
  }
  const colon = spec.lastIndexOf(":");
  if (colon < 0) return SHAPE_PROBLEM;
  const host = spec.slice(0, colon);
  if (isIp(host.replace(/^\[(.*)\]$/, "$1"))) {
    return "is an IP address, not a name to look up: list it as an agent instead";
  }
  if (!/^\d{1,5}$/.test(spec.slice(colon + 1))) return SHAPE_PROBLEM;
  if (!hasAddressShape(spec)) return nameProblem(host) ?? SHAPE_PROBLEM;
  if (!parseAddress(spec)) return `has port ${spec.slice(colon + 1)}: a port is 1 to 65535`;
  return nameProblem(host);
}

function nameProblem(name: string): string | undefined {
  const labels = name.replace(/\.$/, "").split(".");
  if (name.length > 253 || !labels.every((label) => LABEL.test(label))) {
    return `has "${name}", which is not a DNS name (letters, digits, "-" and "_" between dots)`;
  }
  return undefined;
}

/** Parses SLOTH_DNS_SERVER or the server option; a usage error naming `from` when malformed. */
export function parseDnsServer(value: string, from: string): DnsServer {
  const text = value.trim();
  // "[v6]:port", "v4:port", or an address alone; a bare IPv6 address has no room for a port.
  const match = /^\[([^\]]*)\](?::(\d{1,5}))?$/.exec(text) ?? /^([^:]*)(?::(\d{1,5}))?$/.exec(text);
  const [host, portText] = match ? [match[1], match[2]] : [text, undefined];
  const port = Number(portText ?? 53);
  const bracketsRight = !text.startsWith("[") || host.includes(":"); // only around IPv6
  if (isIp(host) && bracketsRight && port >= 1 && port <= 65535) return { ipAddr: host, port };
  throw new SlothError(
    "usage",
    `${from}="${value}" is not a name server: expected an IP address and port, ` +
      `such as "127.0.0.1:5353" or "[::1]:5353", or an IP address alone for port 53`,
    {
      hint: /[g-z]/i.test(host) && !isIp(host)
        ? "a name server is given by its IP address: its own name would need a look-up first"
        : undefined,
    },
  );
}

function isIp(host: string): boolean {
  if (IPV4.test(host)) return true;
  if (!host.includes(":") || !/^[0-9a-fA-F:.]+$/.test(host)) return false;
  try {
    new URL(`http://[${host}]/`);
    return true;
  } catch {
    return false;
  }
}

/** "127.0.0.1:5353", "[::1]:53", or "the system resolver". */
export function formatDnsServer(server: DnsServer | undefined): string {
  return server ? dial(server.ipAddr, server.port) : "the system resolver";
}

/**
 * Members of a DNS pool: "name:port" → every A and AAAA record with that port;
 * "_service._proto.name" (no port) → SRV records, each target resolved to A/AAAA
 * (same server), with the record's port. Sorted by name, de-duplicated by address.
 */
export async function resolveDnsPool(spec: string, options: DnsOptions = {}): Promise<DnsMember[]> {
  const problem = dnsSpecProblem(spec);
  if (problem) throw new SlothError("usage", `DNS pool "${spec}" ${problem}`);
  const fromEnv = Deno.env.get("SLOTH_DNS_SERVER")?.trim();
  const server = options.server !== undefined
    ? parseDnsServer(options.server, "server")
    : fromEnv
    ? parseDnsServer(fromEnv, "SLOTH_DNS_SERVER")
    : undefined;
  const timeoutMs = options.timeoutMs ?? 2000;
  // One deadline for the whole look-up, SRV targets included; a timer we clear
  // rather than AbortSignal.timeout, so nothing is left pending after a fast answer.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const lookup: Lookup = {
    spec,
    server,
    signal: controller.signal,
    timeoutMs,
    started: Date.now(),
  };
  try {
    if (SRV_NAME.test(spec)) return unique(await srvMembers(lookup), lookup);
    const colon = spec.lastIndexOf(":");
    const port = Number(spec.slice(colon + 1));
    const name = spec.slice(0, colon);
    const host = name.replace(/\.$/, "");
    const ips = await addresses(lookup, name);
    return unique(
      ips.map((ip) => ({ name: dial(ip, port), address: dial(ip, port), host })),
      lookup,
    );
  } finally {
    clearTimeout(timer);
  }
}

interface Lookup {
  spec: string;
  server: DnsServer | undefined;
  signal: AbortSignal;
  timeoutMs: number;
  started: number;
}

function dial(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

async function srvMembers(lookup: Lookup): Promise<DnsMember[]> {
  const records = await resolve(lookup, lookup.spec, "SRV");
  if (!records?.length) throw await failed(lookup, lookup.spec, "SRV", "no SRV records");
  // RFC 2782: a target of "." says the service is decidedly not available there.
  const targets = records.filter((record) => record.target.replace(/\.$/, "") !== "");
  const members = await settled(targets.map(async ({ target, port }) => {
    const host = target.replace(/\.$/, "");
    const ips = await addresses(lookup, host, `SRV target "${host}": `);
    return ips.map((ip) => ({
      // Several addresses for one target: each member is named by its own (no spaces:
      // the name becomes part of a fan-out's task names).
      name: ips.length === 1 ? `${host}:${port}` : dial(ip, port),
      address: dial(ip, port),
      host,
    }));
  }));
  return members.flat();
}

/** Every A and AAAA record of `host`; either kind alone is enough. */
async function addresses(lookup: Lookup, host: string, what = ""): Promise<string[]> {
  const [v4, v6] = await settled([resolve(lookup, host, "A"), resolve(lookup, host, "AAAA")]);
  const ips = [...(v4 ?? []), ...(v6 ?? [])];
  if (ips.length > 0) return ips;
  throw await failed(lookup, host, "A", "no A or AAAA records", what);
}

/** Like Promise.all, but waits for every look-up to end, so none outlives the call. */
async function settled<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected) throw rejected.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** The records, or undefined when the server says there are none (NotFound). */
function resolve(lookup: Lookup, name: string, type: "A" | "AAAA"): Promise<string[] | undefined>;
function resolve(lookup: Lookup, name: string, type: "SRV"): Promise<Deno.SrvRecord[] | undefined>;
async function resolve(
  lookup: Lookup,
  name: string,
  type: "A" | "AAAA" | "SRV",
): Promise<string[] | Deno.SrvRecord[] | undefined> {
  try {
    const nameServer = lookup.server ? { nameServer: lookup.server } : {};
    return await Deno.resolveDns(name, type as "A", { ...nameServer, signal: lookup.signal });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (lookup.signal.aborted) {
      throw dnsError(lookup, `no answer within ${duration(lookup.timeoutMs)}`);
    }
    // Deno's resolver also gives up on its own, after about 2s whatever the deadline.
    if (error instanceof Deno.errors.TimedOut) {
      throw dnsError(lookup, `no answer within ${duration(Date.now() - lookup.started)}`, error);
    }
    const reason = error instanceof Error
      ? error.message.replace(/^proto error: /, "")
      : `${error}`;
    throw dnsError(lookup, reason, error);
  }
}

/**
 * Deno.resolveDns reports "no such name", "no records of this type" and "refused"
 * alike (NotFound, "no records found"), yet they call for different fixes; with a
 * known server one more query by hand reads the response code that tells them apart.
 */
async function failed(
  lookup: Lookup,
  name: string,
  type: "A" | "SRV",
  empty: string,
  what = "",
): Promise<SlothError> {
  const code = lookup.server && await responseCode(lookup.server, name, type, lookup.signal);
  const reasons: Record<number, string> = {
    0: empty,
    2: "the server failed (SERVFAIL)",
    3: "no such name",
    5: "refused",
  };
  const reason = code === undefined
    ? `no such name, or ${empty}`
    : reasons[code] ?? `response code ${code}`;
  return dnsError(lookup, what + reason);
}

function dnsError(lookup: Lookup, reason: string, cause?: unknown): SlothError {
  return new SlothError(
    "dns_failed",
    `cannot resolve DNS pool "${lookup.spec}" with ${formatDnsServer(lookup.server)}: ${reason}`,
    {
      cause,
      hint: lookup.server
        ? undefined
        : "SLOTH_DNS_SERVER=ip:port sends DNS pool look-ups to one name server",
    },
  );
}

function unique(members: DnsMember[], lookup: Lookup): DnsMember[] {
  const byName = new Intl.Collator("en", { numeric: true }).compare;
  members.sort((a, b) => byName(a.name, b.name) || byName(a.address, b.address));
  const seen = new Set<string>();
  const kept = members.filter((m) => !seen.has(m.address) && seen.add(m.address));
  // A pool with no member can take no task: better said now than at the first task.
  if (kept.length === 0) {
    throw dnsError(lookup, 'the pool has no members (every SRV target is ".")');
  }
  return kept;
}

/** "2s", "1.5s", "300ms". */
function duration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${Math.round(ms / 100) / 10}s`;
}

/** The response code `server` gives for `name`, or undefined when none comes in time. */
async function responseCode(
  server: DnsServer,
  name: string,
  type: "A" | "SRV",
  signal: AbortSignal,
): Promise<number | undefined> {
  if (signal.aborted) return undefined;
  const id = crypto.getRandomValues(new Uint16Array(1))[0];
  const labels = name.replace(/\.$/, "").split(".").map((label) => new TextEncoder().encode(label));
  const packet = new Uint8Array(12 + labels.reduce((n, l) => n + l.length + 1, 0) + 5);
  const view = new DataView(packet.buffer);
  view.setUint16(0, id);
  view.setUint16(2, 0x0100); // a standard query, recursion desired
  view.setUint16(4, 1); // one question
  let at = 12;
  for (const label of labels) {
    packet[at++] = label.length;
    packet.set(label, at);
    at += label.length;
  }
  packet[at++] = 0;
  view.setUint16(at, type === "A" ? 1 : 33);
  view.setUint16(at + 2, 1); // class IN
  const socket = dgram.createSocket(server.ipAddr.includes(":") ? "udp6" : "udp4");
  let onAbort = () => {};
  try {
    return await new Promise<number | undefined>((resolve) => {
      onAbort = () => resolve(undefined);
      signal.addEventListener("abort", onAbort, { once: true });
      socket.on("error", () => resolve(undefined));
      socket.on("message", (reply: Uint8Array) => {
        // Only the answer to this question: same id, and the "response" bit set.
        if (reply.length >= 12 && (reply[0] << 8 | reply[1]) === id && reply[2] & 0x80) {
          resolve(reply[3] & 0x0f);
        }
      });
      socket.send(packet, server.port, server.ipAddr);
    });
  } finally {
    signal.removeEventListener("abort", onAbort);
    await new Promise<void>((done) => socket.close(() => done()));
  }
}

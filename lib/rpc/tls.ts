/**
 * TLS and mutual TLS for agents, and the words for when a handshake fails.
 *
 * Two quirks of grpc-js on Deno 2.9 shape this file:
 * - Deno's `node:tls` refuses an IP address as the TLS server name, so for an
 *   IP target the name sent is a placeholder and the certificate is checked
 *   against the IP here, in `checkServerIdentity`.
 * - A server credential made without root certificates fails every handshake,
 *   so the server always gets a CA bundle (its own chain when it does not ask
 *   for client certificates; then it is never used).
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import * as tls from "node:tls";
import { isIP } from "node:net";
import { SlothError } from "../errors.ts";

/** PEM file paths, as the user gave them. */
export interface TlsFiles {
  /** CA that signed the agent's certificate; system roots when absent. */
  ca?: string;
  /** The master's client certificate and key, for agents that require one. */
  cert?: string;
  key?: string;
  /**
   * The name the agent's certificate must carry, when it is dialled by another (a DNS
   * pool's member, dialled by the address DNS gave): also sent as SNI.
   */
  serverName?: string;
}

export interface ServerTlsFiles {
  cert: string;
  key: string;
  /** Require client certificates signed by this CA. */
  clientCa?: string;
}

/** A TLS file that is missing, unreadable, or not what its flag takes: a usage error. */
export class TlsConfigError extends SlothError {
  constructor(message: string, hint?: string) {
    super("usage", message, { hint });
    this.name = "TlsConfigError";
  }
}

/** Each TLS file by what it is to us: its name in messages, and the flag that gives it. */
const ROLES = {
  ca: {
    name: "CA certificate",
    flag: "--tls-ca (or SLOTH_TLS_CA, or tls.ca of the agent)",
    takes: "the PEM certificate of the CA that signed the agent's certificate",
  },
  clientCert: {
    name: "client certificate",
    flag: "--tls-cert (or SLOTH_TLS_CERT, or tls.cert of the agent)",
    takes: "this master's client certificate (PEM, X.509 v3)",
  },
  clientKey: {
    name: "client key",
    flag: "--tls-key (or SLOTH_TLS_KEY, or tls.key of the agent)",
    takes: "the PEM private key of the client certificate",
  },
  agentCert: {
    name: "agent certificate",
    flag: "--tls-cert",
    takes: "the agent's certificate (PEM, X.509 v3)",
  },
  agentKey: {
    name: "agent key",
    flag: "--tls-key",
    takes: "the PEM private key of --tls-cert",
  },
  clientCa: {
    name: "client CA",
    flag: "--tls-client-ca",
    takes: "the PEM certificate of the CA that signed the masters' client certificates",
  },
} as const;
type Role = keyof typeof ROLES;

function takes(role: Role): string {
  return `${ROLES[role].flag} takes ${ROLES[role].takes}`;
}

function unreadable(path: string, role: Role, error: unknown): TlsConfigError {
  const why = error instanceof Deno.errors.NotFound
    ? "it does not exist"
    : error instanceof Deno.errors.PermissionDenied
    ? "permission denied"
    : error instanceof Deno.errors.IsADirectory
    ? "it is a directory"
    : (error as Error).message;
  return new TlsConfigError(
    `cannot read ${ROLES[role].name} ${path}: ${why}`,
    `${takes(role)}; check the path`,
  );
}

function readPem(path: string, role: Role): Buffer {
  try {
    return Buffer.from(Deno.readFileSync(path));
  } catch (error) {
    throw unreadable(path, role, error);
  }
}

async function readPemAsync(path: string, role: Role): Promise<Buffer> {
  try {
    return Buffer.from(await Deno.readFile(path));
  } catch (error) {
    throw unreadable(path, role, error);
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g;

/** Every certificate in a PEM file (a CA file may hold a bundle); throws if there is none. */
function parseCertificates(pem: Buffer, path: string, role: Role): X509Certificate[] {
  const text = pem.toString("latin1");
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  const notOne = (why: string) =>
    new TlsConfigError(
      `${ROLES[role].name} ${path} is not a PEM certificate (${why})`,
      takes(role),
    );
  if (blocks.length === 0) {
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw notOne("it holds a private key");
    if (pem.length > 0 && pem[0] === 0x30 && tryCertificate(pem)) {
      throw notOne(`it is DER; convert it: openssl x509 -inform der -in ${path} -out ${path}.pem`);
    }
    throw notOne(pem.length === 0 ? "it is empty" : "it has no BEGIN CERTIFICATE block");
  }
  return blocks.map((block, i) => {
    const cert = tryCertificate(block);
    if (!cert) {
      throw notOne(
        blocks.length === 1
          ? "its certificate does not parse"
          : `certificate ${i + 1} does not parse`,
      );
    }
    return cert;
  });
}

function tryCertificate(data: Buffer | string): X509Certificate | undefined {
  try {
    return new X509Certificate(data);
  } catch {
    return undefined;
  }
}

function parseKey(pem: Buffer, path: string, role: Role): KeyObject {
  const text = pem.toString("latin1");
  const notOne = (why: string) =>
    new TlsConfigError(
      `${ROLES[role].name} ${path} is not a PEM private key (${why})`,
      takes(role),
    );
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw new TlsConfigError(
      `${
        ROLES[role].name
      } ${path} is encrypted with a passphrase, which sloth-runner cannot ask for`,
      `decrypt it into a file only this user can read: openssl pkey -in ${path} -out PLAIN.key`,
    );
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw notOne(
      /-----BEGIN CERTIFICATE-----/.test(text)
        ? "it holds a certificate"
        : pem.length === 0
        ? "it is empty"
        : "it has no BEGIN PRIVATE KEY block",
    );
  }
  try {
    return createPrivateKey(pem);
  } catch {
    throw notOne("its key does not parse");
  }
}

function checkKeyMatches(
  cert: { x509: X509Certificate; path: string; role: Role },
  key: { object: KeyObject; path: string; role: Role },
): void {
  let matches = false;
  try {
    matches = cert.x509.checkPrivateKey(key.object);
  } catch {
    // A key of another type (RSA for an EC certificate) throws instead of returning false.
  }
  if (!matches) {
    throw new TlsConfigError(
      `${ROLES[key.role].name} ${key.path} does not match ${ROLES[cert.role].name} ${cert.path} ` +
        `(${subjectOf(cert.x509)})`,
      `${ROLES[key.role].flag} takes the private key that ${cert.path} was issued for ` +
        "(the one its certificate request was made with)",
    );
  }
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.replaceAll("\n", ", ");
}

/**
 * Reads and checks an agent's TLS files before it listens: the certificate is a
 * v3 certificate valid now, the key is its key, the client CA is a certificate.
 * Throws a `TlsConfigError` naming the file; anything less fails every handshake later,
 * with nothing in the agent's log.
 */
export function checkServerTls(files: ServerTlsFiles): void {
  const certs = parseCertificates(readPem(files.cert, "agentCert"), files.cert, "agentCert");
  const problems = certificateProblems(certs[0], files.cert, "agent");
  if (problems.length > 0) throw new TlsConfigError(problems.join("\n"));
  const key = parseKey(readPem(files.key, "agentKey"), files.key, "agentKey");
  checkKeyMatches(
    { x509: certs[0], path: files.cert, role: "agentCert" },
    { object: key, path: files.key, role: "agentKey" },
  );
  if (files.clientCa !== undefined) {
    parseCertificates(readPem(files.clientCa, "clientCa"), files.clientCa, "clientCa");
  }
}

/**
 * Reads and checks a master's TLS files before anything is sent: the CA file holds
 * PEM certificates, the client certificate is a v3 certificate valid now, and the key
 * is its key. Throws a `TlsConfigError` (a usage `SlothError`) naming the file.
 */
export async function checkMasterTls(
  files: { ca?: string; cert?: string; key?: string },
): Promise<void> {
  // One after the other, so that of two bad files the same one is named every time.
  const ca = files.ca === undefined ? undefined : await readPemAsync(files.ca, "ca");
  const cert = files.cert === undefined ? undefined : await readPemAsync(files.cert, "clientCert");
  const key = files.key === undefined ? undefined : await readPemAsync(files.key, "clientKey");
  checkMasterFiles(files, { ca, cert, key });
}

function checkMasterFiles(
  files: TlsFiles,
  pem: { ca?: Buffer; cert?: Buffer; key?: Buffer },
): void {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new TlsConfigError(
      "a client certificate needs both cert and key (--tls-cert and --tls-key)",
      "pass both, or neither when the agent does not ask for a client certificate",
    );
  }
  if (files.ca !== undefined && pem.ca) parseCertificates(pem.ca, files.ca, "ca");
  if (files.cert !== undefined && files.key !== undefined && pem.cert && pem.key) {
    const certs = parseCertificates(pem.cert, files.cert, "clientCert");
    const problems = certificateProblems(certs[0], files.cert, "client");
    if (problems.length > 0) throw new TlsConfigError(problems.join("\n"));
    const key = parseKey(pem.key, files.key, "clientKey");
    checkKeyMatches(
      { x509: certs[0], path: files.cert, role: "clientCert" },
      { object: key, path: files.key, role: "clientKey" },
    );
  }
}

/** Facts about a certificate that explain why a handshake would fail. */
export interface CertFacts {
  subject: string;
  /** 1 for an X.509 v1 certificate (no extensions, no subjectAltName). */
  version: number;
  validFrom: Date;
  validTo: Date;
  subjectAltName?: string;
  cert: X509Certificate;
}

/** The facts of a certificate (DER, PEM or parsed), or undefined when it does not parse. */
export function certFacts(
  input: Uint8Array | string | X509Certificate,
): CertFacts | undefined {
  const cert = input instanceof X509Certificate
    ? input
    : tryCertificate(typeof input === "string" ? input : Buffer.from(input));
  if (!cert) return undefined;
  return {
    subject: subjectOf(cert),
    version: certVersion(new Uint8Array(cert.raw)),
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
    subjectAltName: cert.subjectAltName,
    cert,
  };
}

/**
 * The X.509 version from DER: TBSCertificate starts with an explicit `[0]`
 * version field for v2 and v3; a v1 certificate has none.
 */
function certVersion(der: Uint8Array): number {
  let offset = 0;
  const skipHeader = () => {
    offset++; // tag
    const first = der[offset++] ?? 0;
    if (first & 0x80) offset += first & 0x7f;
  };
  skipHeader(); // Certificate SEQUENCE
  skipHeader(); // TBSCertificate SEQUENCE
  if (der[offset] !== 0xa0) return 1;
  // [0] { INTEGER version } — version is 0-based.
  return (der[offset + 4] ?? 0) + 1;
}

/** Problems with a certificate that would make every handshake fail; [] if none. */
function certificateProblems(cert: X509Certificate, path: string, role: string): string[] {
  const facts = certFacts(cert)!;
  const problems: string[] = [];
  if (facts.version < 3) {
    problems.push(
      `${role} certificate ${path} (${facts.subject}) is X.509 v${facts.version}; Deno's TLS needs v3 ` +
        "(issue it with `openssl x509 -req ... -extfile` giving subjectAltName or extendedKeyUsage)",
    );
  }
  const now = new Date();
  if (facts.validTo < now) {
    problems.push(
      `${role} certificate ${path} (${facts.subject}) expired on ${facts.validTo.toISOString()}`,
    );
  } else if (facts.validFrom > now) {
    problems.push(
      `${role} certificate ${path} (${facts.subject}) is not valid before ${facts.validFrom.toISOString()}`,
    );
  }
  return problems;
}

/**
 * The agent's TLS server options: its own TLS server rather than grpc-js's, so
 * that the frame filter (frame_filter.ts) reads the plaintext HTTP/2 behind it.
 * With `clientCa`, a client certificate signed by it is required (mutual TLS).
 * The files are those `checkServerTls` passed (or a test's own).
 */
export function serverTlsOptions(files: ServerTlsFiles): tls.TlsOptions {
  const cert = readPem(files.cert, "agentCert");
  const key = readPem(files.key, "agentKey");
  const clientCa = files.clientCa ? readPem(files.clientCa, "clientCa") : undefined;
  const mutual = clientCa !== undefined;
  return {
    cert,
    key,
    ca: clientCa,
    requestCert: mutual,
    rejectUnauthorized: mutual,
    ALPNProtocols: ["h2"],
  };
}

const PLACEHOLDER_NAME = "ip-address.sloth.invalid";

/**
 * Credentials and channel options for talking TLS to `address` (`host:port`).
 * The files are checked first (see `checkMasterTls`): grpc-js takes any bytes and
 * fails later, at the handshake, with words about the protocol.
 */
export function clientCredentials(
  address: string,
  files: TlsFiles,
): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const host = files.serverName ?? hostOf(address);
  const ca = files.ca ? readPem(files.ca, "ca") : undefined;
  const cert = files.cert ? readPem(files.cert, "clientCert") : undefined;
  const key = files.key ? readPem(files.key, "clientKey") : undefined;
  checkMasterFiles(files, { ca, cert, key });
  const ip = isIP(host) !== 0;
  const credentials = grpc.credentials.createSsl(ca ?? null, key ?? null, cert ?? null, {
    checkServerIdentity: (_name, peer) => tls.checkServerIdentity(host, peer),
  });
  return {
    credentials,
    options: files.serverName
      ? { "grpc.ssl_target_name_override": files.serverName }
      : ip
      ? { "grpc.ssl_target_name_override": PLACEHOLDER_NAME }
      : {},
  };
}

export function hostOf(address: string): string {
  const bracket = /^\[(.*)\]:\d+$/.exec(address);
  if (bracket) return bracket[1];
  return address.slice(0, address.lastIndexOf(":"));
}

/** Whether a gRPC failure's details look like a TLS handshake problem. */
export function looksLikeTls(details: string): boolean {
  return /certificate|SSL|TLS|handshake|altname|self.signed|alert|CertificateRequired|wrong version|corrupt message|Failed to connect|EPIPE|ECONNRESET/i
    .test(details);
}

/**
 * Looks at the agent's certificate (fetched without verifying it) and at our
 * own files, and says in one line which certificate was rejected and why.
 * Never throws: whatever it cannot find out, it says with the handshake's own words.
 */
export async function diagnoseTls(
  address: string,
  files: TlsFiles,
  details: string,
): Promise<string> {
  const prefix = `agent ${address}: TLS handshake failed`;
  try {
    return await diagnose(address, files, details, prefix);
  } catch (error) {
    if (error instanceof TlsConfigError) return `${prefix}: ${error.message}`;
    return `${prefix}: ${details}`;
  }
}

async function diagnose(
  address: string,
  files: TlsFiles,
  details: string,
  prefix: string,
): Promise<string> {
  if (/wrong version number|InvalidContentType/i.test(details)) {
    // What came back was not TLS: a plaintext agent (or no agent at all).
    return `agent ${address} does not serve TLS ` +
      "(drop --tls-ca, or start the agent with --tls-cert and --tls-key)";
  }
  if (/CertificateRequired|certificate required/i.test(details)) {
    return `${prefix}: the agent requires a client certificate (mutual TLS); pass --tls-cert and --tls-key`;
  }
  const own = files.cert ? certFacts(readPem(files.cert, "clientCert").toString()) : undefined;
  const ownProblems = own ? certificateProblems(own.cert, files.cert!, "client") : [];
  let peer: CertFacts | undefined;
  try {
    peer = await fetchPeerCertificate(address, files);
  } catch (error) {
    if (ownProblems.length > 0) return `${prefix}: ${ownProblems[0]}`;
    if (files.cert) {
      return `${prefix}: the agent refused this master's client certificate ${files.cert}; ` +
        "is it signed by the CA the agent trusts (--tls-client-ca)?";
    }
    return `${prefix}: ${(error as Error).message}`;
  }
  const reasons: string[] = [];
  const now = new Date();
  if (peer.version < 3) {
    reasons.push(
      `it is an X.509 v${peer.version} certificate (Deno's TLS needs v3: issue it with -extfile and a subjectAltName)`,
    );
  }
  if (peer.validTo < now) reasons.push(`it expired on ${peer.validTo.toISOString()}`);
  if (peer.validFrom > now) reasons.push(`it is not valid before ${peer.validFrom.toISOString()}`);
  if (files.ca) {
    const cas = parseCertificates(readPem(files.ca, "ca"), files.ca, "ca");
    const signed = cas.some((ca) => {
      try {
        return peer.cert.checkIssued(ca) && peer.cert.verify(ca.publicKey);
      } catch {
        return false;
      }
    });
    if (!signed) {
      reasons.push(
        `it is not signed by the CA in ${files.ca} (${cas.map(subjectOf).join("; ")})`,
      );
    }
  }
  const host = files.serverName ?? hostOf(address);
  const matches = isIP(host) ? peer.cert.checkIP(host) : peer.cert.checkHost(host);
  if (!matches) {
    reasons.push(
      `it is not for ${host} (subjectAltName: ${peer.subjectAltName ?? "none"}, ${peer.subject})`,
    );
  }
  if (reasons.length > 0) {
    return `${prefix}: the agent's certificate (${peer.subject}) was rejected: ${
      reasons.join("; ")
    }`;
  }
  if (ownProblems.length > 0) return `${prefix}: ${ownProblems[0]}`;
  if (files.cert) {
    return `${prefix}: the agent refused this master's client certificate ${files.cert}; ` +
      "is it signed by the CA the agent trusts (--tls-client-ca)?";
  }
  if (/EPIPE|ECONNRESET|Failed to connect/.test(details)) {
    return `${prefix}: the agent's certificate is fine, but the agent closed the connection: ` +
      "it probably requires a client certificate (mutual TLS); pass --tls-cert and --tls-key";
  }
  return `${prefix}: ${details}`;
}

/**
 * Whether `address` completes a TLS handshake (its certificate unchecked): for a
 * plaintext master whose first call failed, the difference between "pass --tls-ca"
 * and "this is not an agent". Never throws.
 */
export async function servesTls(address: string): Promise<boolean> {
  try {
    await fetchPeerCertificate(address, {});
    return true;
  } catch {
    return false;
  }
}

function fetchPeerCertificate(address: string, files: TlsFiles): Promise<CertFacts> {
  const host = hostOf(address);
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      servername: files.serverName ?? (isIP(host) ? PLACEHOLDER_NAME : host),
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      cert: files.cert ? readPem(files.cert, "clientCert") : undefined,
      key: files.key ? readPem(files.key, "clientKey") : undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no TLS answer within 5s"));
    }, 5000);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate(true)?.raw;
      socket.destroy();
      const facts = raw ? certFacts(new Uint8Array(raw)) : undefined;
      if (!facts) return reject(new Error("the agent sent no certificate that parses"));
      resolve(facts);
    });
    socket.once("error", (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

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
import { X509Certificate } from "node:crypto";
import * as tls from "node:tls";
import { isIP } from "node:net";

/** PEM file paths, as the user gave them. */
export interface TlsFiles {
  /** CA that signed the agent's certificate; system roots when absent. */
  ca?: string;
  /** The master's client certificate and key, for agents that require one. */
  cert?: string;
  key?: string;
}

export interface ServerTlsFiles {
  cert: string;
  key: string;
  /** Require client certificates signed by this CA. */
  clientCa?: string;
}

export class TlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TlsConfigError";
  }
}

function readPem(path: string, what: string): Buffer {
  try {
    return Buffer.from(Deno.readFileSync(path));
  } catch (error) {
    throw new TlsConfigError(`cannot read ${what} ${path}: ${(error as Error).message}`);
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

export function certFacts(der: Uint8Array | string): CertFacts {
  const cert = new X509Certificate(typeof der === "string" ? der : Buffer.from(der));
  return {
    subject: cert.subject.replaceAll("\n", ", "),
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
    const first = der[offset++];
    if (first & 0x80) offset += first & 0x7f;
  };
  skipHeader(); // Certificate SEQUENCE
  skipHeader(); // TBSCertificate SEQUENCE
  if (der[offset] !== 0xa0) return 1;
  // [0] { INTEGER version } — version is 0-based.
  return der[offset + 4] + 1;
}

/** Problems with a certificate file that would make every handshake fail; [] if none. */
export function certificateProblems(path: string, role: string): string[] {
  const pem = readPem(path, `${role} certificate`).toString();
  let facts: CertFacts;
  try {
    facts = certFacts(pem);
  } catch {
    return [`${role} certificate ${path} is not a PEM certificate`];
  }
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

export function serverCredentials(files: ServerTlsFiles): grpc.ServerCredentials {
  const cert = readPem(files.cert, "agent certificate");
  const key = readPem(files.key, "agent key");
  const clientCa = files.clientCa ? readPem(files.clientCa, "client CA") : undefined;
  return grpc.ServerCredentials.createSsl(
    clientCa ?? cert,
    [{ cert_chain: cert, private_key: key }],
    clientCa !== undefined,
  );
}

const PLACEHOLDER_NAME = "ip-address.sloth.invalid";

/** Credentials and channel options for talking TLS to `address` (`host:port`). */
export function clientCredentials(
  address: string,
  files: TlsFiles,
): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const host = hostOf(address);
  const ca = files.ca ? readPem(files.ca, "CA certificate") : null;
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new TlsConfigError(
      "a client certificate needs both cert and key (--tls-cert and --tls-key)",
    );
  }
  const cert = files.cert ? readPem(files.cert, "client certificate") : null;
  const key = files.key ? readPem(files.key, "client key") : null;
  const ip = isIP(host) !== 0;
  const credentials = grpc.credentials.createSsl(ca, key, cert, {
    checkServerIdentity: (_name, peer) => tls.checkServerIdentity(host, peer),
  });
  return {
    credentials,
    options: ip ? { "grpc.ssl_target_name_override": PLACEHOLDER_NAME } : {},
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
 */
export async function diagnoseTls(
  address: string,
  files: TlsFiles,
  details: string,
): Promise<string> {
  const prefix = `agent ${address}: TLS handshake failed`;
  if (/CertificateRequired|certificate required/i.test(details)) {
    return `${prefix}: the agent requires a client certificate (mutual TLS); pass --tls-cert and --tls-key`;
  }
  const ownProblems = files.cert ? certificateProblems(files.cert, "client") : [];
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
    const ca = certFacts(readPem(files.ca, "CA certificate").toString());
    const signed = peer.cert.checkIssued(ca.cert) && peer.cert.verify(ca.cert.publicKey);
    if (!signed) reasons.push(`it is not signed by the CA in ${files.ca} (${ca.subject})`);
  }
  const host = hostOf(address);
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

function fetchPeerCertificate(address: string, files: TlsFiles): Promise<CertFacts> {
  const host = hostOf(address);
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      servername: isIP(host) ? PLACEHOLDER_NAME : host,
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      cert: files.cert ? readPem(files.cert, "client certificate") : undefined,
      key: files.key ? readPem(files.key, "client key") : undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no TLS answer within 5s"));
    }, 5000);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate(true)?.raw;
      socket.destroy();
      if (!raw) return reject(new Error("the agent sent no certificate"));
      try {
        resolve(certFacts(new Uint8Array(raw)));
      } catch (error) {
        reject(error);
      }
    });
    socket.once("error", (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

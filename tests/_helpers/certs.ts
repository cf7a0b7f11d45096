/** Certificates made at test time with openssl: a CA, v3 agent and client certificates, and broken ones. */

export interface TestCerts {
  dir: string;
  ca: string;
  otherCa: string;
  agentCert: string;
  agentKey: string;
  clientCert: string;
  clientKey: string;
  /** Signed by the other CA. */
  strangerCert: string;
  strangerKey: string;
  /** v1: made by `openssl x509 -req` without -extfile. */
  agentV1Cert: string;
  /** Valid only in January 2020. */
  expiredCert: string;
  /** For DNS:elsewhere.example only. */
  wrongNameCert: string;
  /** The agent's key, for DNS:agents.sloth.test only (a DNS pool's name). */
  poolCert: string;
  [Symbol.asyncDispose](): Promise<void>;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdin: "null" }).output();
  if (out.code !== 0) {
    throw new Error(`openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

export async function makeCerts(): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "sloth-certs-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const ca = async (name: string) =>
    await openssl(
      dir,
      "req",
      "-x509",
      ...ec,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "30",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    );
  const csr = async (name: string, cn: string) =>
    await openssl(
      dir,
      "req",
      ...ec,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${cn}`,
    );
  const sign = async (name: string, caName: string, ext?: string, out = name) => {
    const args = [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${caName}.pem`,
      "-CAkey",
      `${caName}.key`,
      "-CAcreateserial",
      "-out",
      `${out}.pem`,
      "-days",
      "30",
    ];
    if (ext) {
      await Deno.writeTextFile(`${dir}/${out}.ext`, ext);
      args.push("-extfile", `${out}.ext`);
    }
    await openssl(dir, ...args);
  };
  await ca("ca");
  await ca("other-ca");
  await csr("agent", "test agent");
  await sign(
    "agent",
    "ca",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  await sign("agent", "ca", undefined, "agent-v1");
  await sign("agent", "ca", "subjectAltName=DNS:elsewhere.example\n", "wrong-name");
  await sign(
    "agent",
    "ca",
    "subjectAltName=DNS:agents.sloth.test\nextendedKeyUsage=serverAuth\n",
    "pool",
  );
  await csr("client", "test master");
  await sign("client", "ca", "extendedKeyUsage=clientAuth\n");
  await csr("stranger", "stranger");
  await sign("stranger", "other-ca", "extendedKeyUsage=clientAuth\n");
  // An expired certificate needs `openssl ca`, which can set the dates.
  await Deno.writeTextFile(`${dir}/index.txt`, "");
  await Deno.writeTextFile(`${dir}/serial.txt`, "1000\n");
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    `[ca]\ndefault_ca = c\n[c]\ndir = .\ndatabase = index.txt\n` +
      `new_certs_dir = .\nserial = serial.txt\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\n` +
      `[p]\ncommonName = supplied\n`,
  );
  await Deno.writeTextFile(`${dir}/expired.ext`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await openssl(
    dir,
    "ca",
    "-batch",
    "-config",
    "ca.cnf",
    "-cert",
    "ca.pem",
    "-keyfile",
    "ca.key",
    "-in",
    "agent.csr",
    "-out",
    "expired.pem",
    "-startdate",
    "20200101000000Z",
    "-enddate",
    "20200201000000Z",
    "-extfile",
    "expired.ext",
  );
  const p = (name: string) => `${dir}/${name}`;
  return {
    dir,
    ca: p("ca.pem"),
    otherCa: p("other-ca.pem"),
    agentCert: p("agent.pem"),
    agentKey: p("agent.key"),
    clientCert: p("client.pem"),
    clientKey: p("client.key"),
    strangerCert: p("stranger.pem"),
    strangerKey: p("stranger.key"),
    agentV1Cert: p("agent-v1.pem"),
    expiredCert: p("expired.pem"),
    wrongNameCert: p("wrong-name.pem"),
    poolCert: p("pool.pem"),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

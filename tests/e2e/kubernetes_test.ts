/**
 * examples/kubernetes/, without a cluster: every YAML document there is a Kubernetes
 * object that the API's schemas accept (kubernetes-models' validators, and its types
 * for fields they do not know); the objects agree with each other, with the inventory
 * file, the Dockerfile and the README where a mismatch would only show in a cluster;
 * and the agents' arguments, run by the real sloth-agent with the pod's files laid out
 * in a temp directory, make an agent that masters can reach as the manifests intend.
 */
// kubernetes-models is imported by its npm: specifier, not through deno.json (see
// KUBERNETES_MODELS below for why).
// deno-lint-ignore-file no-import-prefix
import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";
import * as core from "npm:kubernetes-models@5.1.0/v1";
import * as apps from "npm:kubernetes-models@5.1.0/apps/v1";
import * as batch from "npm:kubernetes-models@5.1.0/batch/v1";
import * as networking from "npm:kubernetes-models@5.1.0/networking.k8s.io/v1";
import type { IStatefulSet } from "npm:kubernetes-models@5.1.0/apps/v1/StatefulSet";
import type { IJob } from "npm:kubernetes-models@5.1.0/batch/v1/Job";
import type { INetworkPolicy } from "npm:kubernetes-models@5.1.0/networking.k8s.io/v1/NetworkPolicy";
import type { IConfigMap } from "npm:kubernetes-models@5.1.0/v1/ConfigMap";
import type { INamespace } from "npm:kubernetes-models@5.1.0/v1/Namespace";
import type { IPodSpec } from "npm:kubernetes-models@5.1.0/v1/PodSpec";
import type { ISecret } from "npm:kubernetes-models@5.1.0/v1/Secret";
import type { IService } from "npm:kubernetes-models@5.1.0/v1/Service";
import denoJson from "../../deno.json" with { type: "json" };
import { loadInventory } from "../../lib/fleet/mod.ts";
import { healthCheck } from "../../lib/rpc/mod.ts";
import { startAgent, type TestAgent } from "../_helpers/agent.ts";
import { makeCerts } from "../_helpers/certs.ts";
import { dnsServerSkip, startDnsServer } from "../_helpers/dns.ts";
import { cliProcess, hasCommand, ROOT, tempWorkspace, waitFor } from "../_helpers/mod.ts";

const DIR = `${ROOT}/examples/kubernetes`;
/**
 * Pinned here, not in deno.json's imports: `deno compile` embeds every npm package
 * the import map names, which would add ~10 MB of schemas to both executables. The
 * version must match the imports above; deno.lock holds its integrity.
 */
const KUBERNETES_MODELS = "npm:kubernetes-models@5.1.0";
/** YAML files of the folder that are not Kubernetes objects (never `kubectl apply`'d). */
const NOT_OBJECTS = new Set(["sloth-inventory.yaml", "sloth-inventory-tls.yaml"]);

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface Manifest {
  file: string;
  /** The document's place in its file, from 0. */
  index: number;
  object: KubeObject;
}

/** The API groups the manifests may use, as kubernetes-models exports them. */
const GROUPS: Record<string, Record<string, unknown>> = {
  "v1": core,
  "apps/v1": apps,
  "batch/v1": batch,
  "networking.k8s.io/v1": networking,
};

type Model = (new (data: unknown) => { validate(): void }) & { apiVersion: string; kind: string };

/** The kubernetes-models class of an object, or why there is none. */
function modelOf(apiVersion: unknown, kind: unknown): Model {
  const group = GROUPS[String(apiVersion)];
  if (!group) {
    throw new Error(
      `apiVersion ${JSON.stringify(apiVersion)} is not one of ${Object.keys(GROUPS).join(", ")} ` +
        "(a typo, or a group to add to GROUPS in this test)",
    );
  }
  // Sub-objects (Container, PodSpec) are classes too, but without a kind of their own.
  const model = group[String(kind)] as Partial<Model> | undefined;
  if (model?.kind !== kind || model?.apiVersion !== apiVersion) {
    throw new Error(`${apiVersion} has no kind ${JSON.stringify(kind)}`);
  }
  return model as Model;
}

/**
 * Every document of every YAML file, as kubectl reads it: its YAML 1.1 parser takes
 * `0440` for an octal number and `on` for true, where YAML 1.2 parsers do not, so
 * each document must mean the same under both.
 */
async function readYaml(file: string): Promise<unknown[]> {
  const text = await Deno.readTextFile(`${DIR}/${file}`);
  const read = (version: "1.1" | "1.2") =>
    parseAllDocuments(text, { version }).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
      return doc.toJS();
    }).filter((value) => value !== null && value !== undefined);
  const documents = read("1.1");
  assert.deepEqual(read("1.2"), documents, `${file} reads differently as YAML 1.1 and 1.2`);
  return documents;
}

const YAML_FILES = [...Deno.readDirSync(DIR)]
  .filter((entry) => entry.isFile && entry.name.endsWith(".yaml"))
  .map((entry) => entry.name)
  .sort();

async function loadManifests(): Promise<Manifest[]> {
  const manifests: Manifest[] = [];
  for (const file of YAML_FILES.filter((name) => !NOT_OBJECTS.has(name))) {
    (await readYaml(file)).forEach((object, index) => {
      assert.ok(typeof object === "object" && !Array.isArray(object), `${file} #${index}`);
      manifests.push({ file, index, object: object as KubeObject });
    });
  }
  return manifests;
}

const MANIFESTS = await loadManifests();

function one<T>(file: string, kind: string): T {
  const found = MANIFESTS.filter((m) => m.file === file && m.object.kind === kind);
  assert.equal(found.length, 1, `${file} holds one ${kind}`);
  return found[0].object as T;
}

/** The default agents and their two variants (each replaces the others' StatefulSet). */
const AGENT_FILES = ["agents.yaml", "agents-tls.yaml", "agents-bwrap.yaml"];
const agents = (file = "agents.yaml") => one<IStatefulSet>(file, "StatefulSet");
const service = () => one<IService>("service.yaml", "Service");
const tokenSecret = () => one<ISecret>("token-secret.yaml", "Secret");
const masterJob = () => one<IJob>("master-job.yaml", "Job");
const inventoryMap = () => one<IConfigMap>("master-job.yaml", "ConfigMap");
const ingressPolicy = () => one<INetworkPolicy>("network-policy.yaml", "NetworkPolicy");
const egressPolicy = () => one<INetworkPolicy>("network-policy-egress.yaml", "NetworkPolicy");

function podSpec(owner: IStatefulSet | IJob): IPodSpec {
  const spec = owner.spec?.template.spec;
  assert.ok(spec, "a pod template");
  return spec;
}

function podLabels(owner: IStatefulSet | IJob): Record<string, string> {
  return owner.spec?.template.metadata?.labels ?? {};
}

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** Whether a label selector (matchLabels and matchExpressions) selects these labels. */
/** (An empty or absent selector selects everything, as in Kubernetes.) */
function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  selector ??= {};
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpressions = (selector.matchExpressions ?? []).every(({ key, operator, values }) => {
    const has = key in labels;
    switch (operator) {
      case "In":
        return has && (values ?? []).includes(labels[key]);
      case "NotIn":
        return !has || !(values ?? []).includes(labels[key]);
      case "Exists":
        return has;
      case "DoesNotExist":
        return !has;
      default:
        throw new Error(`unknown selector operator ${operator}`);
    }
  });
  return byLabels && byExpressions;
}

/** The value after `flag` in `args` (the last, as the CLI takes it). */
function flag(args: readonly string[], name: string): string | undefined {
  const at = args.lastIndexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
}

function agentContainer(file = "agents.yaml") {
  const containers = podSpec(agents(file)).containers;
  assert.equal(containers.length, 1, `${file}: one container, the agent`);
  return containers[0];
}

function agentPort(file = "agents.yaml"): number {
  const port = Number(flag(agentContainer(file).args ?? [], "-p"));
  assert.ok(Number.isInteger(port) && port > 0, `${file}: the agent's -p`);
  return port;
}

// --- the Kubernetes schemas ------------------------------------------------------------

Deno.test("every YAML document in examples/kubernetes is a Kubernetes object its schema accepts", () => {
  assert.ok(MANIFESTS.length >= 9, "the manifests were found");
  for (const { file, index, object } of MANIFESTS) {
    const where = `${file} #${index} (${object.kind} ${object.metadata?.name})`;
    const model = modelOf(object.apiVersion, object.kind);
    assert.doesNotThrow(() => new model(object).validate(), where);
    assert.ok(object.metadata?.name, `${where}: a name`);
    if (object.kind !== "Namespace") {
      assert.equal(object.metadata?.namespace, "sloth", `${where}: in the sloth namespace`);
    }
  }
});

Deno.test("the schema check refuses an unknown apiVersion or kind, a wrong type and a missing field", () => {
  assert.throws(() => modelOf("apps/v2", "StatefulSet"), /apiVersion "apps\/v2" is not one of/);
  assert.throws(() => modelOf("apps/v1", "StatefullSet"), /has no kind "StatefullSet"/);
  assert.throws(() => modelOf("v1", "Container"), /has no kind "Container"/);
  const broken = structuredClone(agents());
  broken.spec!.template.spec!.containers[0].ports![0].containerPort = "50051" as unknown as number;
  assert.throws(() => new apps.StatefulSet(broken).validate(), /containerPort must be integer/);
  const unselected = structuredClone(agents()) as unknown as { spec: Record<string, unknown> };
  delete unselected.spec.selector;
  assert.throws(() => new apps.StatefulSet(unselected as never).validate(), /selector/);
});

/**
 * The validators let any field they do not know through; the API server refuses such
 * fields (`kubectl apply` validates strictly). kubernetes-models' TypeScript types know
 * every field, so each object is written out as a typed literal and `deno check`ed:
 * TypeScript refuses an object literal with a property its type lacks.
 */
async function unknownFields(manifests: Manifest[]): Promise<{ ok: boolean; output: string }> {
  await using ws = await tempWorkspace();
  const lines: string[] = [];
  const where: string[] = [];
  manifests.forEach(({ file, index, object }, i) => {
    modelOf(object.apiVersion, object.kind);
    lines.push(
      `import type { I${object.kind} as T${i} } from "${KUBERNETES_MODELS}/${object.apiVersion}/${object.kind}";`,
    );
    where[lines.length] = `${file} #${index}`;
  });
  manifests.forEach(({ file, index, object }, i) => {
    for (
      const line of `export const d${i}: T${i} = ${JSON.stringify(object, null, 2)};`.split("\n")
    ) {
      lines.push(line);
      where[lines.length] = `${file} #${index}`;
    }
  });
  await Deno.writeTextFile(`${ws.dir}/manifests.ts`, lines.join("\n") + "\n");
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["check", "--frozen", "--quiet", "--config", `${ROOT}/deno.json`, "manifests.ts"],
    cwd: ws.dir,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  // Each error's line, named by the document it is in.
  const output = text.replace(
    /file:\/\/\S*\/manifests\.ts:(\d+):\d+/g,
    (_, line) => `${where[+line]} (line ${line} of the objects written out as TypeScript)`,
  );
  return { ok: out.success, output };
}

Deno.test("no manifest has a field the Kubernetes API does not know", async () => {
  const { ok, output } = await unknownFields(MANIFESTS);
  assert.ok(ok, output);
});

Deno.test("a misspelt field is found and named with its file", async () => {
  const typo = structuredClone(MANIFESTS.find((m) => m.file === "agents.yaml")!);
  const container = (typo.object as unknown as IStatefulSet).spec!.template.spec!.containers[0];
  const misspelt = container as unknown as Record<string, unknown>;
  misspelt.readinesProbe = container.readinessProbe;
  delete misspelt.readinessProbe;
  const { ok, output } = await unknownFields([typo]);
  assert.equal(ok, false);
  assert.match(output, /'"readinesProbe"' does not exist in type 'IContainer'/);
  assert.match(output, /agents\.yaml #0/);
});

// --- how the objects fit together ---------------------------------------------------------

Deno.test("the headless Service lists exactly the ready agent pods, on the agent's port", () => {
  const svc = service();
  assert.ok(Object.keys(svc.spec?.selector ?? {}).length > 0, "a selector (none would select all)");
  assert.equal(svc.spec?.clusterIP, "None", "headless: a record per pod, no virtual IP");
  assert.equal(svc.spec?.publishNotReadyAddresses, false, "only ready pods are pool members");
  const ports = svc.spec?.ports ?? [];
  assert.equal(ports.length, 1);
  // The SRV name _grpc._tcp.<service> needs the port named grpc, over TCP.
  assert.equal(ports[0].name, "grpc");
  assert.equal(ports[0].protocol, "TCP");
  for (const file of AGENT_FILES) {
    const sts = agents(file);
    const container = agentContainer(file);
    assert.equal(
      sts.spec?.serviceName,
      svc.metadata?.name,
      `${file}: pods named under the Service`,
    );
    assert.ok(selects(sts.spec!.selector, podLabels(sts)), `${file}: selects its own pods`);
    assert.ok(
      selects({ matchLabels: svc.spec?.selector }, podLabels(sts)),
      `${file}: in the Service`,
    );
    const [containerPort] = container.ports ?? [];
    assert.equal(containerPort.name, ports[0].targetPort, `${file}: the Service's targetPort`);
    assert.equal(containerPort.containerPort, ports[0].port, `${file}: container and Service port`);
    assert.equal(containerPort.protocol, "TCP");
    assert.equal(agentPort(file), ports[0].port, `${file}: -p is the port`);
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"] as const) {
      assert.equal(container[probe]?.tcpSocket?.port, "grpc", `${file}: ${probe} on the port`);
    }
  }
  // A master is no member of the pool it uses.
  assert.ok(!selects({ matchLabels: svc.spec?.selector }, podLabels(masterJob())));
});

Deno.test("no probe is a gRPC one: the agent's health service wants the token, which the kubelet cannot send", () => {
  for (const file of AGENT_FILES) {
    const container = agentContainer(file);
    for (
      const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]
    ) {
      assert.ok(probe, `${file}: probed`);
      assert.equal(probe.grpc, undefined);
    }
  }
});

Deno.test("agents and master read the token from the Secret that token-secret.yaml and the README create", async () => {
  const secret = tokenSecret();
  const keys = Object.keys(secret.stringData ?? secret.data ?? {});
  const readme = await Deno.readTextFile(`${DIR}/README.md`);
  const created = [
    ...readme.matchAll(
      /kubectl -n sloth create secret generic (\S+)((?:\s+(?:\\\s+)?--from-file=\S+)+)/g,
    ),
  ].map(([, name, files]) => ({
    name,
    keys: [...files.matchAll(/--from-file=([^=\s]+)=/g)].map((m) => m[1]),
  }));
  const readmeToken = created.find((c) => c.name === secret.metadata?.name);
  assert.ok(readmeToken, `the README creates ${secret.metadata?.name}`);
  for (const file of AGENT_FILES) {
    const spec = podSpec(agents(file));
    const [container] = spec.containers;
    const tokenFile = flag(container.args ?? [], "--token-file");
    assert.ok(tokenFile, `${file}: --token-file`);
    const mount = (container.volumeMounts ?? []).find((m) =>
      tokenFile.startsWith(`${m.mountPath}/`)
    );
    assert.ok(mount, `${file}: ${tokenFile} is on a volume`);
    const volume = (spec.volumes ?? []).find((v) => v.name === mount.name);
    assert.equal(volume?.secret?.secretName, secret.metadata?.name, `${file}: the token Secret`);
    const item = volume?.secret?.items?.find((i) => `${mount.mountPath}/${i.path}` === tokenFile);
    assert.ok(item, `${file}: ${tokenFile} is an item of the Secret`);
    assert.ok(keys.includes(item.key), `${file}: key ${item.key}`);
    assert.ok(readmeToken.keys.includes(item.key), `the README's command makes key ${item.key}`);
    // Read by the agent's group (fsGroup), not by others.
    assert.equal(volume?.secret?.defaultMode, 0o440);
    assert.equal(spec.securityContext?.fsGroup, spec.securityContext?.runAsGroup);
  }
  // The master: the same Secret and key, in the variable the pool's token_env names.
  const [pool] = Object.values(
    (parse(inventoryMap().data!["sloth-inventory.yaml"]) as {
      pools: Record<string, { token_env: string }>;
    }).pools,
  );
  const env = masterJob().spec?.template.spec?.containers[0].env ?? [];
  const tokenEnv = env.find((e) => e.name === pool.token_env);
  assert.equal(tokenEnv?.valueFrom?.secretKeyRef?.name, secret.metadata?.name);
  assert.ok(keys.includes(tokenEnv?.valueFrom?.secretKeyRef?.key ?? ""));
  // The TLS variant's files: the README's command makes each key it mounts.
  const tls = podSpec(agents("agents-tls.yaml")).volumes?.find((v) => v.name === "tls")?.secret;
  const readmeTls = created.find((c) => c.name === tls?.secretName);
  assert.ok(readmeTls, `the README creates ${tls?.secretName}`);
  for (const item of tls?.items ?? []) assert.ok(readmeTls.keys.includes(item.key), item.key);
});

Deno.test("only pods labelled as masters may reach the agents, and only on the agent's port", () => {
  const policy = ingressPolicy().spec!;
  const master = podLabels(masterJob());
  for (const file of AGENT_FILES) {
    assert.ok(
      selects(policy.podSelector, podLabels(agents(file))),
      `${file}: its pods are covered`,
    );
  }
  assert.ok(!selects(policy.podSelector, master), "the policy is about agents, not masters");
  assert.deepEqual(policy.policyTypes, ["Ingress"]);
  assert.equal(policy.ingress?.length, 1);
  const [rule] = policy.ingress!;
  assert.deepEqual(rule.ports, [{ protocol: "TCP", port: agentPort() }]);
  assert.ok(rule.from?.length);
  for (const peer of rule.from!) {
    assert.equal(peer.ipBlock, undefined, "pods, not addresses");
    assert.ok(peer.podSelector, "every peer is a pod selected by its labels");
    assert.ok(selects(peer.podSelector, master), "the master Job's pod is admitted");
    assert.ok(!selects(peer.podSelector, podLabels(agents())), "agents do not reach each other");
    if (peer.namespaceSelector) {
      // Another namespace only when labelled so; an empty selector would mean every one.
      assert.ok(Object.keys(peer.namespaceSelector.matchLabels ?? {}).length > 0);
    }
  }
});

Deno.test("the optional egress policy takes the network from the agent pods and from nothing else", () => {
  const policy = egressPolicy().spec!;
  assert.ok(selects(policy.podSelector, podLabels(agents())));
  assert.ok(!selects(policy.podSelector, podLabels(masterJob())));
  assert.deepEqual(policy.policyTypes, ["Egress"]);
  assert.deepEqual(policy.egress ?? [], []);
});

Deno.test("the inventory's DNS pool is the headless Service's name and port, and the master Job reads that inventory", async () => {
  const svc = service();
  const name = `${svc.metadata?.name}.${svc.metadata?.namespace}.svc.cluster.local`;
  const text = await Deno.readTextFile(`${DIR}/sloth-inventory.yaml`);
  // The real loader, as a master reads it.
  const inventory = await loadInventory(`${DIR}/sloth-inventory.yaml`);
  const pools = Object.values(inventory.pools);
  assert.equal(pools.length, 1);
  assert.deepEqual(pools[0].source, { kind: "dns", dns: `${name}:${svc.spec?.ports?.[0].port}` });
  assert.equal(pools[0].tokenEnv, "SLOTH_K8S_TOKEN");
  // The SRV form it mentions names the same Service and its port's name.
  assert.equal(text.match(/dns: "(_[^"]+)"/)?.[1], `_${svc.spec?.ports?.[0].name}._tcp.${name}`);
  // The master Job's inventory is this one, at the path its -i names.
  const cm = inventoryMap();
  const spec = podSpec(masterJob());
  assert.deepEqual(parse(cm.data!["sloth-inventory.yaml"]), parse(text));
  const volume = spec.volumes?.find((v) => v.configMap?.name === cm.metadata?.name);
  const mount = spec.containers[0].volumeMounts?.find((m) => m.name === volume?.name);
  assert.equal(
    flag(spec.containers[0].args ?? [], "-i"),
    `${mount?.mountPath}/sloth-inventory.yaml`,
  );
});

Deno.test("the TLS inventory is the Service's DNS pool with the master's TLS files", async () => {
  const svc = service();
  const inventory = await loadInventory(`${DIR}/sloth-inventory-tls.yaml`);
  const pool = inventory.pools.k8s;
  assert.deepEqual(pool.source, {
    kind: "dns",
    dns: `${svc.metadata?.name}.${svc.metadata?.namespace}.svc.cluster.local:${agentPort()}`,
  });
  assert.equal(pool.tokenEnv, "SLOTH_K8S_TOKEN");
  assert.ok(pool.tls?.ca && pool.tls.cert && pool.tls.key, "CA and client certificate");
});

type PodSecurity = NonNullable<IPodSpec["securityContext"]>;

/** What the "restricted" Pod Security level refuses in a pod (the checks that apply here). */
function notRestricted(spec: IPodSpec): string[] {
  const pod: PodSecurity = spec.securityContext ?? {};
  const found: string[] = [];
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) found.push("host namespaces");
  const volumeTypes = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
  ];
  for (const volume of spec.volumes ?? []) {
    for (const type of Object.keys(volume).filter((key) => key !== "name")) {
      if (!volumeTypes.includes(type)) found.push(`volume ${volume.name}: ${type}`);
    }
  }
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) found.push(`${c.name}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) found.push(`${c.name}: allowPrivilegeEscalation`);
    if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) found.push(`${c.name}: runAsNonRoot`);
    if ((sc.runAsUser ?? pod.runAsUser) === 0) found.push(`${c.name}: runAsUser 0`);
    const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
      found.push(`${c.name}: seccomp ${seccomp ?? "unset"}`);
    }
    const apparmor = sc.appArmorProfile?.type ?? pod.appArmorProfile?.type;
    if (apparmor === "Unconfined") found.push(`${c.name}: AppArmor Unconfined`);
    if (!sc.capabilities?.drop?.includes("ALL")) found.push(`${c.name}: capabilities kept`);
    if ((sc.capabilities?.add ?? []).some((cap) => cap !== "NET_BIND_SERVICE")) {
      found.push(`${c.name}: capabilities added`);
    }
    if ((sc.procMount ?? "Default") !== "Default") {
      found.push(`${c.name}: procMount ${sc.procMount}`);
    }
    if ((c.ports ?? []).some((p) => p.hostPort)) found.push(`${c.name}: hostPort`);
  }
  return found;
}

Deno.test("the namespace enforces the restricted Pod Security level, which the default agents and the master meet", () => {
  const ns = one<INamespace>("namespace.yaml", "Namespace");
  assert.equal(ns.metadata?.name, "sloth");
  assert.equal(ns.metadata?.labels?.["pod-security.kubernetes.io/enforce"], "restricted");
  for (const owner of [agents(), agents("agents-tls.yaml"), masterJob()]) {
    assert.deepEqual(notRestricted(podSpec(owner)), [], `${owner.kind} ${owner.metadata?.name}`);
    const [container] = podSpec(owner).containers;
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(podSpec(owner).automountServiceAccountToken, false, "no API token for tasks");
    assert.ok(container.resources?.limits?.memory && container.resources.requests?.cpu);
  }
  // The sandbox's needs are exactly what it breaks (README: relabel the namespace).
  assert.deepEqual(notRestricted(podSpec(agents("agents-bwrap.yaml"))), [
    "agent: seccomp Unconfined",
    "agent: AppArmor Unconfined",
    "agent: procMount Unmasked",
  ]);
  assert.equal(podSpec(agents("agents-bwrap.yaml")).hostUsers, false, "Unmasked needs it");
});

Deno.test("the variants differ from agents.yaml only in their TLS files or their sandbox", () => {
  const base = agents();
  assert.equal(flag(agentContainer().args ?? [], "--sandbox"), "none", "explicit, not auto");
  const tls = structuredClone(agents("agents-tls.yaml"));
  const tlsSpec = tls.spec!.template.spec!;
  const tlsArgs = tlsSpec.containers[0].args!;
  for (const name of ["--tls-cert", "--tls-key", "--tls-client-ca"]) {
    const at = tlsArgs.indexOf(name);
    assert.ok(at >= 0, `agents-tls.yaml passes ${name}`);
    assert.match(tlsArgs[at + 1], /^\/run\/sloth-agent\/tls\//);
    tlsArgs.splice(at, 2);
  }
  tlsSpec.containers[0].volumeMounts = tlsSpec.containers[0].volumeMounts!.filter((m) =>
    m.name !== "tls"
  );
  tlsSpec.volumes = tlsSpec.volumes!.filter((v) => v.name !== "tls");
  assert.deepEqual(tls, base);

  const bwrap = structuredClone(agents("agents-bwrap.yaml"));
  const bwrapSpec = bwrap.spec!.template.spec!;
  const [container] = bwrapSpec.containers;
  assert.equal(flag(container.args!, "--sandbox"), "bwrap", "refuses to start without it");
  container.args![container.args!.indexOf("--sandbox") + 1] = "none";
  delete bwrapSpec.hostUsers;
  bwrapSpec.securityContext!.seccompProfile = { type: "RuntimeDefault" };
  delete bwrapSpec.securityContext!.appArmorProfile;
  delete container.securityContext!.procMount;
  assert.deepEqual(bwrap, base);
});

Deno.test("the image runs sloth-agent as the manifests' user, and the manifests name the release it holds", async () => {
  const dockerfile = await Deno.readTextFile(`${DIR}/Dockerfile`);
  const entrypoint = JSON.parse(dockerfile.match(/^ENTRYPOINT (\[.*\])$/m)?.[1] ?? "null");
  assert.deepEqual(entrypoint, ["/usr/bin/tini", "--", "/usr/local/bin/sloth-agent"]);
  assert.match(dockerfile, /apt-get install [^\n]*\bbubblewrap\b[^\n]*\btini\b/);
  assert.match(
    dockerfile,
    /COPY --from=executables \/out\/sloth-agent \/out\/sloth-runner \/usr\/local\/bin\//,
  );
  const user = dockerfile.match(/^USER (\d+):(\d+)$/m);
  assert.match(dockerfile, new RegExp(`useradd [^\\n]*--uid ${user?.[1]} `));
  assert.match(
    dockerfile,
    new RegExp(`^ARG SLOTH_VERSION=v${denoJson.version.replaceAll(".", "\\.")}$`, "m"),
  );
  assert.match(dockerfile, /^COPY install\.sh /m);
  await Deno.stat(`${ROOT}/install.sh`);
  for (const owner of [...AGENT_FILES.map((file) => agents(file)), masterJob()]) {
    const spec = podSpec(owner);
    assert.equal(spec.securityContext?.runAsUser, Number(user?.[1]));
    assert.equal(spec.securityContext?.runAsGroup, Number(user?.[2]));
    assert.equal(spec.containers[0].image, `sloth-runner:${denoJson.version}`);
  }
  // The agents give only arguments (the image's tini and sloth-agent run them); the
  // master Job runs sloth-runner from the image, under tini too.
  for (const file of AGENT_FILES) assert.equal(agentContainer(file).command, undefined);
  assert.deepEqual(masterJob().spec?.template.spec?.containers[0].command, [
    "/usr/bin/tini",
    "--",
    "/usr/local/bin/sloth-runner",
  ]);
});

Deno.test("every path the containers are given lies on a volume (their root file system is read-only)", () => {
  for (const owner of [...AGENT_FILES.map((file) => agents(file)), masterJob()]) {
    const [container] = podSpec(owner).containers;
    const mounts = (container.volumeMounts ?? []).map((m) => m.mountPath);
    const paths = [...(container.args ?? []), ...(container.env ?? []).map((e) => e.value ?? "")]
      .filter((value) => value.startsWith("/"));
    assert.ok(paths.length > 0);
    for (const path of paths) {
      assert.ok(
        mounts.some((m) => path === m || path.startsWith(`${m}/`)),
        `${owner.metadata?.name}: ${path} is on no volume`,
      );
    }
  }
});

Deno.test("the README names only files that exist, and applies them in an order that works", async () => {
  const readme = await Deno.readTextFile(`${DIR}/README.md`);
  const applied = [...readme.matchAll(/kubectl apply((?: -f \S+)+)/g)]
    .flatMap(([, files]) => [...files.matchAll(/-f (\S+)/g)].map((m) => m[1]));
  for (const file of applied) await Deno.stat(`${DIR}/${file}`);
  assert.equal(applied[0], "namespace.yaml", "the namespace first");
  assert.ok(!applied.includes("sloth-inventory.yaml"), "the inventory is no Kubernetes object");
  for (const file of YAML_FILES) assert.ok(readme.includes(file), `the README explains ${file}`);
});

// --- the real agent, with the pod's arguments -------------------------------------------------

/** What the tests put in the Secrets and ConfigMaps the pods mount: name → key → content. */
type VolumeData = Record<string, Record<string, string>>;

/** The files a pod's containers see, laid out under a temp directory. */
interface PodFiles {
  /** The pod's path as it is here. */
  path(inPod: string): string;
}

/**
 * Makes each volume of the pod's first container under `root`: a Secret's or a
 * ConfigMap's items (or every key) from `data`, by name and key (an unknown one
 * fails), an empty directory for an emptyDir. Directories are passable by all, as a
 * task user of an agent run as root (CI) must pass through to its job's directory.
 */
async function layOut(root: string, spec: IPodSpec, data: VolumeData): Promise<PodFiles> {
  const [container] = spec.containers;
  for (const mount of container.volumeMounts ?? []) {
    const dir = `${root}${mount.mountPath}`;
    await Deno.mkdir(dir, { recursive: true });
    const volume = (spec.volumes ?? []).find((v) => v.name === mount.name);
    assert.ok(volume, `volume ${mount.name}`);
    const source = volume.secret
      ? {
        name: volume.secret.secretName,
        items: volume.secret.items,
        mode: volume.secret.defaultMode,
      }
      : volume.configMap
      ? { name: volume.configMap.name, items: volume.configMap.items, mode: undefined }
      : undefined;
    if (!source) {
      assert.ok(volume.emptyDir, `volume ${mount.name}: a Secret, a ConfigMap or an emptyDir`);
      continue;
    }
    const content = data[source.name ?? ""];
    assert.ok(content, `the test has no Secret or ConfigMap ${source.name}`);
    for (
      const { key, path } of source.items ?? Object.keys(content).map((key) => ({ key, path: key }))
    ) {
      assert.ok(key in content, `${source.name} has no key ${key}`);
      await Deno.writeTextFile(`${dir}/${path}`, content[key]);
      await Deno.chmod(`${dir}/${path}`, source.mode ?? 0o644);
    }
  }
  await Deno.chmod(root, 0o711);
  for await (const dir of walkDirs(root)) await Deno.chmod(dir, 0o711);
  return {
    path: (inPod) => {
      const mounted = (container.volumeMounts ?? []).some((m) =>
        inPod === m.mountPath || inPod.startsWith(`${m.mountPath}/`)
      );
      assert.ok(mounted, `${inPod} is on no volume of the pod`);
      return `${root}${inPod}`;
    },
  };
}

async function* walkDirs(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) {
      yield `${dir}/${entry.name}`;
      yield* walkDirs(`${dir}/${entry.name}`);
    }
  }
}

/**
 * The container's arguments as they run here: on a loopback address (never another
 * one), on the port given separately (started with -p), and the pod's paths in `files`.
 */
function argsHere(args: readonly string[], files: PodFiles, bind = "127.0.0.1"): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-p" || args[i] === "--port") {
      i++;
    } else if (args[i] === "--bind") {
      out.push("--bind", bind);
      i++;
    } else out.push(args[i].startsWith("/") ? files.path(args[i]) : args[i]);
  }
  return out;
}

/** A pod's agent, started as its container starts it (sloth-agent, the image's entry point). */
async function startPodAgent(
  file: string,
  root: string,
  data: VolumeData,
  where: { bind?: string; port?: number } = {},
): Promise<{ agent: TestAgent; files: PodFiles }> {
  const files = await layOut(root, podSpec(agents(file)), data);
  const agent = await startAgent({
    entry: "agent",
    args: argsHere(agentContainer(file).args ?? [], files, where.bind),
    port: where.port ?? 0,
  });
  return { agent, files };
}

/** `sloth-runner agent ping`, with the token (and any other flags). */
async function ping(address: string, token: string, extra: string[] = []) {
  await using dir = await tempWorkspace({ token });
  return await cliProcess(["agent", "ping", address, "--token-file", "token", ...extra], {
    cwd: dir.dir,
  });
}

const TOKEN = "k8s-test-" + crypto.randomUUID();
const TOKEN_SECRET: VolumeData = { "sloth-agent-token": { token: TOKEN } };

Deno.test("agents.yaml's arguments make a real agent that runs a task with the Secret's token", async () => {
  await using pod = await tempWorkspace();
  const { agent } = await startPodAgent("agents.yaml", pod.dir, TOKEN_SECRET);
  await using _agent = agent;
  assert.match(
    agent.log(),
    /listening on 127\.0\.0\.1:\d+ \(2 jobs at once, work root \S+\/var\/cache\/sloth-agent, token required, shell sandbox none/,
  );
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { pod = { delegate_to = "${agent.address}", tasks = {
      { name = "hello", command = "echo hello from the pod" },
    } } }`,
  });
  const run = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: TOKEN },
  });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /hello from the pod/);
  const wrong = await ping(agent.address, "not it");
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /refused the token/);
});

const dnsSkip = await dnsServerSkip();

Deno.test({
  name:
    "the master Job's command finds every agent pod through the DNS pool, by A and by SRV records",
  ignore: dnsSkip !== undefined,
}, async () => {
  // Two pods on loopback addresses of their own, sharing a port as pods share 50051.
  const addresses = ["127.0.84.2", "127.0.84.3"];
  await using pod0 = await tempWorkspace();
  await using pod1 = await tempWorkspace();
  const first = await startPodAgent("agents.yaml", pod0.dir, TOKEN_SECRET, { bind: addresses[0] });
  await using _first = first.agent;
  const port = first.agent.port;
  const second = await startPodAgent("agents.yaml", pod1.dir, TOKEN_SECRET, {
    bind: addresses[1],
    port,
  });
  await using _second = second.agent;

  // The cluster's DNS, as the headless Service makes it: a record per ready pod.
  const svc = service();
  const name = `${svc.metadata?.name}.${svc.metadata?.namespace}.svc.cluster.local`;
  const podName = (i: number) => `${agents().metadata?.name}-${i}.${name}`;
  const dns = await startDnsServer({
    hosts: { [name]: addresses, [podName(0)]: [addresses[0]], [podName(1)]: [addresses[1]] },
    srv: [0, 1].map((i) => ({ name: `_grpc._tcp.${name}`, target: podName(i), port })),
  });
  if ("skipped" in dns) throw new Error(dns.skipped);
  await using _dns = dns;

  // The Job's pod: its inventory from the ConfigMap (the Service's port is 50051; these
  // agents could not all have it here), the token from the Secret, as its env says.
  const job = podSpec(masterJob());
  const [container] = job.containers;
  const inventory = inventoryMap().data!["sloth-inventory.yaml"];
  const env: Record<string, string> = { SLOTH_DNS_SERVER: dns.server };
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) env[e.name] = TOKEN_SECRET[ref.name ?? ""][ref.key];
  }
  const runJob = async (text: string) => {
    await using jobPod = await tempWorkspace();
    const files = await layOut(jobPod.dir, job, {
      [inventoryMap().metadata!.name!]: { "sloth-inventory.yaml": text },
    });
    assert.deepEqual(container.command?.slice(-1), ["/usr/local/bin/sloth-runner"]);
    return await cliProcess(argsHere(container.args ?? [], files), { cwd: jobPod.dir, env });
  };

  const byA = await runJob(inventory.replace(`${name}:${agentPort()}`, `${name}:${port}`));
  assert.equal(byA.code, 0, byA.stdout + byA.stderr);
  for (const address of addresses) {
    assert.match(byA.stdout, new RegExp(`${address.replaceAll(".", "\\.")}:${port} .* ok`));
  }
  assert.match(byA.stdout, /2 agents: 2 reachable/);

  const srvName = (await Deno.readTextFile(`${DIR}/sloth-inventory.yaml`)).match(
    /dns: "(_[^"]+)"/,
  )![1];
  const bySrv = await runJob(inventory.replace(/dns: "[^"]+"/, `dns: "${srvName}"`));
  assert.equal(bySrv.code, 0, bySrv.stdout + bySrv.stderr);
  for (const i of [0, 1]) assert.match(bySrv.stdout, new RegExp(`${podName(i)}:${port}`));

  // Without the token, every member is there and refuses.
  delete env.SLOTH_K8S_TOKEN;
  const without = await runJob(inventory.replace(`${name}:${agentPort()}`, `${name}:${port}`));
  assert.equal(without.code, 1);
});

Deno.test("the kubelet's TCP probe leaves the agent's log quiet; a gRPC health probe would be refused", async () => {
  await using pod = await tempWorkspace();
  const { agent } = await startPodAgent("agents.yaml", pod.dir, TOKEN_SECRET);
  await using _agent = agent;
  const before = agent.log();
  for (let i = 0; i < 3; i++) {
    const probe = await Deno.connect({ hostname: "127.0.0.1", port: agent.port });
    probe.close();
  }
  // A round trip after the probes, through the same gate.
  const answered = await ping(agent.address, TOKEN);
  assert.equal(answered.code, 0, answered.stderr);
  assert.equal(agent.log(), before, "nothing logged for connections that made no call");

  // What a `grpc:` probe does: a health check without the token.
  await assert.rejects(healthCheck(agent.address, {}), /requires a token/);
  await waitFor(() => agent.log().includes("refused a missing or wrong token from 127.0.0.1"));
  assert.equal(await healthCheck(agent.address, { token: TOKEN }), "SERVING");
});

Deno.test("the token Secret as shipped (empty) keeps the agent from starting, saying why", async () => {
  const placeholder = tokenSecret().stringData?.token;
  assert.equal(placeholder, "");
  await using pod = await tempWorkspace();
  await assert.rejects(
    startPodAgent("agents.yaml", pod.dir, { "sloth-agent-token": { token: placeholder! } }),
    /agent exited with 2:[\s\S]*token file \S+\/run\/sloth-agent\/token\/token is empty/,
  );
});

Deno.test("agents-tls.yaml's arguments make a mutual-TLS agent that a master with a client certificate reaches", async () => {
  await using certs = await makeCerts();
  const read = (path: string) => Deno.readTextFileSync(path);
  await using pod = await tempWorkspace();
  const { agent } = await startPodAgent("agents-tls.yaml", pod.dir, {
    ...TOKEN_SECRET,
    "sloth-agent-tls": {
      "tls.crt": read(certs.agentCert),
      "tls.key": read(certs.agentKey),
      "ca.crt": read(certs.ca),
    },
  });
  await using _agent = agent;
  assert.match(agent.log(), /token required, mutual TLS, shell sandbox none/);
  const before = agent.log();
  const probe = await Deno.connect({ hostname: "127.0.0.1", port: agent.port });
  probe.close();
  const client = [
    "--tls-ca",
    certs.ca,
    "--tls-cert",
    certs.clientCert,
    "--tls-key",
    certs.clientKey,
  ];
  const answered = await ping(agent.address, TOKEN, client);
  assert.equal(answered.code, 0, answered.stderr);
  assert.match(answered.stdout, /is reachable/);
  assert.equal(agent.log(), before, "a probe's connection without a handshake logs nothing");
  const stranger = [
    "--tls-ca",
    certs.ca,
    "--tls-cert",
    certs.strangerCert,
    "--tls-key",
    certs.strangerKey,
  ];
  assert.equal((await ping(agent.address, TOKEN, stranger)).code, 1);
});

Deno.test({
  name: "agents-bwrap.yaml's arguments make an agent whose shell sandbox is bubblewrap",
  ignore: !hasCommand("bwrap"),
}, async () => {
  await using pod = await tempWorkspace();
  const { agent, files } = await startPodAgent("agents-bwrap.yaml", pod.dir, TOKEN_SECRET);
  await using _agent = agent;
  assert.match(agent.log(), /token required, shell sandbox bwrap/);
  const tokenFile = files.path("/run/sloth-agent/token/token");
  await using ws = await tempWorkspace({
    "workflow.lua": `TaskDefinitions = { pod = { delegate_to = "${agent.address}", tasks = {
      { name = "look", command = "cat '${tokenFile}' 2>&1; echo looked" },
    } } }`,
  });
  const run = await cliProcess(["run", "-f", "workflow.lua"], {
    cwd: ws.dir,
    env: { SLOTH_AGENT_TOKEN: TOKEN },
  });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.ok(!run.stdout.includes(TOKEN), "the sandbox hides the token file from tasks");
  // Not there at all (not merely unreadable): the temp dir it is in is an empty /tmp.
  assert.match(run.stdout, /No such file or directory\s[\s\S]*looked/);
});

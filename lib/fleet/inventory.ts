/**
 * The inventory file: the agents every workflow may name, and pools of them,
 * checked whole, every problem naming the file, the entry and the field.
 */
import { dirname, resolve as resolvePath } from "node:path";
import { parse } from "yaml";
import { z } from "zod";
import { didYouMean, SlothError } from "../errors.ts";
import {
  agentNameProblem,
  hasAddressShape,
  type Inventory,
  type InventoryAgent,
  parseAddress,
  type PoolDef,
  type TlsPaths,
} from "../model/mod.ts";
import { dnsSpecProblem } from "./dns.ts";

const address = z.string({
  error: (issue) => issue.input === undefined ? "is missing" : 'must be "host:port"',
})
  .refine(hasAddressShape, { error: 'must be "host:port"', abort: true })
  .refine((a) => parseAddress(a) !== undefined, "has a port outside 1-65535");
const tls = z.object({
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
}, { error: "must be a map { ca: FILE, cert: FILE, key: FILE }" }).strict()
  .refine(
    (t) => (t.cert === undefined) === (t.key === undefined),
    "needs both cert and key, or neither",
  );
const labels = z.array(
  z.string({ error: "must be a label (a string)" }).min(1, "must not be empty"),
  {
    error: "must be a list of labels",
  },
);
const settings = {
  token_env: z.string({ error: "must be the name of an environment variable" })
    .min(1, "must not be empty").optional(),
  tls: tls.optional(),
  compress: z.boolean({ error: "must be true or false" }).optional(),
};
const agentSchema = z.object({ address, labels: labels.optional(), ...settings }, {
  error: 'must be a map { address: "host:port", labels: [...] }',
}).strict();
const poolSchema = z.object({
  labels: labels.min(1, "must name at least one label").optional(),
  members: z.array(z.string().min(1), { error: "must be a list of agent names" })
    .min(1, "must name at least one agent").optional(),
  dns: z.string().min(1).optional(),
  ...settings,
}, { error: "must be a map with one of labels, members or dns" }).strict();
const fileSchema = z.object({
  agents: z.record(z.string(), z.unknown(), { error: "must be a map of name: {...}" })
    .optional(),
  pools: z.record(z.string(), z.unknown(), { error: "must be a map of name: {...}" }).optional(),
}, { error: "must be a map with agents and pools" }).strict();

const AGENT_FIELDS = Object.keys(agentSchema.shape);
const POOL_FIELDS = Object.keys(poolSchema.shape);
const TLS_FIELDS = ["ca", "cert", "key"];

/** Reads and checks an inventory file; throws one `SlothError` listing every problem. */
export async function loadInventory(path: string, shownAs = path): Promise<Inventory> {
  let text: string;
  try {
    text = await readCapped(path, MAX_INVENTORY_BYTES);
  } catch (error) {
    throw new SlothError(
      "inventory_invalid",
      `cannot read inventory ${shownAs}: ${(error as Error).message}`,
    );
  }
  let raw: unknown;
  try {
    raw = parse(text) ?? {};
  } catch (error) {
    throw new SlothError(
      "inventory_invalid",
      `inventory ${shownAs} is not valid YAML: ${
        (error as Error).message.split("\n")[0].replace(/:$/, "")
      }`,
    );
  }
  return parseInventory(raw, { file: path, shownAs });
}

/** Far more than any fleet's inventory; a bound on what a mistaken -i (a device, a log) costs. */
export const MAX_INVENTORY_BYTES = 4 << 20;

async function readCapped(path: string, limit: number): Promise<string> {
  const file = await Deno.open(path);
  try {
    const buffer = new Uint8Array(limit + 1);
    let size = 0;
    while (size <= limit) {
      const n = await file.read(buffer.subarray(size));
      if (n === null) break;
      size += n;
    }
    if (size > limit) throw new Error(`it is larger than ${limit >> 20} MiB`);
    return new TextDecoder().decode(buffer.subarray(0, size));
  } finally {
    file.close();
  }
}

/** Checks an inventory's parsed YAML; relative TLS paths are taken from `file`'s directory. */
export function parseInventory(raw: unknown, where: { file: string; shownAs: string }): Inventory {
  const problems: string[] = [];
  const at = (entry: string, message: string) => problems.push(`${entry}: ${message}`);
  const top = fileSchema.safeParse(raw);
  if (!top.success) {
    collect(top.error, "", [["", ["agents", "pools"]]], at);
    throw invalid(where.shownAs, problems);
  }
  // Parsing a record drops a "__proto__" key without a word: said here instead.
  for (const section of ["agents", "pools"] as const) {
    const table = (raw as Record<string, unknown>)[section];
    if (table && typeof table === "object" && Object.hasOwn(table, "__proto__")) {
      at(`${section}.__proto__`, `the name ${agentNameProblem("__proto__")}`);
    }
  }
  const base = dirname(where.file);
  const paths = (t: z.infer<typeof tls> | undefined): TlsPaths | undefined =>
    t && {
      ca: t.ca && resolvePath(base, t.ca),
      cert: t.cert && resolvePath(base, t.cert),
      key: t.key && resolvePath(base, t.key),
    };

  const agents: Record<string, InventoryAgent> = {};
  for (const [name, value] of Object.entries(top.data.agents ?? {})) {
    const entry = `agents.${name}`;
    const nameProblem = agentNameProblem(name);
    if (nameProblem) at(entry, `the name ${nameProblem}`);
    const parsed = agentSchema.safeParse(value);
    if (!parsed.success) {
      collect(parsed.error, entry, [["tls", TLS_FIELDS], ["", AGENT_FIELDS]], at);
      continue;
    }
    const a = parsed.data;
    agents[name] = {
      address: a.address,
      labels: a.labels ?? [],
      tokenEnv: a.token_env,
      tls: paths(a.tls),
      compress: a.compress,
    };
  }

  const pools: Record<string, PoolDef> = {};
  const agentNames = Object.keys(top.data.agents ?? {});
  for (const [name, value] of Object.entries(top.data.pools ?? {})) {
    const entry = `pools.${name}`;
    const nameProblem = agentNameProblem(name);
    if (nameProblem) at(entry, `the name ${nameProblem}`);
    if (agentNames.includes(name)) {
      at(entry, `an agent is named "${name}" too; a name means one agent or one pool`);
    }
    const parsed = poolSchema.safeParse(value);
    if (!parsed.success) {
      collect(parsed.error, entry, [["tls", TLS_FIELDS], ["", POOL_FIELDS]], at);
      continue;
    }
    const p = parsed.data;
    const given = (["labels", "members", "dns"] as const).filter((k) => p[k] !== undefined);
    if (given.length !== 1) {
      at(
        entry,
        given.length === 0
          ? "needs one of labels, members or dns"
          : `has ${given.join(" and ")}; give one of labels, members or dns`,
      );
      continue;
    }
    if (p.dns === undefined && (p.token_env || p.tls || p.compress !== undefined)) {
      at(
        entry,
        "token_env, tls and compress belong to each agent; a pool carries them only with dns",
      );
      continue;
    }
    if (p.members) {
      for (const member of p.members) {
        if (!agentNames.includes(member)) {
          at(
            `${entry}.members`,
            `"${member}" is not an agent of this inventory.${didYouMean(member, agentNames)}`,
          );
        }
      }
    }
    if (p.dns !== undefined) {
      const problem = dnsSpecProblem(p.dns);
      if (problem) at(`${entry}.dns`, problem);
    }
    pools[name] = {
      source: p.labels
        ? { kind: "labels", labels: p.labels }
        : p.members
        ? { kind: "members", members: [...new Set(p.members)] }
        : { kind: "dns", dns: p.dns! },
      tokenEnv: p.token_env,
      tls: paths(p.tls),
      compress: p.compress,
    };
  }
  if (problems.length > 0) throw invalid(where.shownAs, problems);
  return { file: where.file, agents, pools };
}

function invalid(file: string, problems: string[]): SlothError {
  return new SlothError(
    "inventory_invalid",
    problems.length === 1
      ? `inventory ${file}: ${problems[0]}`
      : `inventory ${file} has ${problems.length} problems:\n${
        problems.map((p) => `  - ${p}`).join("\n")
      }`,
    { hint: "The README's \"Running a fleet\" shows the inventory's shape." },
  );
}

/**
 * Zod's issues as `entry.field: message`; a misspelt key is met with the known keys
 * of the table it sits in (`known` maps the last path key, or "", to them).
 */
function collect(
  error: z.ZodError,
  entry: string,
  known: [string, string[]][],
  at: (entry: string, message: string) => void,
): void {
  for (const issue of error.issues) {
    const path = issue.path.map(String);
    const field = [entry, ...path].filter((p) => p !== "").join(".") || "(top)";
    if (issue.code === "unrecognized_keys") {
      const keys = known.find(([last]) => last === (path.at(-1) ?? ""))?.[1] ??
        known.find(([last]) => last === "")![1];
      for (const key of issue.keys) {
        at(field, `unknown field "${key}".${didYouMean(key, keys)}`);
      }
    } else if (issue.code === "invalid_type" && /received undefined$/.test(issue.message)) {
      at(field, "is missing");
    } else {
      at(field, issue.message);
    }
  }
}

/**
 * Who is in a pool: inventory agents by label or by name, or what DNS says now.
 */
import { SlothError } from "../errors.ts";
import {
  findPool,
  type Inventory,
  type RemoteTarget,
  type Target,
  targetText,
  type Workflow,
} from "../model/mod.ts";

const byName = new Intl.Collator("en", { numeric: true });
import { type DnsMember, type DnsOptions, resolveDnsPool } from "./dns.ts";

export interface Member {
  /** The inventory's name, or for a DNS member the name DNS gave (`10.0.0.5:50051`). */
  name: string;
  target: RemoteTarget;
  labels: string[];
}

export type DnsResolver = (spec: string, options?: DnsOptions) => Promise<DnsMember[]>;

/**
 * A pool's members now: DNS pools are looked up on every call.
 * Throws when the pool has none (a fan-out or a choice over nobody is a mistake).
 */
export async function poolMembers(
  inventory: Inventory,
  pool: string,
  resolve: DnsResolver = resolveDnsPool,
): Promise<Member[]> {
  const def = findPool(inventory, pool);
  if (def?.source.kind !== "dns") return staticMembers(inventory, pool)!;
  let found: DnsMember[];
  try {
    found = await resolve(def.source.dns);
  } catch (error) {
    if (!(error instanceof SlothError)) throw error;
    throw new SlothError(error.code, `pool "${pool}": ${error.message}`, { hint: error.hint });
  }
  return found.map(({ name, address, host }) => ({
    name,
    labels: [],
    target: {
      kind: "remote",
      address,
      agent: name,
      ...(host ? { tlsName: host } : {}),
      tokenEnv: def.tokenEnv,
      tls: def.tls,
      compress: def.compress,
    },
  }));
}

/** A labels or members pool's members, without I/O; undefined for a DNS pool. */
export function staticMembers(inventory: Inventory, pool: string): Member[] | undefined {
  const def = findPool(inventory, pool);
  if (!def) throw new SlothError("unknown_agent", `no pool named "${pool}" in the inventory`);
  const { source } = def;
  if (source.kind === "dns") return undefined;
  // A members pool keeps the order it was given (a rolling fan-out goes in it); a
  // labels pool's go by name, web-2 before web-10.
  const names = source.kind === "members"
    ? source.members
    : Object.keys(inventory.agents).filter((name) =>
      source.labels.every((label) => inventory.agents[name].labels.includes(label))
    ).sort(byName.compare);
  if (names.length === 0) {
    throw new SlothError(
      "inventory_invalid",
      `pool "${pool}" has no members: no agent of the inventory carries ${
        source.kind === "labels" ? `every label of [${source.labels.join(", ")}]` : "its names"
      }`,
      { hint: `add labels to agents in ${inventory.file}, or change the pool's labels` },
    );
  }
  return names.map((name) => {
    const agent = inventory.agents[name];
    return {
      name,
      labels: agent.labels,
      target: {
        kind: "remote",
        address: agent.address,
        agent: name,
        tokenEnv: agent.tokenEnv,
        tls: agent.tls,
        compress: agent.compress,
      },
    };
  });
}

/**
 * Every pool a task of `workflow` goes to or fans out to has members (DNS pools are
 * looked up only when the run starts): a workflow that names an empty pool does not
 * load, rather than validating and then failing its run.
 */
export function checkPools(workflow: Workflow, inventory: Inventory | undefined): void {
  if (!inventory) return;
  for (const group of workflow.groups) {
    for (const task of group.tasks) {
      if (task.target.kind === "pool" || task.target.kind === "each") {
        staticMembers(inventory, task.target.pool);
      }
    }
  }
}

/** A task's target for `list` and `--dry-run`: a pool's members, or when DNS finds them. */
export function describeTarget(target: Target, inventory: Inventory | undefined): string {
  const text = targetText(target);
  if ((target.kind !== "pool" && target.kind !== "each") || !inventory) return text;
  try {
    const members = staticMembers(inventory, target.pool);
    const extra = target.kind === "each"
      ? [
        target.batch ? `batch ${target.batch}` : "",
        target.maxFailures ? `max_failures ${target.maxFailures}` : "",
      ].filter(Boolean)
      : [];
    return `${text}: ${
      members ? members.map((m) => m.name).join(", ") : "members found by DNS at run time"
    }${extra.length ? ` (${extra.join(", ")})` : ""}`;
  } catch (error) {
    return `${text}: ${(error as Error).message}`;
  }
}

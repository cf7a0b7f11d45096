/**
 * The fleet as plain values: the inventory file's agents and pools (read by
 * fleet/inventory.ts), and what a task that goes to a pool carries.
 */
import type { AgentDef, TlsPaths } from "./mod.ts";

export interface InventoryAgent extends AgentDef {
  labels: string[];
}

/** Where a pool's members come from. */
export type PoolSource =
  /** Every inventory agent carrying all these labels. */
  | { kind: "labels"; labels: string[] }
  /** These inventory agents. */
  | { kind: "members"; members: string[] }
  /** Every A/AAAA record of `name:port`, or every SRV record of `_service._proto.name`. */
  | { kind: "dns"; dns: string };

export interface PoolDef {
  source: PoolSource;
  /** For DNS members (named members carry their own). */
  tokenEnv?: string;
  tls?: TlsPaths;
  compress?: boolean;
}

export interface Inventory {
  /** Absolute path of the file, for messages. */
  file: string;
  agents: Record<string, InventoryAgent>;
  pools: Record<string, PoolDef>;
}

export interface PoolTarget {
  kind: "pool";
  pool: string;
}

/** What a per-host task of a fan-out knows of the task it came from. */
export interface FanOut {
  /** The name of the task as written (`deploy` for `deploy@web-1`). */
  task: string;
  pool: string;
  /** The member this copy runs on. */
  host: string;
  /** Position among the members, from 0 (member names sorted). */
  index: number;
  /** Ids of every copy, this one included, in member order. */
  siblings: string[];
  batch?: number;
  maxFailures?: number;
}

/** The inventory's pool of this name; never one of the names every object has ("constructor"). */
export function findPool(inventory: Inventory | undefined, name: string): PoolDef | undefined {
  return inventory && Object.hasOwn(inventory.pools, name) ? inventory.pools[name] : undefined;
}

/** The inventory's agent of this name (own names only, as `findPool`). */
export function findAgent(
  inventory: Inventory | undefined,
  name: string,
): InventoryAgent | undefined {
  return inventory && Object.hasOwn(inventory.agents, name) ? inventory.agents[name] : undefined;
}

/** Between a fan-out task's name and the member's: `deploy@web-1`. */
export const FAN_OUT_MARK = "@";

/** Why a name cannot be an agent's or a pool's, or undefined. */
export function agentNameProblem(name: string): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    return "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'";
  }
  return undefined;
}

export function poolSourceText(source: PoolSource): string {
  switch (source.kind) {
    case "labels":
      return `agents labelled ${source.labels.join(", ")}`;
    case "members":
      return `members ${source.members.join(", ")}`;
    case "dns":
      return `DNS ${source.dns}`;
  }
}

/**
 * Where a task may run: the inventory file, named agents, pools (by label, by
 * name, by DNS), the choice of a member per attempt, and fan-out to every member.
 */
import type { Inventory } from "../model/mod.ts";
export { DEFAULT_INVENTORY, findInventory } from "./locate.ts";

/** Reads and checks an inventory file (YAML and zod load only now). */
export async function loadInventory(path: string, shownAs = path): Promise<Inventory> {
  return (await import("./inventory.ts")).loadInventory(path, shownAs);
}
export { type DnsMember, type DnsOptions, resolveDnsPool } from "./dns.ts";
export {
  checkPools,
  describeTarget,
  type DnsResolver,
  type Member,
  poolMembers,
  staticMembers,
} from "./members.ts";
export {
  type Candidate,
  type Health,
  load,
  type Ping,
  type PingInfo,
  rankCandidates,
} from "./choose.ts";
export { DOWN_RECHECK_MS, Fleet, POOL_PING_MS } from "./fleet.ts";
export { expandFanOut, fanOutPools } from "./expand.ts";

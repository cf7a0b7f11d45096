/**
 * Where the inventory is: `-i FILE`, else `SLOTH_INVENTORY`, else
 * `./sloth-inventory.yaml`. Apart from inventory.ts so that finding none loads
 * neither YAML nor zod.
 */
import { resolve as resolvePath } from "node:path";
import { SlothError } from "../errors.ts";

export const DEFAULT_INVENTORY = "sloth-inventory.yaml";

/**
 * The inventory's path: the flag's, else `SLOTH_INVENTORY`'s (each must exist),
 * else `sloth-inventory.yaml` in `cwd` when there is one; undefined when none.
 */
export function findInventory(flag: string | undefined, cwd: string): string | undefined {
  const given = flag ?? (Deno.env.get("SLOTH_INVENTORY") || undefined);
  if (given !== undefined) {
    const path = resolvePath(cwd, given);
    let what = "not found";
    try {
      // A pipe (-i <(...)) is read like a file.
      const info = Deno.statSync(path);
      if (info.isFile || info.isFifo) return path;
      what = "is not a file";
    } catch {
      // Not there.
    }
    throw new SlothError(
      "inventory_invalid",
      `inventory ${given} ${what} (given by ${
        flag !== undefined ? "-i/--inventory" : "SLOTH_INVENTORY"
      })`,
      { hint: "-i takes a YAML file of agents and pools, relative to the current directory" },
    );
  }
  const local = resolvePath(cwd, DEFAULT_INVENTORY);
  try {
    return Deno.statSync(local).isFile ? local : undefined;
  } catch {
    return undefined;
  }
}

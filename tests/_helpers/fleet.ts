/**
 * Several real agents on distinct loopback addresses sharing one port (as hosts
 * of a fleet would), and the inventory that names them.
 */
import { startAgent, type TestAgent } from "./agent.ts";

export const FLEET_TOKEN = "fleet-test-token";

export interface TestFleet {
  agents: TestAgent[];
  port: number;
  /** Each agent's own work root (0711: tasks run as nobody when the tests run as root). */
  roots: string[];
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * `count` agents on `${prefix}.2`, `${prefix}.3`, … (prefix like "127.0.60"), all on
 * the port the first one got. Each test file takes its own prefix, so files running
 * in parallel never meet.
 */
export async function startFleet(
  prefix: string,
  count: number,
  options: { args?: string[]; token?: boolean } = {},
): Promise<TestFleet> {
  for (let attempt = 1; attempt <= 4; attempt++) {
    const agents: TestAgent[] = [];
    const roots: string[] = [];
    try {
      let port = 0;
      for (let i = 0; i < count; i++) {
        const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-fleet-" }));
        await Deno.chmod(root, 0o711);
        roots.push(root);
        const agent = await startAgent({
          port,
          args: [
            "--bind",
            `${prefix}.${i + 2}`,
            "--work-root",
            root,
            "--sandbox",
            "none",
            ...(options.args ?? []),
          ],
          // Without a token, each loopback agent writes one for masters of this user.
          env: options.token === false ? {} : { SLOTH_AGENT_TOKEN: FLEET_TOKEN },
        });
        agents.push(agent);
        port = agent.port;
      }
      return {
        agents,
        port,
        roots,
        [Symbol.asyncDispose]: async () => {
          await Promise.all(agents.map((a) => a.stop()));
          for (const root of roots) await Deno.remove(root, { recursive: true }).catch(() => {});
        },
      };
    } catch (error) {
      await Promise.all(agents.map((a) => a.stop()));
      for (const root of roots) await Deno.remove(root, { recursive: true }).catch(() => {});
      // The port the first agent got may be taken on another address: try another.
      if (attempt === 4 || !/address already in use|in use/i.test(String(error))) throw error;
    }
  }
  throw new Error("unreachable");
}

/** An inventory naming each agent `names[i]` with `labels[i]`, plus `pools` as written. */
export function inventoryYaml(
  fleet: TestFleet,
  names: string[],
  labels: string[][],
  pools: string,
): string {
  const agents = fleet.agents.map((a, i) =>
    `  ${names[i]}: { address: "${a.address}", labels: [${labels[i].join(", ")}] }`
  );
  return `agents:\n${agents.join("\n")}\npools:\n${pools}\n`;
}

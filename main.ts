/** `sloth-runner`: run workflows here, or start an agent. */
import { main } from "./lib/cli/mod.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

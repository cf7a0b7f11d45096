/** `sloth-runner`: run workflows here, or start an agent. */
import { main, serveLuaWorkerIfAsked } from "./lib/cli/mod.ts";

if (import.meta.main) {
  if (await serveLuaWorkerIfAsked()) Deno.exit(0);
  Deno.exit(await main(Deno.args));
}

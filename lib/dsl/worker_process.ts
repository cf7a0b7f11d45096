/**
 * A Lua worker as a process of its own, for an agent's job: the agent starts it
 * inside a sandbox that holds the job's directory and nothing else of the host's
 * files (exec/lua_sandbox.ts), so no path Lua names, whatever symlinks a task
 * swaps under it, can reach outside. It speaks worker.ts's protocol as JSON, one
 * message per line: requests on stdin, answers on stdout. Lua's own output (print,
 * io.write) never reaches stdout: it goes through the protocol's log messages.
 */
import { type FromWorker, LUA_WORKER_ENV, type ToWorker } from "./protocol.ts";
import { serveOver } from "./worker.ts";

/**
 * Serves until stdin closes. In a compiled executable (started with LUA_WORKER_ENV
 * set) the permissions it was built with are cut down first to what Lua needs.
 */
export async function serveLuaOverStdio(): Promise<void> {
  if (Deno.permissions.querySync({ name: "env" }).state === "granted") {
    const network = Deno.env.get(`${LUA_WORKER_ENV}_NET`) === "1";
    for (const name of ["run", "env", "sys", "ffi"] as const) Deno.permissions.revokeSync({ name });
    if (!network) Deno.permissions.revokeSync({ name: "net" });
  }
  const encoder = new TextEncoder();
  const out = Deno.stdout;
  let writing = Promise.resolve();
  const handle = serveOver((message: FromWorker) => {
    const bytes = encoder.encode(JSON.stringify(message) + "\n");
    writing = writing.then(async () => {
      for (let rest = bytes; rest.length > 0;) rest = rest.subarray(await out.write(rest));
    });
  });
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Deno.stdin.readable) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line) handle(JSON.parse(line) as ToWorker);
    }
  }
  // The agent closed the pipe: the job is over.
  await writing;
}

if (import.meta.main) {
  await serveLuaOverStdio();
  Deno.exit(0);
}

/**
 * The floor under a remote task: the same gRPC stream a task uses (start, manifest
 * end, workspace end; need end, result) against a server in another process that
 * does no work at all, and a plain Ping. `deno run -A scripts/bench_floor.ts`
 * starts its own server on 127.0.0.1, port 0. See BENCHMARKS.md ("Notes").
 */
import { AgentClient, PROTOCOL_VERSION, serveAgent, type TaskStart } from "../lib/rpc/mod.ts";

const ROUNDS = 300;
const [mode, port] = Deno.args;

if (mode === "server") {
  const server = await serveAgent({
    ping: () => ({
      version: "floor",
      protocol: PROTOCOL_VERSION,
      running_jobs: 0,
      queued_jobs: 0,
      max_concurrent: 1,
    }),
    runTask: async (job) => {
      while (!("manifest_end" in await job.next()));
      await job.send({ need_end: {} });
      while (!("workspace_end" in await job.next()));
      await job.send({
        result: {
          ok: true,
          error: "",
          message: "",
          outputs_json: "{}",
          exit_reason: "exited",
          exit_code: 0,
          has_exit_code: true,
          exit_signal: "",
          duration_ms: 0,
          changes_follow: false,
        },
      });
    },
  }, { host: "127.0.0.1", port: 0, token: "floor" });
  console.log(server.port);
} else if (mode === "client") {
  const client = new AgentClient(`127.0.0.1:${port}`, { token: "floor" });
  await client.ping();
  const start: TaskStart = {
    protocol: PROTOCOL_VERSION,
    group: "g",
    task: "t",
    files: [],
    main_file: "/w.lua",
    master_cwd: "/",
    values_json: "{}",
    params_json: "{}",
    inputs_json: "{}",
    timeout_ms: 0,
    attempt: 1,
    sync_back: "on_success",
    shell_command: "true",
    workspace_key: "",
    compression: "",
  };
  const streams: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    const call = client.runTask();
    await call.send({ start });
    await call.send({ manifest_end: { entries: 0 } });
    await call.send({ workspace_end: { bytes: 0 } });
    call.end();
    for await (const _ of call.responses) { /* until the stream ends */ }
    streams.push(performance.now() - t);
  }
  const pings: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    await client.ping();
    pings.push(performance.now() - t);
  }
  // Not closed: the connection ends with the process (a GOAWAY can crash the server,
  // denoland/deno#36788; see AgentClient.close).
  const at = (values: number[], q: number) =>
    values.sort((a, b) => a - b)[Math.floor(values.length * q)].toFixed(2);
  console.log(
    `a task's stream, no work: p50 ${at(streams, 0.5)} ms, p90 ${at(streams, 0.9)} ms`,
  );
  console.log(`Ping: p50 ${at(pings, 0.5)} ms, p90 ${at(pings, 0.9)} ms`);
  Deno.exit(0);
} else {
  const self = new URL(import.meta.url).pathname;
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", self, "server"],
    stdout: "piped",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const serverPort = (await reader.read()).value!.trim();
  const client = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", self, "client", serverPort],
  })
    .spawn();
  await client.status;
  server.kill();
  await server.status;
}

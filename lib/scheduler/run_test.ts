import assert from "node:assert/strict";
import type { Task } from "../model/mod.ts";
import { planRun } from "./plan.ts";
import { task, workflow } from "./_testing.ts";
import type {
  AttemptContext,
  AttemptResult,
  Gate,
  RetryWait,
  RunOptions,
  TaskExecutor,
} from "./run.ts";
import { runPlan } from "./run.ts";

interface Script {
  ms?: number;
  /** Attempts (1-based) that fail. */
  failOn?: number[];
  gate?: Gate;
  outputs?: Record<string, unknown>;
}

/** An executor that sleeps and succeeds or fails as told, and records what happened when. */
class ScriptedExecutor implements TaskExecutor {
  events: string[] = [];
  inputsSeen = new Map<string, AttemptContext["inputs"]>();
  running = 0;
  maxRunning = 0;
  constructor(readonly scripts: Record<string, Script> = {}) {}

  gate(t: Task): Promise<Gate> {
    return Promise.resolve(this.scripts[t.name]?.gate ?? { action: "run" });
  }

  async attempt(t: Task, ctx: AttemptContext): Promise<AttemptResult> {
    const script = this.scripts[t.name] ?? {};
    this.inputsSeen.set(t.name, ctx.inputs);
    this.events.push(`start ${t.name}`);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, script.ms ?? 10);
        ctx.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), {
          once: true,
        });
      });
    } finally {
      this.running--;
    }
    this.events.push(`end ${t.name}`);
    if (ctx.signal.aborted) return { ok: false, error: "stopped" };
    if (script.failOn?.includes(ctx.attempt)) {
      return { ok: false, error: "exit code 1", exit: { reason: "exited", code: 1, signal: null } };
    }
    return { ok: true, outputs: script.outputs ?? {} };
  }
}

async function run(tasks: Task[], exec: TaskExecutor, options: Partial<RunOptions> = {}) {
  const outcome = await runPlan(planRun(workflow(tasks)), exec, {
    maxParallel: 8,
    retryDelayMs: () => 1,
    ...options,
  });
  const status = Object.fromEntries(outcome.results.map((r) => [r.id.slice(2), r.status]));
  const errors = Object.fromEntries(outcome.results.map((r) => [r.id.slice(2), r.error]));
  return { outcome, status, errors };
}

Deno.test("runPlan() runs tasks without async one at a time, in order", async () => {
  const exec = new ScriptedExecutor();
  await run([task("a"), task("b"), task("c")], exec);
  assert.deepEqual(exec.events, ["start a", "end a", "start b", "end b", "start c", "end c"]);
});

Deno.test("runPlan() overlaps async tasks, and the next task without async waits for them", async () => {
  const exec = new ScriptedExecutor({ x: { ms: 60 }, y: { ms: 30 } });
  await run([
    task("x", { async: true }),
    task("y", { async: true }),
    task("z"),
  ], exec);
  assert.deepEqual(exec.events, ["start x", "start y", "end y", "end x", "start z", "end z"]);
});

Deno.test("runPlan() starts an async task after a task without async has finished", async () => {
  const exec = new ScriptedExecutor({ a: { ms: 30 } });
  await run([task("a"), task("b", { async: true })], exec);
  assert.deepEqual(exec.events, ["start a", "end a", "start b", "end b"]);
});

Deno.test("runPlan() never runs more than maxParallel tasks at once", async () => {
  const exec = new ScriptedExecutor();
  const tasks = Array.from({ length: 10 }, (_, i) => task(`t${i}`, { async: true }));
  await run(tasks, exec, { maxParallel: 3 });
  assert.equal(exec.maxRunning, 3);
});

Deno.test("runPlan() starts an async task only when its dependencies are done", async () => {
  const exec = new ScriptedExecutor({ slow: { ms: 50 } });
  await run([
    task("slow", { async: true }),
    task("fast", { async: true }),
    task("after", { async: true, dependsOn: ["slow"] }),
  ], exec);
  assert.ok(exec.events.indexOf("start after") > exec.events.indexOf("end slow"));
  assert.ok(exec.events.indexOf("start fast") < exec.events.indexOf("end slow"));
});

Deno.test("runPlan() passes each dependency's outputs as inputs by name", async () => {
  const exec = new ScriptedExecutor({ a: { outputs: { v: 1 } }, b: { outputs: { w: 2 } } });
  await run([task("a"), task("b"), task("c", { dependsOn: ["a", "b"] })], exec);
  assert.deepEqual(exec.inputsSeen.get("c"), { a: { v: 1 }, b: { w: 2 } });
});

Deno.test("runPlan() skips dependents of a failed task, transitively, and runs the rest", async () => {
  const exec = new ScriptedExecutor({ build: { failOn: [1] } });
  const { status, errors } = await run([
    task("build"),
    task("test", { dependsOn: ["build"] }),
    task("deploy", { dependsOn: ["test"] }),
    task("docs"),
  ], exec);
  assert.deepEqual(status, {
    build: "failed",
    test: "skipped",
    deploy: "skipped",
    docs: "success",
  });
  assert.equal(errors.test, 'dependency "build" failed with exit code 1');
  assert.equal(errors.deploy, 'dependency "test" was skipped');
});

Deno.test("runPlan() runs a next_if_fail task only when a task it watches failed", async () => {
  const exec = new ScriptedExecutor({ bad: { failOn: [1] } });
  const { status, errors } = await run([
    task("bad"),
    task("good"),
    task("on_bad", { nextIfFail: ["bad"] }),
    task("on_good", { nextIfFail: ["good"] }),
  ], exec);
  assert.equal(status.on_bad, "success");
  assert.equal(status.on_good, "skipped");
  assert.equal(errors.on_good, "none of next_if_fail (good) failed");
});

Deno.test("runPlan() retries a failing task and counts the attempts", async () => {
  const retries: string[] = [];
  const exec = new ScriptedExecutor({ flaky: { failOn: [1, 2] }, broken: { failOn: [1, 2, 3] } });
  const { outcome, status } = await run(
    [
      task("flaky", { retries: 2 }),
      task("broken", { retries: 2 }),
    ],
    exec,
    {
      onRetry: (t, attempt, _, pause) =>
        retries.push(`${t.name} ${attempt} ${"delayMs" in pause ? pause.delayMs : "?"}`),
    },
  );
  assert.deepEqual(status, { flaky: "success", broken: "failed" });
  assert.deepEqual(outcome.results.map((r) => r.attempts), [3, 3]);
  assert.deepEqual(retries, ["flaky 1 1", "flaky 2 1", "broken 1 1", "broken 2 1"]);
});

Deno.test("runPlan() backs off exponentially between attempts by default", async () => {
  const { backoff } = await import("./run.ts");
  assert.deepEqual([1, 2, 3, 4].map((n) => backoff(n)), [250, 500, 1000, 2000]);
  assert.deepEqual([1, 2, 3, 12].map((n) => backoff(n, "linear")), [1000, 2000, 3000, 10_000]);
  assert.deepEqual([1, 2, 3].map((n) => backoff(n, "fixed")), [1000, 1000, 1000]);
  assert.equal(backoff(20), 10_000);
});

Deno.test("runPlan() stops an attempt at its timeout and reports timeout", async () => {
  const exec = new ScriptedExecutor({ slow: { ms: 5000 } });
  const started = Date.now();
  const { outcome, status } = await run([task("slow", { timeoutMs: 50 })], exec);
  assert.equal(status.slow, "timeout");
  assert.equal(outcome.results[0].error, "timed out after 50ms");
  assert.equal(outcome.results[0].exit?.reason, "timeout");
  assert.ok(Date.now() - started < 2000);
});

Deno.test("runPlan() skips a task whose run_if is false without blocking its dependents", async () => {
  const exec = new ScriptedExecutor({
    maybe: { gate: { action: "skip", reason: "run_if was false" } },
  });
  const { status, errors } = await run(
    [task("maybe"), task("next", { dependsOn: ["maybe"] })],
    exec,
  );
  assert.deepEqual(status, { maybe: "skipped", next: "success" });
  assert.equal(errors.maybe, "run_if was false");
});

Deno.test("runPlan() stops the whole run when abort_if is true", async () => {
  const exec = new ScriptedExecutor({
    long: { ms: 5000 },
    stop: { gate: { action: "abort", reason: "abort_if was true" } },
  });
  const { outcome, status, errors } = await run([
    task("long", { async: true }),
    task("stop", { async: true }),
    task("later"),
  ], exec);
  assert.equal(outcome.aborted, 'run aborted by task "stop": abort_if was true');
  assert.deepEqual(status, { long: "cancelled", stop: "skipped", later: "skipped" });
  assert.equal(errors.later, outcome.aborted);
});

Deno.test("runPlan() cancels running tasks and skips the rest when interrupted", async () => {
  const exec = new ScriptedExecutor({ long: { ms: 5000 } });
  const interrupt = new AbortController();
  setTimeout(() => interrupt.abort(), 30);
  const { outcome, status } = await run([task("long"), task("next")], exec, {
    signal: interrupt.signal,
  });
  assert.equal(outcome.interrupted, true);
  assert.deepEqual(status, { long: "cancelled", next: "skipped" });
});

/** Fails its first attempts as an unreachable agent would; asks to wait for the agent before a retry. */
class AgentFaultExecutor implements TaskExecutor {
  events: string[] = [];
  /** Resolves the current wait (the agent "answers"). */
  answer?: () => void;
  constructor(readonly faults: number, readonly wait = true) {}

  gate(): Promise<Gate> {
    return Promise.resolve({ action: "run" });
  }

  attempt(t: Task, ctx: AttemptContext): Promise<AttemptResult> {
    this.events.push(`attempt ${ctx.attempt}`);
    if (ctx.attempt <= this.faults) {
      return Promise.resolve({
        ok: false,
        error: "agent a:1 unreachable: connect ECONNREFUSED",
        exit: { reason: "spawn_failed", code: null, signal: null },
        agentFault: "unreachable",
      });
    }
    return Promise.resolve({ ok: true, outputs: { on: t.name } });
  }

  beforeRetry(_t: Task, failed: AttemptResult, signal: AbortSignal): RetryWait | undefined {
    this.events.push(`before retry (${failed.agentFault})`);
    if (!this.wait || !failed.agentFault) return undefined;
    const ready = new Promise<void>((resolve) => {
      this.answer = resolve;
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    this.events.push("waiting");
    setTimeout(() => this.answer?.(), 5);
    return { waitingFor: "agent a:1 to answer", ready };
  }
}

Deno.test("runPlan() waits for what beforeRetry names instead of the back-off, then retries", async () => {
  const exec = new AgentFaultExecutor(2);
  const pauses: string[] = [];
  const delays: number[] = [];
  const { status, outcome } = await run([task("remote", { retries: 2 })], exec, {
    retryDelayMs: (n) => (delays.push(n), 1),
    onRetry: (_t, attempt, error, pause) =>
      pauses.push(`${attempt} ${error}: ${"waitingFor" in pause ? pause.waitingFor : "delay"}`),
  });
  assert.equal(status.remote, "success");
  assert.equal(outcome.results[0].attempts, 3);
  assert.deepEqual(exec.events, [
    "attempt 1",
    "before retry (unreachable)",
    "waiting",
    "attempt 2",
    "before retry (unreachable)",
    "waiting",
    "attempt 3",
  ]);
  assert.deepEqual(pauses, [
    "1 agent a:1 unreachable: connect ECONNREFUSED: agent a:1 to answer",
    "2 agent a:1 unreachable: connect ECONNREFUSED: agent a:1 to answer",
  ]);
  assert.deepEqual(delays, []);
});

Deno.test("runPlan() backs off as usual when beforeRetry names nothing to wait for", async () => {
  const exec = new AgentFaultExecutor(1, false);
  const delays: number[] = [];
  const { status } = await run([task("remote", { retries: 1 })], exec, {
    retryDelayMs: (n) => (delays.push(n), 1),
  });
  assert.equal(status.remote, "success");
  assert.deepEqual(delays, [1]);
});

Deno.test("runPlan() does not ask beforeRetry after the last attempt (retries = 0 fails at once)", async () => {
  const exec = new AgentFaultExecutor(1);
  const { status, errors } = await run([task("remote")], exec);
  assert.equal(status.remote, "failed");
  assert.equal(errors.remote, "agent a:1 unreachable: connect ECONNREFUSED");
  assert.deepEqual(exec.events, ["attempt 1"]);
});

Deno.test("runPlan() ends a wait before a retry when the run is interrupted", async () => {
  const exec = new AgentFaultExecutor(1);
  // The agent never answers: only the interrupt ends the wait.
  exec.beforeRetry = function (_t, _failed, signal) {
    this.events.push("waiting forever");
    const ready = new Promise<void>((resolve) =>
      signal.addEventListener("abort", () => resolve(), { once: true })
    );
    return { waitingFor: "agent a:1 to answer", ready };
  };
  const interrupt = new AbortController();
  const running = run([task("remote", { retries: 3 }), task("after")], exec, {
    signal: interrupt.signal,
    onRetry: () => interrupt.abort(),
  });
  const { outcome, status } = await running;
  assert.equal(outcome.interrupted, true);
  assert.deepEqual(status, { remote: "cancelled", after: "skipped" });
  assert.deepEqual(exec.events, ["attempt 1", "waiting forever"]);
});

Deno.test("runPlan() runs at most groupMaxParallel of a group's tasks at once, others unbounded by it", async () => {
  const exec = new ScriptedExecutor({ a: { ms: 30 }, b: { ms: 30 }, c: { ms: 30 }, d: { ms: 30 } });
  const capped = ["a", "b", "c", "d"].map((n) => task(n, { async: true, groupMaxParallel: 2 }));
  const { status } = await run(capped, exec);
  assert.deepEqual(Object.values(status), ["success", "success", "success", "success"]);
  assert.equal(exec.maxRunning, 2);
  const free = new ScriptedExecutor({ a: { ms: 30 }, b: { ms: 30 }, c: { ms: 30 } });
  await run(["a", "b", "c"].map((n) => task(n, { async: true })), free);
  assert.equal(free.maxRunning, 3);
});

Deno.test("runPlan() stops the run when a task with stopRunOnFailure fails, and not when it succeeds", async () => {
  const exec = new ScriptedExecutor({ bad: { failOn: [1] }, slow: { ms: 5_000 } });
  const { outcome, status } = await run([
    task("slow", { async: true }),
    task("bad", { async: true, stopRunOnFailure: true }),
    task("later"),
  ], exec);
  assert.deepEqual(status, { slow: "cancelled", bad: "failed", later: "skipped" });
  assert.match(outcome.aborted ?? "", /task "bad" failed and its workflow has fail_fast/);
  const fine = await run(
    [task("ok", { stopRunOnFailure: true }), task("next")],
    new ScriptedExecutor(),
  );
  assert.deepEqual(fine.status, { ok: "success", next: "success" });
});

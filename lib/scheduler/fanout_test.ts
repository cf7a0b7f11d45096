import assert from "node:assert/strict";
import { expandFanOut, type Member } from "../fleet/mod.ts";
import type { Task, TaskResult, Workflow } from "../model/mod.ts";
import { planRun, type Selection } from "./plan.ts";
import type { AttemptContext, AttemptResult, Gate, RunOutcome, TaskExecutor } from "./run.ts";
import { runPlan } from "./run.ts";
import { task, workflow } from "./_testing.ts";

const FAILED: AttemptResult = {
  ok: false,
  error: "exit code 1",
  exit: { reason: "exited", code: 1, signal: null },
};

/**
 * An executor whose attempts end when the test ends them (`manual`), or at once with
 * the result scripted for the task. It records starts and ends in order, what runs
 * together, and the inputs each task was given.
 */
class HostsExecutor implements TaskExecutor {
  events: string[] = [];
  maxRunning = 0;
  inputsSeen = new Map<string, AttemptContext["inputs"]>();
  attempts = new Map<string, number>();
  #ends = new Map<string, (result: AttemptResult) => void>();
  #waiters: { check: () => boolean; resolve: () => void }[] = [];

  constructor(
    readonly options: {
      manual?: boolean;
      /** Per task name, per attempt (1-based, the last one again after that). */
      results?: Record<string, AttemptResult[]>;
    } = {},
  ) {}

  gate(): Promise<Gate> {
    return Promise.resolve({ action: "run" });
  }

  attempt(t: Task, ctx: AttemptContext): Promise<AttemptResult> {
    this.events.push(`start ${t.name}`);
    this.inputsSeen.set(t.name, ctx.inputs);
    this.attempts.set(t.name, ctx.attempt);
    return new Promise((resolve) => {
      const end = (result: AttemptResult) => {
        this.#ends.delete(t.name);
        this.events.push(`end ${t.name}`);
        resolve(result);
        this.#changed();
      };
      this.#ends.set(t.name, end);
      this.maxRunning = Math.max(this.maxRunning, this.#ends.size);
      this.#changed();
      if (!this.options.manual) {
        const scripted = this.options.results?.[t.name] ?? [{ ok: true }];
        const result = scripted[Math.min(ctx.attempt, scripted.length) - 1];
        setTimeout(() => end(result), 0);
      }
    });
  }

  /** Names of the attempts running now, sorted. */
  get running(): string[] {
    return [...this.#ends.keys()].sort();
  }

  /** Ends the running attempt of `name`. */
  end(name: string, result: AttemptResult = { ok: true }): void {
    const end = this.#ends.get(name);
    assert.ok(end, `${name} is not running (running: ${this.running.join(", ") || "none"})`);
    end(result);
  }

  /**
   * Resolves once exactly `names` are running, then lets everything the scheduler
   * would do next happen, so that a task started too early shows in `running`.
   */
  async whenRunning(...names: string[]): Promise<void> {
    const want = [...names].sort().join();
    const check = () => this.running.join() === want;
    if (!check()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          this.#waiters.push({ check, resolve });
          // Only a guard against a hung scheduler: the test fails instead of never ending.
          timer = setTimeout(
            () =>
              reject(
                new Error(`waited for ${want}; running: ${this.running.join(", ") || "none"}`),
              ),
            5_000,
          );
        });
      } finally {
        clearTimeout(timer);
      }
    }
    await settle();
    assert.equal(this.running.join(), want, "nothing else started meanwhile");
  }

  #changed(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  }
}

/** Lets every callback already due run (the scheduler's reaction to an attempt's end). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

function hosts(count: number): Member[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `web-${i + 1}`,
    labels: ["web"],
    target: { kind: "remote", address: `10.0.0.${i + 1}:50051`, agent: `web-${i + 1}` },
  }));
}

function fanOut(
  name: string,
  fields: Partial<Task> & { batch?: number; maxFailures?: number } = {},
): Task {
  const { batch, maxFailures, ...rest } = fields;
  return task(name, {
    ...rest,
    target: { kind: "each", pool: "web", batch, maxFailures },
    syncBack: "never",
  });
}

function expanded(tasks: Task[], count: number): Workflow {
  return expandFanOut(workflow(tasks), new Map([["web", hosts(count)]]));
}

function start(
  tasks: Task[],
  count: number,
  exec: TaskExecutor,
  options: { maxParallel?: number; selection?: Selection } = {},
): Promise<RunOutcome> {
  return runPlan(planRun(expanded(tasks, count), options.selection), exec, {
    maxParallel: options.maxParallel ?? 8,
    retryDelayMs: () => 1,
  });
}

const byName = (outcome: RunOutcome): Record<string, TaskResult> =>
  Object.fromEntries(outcome.results.map((r) => [r.id.slice(2), r]));
const statuses = (outcome: RunOutcome) =>
  Object.fromEntries(outcome.results.map((r) => [r.id.slice(2), r.status]));

// --- side by side, and in order with the tasks around them -------------------

Deno.test("runPlan() runs a fan-out's copies side by side, after the task before and before the task after", async () => {
  const exec = new HostsExecutor({ manual: true });
  const run = start([task("build"), fanOut("deploy"), task("report")], 3, exec);
  await exec.whenRunning("build");
  exec.end("build");
  await exec.whenRunning("deploy@web-1", "deploy@web-2", "deploy@web-3");
  exec.end("deploy@web-2");
  await exec.whenRunning("deploy@web-1", "deploy@web-3");
  exec.end("deploy@web-3");
  exec.end("deploy@web-1");
  await exec.whenRunning("report");
  exec.end("report");
  const outcome = await run;
  assert.deepEqual(Object.values(statuses(outcome)), Array(5).fill("success"));
  assert.deepEqual(outcome.results.map((r) => r.id), [
    "g.build",
    "g.deploy@web-1",
    "g.deploy@web-2",
    "g.deploy@web-3",
    "g.report",
  ]);
});

Deno.test("runPlan() runs no more of a fan-out's copies at once than maxParallel, and all of them", async () => {
  const exec = new HostsExecutor({ manual: true });
  const run = start([fanOut("deploy")], 5, exec, { maxParallel: 2 });
  await exec.whenRunning("deploy@web-1", "deploy@web-2");
  exec.end("deploy@web-1");
  await exec.whenRunning("deploy@web-2", "deploy@web-3");
  exec.end("deploy@web-3", FAILED);
  await exec.whenRunning("deploy@web-2", "deploy@web-4");
  exec.end("deploy@web-2");
  await exec.whenRunning("deploy@web-4", "deploy@web-5");
  exec.end("deploy@web-4");
  exec.end("deploy@web-5");
  const outcome = await run;
  assert.equal(exec.maxRunning, 2);
  assert.deepEqual(statuses(outcome), {
    "deploy@web-1": "success",
    "deploy@web-2": "success",
    "deploy@web-3": "failed",
    "deploy@web-4": "success",
    "deploy@web-5": "success",
  });
});

Deno.test("runPlan() finishes two fan-outs one after the other, as it would two tasks", async () => {
  const exec = new HostsExecutor({ manual: true });
  const run = start([fanOut("upload"), fanOut("restart")], 2, exec);
  await exec.whenRunning("upload@web-1", "upload@web-2");
  exec.end("upload@web-1");
  // restart@web-1 could run on web-1 now, but restart comes after the whole of upload.
  await exec.whenRunning("upload@web-2");
  exec.end("upload@web-2");
  await exec.whenRunning("restart@web-1", "restart@web-2");
  exec.end("restart@web-1");
  exec.end("restart@web-2");
  await run;
});

// --- batches ------------------------------------------------------------------

Deno.test("runPlan() starts no host of a batch before every host of the previous batch ended, failed or not", async () => {
  const exec = new HostsExecutor({ manual: true });
  const run = start([fanOut("deploy", { batch: 2 }), task("after")], 5, exec);
  await exec.whenRunning("deploy@web-1", "deploy@web-2");
  exec.end("deploy@web-2", FAILED);
  // web-1 still running: the next batch waits.
  await exec.whenRunning("deploy@web-1");
  exec.end("deploy@web-1");
  await exec.whenRunning("deploy@web-3", "deploy@web-4");
  exec.end("deploy@web-3");
  await exec.whenRunning("deploy@web-4");
  exec.end("deploy@web-4");
  await exec.whenRunning("deploy@web-5");
  exec.end("deploy@web-5");
  await exec.whenRunning("after");
  exec.end("after");
  const outcome = await run;
  assert.equal(exec.maxRunning, 2);
  assert.deepEqual(statuses(outcome), {
    "deploy@web-1": "success",
    "deploy@web-2": "failed",
    "deploy@web-3": "success",
    "deploy@web-4": "success",
    "deploy@web-5": "success",
    after: "success",
  });
});

Deno.test("runPlan() keeps batches apart when maxParallel is smaller than a batch", async () => {
  const exec = new HostsExecutor({ manual: true });
  const run = start([fanOut("deploy", { batch: 3 })], 4, exec, { maxParallel: 2 });
  await exec.whenRunning("deploy@web-1", "deploy@web-2");
  exec.end("deploy@web-1");
  await exec.whenRunning("deploy@web-2", "deploy@web-3");
  exec.end("deploy@web-3");
  // web-4 is of the next batch: it waits for web-2 though a slot is free.
  await exec.whenRunning("deploy@web-2");
  exec.end("deploy@web-2");
  await exec.whenRunning("deploy@web-4");
  exec.end("deploy@web-4");
  await run;
});

// --- max_failures -------------------------------------------------------------

Deno.test("runPlan() starts no new host once max_failures hosts failed, and skips the rest and the dependents", async () => {
  const exec = new HostsExecutor({ results: { "deploy@web-1": [FAILED] } });
  const outcome = await start(
    [
      fanOut("deploy", { batch: 1, maxFailures: 1 }),
      task("verify", { dependsOn: ["deploy"] }),
    ],
    4,
    exec,
  );
  assert.deepEqual(exec.events, ["start deploy@web-1", "end deploy@web-1"]);
  const results = byName(outcome);
  assert.deepEqual(statuses(outcome), {
    "deploy@web-1": "failed",
    "deploy@web-2": "skipped",
    "deploy@web-3": "skipped",
    "deploy@web-4": "skipped",
    verify: "skipped",
  });
  for (const host of ["web-2", "web-3", "web-4"]) {
    assert.equal(
      results[`deploy@${host}`].error,
      'not started: 1 host of "deploy" failed (max_failures = 1)',
    );
    assert.equal(results[`deploy@${host}`].attempts, 0);
  }
  assert.match(results.verify.error ?? "", /^dependency "deploy@web-1" failed/);
});

Deno.test("runPlan() counts failed hosts, not skipped or succeeded ones, against max_failures", async () => {
  const exec = new HostsExecutor({
    results: { "deploy@web-1": [FAILED], "deploy@web-3": [FAILED] },
  });
  const outcome = await start([fanOut("deploy", { batch: 2, maxFailures: 2 })], 5, exec);
  assert.deepEqual(statuses(outcome), {
    "deploy@web-1": "failed",
    "deploy@web-2": "success",
    "deploy@web-3": "failed",
    "deploy@web-4": "success",
    "deploy@web-5": "skipped",
  });
  assert.equal(
    byName(outcome)["deploy@web-5"].error,
    'not started: 2 hosts of "deploy" failed (max_failures = 2)',
  );
});

Deno.test("runPlan() lets hosts already running finish when max_failures is reached", async () => {
  const exec = new HostsExecutor({ manual: true });
  const run = start([fanOut("deploy", { maxFailures: 1 })], 4, exec, { maxParallel: 2 });
  await exec.whenRunning("deploy@web-1", "deploy@web-2");
  exec.end("deploy@web-1", FAILED);
  // No new host starts in web-1's place; web-2 goes on.
  await exec.whenRunning("deploy@web-2");
  exec.end("deploy@web-2");
  const outcome = await run;
  assert.deepEqual(statuses(outcome), {
    "deploy@web-1": "failed",
    "deploy@web-2": "success",
    "deploy@web-3": "skipped",
    "deploy@web-4": "skipped",
  });
});

Deno.test("runPlan() does not count a host that failed an attempt and then succeeded on retry", async () => {
  const exec = new HostsExecutor({ results: { "deploy@web-1": [FAILED, { ok: true }] } });
  const outcome = await start(
    [fanOut("deploy", { batch: 1, maxFailures: 1, retries: 1 })],
    3,
    exec,
  );
  assert.deepEqual(Object.values(statuses(outcome)), ["success", "success", "success"]);
  assert.equal(byName(outcome)["deploy@web-1"].attempts, 2);
});

Deno.test("runPlan() runs every host without max_failures, fails the ones that failed, and skips the dependents", async () => {
  const exec = new HostsExecutor({ results: { "deploy@web-1": [FAILED] } });
  const outcome = await start(
    [
      fanOut("deploy"),
      task("verify", { dependsOn: ["deploy"] }),
      task("cleanup"),
    ],
    3,
    exec,
    { maxParallel: 1 },
  );
  assert.deepEqual(statuses(outcome), {
    "deploy@web-1": "failed",
    "deploy@web-2": "success",
    "deploy@web-3": "success",
    verify: "skipped",
    cleanup: "success",
  });
  assert.equal(
    byName(outcome).verify.error,
    'dependency "deploy@web-1" failed with exit code 1',
  );
});

Deno.test("runPlan() skips every copy, unstarted, when the fan-out's dependency failed", async () => {
  const exec = new HostsExecutor({ results: { build: [FAILED] } });
  const outcome = await start([task("build"), fanOut("deploy", { dependsOn: ["build"] })], 2, exec);
  assert.deepEqual(exec.events, ["start build", "end build"]);
  for (const host of ["web-1", "web-2"]) {
    const result = byName(outcome)[`deploy@${host}`];
    assert.equal(result.status, "skipped");
    assert.equal(result.error, 'dependency "build" failed with exit code 1');
  }
});

Deno.test("runPlan() runs a next_if_fail task of a fan-out when one host failed, and only then", async () => {
  const tasks = [fanOut("deploy"), task("rollback", { nextIfFail: ["deploy"] })];
  const failing = await start(
    tasks,
    3,
    new HostsExecutor({ results: { "deploy@web-2": [FAILED] } }),
  );
  assert.equal(byName(failing).rollback.status, "success");
  const passing = await start(tasks, 3, new HostsExecutor());
  assert.equal(byName(passing).rollback.status, "skipped");
});

// --- what dependents see, and what -t picks ------------------------------------

Deno.test("runPlan() gives dependents a fan-out's outputs keyed by task, then by host", async () => {
  const exec = new HostsExecutor({
    results: {
      build: [{ ok: true, outputs: { version: "1.2" } }],
      "deploy@web-1": [{ ok: true, outputs: { pid: 11 } }],
      "deploy@web-2": [{ ok: true, outputs: { pid: 22 } }],
    },
  });
  await start(
    [
      task("build"),
      fanOut("deploy", { dependsOn: ["build"] }),
      task("verify", { dependsOn: ["build", "deploy"] }),
    ],
    2,
    exec,
  );
  assert.deepEqual(exec.inputsSeen.get("deploy@web-2"), { build: { version: "1.2" } });
  assert.deepEqual(exec.inputsSeen.get("verify"), {
    build: { version: "1.2" },
    deploy: { "web-1": { pid: 11 }, "web-2": { pid: 22 } },
  });
});

Deno.test("planRun() with -t NAME picks every copy of a fan-out, and -t NAME@HOST one", () => {
  const tasks = [
    task("build"),
    fanOut("deploy", { dependsOn: ["build"], batch: 1 }),
    task("verify", { dependsOn: ["deploy"] }),
  ];
  const ids = (selection: Selection) =>
    planRun(expanded(tasks, 3), selection).tasks.map((p) => p.task.id);
  assert.deepEqual(ids({ tasks: ["deploy"] }), [
    "g.build",
    "g.deploy@web-1",
    "g.deploy@web-2",
    "g.deploy@web-3",
  ]);
  assert.deepEqual(ids({ tasks: ["deploy@web-2"] }), ["g.build", "g.deploy@web-2"]);
  assert.deepEqual(ids({ tasks: ["g.deploy@web-3"] }), ["g.build", "g.deploy@web-3"]);
  assert.deepEqual(ids({ tasks: ["verify"] }), [
    "g.build",
    "g.deploy@web-1",
    "g.deploy@web-2",
    "g.deploy@web-3",
    "g.verify",
  ]);
});

Deno.test("runPlan() runs one host picked with -t NAME@HOST without waiting for the batches before it", async () => {
  const exec = new HostsExecutor();
  const outcome = await start([fanOut("deploy", { batch: 1 })], 3, exec, {
    selection: { tasks: ["deploy@web-3"] },
  });
  assert.deepEqual(exec.events, ["start deploy@web-3", "end deploy@web-3"]);
  assert.deepEqual(statuses(outcome), { "deploy@web-3": "success" });
});

// --- where it ran -------------------------------------------------------------

Deno.test("runPlan() reports where an attempt says it ran, else the copy's agent", async () => {
  const where = "agent web-2 (10.0.0.2:50051), pool web";
  const exec = new HostsExecutor({
    results: {
      "deploy@web-1": [{ ok: true }],
      "deploy@web-2": [{ ok: true, where }],
      other: [{ ...FAILED, where: "agent db (10.0.0.9:50051), pool db" }],
    },
  });
  const outcome = await start(
    [fanOut("deploy"), task("other", { target: { kind: "pool", pool: "db" } })],
    2,
    exec,
  );
  const results = byName(outcome);
  assert.equal(results["deploy@web-1"].where, "agent web-1 (10.0.0.1:50051)");
  assert.equal(results["deploy@web-2"].where, where);
  assert.equal(results.other.status, "failed");
  assert.equal(results.other.where, "agent db (10.0.0.9:50051), pool db");
});

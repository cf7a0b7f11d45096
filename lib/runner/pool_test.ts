import assert from "node:assert/strict";
import { type DnsMember, Fleet, type Member, type PingInfo } from "../fleet/mod.ts";
import type { RunEvent } from "../log/mod.ts";
import type { Inventory, RemoteTarget, Task } from "../model/mod.ts";
import {
  type AttemptContext,
  type AttemptResult,
  planRun,
  runPlan,
  type TaskExecutor,
} from "../scheduler/mod.ts";
import { task, workflow } from "../scheduler/_testing.ts";
import { type MemberRunner, PoolRunner } from "./pool.ts";

function inventory(): Inventory {
  const agent = (n: number) => ({ address: `10.0.0.${n}:50051`, labels: ["web"] });
  return {
    file: "/srv/sloth-inventory.yaml",
    agents: { a: agent(1), b: agent(2), c: agent(3) },
    pools: {
      web: { source: { kind: "labels", labels: ["web"] } },
      gpu: { source: { kind: "labels", labels: ["gpu"] } },
      dyn: { source: { kind: "dns", dns: "agents.internal:50051" } },
    },
  };
}

function info(running: number, maxConcurrent = 4): PingInfo {
  return { version: "1.0.0", protocol: 3, running, queued: 0, maxConcurrent, rttMs: 1 };
}

/** Pings answer from `answers` by member name (a string: rejects with it); idle otherwise. */
function ping(answers: Record<string, PingInfo | string> = {}) {
  return (member: Member): Promise<PingInfo> => {
    const answer = answers[member.name] ?? info(0);
    return typeof answer === "string" ? Promise.reject(new Error(answer)) : Promise.resolve(answer);
  };
}

const UNREACHABLE = (name: string): AttemptResult => ({
  ok: false,
  error: `agent ${name} unreachable: connection refused`,
  agentFault: "unreachable",
  beforeStart: true,
});

/**
 * The `attempt` boundary of the remote runner: answers per agent name (else success),
 * recording which agent each call went to. `hold` keeps attempts running until released.
 */
class FakeMembers implements MemberRunner {
  calls: string[] = [];
  tasks: Task[] = [];
  #held: (() => void)[] = [];
  constructor(
    readonly answers: Record<string, AttemptResult> = {},
    readonly options: { hold?: boolean; onCall?: (agent: string) => void } = {},
  ) {}

  async attempt(t: Task, _ctx: AttemptContext): Promise<AttemptResult> {
    const agent = (t.target as RemoteTarget).agent ?? "?";
    this.calls.push(agent);
    this.tasks.push(t);
    this.options.onCall?.(agent);
    if (this.options.hold) await new Promise<void>((resolve) => this.#held.push(resolve));
    return this.answers[agent] ?? { ok: true, outputs: { on: agent } };
  }

  release(): void {
    for (const resolve of this.#held.splice(0)) resolve();
  }
}

function poolTask(fields: Partial<Task> = {}, pool = "web"): Task {
  return task("deploy", { target: { kind: "pool", pool }, workdir: "/srv/app", ...fields });
}

function setup(
  options: {
    answers?: Record<string, AttemptResult>;
    pings?: Record<string, PingInfo | string>;
    resolve?: (spec: string) => Promise<DnsMember[]>;
    hold?: boolean;
  } = {},
) {
  const members = new FakeMembers(options.answers, { hold: options.hold });
  const events: RunEvent[] = [];
  const fleet = new Fleet(inventory(), ping(options.pings), options.resolve);
  const runner = new PoolRunner({
    fleet,
    remote: members,
    emit: (e) => {
      events.push(e);
    },
  });
  return { members, events, fleet, runner };
}

function ctx(signal = new AbortController().signal): AttemptContext {
  return { attempt: 1, inputs: {}, signal };
}

Deno.test("PoolRunner.attempt() sends the first attempt to the least loaded member that answers", async () => {
  const { runner, members } = setup({
    pings: { a: info(3), b: "unreachable: connection refused", c: info(1) },
  });
  const result = await runner.attempt(poolTask(), ctx());
  assert.deepEqual(members.calls, ["c"]);
  assert.equal(result.ok, true);
  assert.deepEqual(result.outputs, { on: "c" });
  assert.equal(result.where, "agent c (10.0.0.3:50051), pool web");
  // The member's own target, the rest of the task as it was.
  const sent = members.tasks[0];
  assert.deepEqual(sent.target, {
    kind: "remote",
    address: "10.0.0.3:50051",
    agent: "c",
    tokenEnv: undefined,
    tls: undefined,
    compress: undefined,
  });
  assert.equal(sent.id, "g.deploy");
  assert.equal(sent.workdir, "/srv/app");
});

Deno.test("PoolRunner.attempt() passes over a member that could not take the task and tries the next in the same attempt", async () => {
  const { runner, members, events } = setup({ answers: { a: UNREACHABLE("a") } });
  const result = await runner.attempt(poolTask(), ctx());
  assert.deepEqual(members.calls, ["a", "b"]);
  assert.equal(result.ok, true);
  assert.equal(result.where, "agent b (10.0.0.2:50051), pool web");
  const warnings = events.filter((e) => e.type === "log" && e.level === "warn");
  assert.equal(warnings.length, 1);
  assert.match(
    JSON.stringify(warnings[0]),
    /pool web: a did not take the task \(agent a unreachable: connection refused\)/,
  );
});

Deno.test("PoolRunner spends no retry on a failover: the task succeeds on its first attempt", async () => {
  const { runner, members } = setup({
    answers: { a: UNREACHABLE("a"), b: { ...UNREACHABLE("b"), agentFault: "lost" } },
  });
  const executor: TaskExecutor = {
    gate: () => Promise.resolve({ action: "run" }),
    attempt: (t, c) => runner.attempt(t, c),
  };
  const outcome = await runPlan(planRun(workflow([poolTask({ retries: 0 })])), executor, {
    maxParallel: 1,
  });
  const [result] = outcome.results;
  assert.equal(result.status, "success");
  assert.equal(result.attempts, 1);
  assert.equal(result.where, "agent c (10.0.0.3:50051), pool web");
  assert.deepEqual(members.calls, ["a", "b", "c"]);
});

Deno.test("PoolRunner.attempt() returns a failure as it is when the member may have started the task", async () => {
  const lost: AttemptResult = {
    ok: false,
    error: "agent a lost: connection reset",
    agentFault: "lost",
    exit: { reason: "agent_lost", code: null, signal: null },
  };
  const { runner, members } = setup({ answers: { a: lost } });
  const result = await runner.attempt(poolTask(), ctx());
  assert.deepEqual(members.calls, ["a"], "not run again elsewhere: it may have run");
  assert.deepEqual(result, { ...lost, where: "agent a (10.0.0.1:50051), pool web" });
});

Deno.test("PoolRunner.attempt() returns a task's own failure from the first member, without trying another", async () => {
  const failed: AttemptResult = {
    ok: false,
    error: "exit code 2",
    exit: { reason: "exited", code: 2, signal: null },
  };
  const { runner, members } = setup({ answers: { a: failed } });
  const result = await runner.attempt(poolTask(), ctx());
  assert.deepEqual(members.calls, ["a"]);
  assert.equal(result.error, "exit code 2");
  assert.equal(result.where, "agent a (10.0.0.1:50051), pool web");
});

Deno.test("PoolRunner.attempt() passes over each member, asks again once those that answer, then fails naming the pool and every member's reason", async () => {
  const { runner, members } = setup({
    answers: { a: UNREACHABLE("a"), b: UNREACHABLE("b"), c: UNREACHABLE("c") },
    pings: { c: "deadline exceeded" },
  });
  const result = await runner.attempt(poolTask(), ctx());
  // c did not answer its ping: it is passed over with that reason, never tried. a and b
  // answer pings when asked again before giving up, so each gets one more try.
  assert.deepEqual(members.calls, ["a", "b", "a", "b"]);
  assert.equal(result.ok, false);
  assert.equal(
    result.error,
    'pool "web": no member could take the task (' +
      "a: agent a unreachable: connection refused; " +
      "b: agent b unreachable: connection refused; " +
      "c: deadline exceeded)",
  );
  assert.equal(result.exit?.reason, "spawn_failed");
  assert.equal(result.agentFault, undefined, "the task's own retries may still try again");
});

Deno.test("PoolRunner.attempt() says a member was passed over for the next attempt too", async () => {
  const { runner, members } = setup({ answers: { a: UNREACHABLE("a") } });
  await runner.attempt(poolTask(), ctx());
  members.calls.length = 0;
  delete members.answers.a;
  await runner.attempt(poolTask({ workdir: "/srv/other" }), ctx());
  // a was marked down: last; b ran the last attempt: c, chosen least recently, goes first.
  assert.deepEqual(members.calls, ["c"]);
});

Deno.test("PoolRunner.attempt() looks a DNS pool up again before giving up, and tries a new member", async () => {
  const lookups: string[] = [];
  const answers: DnsMember[][] = [
    [{ name: "10.1.0.1:50051", address: "10.1.0.1:50051" }],
    [
      { name: "10.1.0.1:50051", address: "10.1.0.1:50051" },
      { name: "10.1.0.2:50051", address: "10.1.0.2:50051" },
    ],
  ];
  const { runner, members } = setup({
    answers: { "10.1.0.1:50051": UNREACHABLE("10.1.0.1:50051") },
    resolve: (spec) => {
      lookups.push(spec);
      return Promise.resolve(answers[Math.min(lookups.length, answers.length) - 1]);
    },
  });
  const result = await runner.attempt(poolTask({}, "dyn"), ctx());
  assert.deepEqual(members.calls, ["10.1.0.1:50051", "10.1.0.2:50051"]);
  assert.equal(lookups.length, 2);
  assert.equal(result.ok, true);
  assert.equal(result.where, "agent 10.1.0.2:50051, pool dyn");
});

Deno.test("PoolRunner.attempt() tries nothing when the attempt was already cancelled", async () => {
  const { runner, members } = setup();
  const controller = new AbortController();
  controller.abort("cancelled");
  const result = await runner.attempt(poolTask(), ctx(controller.signal));
  assert.deepEqual(members.calls, []);
  assert.deepEqual(result, { ok: false, error: "cancelled" });
});

Deno.test("PoolRunner.attempt() tries no other member once cancelled during an attempt", async () => {
  const controller = new AbortController();
  const members = new FakeMembers({ a: UNREACHABLE("a") }, {
    onCall: () => controller.abort("cancelled"),
  });
  const runner = new PoolRunner({
    fleet: new Fleet(inventory(), ping()),
    remote: members,
    emit: () => {},
  });
  const result = await runner.attempt(poolTask(), ctx(controller.signal));
  assert.deepEqual(members.calls, ["a"]);
  assert.equal(result.ok, false);
});

Deno.test("PoolRunner.attempt() fails naming the pool when it has no members", async () => {
  const { runner, members } = setup();
  const result = await runner.attempt(poolTask({}, "gpu"), ctx());
  assert.deepEqual(members.calls, []);
  assert.equal(result.ok, false);
  assert.match(result.error ?? "", /^pool "gpu" has no members/);
});

Deno.test("PoolRunner.attempt() refuses a task that does not go to a pool", async () => {
  const { runner } = setup();
  await assert.rejects(
    runner.attempt(task("t", { target: { kind: "local" } }), ctx()),
    /does not go to a pool/,
  );
});

Deno.test("PoolRunner spreads attempts begun one after another over idle members", async () => {
  const { runner, members } = setup({ hold: true });
  const first = runner.attempt(poolTask({ workdir: "/w1" }), ctx());
  // Let the first choice be made before the second one starts.
  while (members.calls.length < 1) await new Promise((r) => setTimeout(r, 0));
  const second = runner.attempt(poolTask({ workdir: "/w2" }), ctx());
  while (members.calls.length < 2) await new Promise((r) => setTimeout(r, 0));
  members.release();
  await Promise.all([first, second]);
  assert.deepEqual(members.calls, ["a", "b"]);
});

Deno.test({
  name: "PoolRunner spreads attempts begun at the same time over idle members",
  fn: async () => {
    const { runner, members } = setup({
      hold: true,
      pings: { a: info(0, 1), b: info(0, 1), c: info(0, 1) },
    });
    const attempts = ["/w1", "/w2", "/w3"].map((workdir) =>
      runner.attempt(poolTask({ workdir }), ctx())
    );
    while (members.calls.length < 3) await new Promise((r) => setTimeout(r, 0));
    members.release();
    await Promise.all(attempts);
    assert.deepEqual(members.calls.sort(), ["a", "b", "c"]);
  },
});

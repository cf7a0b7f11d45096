/**
 * Runs attempts of tasks whose `delegate_to` is a pool: each attempt goes to the
 * best member (fleet/choose.ts); one that cannot be reached, or is lost before the
 * task could start there, is passed over for the next without spending a retry.
 */
import type { EmitEvent } from "../log/mod.ts";
import { targetText, type Task } from "../model/mod.ts";
import type { Fleet, Member } from "../fleet/mod.ts";
import type { AttemptContext, AttemptResult, Gate, TaskExecutor } from "../scheduler/mod.ts";

/** The part of `RemoteRunner` a pool uses. */
export interface MemberRunner {
  attempt(task: Task, ctx: AttemptContext): Promise<AttemptResult>;
}

export class PoolRunner implements TaskExecutor {
  #fleet: Fleet;
  #remote: MemberRunner;
  #emit: EmitEvent;

  constructor(options: { fleet: Fleet; remote: MemberRunner; emit: EmitEvent }) {
    this.#fleet = options.fleet;
    this.#remote = options.remote;
    this.#emit = options.emit;
  }

  gate(): Promise<Gate> {
    return Promise.reject(new Error("conditions are evaluated on the master"));
  }

  async attempt(task: Task, ctx: AttemptContext): Promise<AttemptResult> {
    if (task.target.kind !== "pool") throw new Error(`${task.id} does not go to a pool`);
    const pool = task.target.pool;
    // Why each member did not take it; `excluded`, those not to choose again in this pass.
    const passed = new Map<string, string>();
    let excluded = new Set<string>();
    let looked = false;
    while (!ctx.signal.aborted) {
      let chosen;
      try {
        chosen = await this.#fleet.choose(pool, task.workdir, excluded);
        if (!chosen && !looked && passed.size > 0) {
          // Before giving up, once: who is in the pool now (DNS), and who answers again.
          looked = true;
          await this.#fleet.members(pool, { fresh: true });
          excluded = new Set();
          chosen = await this.#fleet.choose(pool, task.workdir, excluded);
        }
      } catch (error) {
        const message = (error as Error).message;
        return {
          ok: false,
          error: message.includes(`pool "${pool}"`) ? message : `pool "${pool}": ${message}`,
        };
      }
      if (!chosen) break;
      const { member, end, down } = chosen;
      excluded.add(member.name);
      if (down !== undefined) {
        end();
        passed.set(member.name, down);
        continue;
      }
      let result: AttemptResult;
      try {
        result = await this.#remote.attempt({ ...task, target: member.target }, ctx);
      } finally {
        end();
      }
      if (result.agentFault && result.beforeStart && !ctx.signal.aborted) {
        const reason = result.error ?? "unreachable";
        passed.set(member.name, reason);
        this.#fleet.markDown(member, reason);
        this.#note(task, member, `pool ${pool}: ${member.name} did not take the task (${reason})`);
        // Who is in a DNS pool now: the member may have been replaced (a new pod).
        await this.#fleet.lookAgain(pool);
        continue;
      }
      return { ...result, where: `${targetText(member.target)}, pool ${pool}` };
    }
    if (ctx.signal.aborted) return { ok: false, error: "cancelled" };
    const reasons = [...passed].map(([name, reason]) => `${name}: ${reason}`);
    return {
      ok: false,
      error: `pool "${pool}": no member could take the task` +
        (reasons.length ? ` (${reasons.join("; ")})` : ""),
      exit: { reason: "spawn_failed", code: null, signal: null },
    };
  }

  #note(task: Task, member: Member, line: string): void {
    this.#emit({
      type: "log",
      id: task.id,
      task: task.name,
      agent: member.name,
      stream: "log",
      level: "warn",
      line,
    });
  }
}

/**
 * A run's view of its pools: who is in each (DNS looked up at the start and
 * again before a failover), who answered, and what this master has on each.
 */
import { findPool, type Inventory } from "../model/mod.ts";
import { type Candidate, type Health, type Ping, rankCandidates } from "./choose.ts";
import { type DnsResolver, type Member, poolMembers } from "./members.ts";

/** A member's ping deadline when a pool is first used and when a down one is looked at again. */
export const POOL_PING_MS = 1_000;
/** A member found down is pinged again (in the background) once its mark is this old. */
export const DOWN_RECHECK_MS = 2_000;
/**
 * A member that answered is pinged again (in the background) once its answer is this
 * old: the jobs other masters have there change.
 */
export const LOAD_RECHECK_MS = 5_000;

interface MemberState {
  member: Member;
  health?: Health;
  inFlight: number;
  /** This master's sequence number of the last choice of it. */
  lastChosen: number;
  checking?: Promise<void>;
}

export class Fleet {
  #inventory: Inventory;
  #ping: Ping;
  #resolve?: DnsResolver;
  /** Per pool: its members as last resolved. */
  #pools = new Map<string, Promise<Member[]>>();
  /** Per address: a member of any pool. */
  #states = new Map<string, MemberState>();
  /** Per task directory: the member that last ran it. */
  #holder = new Map<string, string>();
  #choices = 0;

  constructor(inventory: Inventory, ping: Ping, resolve?: DnsResolver) {
    this.#inventory = inventory;
    this.#ping = ping;
    this.#resolve = resolve;
  }

  get inventory(): Inventory {
    return this.#inventory;
  }

  /**
   * The pool's members; `fresh` looks a DNS pool up again (before a failover).
   * The first call pings every member, so the first choice already knows who is up.
   */
  async members(pool: string, options: { fresh?: boolean } = {}): Promise<Member[]> {
    const isDns = findPool(this.#inventory, pool)?.source.kind === "dns";
    let members = this.#pools.get(pool);
    if (!members || (options.fresh && isDns)) {
      const previous = members;
      const found = poolMembers(this.#inventory, pool, this.#resolve).then(async (list) => {
        await Promise.all(list.map((m) => this.#check(this.#state(m))));
        return list;
      });
      // A look-up that fails again keeps what the last one found; a first one that fails
      // is tried again by the next caller.
      const kept = previous ? found.catch(() => previous) : found;
      this.#pools.set(pool, kept);
      if (!previous) {
        found.catch(() => {
          if (this.#pools.get(pool) === kept) this.#pools.delete(pool);
        });
      }
      members = kept;
    } else if (options.fresh) {
      // Not looked up again (not DNS): asked again, those that did not answer.
      const list = await members;
      await Promise.all(
        list.map((m) => this.#state(m)).filter((s) => s.health?.up === false).map((s) =>
          this.#check(s)
        ),
      );
      return list;
    }
    return await members;
  }

  /** A DNS pool's members looked up again (before a failover); other pools stay as they are. */
  async lookAgain(pool: string): Promise<void> {
    if (findPool(this.#inventory, pool)?.source.kind !== "dns") return;
    await this.members(pool, { fresh: true }).catch(() => {});
  }

  /** The pool's members, best first, leaving out `exclude` (names already tried). */
  async rank(pool: string, workdir: string, exclude: Set<string>): Promise<Candidate[]> {
    return this.#rank(await this.members(pool), workdir, exclude);
  }

  /**
   * Takes the pool's best member for an attempt in `workdir`, leaving out `exclude`
   * (names already tried), and counts the attempt on it until `end()` is called; or
   * undefined when no member is left. Ranked and counted with no await between, so
   * attempts starting together spread over the members.
   */
  async choose(
    pool: string,
    workdir: string,
    exclude: Set<string>,
  ): Promise<{ member: Member; end: () => void; down?: string } | undefined> {
    const best = this.#rank(await this.members(pool), workdir, exclude)[0];
    if (!best) return undefined;
    const end = this.begin(best.member, workdir);
    // Found down just now: the attempt would fail the same way (or worse, on a closed
    // connection): its reason stands for it.
    const down = best.health?.up === false && Date.now() - best.health.at < DOWN_RECHECK_MS
      ? best.health.reason
      : undefined;
    return { member: best.member, end, down };
  }

  /** Counts an attempt on `member` until the returned function is called. */
  begin(member: Member, workdir: string): () => void {
    const state = this.#state(member);
    state.inFlight++;
    state.lastChosen = ++this.#choices;
    this.#holder.set(workdir, member.target.address);
    let ended = false;
    return () => {
      if (!ended) state.inFlight--;
      ended = true;
    };
  }

  #rank(members: Member[], workdir: string, exclude: Set<string>): Candidate[] {
    const now = Date.now();
    const candidates: Candidate[] = [];
    for (const member of members) {
      if (exclude.has(member.name)) continue;
      const state = this.#state(member);
      const age = state.health ? now - state.health.at : 0;
      if (age >= (state.health?.up ? LOAD_RECHECK_MS : DOWN_RECHECK_MS)) {
        // Looked at again without making this choice wait for it.
        void this.#check(state);
      }
      candidates.push({
        member,
        health: state.health,
        inFlight: state.inFlight,
        holdsWorkspace: this.#holder.get(workdir) === member.target.address,
        lastChosen: state.lastChosen,
      });
    }
    return rankCandidates(candidates);
  }

  /** What an attempt learned: the member could not be reached. */
  markDown(member: Member, reason: string): void {
    this.#state(member).health = { up: false, reason, at: Date.now() };
  }

  /** Pings `member` now and records the answer. */
  async #check(state: MemberState): Promise<void> {
    state.checking ??= (async () => {
      const mine = state.inFlight;
      try {
        // A ping that throws at once (a token variable not set) is a failed one too.
        const info = await Promise.resolve().then(() => this.#ping(state.member, POOL_PING_MS));
        state.health = {
          up: true,
          info,
          others: Math.max(0, info.running + info.queued - mine),
          at: Date.now(),
        };
      } catch (error) {
        state.health = {
          up: false,
          reason: error instanceof Error ? error.message : String(error),
          at: Date.now(),
        };
      } finally {
        state.checking = undefined;
      }
    })();
    await state.checking;
  }

  #state(member: Member): MemberState {
    const key = member.target.address;
    let state = this.#states.get(key);
    if (!state) {
      state = { member, inFlight: 0, lastChosen: 0 };
      this.#states.set(key, state);
    }
    state.member = member;
    return state;
  }
}

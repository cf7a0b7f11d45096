/**
 * Which member of a pool takes the next attempt: pure, over what pings said and
 * what this master has in flight.
 */
import type { Member } from "./members.ts";

/** What an agent's Ping says, and how long it took. */
export interface PingInfo {
  version: string;
  protocol: number;
  running: number;
  queued: number;
  maxConcurrent: number;
  rttMs: number;
}

/** Pings one agent; rejects with a one-line reason when it cannot be reached in time. */
export type Ping = (member: Member, deadlineMs: number) => Promise<PingInfo>;

export type Health =
  | {
    up: true;
    info: PingInfo;
    /** Jobs of other masters when it answered: its count less this master's own then. */
    others: number;
    at: number;
  }
  | { up: false; reason: string; at: number };

export interface Candidate {
  member: Member;
  /** Unknown until pinged. */
  health?: Health;
  /** Attempts this master has running on it now. */
  inFlight: number;
  /** It ran this task's directory last in this run (its content store makes the sync warm). */
  holdsWorkspace: boolean;
  /** When this master last chose it (a sequence number; 0: never): ties go round. */
  lastChosen?: number;
}

/**
 * Best first: reachable (or not yet known) before unreachable; then the least
 * loaded (running jobs over the jobs it runs at once); among equals the one that
 * holds the workspace, then the one chosen least recently (so work goes round the
 * pool rather than piling on its first names), then by name.
 */
export function rankCandidates(candidates: Candidate[]): Candidate[] {
  const down = (c: Candidate) => c.health?.up === false ? 1 : 0;
  return [...candidates].sort((a, b) =>
    down(a) - down(b) ||
    load(a) - load(b) ||
    Number(b.holdsWorkspace) - Number(a.holdsWorkspace) ||
    (a.lastChosen ?? 0) - (b.lastChosen ?? 0) ||
    (a.member.name < b.member.name ? -1 : a.member.name > b.member.name ? 1 : 0)
  );
}

/** Jobs over capacity; an agent not pinged yet counts as one slot with only ours on it. */
export function load(c: Candidate): number {
  if (c.health?.up !== true) return c.inFlight;
  return (c.inFlight + c.health.others) / Math.max(1, c.health.info.maxConcurrent);
}

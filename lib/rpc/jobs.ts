/**
 * One job's flow control on a RunTasks call (protocol 3), the same at both ends:
 * the receiver's queue of the job's messages, which gives credit back as they are
 * taken, and the sender's credit, which a send waits for. Each side may be at
 * most JOB_WINDOW messages of a job ahead of the other, so a job whose consumer
 * is slow holds at most that much in memory and never stalls the call's other jobs.
 */
import { JOB_WINDOW } from "./messages.ts";

/** Credit is given back once this many messages have been taken. */
const GRANT_EVERY = JOB_WINDOW / 2;

/** The receiving side: messages in order, then the end (or an error). */
export class Inbox<T> {
  #queue: T[] = [];
  #wake?: () => void;
  #ended = false;
  #failure: unknown;
  #failed = false;
  #taken = 0;
  #grant: (messages: number) => void;

  /** `grant` sends credit for messages taken to the sender. */
  constructor(grant: (messages: number) => void) {
    this.#grant = grant;
  }

  /** Queues a message; false if the sender went past its window (a protocol violation). */
  push(message: T): boolean {
    if (this.#ended || this.#failed) return true;
    if (this.#queue.length >= JOB_WINDOW) return false;
    this.#queue.push(message);
    this.#notify();
    return true;
  }

  /** Nothing more will come; a reader waiting is told so once the queue is empty. */
  end(): void {
    this.#ended = true;
    this.#notify();
  }

  /** The job failed: readers get `error` at once, whatever is still queued. */
  fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#failure = error;
    this.#queue.length = 0;
    this.#notify();
  }

  get over(): boolean {
    return this.#ended || this.#failed;
  }

  /** The next message, or done; throws the job's failure. */
  async next(): Promise<IteratorResult<T, undefined>> {
    while (true) {
      if (this.#failed) throw this.#failure;
      if (this.#queue.length > 0) {
        const value = this.#queue.shift()!;
        if (++this.#taken >= GRANT_EVERY && !this.#ended) {
          this.#grant(this.#taken);
          this.#taken = 0;
        }
        return { value, done: false };
      }
      if (this.#ended) return { value: undefined, done: true };
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** The sending side: how many more messages of the job may go now. */
export class Credit {
  #credit = JOB_WINDOW;
  #waiting: (() => void)[] = [];

  /** Credit came back; false if it is more than was ever sent (a protocol violation). */
  add(messages: number): boolean {
    this.#credit += messages;
    if (this.#credit > JOB_WINDOW) return false;
    for (const wake of this.#waiting.splice(0)) wake();
    return true;
  }

  /** Waits for room for one message (or for `signal`, which rejects). */
  async take(signal?: AbortSignal): Promise<void> {
    while (this.#credit <= 0) {
      if (signal?.aborted) throw new Error("the call is over");
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        this.#waiting.push(wake);
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
    this.#credit--;
  }

  /** Wakes every waiter (they then see their aborted signal). */
  release(): void {
    for (const wake of this.#waiting.splice(0)) wake();
  }
}

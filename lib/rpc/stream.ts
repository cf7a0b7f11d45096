/**
 * grpc-js streams as async iterables with backpressure. (Breaking out of a
 * `for await` over a grpc-js duplex destroys it; these never do.)
 */

import type { Readable, Writable } from "node:stream";

const HIGH_WATER = 16;

/** Messages of a grpc-js stream, in order; ends with the stream, throws its error. */
export async function* messages<T>(stream: Readable): AsyncGenerator<T> {
  const queue: T[] = [];
  let done = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  stream.on("data", (message: T) => {
    queue.push(message);
    if (queue.length >= HIGH_WATER) stream.pause();
    notify();
  });
  stream.on("end", () => {
    done = true;
    notify();
  });
  stream.on("error", (error: unknown) => {
    failure ??= error;
    notify();
  });
  stream.on("cancelled", () => {
    failure ??= new Error("cancelled by the peer");
    notify();
  });
  while (true) {
    if (queue.length > 0) {
      const message = queue.shift()!;
      if (queue.length === HIGH_WATER / 2) stream.resume();
      yield message;
      continue;
    }
    if (failure !== undefined) throw failure;
    if (done) return;
    stream.resume();
    await new Promise<void>((resolve) => wake = resolve);
  }
}

/**
 * Writes one message, waiting for the stream to drain when its buffer is full.
 * A cancelled grpc-js call never drains: `signal` (and the stream's own state)
 * end the wait.
 */
export function send(stream: Writable, message: unknown, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted || stream.destroyed || stream.writableEnded) {
    return Promise.reject(new Error("the call is over"));
  }
  if (stream.write(message)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onError = (error: unknown) => {
      cleanup();
      reject(error);
    };
    const onClose = () => {
      cleanup();
      reject(new Error("the stream closed"));
    };
    const cleanup = () => {
      stream.removeListener("drain", onDrain);
      stream.removeListener("error", onError);
      stream.removeListener("close", onClose);
      signal?.removeEventListener("abort", onClose);
    };
    stream.once("drain", onDrain);
    stream.once("error", onError);
    stream.once("close", onClose);
    signal?.addEventListener("abort", onClose, { once: true });
  });
}

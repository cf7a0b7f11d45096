import assert from "node:assert/strict";
import { gunzip, gzip } from "./compress.ts";

async function* streamOf(...parts: Uint8Array[]): AsyncIterable<Uint8Array> {
  yield* parts;
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of source) parts.push(part.slice());
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  return all;
}

Deno.test("gzip() and gunzip() round-trip a stream cut anywhere", async () => {
  const data = new Uint8Array(3_000_000).map((_, i) => (i * 7) % 251);
  const packed = await collect(
    gzip(streamOf(data.subarray(0, 1_234_567), data.subarray(1_234_567))),
  );
  assert.ok(packed.length < data.length / 10);
  const back = await collect(gunzip(streamOf(packed.subarray(0, 100), packed.subarray(100)), 3e6));
  assert.deepEqual(back, data);
});

Deno.test("gunzip() refuses a bomb beyond its bound, garbage, and a cut stream", async () => {
  const bomb = await collect(gzip(streamOf(new Uint8Array(20_000_000))));
  await assert.rejects(
    collect(gunzip(streamOf(bomb), 1_000_000)),
    /refused a compressed stream that expands beyond 1000000 bytes/,
  );
  await assert.rejects(
    collect(gunzip(streamOf(new Uint8Array([1, 2, 3, 4])), 100)),
    /refused a damaged compressed stream/,
  );
  await assert.rejects(
    collect(gunzip(streamOf(bomb.subarray(0, bomb.length - 10)), 1e9)),
    /refused a damaged compressed stream|cut short/,
  );
});

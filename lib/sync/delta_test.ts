import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  applyManifestDelta,
  type Base,
  comparePaths,
  describeManifest,
  diffManifest,
  ManifestBases,
  SentManifests,
} from "./delta.ts";
import { buildManifest, checkManifest, DigestCache, type ManifestEntry } from "./manifest.ts";
import { DEFAULT_LIMITS } from "./unpack.ts";

function file(path: string, text: string, mtimeMs = 1_000_000_000): ManifestEntry {
  return {
    path,
    type: "file",
    mode: 0o644,
    size: text.length,
    mtimeMs,
    digest: createHash("sha256").update(text).digest("hex"),
  };
}

function dir(path: string): ManifestEntry {
  return { path, type: "dir", mode: 0o755, size: 0, mtimeMs: 1_000_000_000 };
}

function baseOf(entries: ManifestEntry[]): Base {
  return { ...describeManifest(entries), entries };
}

function sentOf(entries: ManifestEntry[]) {
  return { ...describeManifest(entries), paths: entries.map((e) => e.path) };
}

/** Applies the delta from `before` to `after` as an agent would; the whole it makes. */
function roundTrip(before: ManifestEntry[], after: ManifestEntry[]): ManifestEntry[] | undefined {
  return applyManifestDelta(baseOf(before), diffManifest(sentOf(before), after))?.entries;
}

Deno.test("comparePaths() orders as a walk does: a directory right before what it holds", () => {
  const paths = ["a-c", "a/b", "a", "b", "a/b/c", "a.x", "A"];
  assert.deepEqual(paths.sort(comparePaths), ["A", "a", "a/b", "a/b/c", "a-c", "a.x", "b"]);
});

Deno.test("a delta carries only what changed and rebuilds the whole manifest, in order", () => {
  const before = [dir("a"), file("a/x", "1"), file("a/y", "2"), dir("b"), file("b/z", "3")];
  const after = [
    dir("a"),
    file("a/x", "1"),
    file("a/y", "changed"),
    dir("a-c"),
    file("a-c/new", "4"),
    dir("b"),
  ];
  const delta = diffManifest(sentOf(before), after);
  assert.deepEqual(delta.changed.map((e) => e.path), ["a/y", "a-c", "a-c/new"]);
  assert.deepEqual(delta.deleted, ["b/z"]);
  assert.equal(delta.digest, describeManifest(after).digest);
  assert.deepEqual(roundTrip(before, after), after);
  // The rebuilt manifest is one the agent would accept whole.
  checkManifest(roundTrip(before, after)!, DEFAULT_LIMITS);
});

Deno.test("a delta notices a file changed in place with the same size and mtime", () => {
  const before = [file("f", "aaaa", 5000)];
  const after = [file("f", "bbbb", 5000)];
  assert.deepEqual(diffManifest(sentOf(before), after).changed, after);
  assert.deepEqual(roundTrip(before, after), after);
});

Deno.test("a delta of a directory replaced by a file, and a symlink swapped", () => {
  const before: ManifestEntry[] = [
    dir("d"),
    file("d/f", "x"),
    { path: "l", type: "symlink", mode: 0o777, size: 0, mtimeMs: 1, target: "d/f" },
  ];
  const after: ManifestEntry[] = [
    file("d", "now a file"),
    { path: "l", type: "symlink", mode: 0o777, size: 0, mtimeMs: 1, target: "d" },
  ];
  assert.deepEqual(roundTrip(before, after), after);
});

Deno.test("applyManifestDelta() refuses a delta that does not fit its base, or a wrong digest", () => {
  const before = [dir("a"), file("a/x", "1")];
  const base = baseOf(before);
  const good = diffManifest(sentOf(before), [dir("a"), file("a/x", "2")]);
  assert.ok(applyManifestDelta(base, good));
  // Against another base: the digest of what it makes is not the one sent.
  const other = baseOf([dir("a"), file("a/x", "1"), file("a/y", "kept elsewhere")]);
  assert.equal(applyManifestDelta(other, good), undefined);
  assert.equal(applyManifestDelta(base, { ...good, digest: "0".repeat(64) }), undefined);
  // A path deleted that the base lacks; one deleted twice; one both deleted and changed.
  assert.equal(applyManifestDelta(base, { ...good, deleted: ["nope"] }), undefined);
  assert.equal(applyManifestDelta(base, { ...good, deleted: ["a", "a"] }), undefined);
  assert.equal(applyManifestDelta(base, { ...good, deleted: ["a/x"] }), undefined);
  // A path changed twice.
  assert.equal(
    applyManifestDelta(base, { ...good, changed: [...good.changed, ...good.changed] }),
    undefined,
  );
});

Deno.test("a lying delta makes only a manifest that checkManifest judges as a whole one", () => {
  const before = [dir("a"), file("a/x", "1")];
  // The directory goes, what it held stays: with the right digest, still refused by the check.
  const liar = [file("a/x", "1")];
  const whole = applyManifestDelta(baseOf(before), {
    changed: [],
    deleted: ["a"],
    digest: describeManifest(liar).digest,
  });
  assert.deepEqual(whole?.entries, liar);
  assert.throws(() => checkManifest(whole!.entries, DEFAULT_LIMITS), /is not listed before it/);
  const escape: ManifestEntry[] = [
    ...before,
    { path: "out", type: "symlink", mode: 0o777, size: 0, mtimeMs: 1, target: "../../etc" },
  ];
  const made = applyManifestDelta(baseOf(before), diffManifest(sentOf(before), escape));
  assert.throws(() => checkManifest(made!.entries, DEFAULT_LIMITS), /points outside/);
});

Deno.test("a delta from a real walk: one file rewritten, one added, one removed", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-delta-" }));
  const cacheHome = await Deno.makeTempDir({ prefix: "sloth-delta-cache-" });
  try {
    Deno.mkdirSync(`${root}/sub`);
    for (let i = 0; i < 20; i++) Deno.writeTextFileSync(`${root}/sub/f${i}`, `file ${i}`);
    const before = (await buildManifest(root, new DigestCache(root, { cacheHome }))).entries;
    Deno.writeTextFileSync(`${root}/sub/f3`, "file 4"); // same size
    Deno.writeTextFileSync(`${root}/sub/f3-new`, "new");
    Deno.removeSync(`${root}/sub/f7`);
    const after = (await buildManifest(root, new DigestCache(root, { cacheHome }))).entries;
    const delta = diffManifest(sentOf(before), after);
    assert.deepEqual(delta.changed.map((e) => e.path).sort(), ["sub", "sub/f3", "sub/f3-new"]);
    assert.deepEqual(delta.deleted, ["sub/f7"]);
    assert.deepEqual(roundTrip(before, after), after);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(cacheHome, { recursive: true });
  }
});

Deno.test("SentManifests keeps a base per agent and directory, and forgets it", async () => {
  const cacheHome = await Deno.makeTempDir({ prefix: "sloth-sent-" });
  const sentManifests = () => new SentManifests({ cacheHome });
  try {
    const sent = sentOf([dir("a"), file("a/x", "1")]);
    sentManifests().set("agent-1", "/w", sent);
    // Another process reads it back; another agent or directory has none.
    assert.deepEqual(sentManifests().get("agent-1", "/w"), sent);
    assert.equal(sentManifests().get("agent-2", "/w"), undefined);
    assert.equal(sentManifests().get("agent-1", "/other"), undefined);
    sentManifests().forget("agent-1", "/w");
    assert.equal(sentManifests().get("agent-1", "/w"), undefined);
    // A damaged file is no base.
    const again = sentManifests();
    again.set("agent-1", "/w", sent);
    for (const entry of Deno.readDirSync(`${cacheHome}/sloth-runner/sent`)) {
      Deno.writeTextFileSync(`${cacheHome}/sloth-runner/sent/${entry.name}`, "{ not json");
    }
    assert.equal(sentManifests().get("agent-1", "/w"), undefined);
  } finally {
    await Deno.remove(cacheHome, { recursive: true });
  }
});

Deno.test("ManifestBases holds a base by key and digest, within its limits", () => {
  const bases = new ManifestBases({ keys: 2, entries: 5 });
  const one = baseOf([dir("a"), file("a/x", "1")]);
  const two = baseOf([dir("b")]);
  bases.set("k1", one);
  assert.equal(bases.get("k1", one.digest), one);
  assert.equal(bases.get("k1", two.digest), undefined);
  assert.equal(bases.get("k2", one.digest), undefined);
  bases.set("k2", two);
  bases.set("k3", two);
  // Two keys at most: the least recently used went.
  assert.equal(bases.get("k1", one.digest), undefined);
  assert.equal(bases.get("k3", two.digest), two);
  // Too many entries for the limit: not kept at all.
  bases.set("k4", baseOf([dir("a"), dir("b"), dir("c"), dir("d"), dir("e"), dir("f")]));
  assert.equal(bases.get("k4", describeManifest([]).digest), undefined);
});

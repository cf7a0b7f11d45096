import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { buildManifest, DigestCache } from "./manifest.ts";

/** A directory, and a cache of its own (each build is as a new process would make it). */
async function withCache<T>(
  work: (root: string, cache: () => DigestCache) => Promise<T>,
): Promise<T> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sloth-manifest-" }));
  const cacheHome = await Deno.makeTempDir({ prefix: "sloth-manifest-cache-" });
  try {
    return await work(root, () => new DigestCache(root, { cacheHome }));
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(cacheHome, { recursive: true });
  }
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

Deno.test("a remembered digest is not used for a file rewritten in place with its size and mtime set back", async () => {
  await withCache(async (root, cache) => {
    const file = `${root}/same.txt`;
    Deno.writeTextFileSync(file, "aaaa");
    const old = new Date(Date.now() - 60_000);
    Deno.utimeSync(file, old, old);
    // Long enough for the cache to trust what it hashes (its ctime is well before).
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const first = await buildManifest(root, cache());
    assert.equal(first.entries[0].digest, sha256("aaaa"));
    // A second process trusts it while nothing changed.
    const again = await buildManifest(root, cache());
    assert.equal(again.entries[0].digest, sha256("aaaa"));

    Deno.writeTextFileSync(file, "bbbb");
    Deno.utimeSync(file, old, old);
    const info = Deno.lstatSync(file);
    assert.equal(info.mtime!.getTime(), first.entries[0].mtimeMs, "same mtime");
    assert.equal(info.ino, first.identity.get("same.txt")!.ino, "same inode");
    const second = await buildManifest(root, cache());
    assert.equal(second.entries[0].digest, sha256("bbbb"));
  });
});

Deno.test("a file replaced by a rename with the same size and mtime is hashed again", async () => {
  await withCache(async (root, cache) => {
    const old = new Date(Date.now() - 60_000);
    Deno.writeTextFileSync(`${root}/f.txt`, "aaaa");
    Deno.utimeSync(`${root}/f.txt`, old, old);
    const first = await buildManifest(root, cache());
    Deno.writeTextFileSync(`${root}/f.txt.new`, "cccc");
    Deno.utimeSync(`${root}/f.txt.new`, old, old);
    Deno.renameSync(`${root}/f.txt.new`, `${root}/f.txt`);
    const second = await buildManifest(root, cache());
    assert.equal(first.entries[0].digest, sha256("aaaa"));
    assert.equal(second.entries[0].digest, sha256("cccc"));
  });
});

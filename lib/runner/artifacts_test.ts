import assert from "node:assert/strict";
import { missingArtifacts } from "./artifacts.ts";

Deno.test("missingArtifacts() names the patterns that match nothing in the workdir", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/dist/deep/er`, { recursive: true });
    await Deno.writeTextFile(`${dir}/dist/app-1.2.tar.gz`, "x");
    await Deno.writeTextFile(`${dir}/dist/deep/er/report.txt`, "x");
    await Deno.writeTextFile(`${dir}/out.bin`, "x");
    assert.deepEqual(
      await missingArtifacts(dir, [
        "out.bin",
        "./out.bin",
        "dist",
        "dist/*.tar.gz",
        "dist/app-?.?.tar.gz",
        "dist/**/report.txt",
        "**/report.txt",
        "dist/*.zip",
        "dist/*/report.txt",
        "missing.txt",
        "dist/deep/er/*.md",
      ]),
      ["dist/*.zip", "dist/*/report.txt", "missing.txt", "dist/deep/er/*.md"],
    );
    // Regular-expression characters in a pattern are taken literally.
    await Deno.writeTextFile(`${dir}/a+b(1).txt`, "x");
    assert.deepEqual(await missingArtifacts(dir, ["a+b(1).txt", "a+b(?).txt", "a.b*"]), [
      "a.b*",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("missingArtifacts() does not look through a link that leads out of the workdir", async () => {
  const dir = await Deno.makeTempDir();
  const outside = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${outside}/secret.txt`, "x");
    await Deno.symlink(outside, `${dir}/out`);
    await Deno.mkdir(`${dir}/in`);
    await Deno.writeTextFile(`${dir}/in/ok.txt`, "x");
    await Deno.symlink(`${dir}/in`, `${dir}/inner`);
    assert.deepEqual(
      await missingArtifacts(dir, ["out/secret.txt", "out/*.txt", "inner/ok.txt", "inner/*.txt"]),
      ["out/secret.txt", "out/*.txt"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

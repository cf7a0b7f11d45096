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

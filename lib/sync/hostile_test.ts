import assert from "node:assert/strict";
import { HOSTILE_ARCHIVES } from "../../tests/fixtures/hostile/archives.ts";
import { snapshot, tempWorkspace } from "../../tests/_helpers/mod.ts";
import { hostileBytes, streamOf } from "../../tests/_helpers/tar.ts";
import { DEFAULT_LIMITS, unpack, type UnpackMode } from "./unpack.ts";

for (const mode of ["fresh", "replace", "check", "stage"] as UnpackMode[]) {
  for (const hostile of HOSTILE_ARCHIVES) {
    Deno.test(`unpack(${mode}) refuses ${hostile.name}`, async () => {
      await using outer = await tempWorkspace({
        "sentinel.txt": "untouched",
        "root/keep.txt": "kept",
      });
      const root = `${outer.dir}/root`;
      // Where the master stages a change set: inside the root, in its journal directory.
      const into = `${root}/.sloth-apply/1-1-0000000000000000/new`;
      if (mode === "stage") await Deno.mkdir(into, { recursive: true });
      const before = await snapshot(outer.dir);
      await assert.rejects(
        unpack(`${root}`, streamOf(hostileBytes(hostile)), {
          mode,
          into,
          limits: { ...DEFAULT_LIMITS, ...hostile.limits },
        }),
        hostile.refused,
      );
      const after = await snapshot(outer.dir);
      // Nothing outside the root changed, whatever the mode.
      for (const [path, content] of Object.entries(before)) {
        if (!path.startsWith("root/")) assert.equal(after[path], content, path);
      }
      for (const path of Object.keys(after)) {
        assert.ok(path.startsWith("root/") || path in before, `${path} appeared outside the root`);
      }
      await assert.rejects(Deno.stat("/tmp/sloth-hostile-absolute.txt"), Deno.errors.NotFound);
    });
  }
}

import assert from "node:assert/strict";
import { hasCommand, pgrep, uniqueSeconds, waitFor } from "../../tests/_helpers/mod.ts";
import { startConfined } from "./confined.ts";

Deno.test({
  name:
    "startConfined(): kill() at any moment of its start leaves no process of the program behind",
  ignore: Deno.build.os !== "linux" || !hasCommand("bwrap"),
}, async () => {
  const jobRoot = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sloth-confined-test-" });
  await using _ = { [Symbol.asyncDispose]: () => Deno.remove(jobRoot, { recursive: true }) };
  await Deno.chmod(jobRoot, 0o755);
  // 0 to 5.5 ms after the spawn, spun rather than slept (a timer is not that fine): before
  // `setsid` made the group, while bwrap sets the sandbox up, once the program runs.
  for (let i = 0; i < 36; i++) {
    const argv = ["/bin/sleep", uniqueSeconds()];
    const confined = startConfined({ argv, env: {}, jobRoot, readOnly: [], network: false });
    const at = (i % 12) / 2;
    const until = performance.now() + at;
    while (performance.now() < until) {
      // Spin.
    }
    confined.kill();
    let left: number[] = [];
    try {
      await waitFor(async () => (left = await pgrep(argv.join(" "))).length === 0, 2000);
    } catch {
      // Asserted below, once what the test started is stopped.
    }
    for (const pid of left) Deno.kill(pid, "SIGKILL");
    await Promise.all([drain(confined.lines), drain(confined.errors), confined.status]);
    assert.deepEqual(left, [], `kill() ${at} ms after the start: left running`);
  }
});

async function drain(lines: AsyncIterable<string>): Promise<void> {
  for await (const _ of lines) {
    // Only read to its end.
  }
}

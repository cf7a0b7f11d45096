/** The live view on a real pseudo-terminal, and plain lines when not on one. */
import assert from "node:assert/strict";
import { cliInTerminal, cliProcess, FIXTURES, HAS_SCRIPT } from "../_helpers/mod.ts";
import { Screen } from "../_helpers/screen.ts";

const cwd = `${FIXTURES}/progress`;

for (const file of ["workflow.lua", "builder.sloth"]) {
  Deno.test({
    name:
      `run on a terminal shows running tasks live, then the finished ones and the summary (${file})`,
    ignore: !HAS_SCRIPT,
    fn: async () => {
      const { code, raw } = await cliInTerminal(["run", "-f", file], { cwd });
      assert.equal(code, 1, raw);
      const screen = new Screen().write(raw);
      // While running, a redraw showed the task, its state, time and latest output.
      assert.ok(
        screen.frames.some((f) =>
          /^⠋|^⠙|^⠹|^⠸|^⠼|^⠴|^⠦|^⠧|^⠇|^⠏/m.test(f) &&
          /build running \d+ms › compiling$/m.test(f)
        ),
        screen.frames.join("\n---\n"),
      );
      assert.ok(screen.frames.some((f) => /^\d running · \d done · \d waiting · /m.test(f)));
      const final = screen.text();
      // What stays: finished tasks, the failed one's output, the summary; no live lines.
      assert.match(final, /^\[build\] ✔ success \(\S+\)$/m);
      assert.match(
        final,
        /^\[unit\] ✘ failed: exit code 3 \(\S+\)\n {2}its output:\n {2}│ unit-output\n {2}│ boom\n/m,
      );
      assert.match(final, /^TASK +STATUS +ATTEMPTS +DURATION +WHERE +ERROR$/m);
      assert.match(final, /^3 tasks: 2 success, 1 failed$/m);
      assert.doesNotMatch(final, /running|compiling|checking style/);
      // The cursor was hidden while drawing and is given back.
      assert.ok(raw.indexOf("\x1b[?25l") < raw.lastIndexOf("\x1b[?25h"));
    },
  });
}

Deno.test({
  name: "run --verbose on a terminal streams every task's output above the live lines",
  ignore: !HAS_SCRIPT,
  fn: async () => {
    const { raw } = await cliInTerminal(["run", "-f", "workflow.lua", "--verbose"], { cwd });
    const final = new Screen().write(raw).text();
    assert.match(final, /^\[build\] compiling$/m);
    assert.match(final, /^\[lint\] checking style$/m);
    assert.match(final, /^\[unit\] boom$/m);
  },
});

Deno.test({
  name: "run --plain on a terminal, and run off a terminal, print plain prefixed lines",
  ignore: !HAS_SCRIPT,
  fn: async () => {
    const plain = await cliInTerminal(["run", "-f", "workflow.lua", "--plain"], { cwd });
    assert.ok(!plain.raw.includes("\x1b[?25l") && !plain.raw.includes("running ·"));
    assert.match(new Screen().write(plain.raw).text(), /^\[build\] compiling$/m);
    const piped = await cliProcess(["run", "-f", "workflow.lua"], { cwd });
    assert.match(piped.stdout, /^\[build\] compiling\n/m);
    assert.match(piped.stderr, /^\[build\] ▶ started\n/m);
    assert.ok(!(piped.stdout + piped.stderr).includes("\x1b"));
  },
});

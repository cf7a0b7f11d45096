import assert from "node:assert/strict";
import { Screen } from "../../tests/_helpers/screen.ts";
import type { TaskResult } from "../model/mod.ts";
import type { RunEvent } from "./events.ts";
import { TextRenderer } from "./render.ts";

function setup(options: { verbose?: boolean; columns?: number; rows?: number } = {}) {
  const screen = new Screen();
  let now = 0;
  const renderer = new TextRenderer({
    out: (text) => screen.write(text),
    err: (text) => screen.write(text),
    color: false,
    verbose: options.verbose ?? false,
    live: {
      size: () => ({ columns: options.columns ?? 100, rows: options.rows ?? 30 }),
      now: () => now,
    },
  });
  return {
    screen,
    renderer,
    at: (ms: number) => now = ms,
    emit: (event: RunEvent) => renderer.handle(event),
  };
}

const planned: RunEvent = {
  type: "run_started",
  file: "workflow.lua",
  tasks: ["build", "test", "deploy"].map((task) => ({
    id: `ci.${task}`,
    task,
    group: "ci",
    where: "local",
  })),
};

function started(task: string, where = "local", attempt = 1): RunEvent {
  return { type: "task_started", id: `ci.${task}`, task, group: "ci", attempt, where };
}

function line(task: string, text: string, stream: "stdout" | "stderr" = "stdout"): RunEvent {
  return { type: "log", id: `ci.${task}`, task, stream, line: text };
}

function finished(task: string, status: TaskResult["status"], extra: Partial<TaskResult> = {}) {
  return {
    type: "task_finished",
    task,
    group: "ci",
    result: {
      id: `ci.${task}`,
      status,
      attempts: 1,
      durationMs: 1500,
      where: "local",
      outputs: {},
      ...extra,
    },
  } satisfies RunEvent;
}

Deno.test("the live view shows one line per running task: state, elapsed time, where, latest output", () => {
  const { screen, renderer, at, emit } = setup();
  emit(planned);
  emit(started("build"));
  at(200);
  emit(started("test", "agent ci1 (10.0.0.5:50051)"));
  emit(line("build", "compiling 3 files"));
  at(2450);
  renderer.tick();
  assert.equal(
    screen.text(),
    "⠋ build running 2.45s › compiling 3 files\n" +
      "⠋ test running 2.25s on agent ci1 (10.0.0.5:50051)\n" +
      "2 running · 0 done · 1 waiting · 2.45s\n",
  );
  // Redraws replace the region in place: the screen does not grow.
  at(3000);
  renderer.tick();
  assert.match(screen.text(), /^⠙ build running 3\.00s › compiling 3 files\n⠙ test running/);
  assert.equal(screen.text().split("\n").length, 4);
  renderer.stop();
});

Deno.test("finished tasks scroll above the live region; a task's output stays hidden unless it fails", () => {
  const { screen, renderer, at, emit } = setup();
  emit(planned);
  emit(started("build"));
  emit(started("test"));
  emit(line("build", "all good"));
  for (let i = 1; i <= 20; i++) emit(line("test", `test line ${i}`));
  emit(line("test", "assertion failed", "stderr"));
  at(1500);
  emit(finished("build", "success"));
  renderer.tick();
  assert.equal(
    screen.text(),
    "[build] ✔ success (1.50s)\n" +
      "⠋ test running 1.50s › assertion failed\n" +
      "1 running · 1 done · 1 waiting · 1.50s\n",
  );
  emit(finished("test", "failed", { error: "exit code 1" }));
  emit(started("deploy", "agent prod (10.0.0.9:50051)"));
  renderer.tick();
  const text = screen.text();
  assert.doesNotMatch(text, /all good|test line 8\b/);
  assert.match(
    text,
    /\[test\] ✘ failed: exit code 1 \(1\.50s\)\n {2}its last 12 lines:\n {2}│ test line 10\n[^]*│ test line 20\n {2}│ assertion failed\n⠙ deploy running 0ms on agent prod/,
  );
  renderer.stop();
  // Stopping removes the region: what stays is what scrolled.
  assert.doesNotMatch(screen.text(), /running/);
  assert.match(screen.text(), /│ assertion failed\n$/);
});

Deno.test("with --verbose the live view streams every line above the region", () => {
  const { screen, renderer, emit } = setup({ verbose: true });
  emit(planned);
  emit(started("build"));
  emit(line("build", "compiling 3 files"));
  emit({ type: "log", id: "ci.build", task: "build", stream: "log", level: "debug", line: "dbg" });
  renderer.tick();
  assert.equal(
    screen.text(),
    "[build] ▶ started\n[build] compiling 3 files\n[build] DEBUG dbg\n" +
      "⠋ build running 0ms › compiling 3 files\n" +
      "1 running · 0 done · 2 waiting · 0ms\n",
  );
  renderer.stop();
});

Deno.test("print, log.info, warnings and errors scroll above the live region even without --verbose", () => {
  const { screen, renderer, emit } = setup();
  emit(planned);
  emit(started("build"));
  emit({ type: "log", id: "ci.build", task: "build", stream: "log", level: "warn", line: "slow" });
  emit({ type: "log", id: "ci.build", task: "build", stream: "log", level: "info", line: "said" });
  emit({ type: "log", id: "ci.build", task: "build", stream: "log", level: "debug", line: "dbg" });
  emit(line("build", "command output"));
  emit({
    type: "log",
    id: "ci.build",
    task: "build",
    stream: "stdout",
    level: "info",
    line: "lua",
  });
  emit(line("build", "more command output"));
  renderer.tick();
  assert.match(
    screen.text(),
    /^\[build\] WARN slow\n\[build\] said\n\[build\] lua\n⠋ build running 0ms › more command output\n/,
  );
  renderer.stop();
});

Deno.test("live lines are cut to the terminal's width, so a redraw never leaves wrapped lines behind", () => {
  const { screen, renderer, emit } = setup({ columns: 40 });
  emit(planned);
  emit(started("build", "agent a-rather-long-agent-name (192.168.100.100:50051)"));
  emit(line("build", "x".repeat(200)));
  emit(started("test"));
  emit(line("test", "ウィジェット".repeat(10)));
  emit(started("deploy"));
  emit(line("deploy", "\x1b[32m50%\x1b[0m\tdone\r100%\x07"));
  renderer.tick();
  renderer.tick();
  const lines = screen.text().trimEnd().split("\n");
  assert.equal(lines.length, 4);
  for (const l of lines) {
    const columns = [...l].reduce((n, c) => n + (c.codePointAt(0)! >= 0x2e80 ? 2 : 1), 0);
    assert.ok(columns <= 39, `${columns} columns: ${l}`);
  }
  assert.match(lines[0], /^⠙ build running 0ms on agent a-rather-…$/);
  assert.match(lines[1], /^⠙ test running 0ms › ウィジェ/);
  assert.equal(lines[2], "⠙ deploy running 0ms › 50% done 100%");
  renderer.stop();
});

Deno.test("on a short terminal the live view shows as many tasks as fit and counts the rest", () => {
  const { screen, renderer, emit } = setup({ rows: 6 });
  emit({
    ...planned,
    tasks: Array.from({ length: 10 }, (_, i) => ({
      id: `ci.t${i}`,
      task: `t${i}`,
      group: "ci",
      where: "local",
    })),
  });
  for (let i = 0; i < 10; i++) emit(started(`t${i}`));
  renderer.tick();
  assert.equal(
    screen.text(),
    "⠋ t0 running 0ms\n⠋ t1 running 0ms\n  … and 8 more running\n" +
      "10 running · 0 done · 0 waiting · 0ms\n",
  );
  renderer.stop();
});

import assert from "node:assert/strict";
import type { RunEvent } from "./events.ts";
import type { TaskResult } from "../model/mod.ts";
import { hasCommand } from "../../tests/_helpers/mod.ts";
import {
  DEFAULT_MAX_OUTPUT_BYTES,
  jsonReport,
  junitXml,
  type RunRecord,
  RunRecorder,
  type RunRecorderOptions,
} from "./report.ts";

const fixtures = new URL("../../tests/fixtures/junit/", import.meta.url);
const slothXsd = new URL("sloth-junit.xsd", fixtures).pathname;
const jenkinsXsd = new URL("jenkins-junit.xsd", fixtures).pathname;

/** CI installs libxml2-utils; elsewhere the schema tests show as ignored, not passed. */
const hasXmllint = hasCommand("xmllint");

async function xmllint(xml: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const file = await Deno.makeTempFile({ suffix: ".xml" });
  try {
    await Deno.writeTextFile(file, xml);
    const result = await new Deno.Command("xmllint", { args: ["--nonet", ...args, file] })
      .output();
    const decoder = new TextDecoder();
    return {
      ok: result.success,
      out: decoder.decode(result.stdout) + decoder.decode(result.stderr),
    };
  } finally {
    await Deno.remove(file);
  }
}

function validate(xml: string, xsd: string) {
  return xmllint(xml, ["--noout", "--schema", xsd]);
}

/** The text value of an XPath expression, as an XML reader decodes it. */
async function xpath(xml: string, expression: string): Promise<string> {
  const { ok, out } = await xmllint(xml, ["--xpath", expression]);
  assert.ok(ok, out);
  return out.replace(/\n$/, "");
}

function clock(start = "2026-03-01T10:00:00.250Z") {
  let t = Date.parse(start);
  return { now: () => new Date(t), advance: (ms: number) => void (t += ms) };
}

const hostile = {
  markup: `a <tag> & "quote" 'apos' ]]> end`,
  ansi: "\x1b[1;31mred\x1b[0m plain \x1b]8;;https://example.test\x07link\x1b]8;;\x07\x1b[2K",
  controls: "bell\x07 nul\x00 vt\x0b ff\x0c del\x7f tab\tend lone-esc\x1b",
  unicode: "ação 日本語 😀 \uFFFE\uFFFF lone\uD800 low\uDC00 x",
  carriage: "progress 10%\rprogress 100%",
};

/** What an XML reader should get back for the hostile lines. */
const hostileRead = {
  markup: hostile.markup,
  ansi: "red plain link",
  controls: "bell\uFFFD nul\uFFFD vt\uFFFD ff\uFFFD del\x7f tab\tend lone-esc\uFFFD",
  unicode: "ação 日本語 😀 \uFFFD\uFFFD lone\uFFFD low\uFFFD x",
  carriage: hostile.carriage,
};

function result(id: string, extra: Partial<TaskResult> = {}): TaskResult {
  return {
    id,
    status: "success",
    attempts: 1,
    durationMs: 100,
    where: "local",
    outputs: {},
    ...extra,
  };
}

const web1 = "agent web1 (10.0.0.5:7000)";
const web2 = "agent web2 (10.0.0.6:7000)";

/** A run of two groups that has one of everything, interrupted at the end (exit 130). */
function realisticRun(options: RunRecorderOptions = {}): RunRecord {
  const c = clock();
  const rec = new RunRecorder({ now: c.now, ...options });
  const emit = (event: RunEvent, advance = 0) => {
    c.advance(advance);
    rec.handle(event);
  };
  const start = (id: string, attempt = 1, where = "local") => {
    const [group, task] = id.split(".");
    emit({ type: "task_started", id, task, group, attempt, where }, 5);
  };
  const log = (id: string, stream: "stdout" | "stderr", line: string, agent?: string) =>
    emit({ type: "log", id, task: id.split(".")[1], agent, stream, line });
  const note = (id: string, level: "info" | "warn", line: string) =>
    emit({ type: "log", id, task: id.split(".")[1], stream: "log", level, line });
  const finish = (r: TaskResult, advance: number) => {
    const [group, task] = r.id.split(".");
    emit({ type: "task_finished", task, group, result: r }, advance);
  };

  emit({ type: "log", stream: "log", level: "info", line: "values loaded from ci.yaml" });
  const planned = [
    ["ci.lint", "local"],
    ["ci.build", "local"],
    ["ci.flaky", "local"],
    ["ci.slow", "local"],
    ["deploy.push", web1],
    ["deploy.lost", web2],
    ["deploy.notify", "local"],
    ["deploy.cleanup", "local"],
    ["deploy.final", "local"],
  ];
  emit({
    type: "run_started",
    file: "/home/ci/project/workflow.lua",
    tasks: planned.map(([id, where]) => ({
      id,
      task: id.split(".")[1],
      group: id.split(".")[0],
      where,
    })),
  });

  start("ci.lint");
  log("ci.lint", "stdout", "0 problems");
  finish(result("ci.lint", { durationMs: 120 }), 120);

  start("ci.build");
  for (const line of Object.values(hostile)) log("ci.build", "stdout", line);
  log("ci.build", "stderr", "error: <build> failed & stopped");
  finish(
    result("ci.build", {
      status: "failed",
      durationMs: 2345.6,
      error: "exit code 2",
      exit: { reason: "exited", code: 2, signal: null },
    }),
    2346,
  );

  start("ci.flaky");
  log("ci.flaky", "stdout", "try 1");
  note("ci.flaky", "warn", "attempt 1 of 2 failed: exit code 1; retrying in 100ms");
  start("ci.flaky", 2);
  log("ci.flaky", "stdout", "try 2");
  finish(result("ci.flaky", { attempts: 2, durationMs: 450 }), 450);

  start("ci.slow");
  log("ci.slow", "stdout", "sleeping");
  finish(
    result("ci.slow", {
      status: "timeout",
      durationMs: 500.4,
      error: "timed out after 500ms",
      exit: { reason: "timeout", code: null, signal: "SIGKILL" },
    }),
    501,
  );

  start("deploy.push", 1, web1);
  log("deploy.push", "stdout", "uploaded 3 files", "web1");
  note("deploy.push", "info", "synced back 1 change");
  finish(
    result("deploy.push", {
      where: web1,
      durationMs: 800,
      message: "deployed v2",
      outputs: { url: "https://example.test/v2", files: 3 },
      transfer: { sentBytes: 2048, receivedBytes: 512 },
    }),
    800,
  );

  start("deploy.lost", 1, web2);
  finish(
    result("deploy.lost", {
      status: "failed",
      where: web2,
      durationMs: 30_000,
      error: "agent lost: connection closed",
      exit: { reason: "agent_lost", code: null, signal: null, message: "connection closed" },
    }),
    30_000,
  );

  finish(
    result("deploy.notify", {
      status: "skipped",
      attempts: 0,
      durationMs: 0,
      error: 'dependency "lost" failed: agent lost',
    }),
    0,
  );

  start("deploy.cleanup");
  log("deploy.cleanup", "stdout", "removing old releases");
  finish(
    result("deploy.cleanup", {
      status: "cancelled",
      durationMs: 250,
      error: "run interrupted",
      exit: { reason: "cancelled", code: null, signal: "SIGTERM" },
    }),
    250,
  );
  finish(
    result("deploy.final", {
      status: "skipped",
      attempts: 0,
      durationMs: 0,
      error: "run interrupted",
    }),
    0,
  );

  emit({
    type: "run_finished",
    status: "interrupted",
    exit_code: 130,
    duration_ms: 34_500,
    counts: { success: 3, failed: 2, skipped: 2, timeout: 1, cancelled: 1 },
    reason: "interrupted",
  }, 1);
  return rec.record();
}

Deno.test("RunRecorder.record() keeps every planned task in plan order with its result and output", () => {
  const record = realisticRun();
  assert.equal(record.file, "/home/ci/project/workflow.lua");
  assert.equal(record.startedAt, "2026-03-01T10:00:00.250Z");
  assert.equal(record.finished, true);
  assert.equal(record.status, "interrupted");
  assert.equal(record.exitCode, 130);
  assert.equal(record.durationMs, 34_500);
  assert.equal(record.reason, "interrupted");
  assert.deepEqual(record.counts, {
    success: 3,
    failed: 2,
    skipped: 2,
    timeout: 1,
    cancelled: 1,
    not_started: 0,
    unfinished: 0,
  });
  assert.deepEqual(
    record.tasks.map((t) => [t.id, t.group, t.task, t.status, t.attempts]),
    [
      ["ci.lint", "ci", "lint", "success", 1],
      ["ci.build", "ci", "build", "failed", 1],
      ["ci.flaky", "ci", "flaky", "success", 2],
      ["ci.slow", "ci", "slow", "timeout", 1],
      ["deploy.push", "deploy", "push", "success", 1],
      ["deploy.lost", "deploy", "lost", "failed", 1],
      ["deploy.notify", "deploy", "notify", "skipped", 0],
      ["deploy.cleanup", "deploy", "cleanup", "cancelled", 1],
      ["deploy.final", "deploy", "final", "skipped", 0],
    ],
  );

  const byId = new Map(record.tasks.map((t) => [t.id, t]));
  const build = byId.get("ci.build")!;
  assert.deepEqual(build.exit, { reason: "exited", code: 2, signal: null });
  assert.equal(build.error, "exit code 2");
  assert.equal(build.durationMs, 2345.6);
  assert.deepEqual(
    build.output.lines.map((l) => [l.stream, l.line]),
    [
      ...Object.values(hostile).map((line) => ["stdout", line]),
      ["stderr", "error: <build> failed & stopped"],
    ],
  );
  assert.equal(build.startedAt, "2026-03-01T10:00:00.380Z");
  assert.equal(build.finishedAt, "2026-03-01T10:00:02.726Z");

  const push = byId.get("deploy.push")!;
  assert.equal(push.where, web1);
  assert.equal(push.message, "deployed v2");
  assert.deepEqual(push.outputs, { url: "https://example.test/v2", files: 3 });
  assert.deepEqual(push.transfer, { sentBytes: 2048, receivedBytes: 512 });

  const flaky = byId.get("ci.flaky")!;
  assert.deepEqual(
    flaky.output.lines.map((l) => [l.attempt, l.stream, l.level, l.line]),
    [
      [1, "stdout", undefined, "try 1"],
      [1, "log", "warn", "attempt 1 of 2 failed: exit code 1; retrying in 100ms"],
      [2, "stdout", undefined, "try 2"],
    ],
  );

  assert.equal(byId.get("deploy.final")!.startedAt, undefined);
  assert.deepEqual(record.output.lines, [
    { stream: "log", level: "info", attempt: 0, line: "values loaded from ci.yaml" },
  ]);
});

Deno.test("RunRecorder.record() of a run that never finished lists unstarted and unfinished tasks", () => {
  const c = clock();
  const rec = new RunRecorder({ now: c.now });
  rec.handle({
    type: "run_started",
    file: "w.lua",
    tasks: ["a", "b", "c"].map((t) => ({ id: `g.${t}`, task: t, group: "g", where: "local" })),
  });
  rec.handle({
    type: "task_started",
    id: "g.a",
    task: "a",
    group: "g",
    attempt: 1,
    where: "local",
  });
  rec.handle({ type: "task_finished", task: "a", group: "g", result: result("g.a") });
  rec.handle({
    type: "task_started",
    id: "g.b",
    task: "b",
    group: "g",
    attempt: 1,
    where: "local",
  });
  rec.handle({ type: "log", id: "g.b", task: "b", stream: "stdout", line: "working" });
  c.advance(1500);

  const record = rec.record();
  assert.equal(record.finished, false);
  assert.equal(record.status, "unfinished");
  assert.equal(record.exitCode, null);
  assert.equal(record.durationMs, 1500);
  assert.deepEqual(record.tasks.map((t) => t.status), ["success", "unfinished", "not_started"]);
  assert.equal(record.counts.unfinished, 1);
  assert.equal(record.counts.not_started, 1);
  assert.equal(record.tasks[1].attempts, 1);
  assert.equal(record.tasks[2].attempts, 0);

  const xml = junitXml(record);
  assert.match(
    xml,
    /<testcase name="b" classname="g" time="0\.000" status="unfinished">[\s\S]*?<error message="no result: the run ended while this task was running" type="unfinished">/,
  );
  assert.match(
    xml,
    /<testcase name="c"[\s\S]*?<skipped>not run: the run ended before this task started<\/skipped>/,
  );
  assert.match(xml, /<testsuite name="g" tests="3" failures="0" errors="1" skipped="1" /);
});

Deno.test("RunRecorder keeps only the newest output of a task within its byte budget and counts the rest", () => {
  const rec = new RunRecorder({ maxOutputBytes: 64 });
  const line = (text: string) =>
    rec.handle({ type: "log", id: "g.t", task: "t", stream: "stdout", line: text });
  for (let i = 0; i < 30; i++) line(`line-${String(i).padStart(2, "0")}`); // 8 bytes with "\n"
  let out = rec.record().tasks[0].output;
  assert.deepEqual(out.lines.map((l) => l.line), [
    "line-22",
    "line-23",
    "line-24",
    "line-25",
    "line-26",
    "line-27",
    "line-28",
    "line-29",
  ]);
  assert.equal(out.droppedLines, 22);
  assert.equal(out.droppedBytes, 22 * 8);

  // One line longer than the whole budget keeps its end, measured in UTF-8 bytes.
  line("é".repeat(100));
  out = rec.record().tasks[0].output;
  assert.deepEqual(out.lines.map((l) => l.line), ["é".repeat(31)]);
  assert.equal(out.droppedLines, 30);
  assert.equal(out.droppedBytes, 30 * 8 + (201 - 63));

  // A cut never splits a surrogate pair.
  const small = new RunRecorder({ maxOutputBytes: 6 });
  small.handle({ type: "log", id: "g.t", task: "t", stream: "stdout", line: "x😀😀" });
  assert.deepEqual(small.record().tasks[0].output.lines.map((l) => l.line), ["😀"]);

  const xml = junitXml(rec.record());
  assert.match(
    xml,
    /<system-out>\[sloth-runner: 378 bytes \(30 lines\) of earlier output not kept\]\n/,
  );
});

Deno.test("RunRecorder keeps at most maxOutputLines lines, however short", () => {
  const rec = new RunRecorder({ maxOutputLines: 5 });
  for (let i = 0; i < 12; i++) {
    rec.handle({ type: "log", id: "g.t", task: "t", stream: "stderr", line: String(i) });
  }
  const out = rec.record().tasks[0].output;
  assert.deepEqual(out.lines.map((l) => l.line), ["7", "8", "9", "10", "11"]);
  assert.equal(out.droppedLines, 7);
});

Deno.test("RunRecorder holds a chatty task to the default 1 MiB of output", () => {
  const rec = new RunRecorder();
  const text = "x".repeat(99);
  for (let i = 0; i < 40_000; i++) { // 4 MB of output
    rec.handle({ type: "log", id: "g.t", task: "t", stream: "stdout", line: `${text}${i % 10}` });
  }
  const out = rec.record().tasks[0].output;
  const kept = out.lines.reduce((sum, l) => sum + l.line.length + 1, 0);
  assert.ok(kept <= DEFAULT_MAX_OUTPUT_BYTES, `${kept} bytes kept`);
  assert.ok(kept > DEFAULT_MAX_OUTPUT_BYTES - 101, `${kept} bytes kept`);
  assert.equal(out.lines.at(-1)!.line, `${text}9`);
  assert.equal(out.droppedBytes + kept, 40_000 * 101);
  assert.equal(out.droppedLines + out.lines.length, 40_000);
});

Deno.test("junitXml() writes one suite per group and maps each status to failure, error or skipped", () => {
  const xml = junitXml(realisticRun());
  assert.ok(
    xml.startsWith(
      `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="/home/ci/project/workflow.lua" tests="9" failures="2" errors="1" time="34.500">\n`,
    ),
  );
  assert.match(
    xml,
    /<testsuite name="ci" tests="4" failures="2" errors="0" skipped="0" time="3\.437" timestamp="2026-03-01T10:00:00Z">/,
  );
  assert.match(
    xml,
    /<testsuite name="deploy" tests="5" failures="0" errors="1" skipped="3" time="[\d.]+" timestamp="2026-03-01T10:00:03Z">/,
  );
  const testcase = (name: string) => {
    const match = xml.match(new RegExp(`<testcase name="${name}"[\\s\\S]*?</testcase>`));
    assert.ok(match, name);
    return match[0];
  };
  assert.match(
    testcase("lint"),
    /^<testcase name="lint" classname="ci" time="0\.120" status="success">/,
  );
  assert.doesNotMatch(testcase("lint"), /<failure|<error|<skipped/);
  assert.match(testcase("build"), /<failure message="exit code 2" type="exit_code">exit code 2\n/);
  assert.match(testcase("build"), /\ntask: ci\.build\nwhere: local\nattempts: 1\n/);
  assert.match(testcase("build"), /time="2\.346"/);
  assert.match(testcase("slow"), /<failure message="timed out after 500ms" type="timeout">/);
  assert.match(testcase("slow"), /\nsignal: SIGKILL\n/);
  assert.match(
    testcase("lost"),
    /<error message="agent lost: connection closed" type="agent_lost">/,
  );
  assert.match(
    testcase("notify"),
    /<skipped>dependency "lost" failed: agent lost<\/skipped>/,
  );
  assert.match(testcase("cleanup"), /<skipped>cancelled: run interrupted<\/skipped>/);
  assert.match(testcase("final"), /<skipped>run interrupted<\/skipped>/);

  const push = testcase("push");
  assert.match(push, /status="success"/);
  assert.match(push, /<system-out>uploaded 3 files\n\[info\] synced back 1 change\n<\/system-out>/);

  const flaky = testcase("flaky");
  assert.match(flaky, /<system-out>── attempt 1 ──\ntry 1\n── attempt 2 ──\ntry 2\n<\/system-out>/);
  assert.match(
    flaky,
    /<system-err>── attempt 1 ──\n\[warn\] attempt 1 of 2 failed: exit code 1; retrying in 100ms\n<\/system-err>/,
  );
});

Deno.test("junitXml() escapes markup, replaces what XML 1.0 forbids and strips ANSI codes", () => {
  const xml = junitXml(realisticRun());
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(xml, /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/);
  assert.doesNotMatch(xml, /[\uD800-\uDFFF]/u, "no lone surrogate");
  assert.ok(!xml.includes("]]>"));
  assert.ok(xml.includes("a &lt;tag&gt; &amp; \"quote\" 'apos' ]]&gt; end\n"));
  assert.ok(xml.includes("progress 10%&#13;progress 100%\n"));
  assert.ok(xml.includes("ação 日本語 😀"));
  assert.ok(xml.includes("error: &lt;build&gt; failed &amp; stopped\n"));
});

Deno.test({
  name: "junitXml() output reads back, through xmllint, as the text the task printed",
  ignore: !hasXmllint,
  fn: async () => {
    const xml = junitXml(realisticRun());
    assert.equal(
      await xpath(xml, 'string(//testcase[@name="build"]/system-out)'),
      Object.values(hostileRead).join("\n") + "\n",
    );
    assert.equal(
      await xpath(xml, 'string(//testcase[@name="build"]/system-err)'),
      "error: <build> failed & stopped\n",
    );
    assert.equal(
      await xpath(xml, 'string(//testcase[@name="notify"]/skipped)'),
      'dependency "lost" failed: agent lost',
    );
    // Attribute values keep their line breaks and tabs (escaped, not normalised away).
    const rec = new RunRecorder();
    rec.handle({ type: "run_started", file: "w.lua", tasks: [] });
    rec.handle({
      type: "task_finished",
      task: "t",
      group: "g",
      result: result("g.t", {
        status: "failed",
        error: "line one\n\tline two\r\x1b[31m<red>\x1b[0m & 'more'",
      }),
    });
    assert.equal(
      await xpath(junitXml(rec.record()), 'string(//testcase[@name="t"]/failure/@message)'),
      "line one\n\tline two\r<red> & 'more'",
    );
  },
});

Deno.test({
  name: "junitXml() is valid against the JUnit schemas CI readers follow",
  ignore: !hasXmllint,
  fn: async () => {
    const c = clock();
    const unfinished = new RunRecorder({ now: c.now });
    unfinished.handle({
      type: "run_started",
      file: "w.lua",
      tasks: [{ id: "g.a", task: "a", group: "g", where: "local" }],
    });
    const truncated = new RunRecorder({ maxOutputBytes: 16 });
    for (let i = 0; i < 10; i++) {
      truncated.handle({ type: "log", id: "g.t", task: "t", stream: "stdout", line: `${i}<&>` });
    }
    const empty = new RunRecorder();
    empty.handle({ type: "run_started", file: "", tasks: [] });
    for (
      const record of [realisticRun(), unfinished.record(), truncated.record(), empty.record()]
    ) {
      const xml = junitXml(record);
      const ours = await validate(xml, slothXsd);
      assert.ok(ours.ok, ours.out);
      const jenkins = await validate(xml, jenkinsXsd);
      assert.ok(jenkins.ok, jenkins.out);
    }
  },
});

Deno.test({
  name: "the schema check rejects what CI readers would not take (so the validity test can fail)",
  ignore: !hasXmllint,
  fn: async () => {
    const xml = junitXml(realisticRun());
    const broken = [
      // Two verdicts for one case.
      xml.replace("<failure ", `<skipped message="x"/><failure `),
      // A case without a name.
      xml.replace(`<testcase name="lint" `, "<testcase "),
      // A count that is not a number.
      xml.replace(`tests="9"`, `tests="nine"`),
      // Output before the verdict.
      xml.replace(
        /(<failure [^>]*>[^<]*<\/failure>\n)(\s*<system-out>[^<]*<\/system-out>\n)/,
        "$2$1",
      ),
    ];
    for (const doc of broken) {
      assert.notEqual(doc, xml, "the mutation applied");
      const { ok } = await validate(doc, slothXsd);
      assert.equal(ok, false, doc.slice(0, 300));
    }
    // A control character as a reference is not well-formed XML 1.0.
    const { ok } = await validate(xml.replace("0 problems", "0 &#1; problems"), slothXsd);
    assert.equal(ok, false);
  },
});

Deno.test("jsonReport() parses as the whole record, version 1, keys in snake_case", () => {
  const record = realisticRun({ maxOutputBytes: 200 });
  const text = jsonReport(record);
  assert.ok(text.endsWith("}\n"));
  const json = JSON.parse(text);
  assert.equal(json.version, 1);

  const keys = (value: unknown, path: string): void => {
    if (Array.isArray(value)) value.forEach((v, i) => keys(v, `${path}[${i}]`));
    else if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) {
        assert.match(k, /^[a-z0-9_]+$/, `${path}.${k}`);
        if (k !== "outputs") keys(v, `${path}.${k}`);
      }
    }
  };
  keys(json, "$");

  assert.deepEqual(
    {
      file: json.file,
      started_at: json.started_at,
      finished: json.finished,
      status: json.status,
      exit_code: json.exit_code,
      duration_ms: json.duration_ms,
      counts: json.counts,
      reason: json.reason,
    },
    {
      file: record.file,
      started_at: record.startedAt,
      finished: true,
      status: "interrupted",
      exit_code: 130,
      duration_ms: 34_500,
      counts: record.counts,
      reason: "interrupted",
    },
  );
  assert.equal(json.tasks.length, record.tasks.length);
  record.tasks.forEach((t, i) => {
    const j = json.tasks[i];
    assert.deepEqual(
      [j.id, j.task, j.group, j.where, j.status, j.attempts, j.error, j.message],
      [t.id, t.task, t.group, t.where, t.status, t.attempts, t.error, t.message],
    );
    assert.equal(j.duration_ms, Math.round(t.durationMs * 10) / 10);
    assert.equal(j.started_at, t.startedAt);
    assert.equal(j.finished_at, t.finishedAt);
    assert.deepEqual(j.outputs, t.outputs);
    assert.deepEqual(j.exit, t.exit);
    assert.deepEqual(
      j.transfer,
      t.transfer && { sent_bytes: t.transfer.sentBytes, received_bytes: t.transfer.receivedBytes },
    );
    // Lines come back exactly as printed: control characters, ANSI codes, lone surrogates.
    assert.deepEqual(j.output.lines, JSON.parse(JSON.stringify(t.output.lines)));
    assert.equal(j.output.dropped_lines, t.output.droppedLines);
    assert.equal(j.output.dropped_bytes, t.output.droppedBytes);
  });
  const build = json.tasks[1];
  assert.ok(build.output.dropped_lines > 0, "the 200-byte budget dropped lines");
  assert.equal(build.output.lines.at(-1).line, "error: <build> failed & stopped");
  assert.equal(
    build.output.lines.find((l: { line: string }) => l.line.startsWith("ação")).line,
    hostile.unicode,
  );
  assert.deepEqual(json.output.lines, [
    { stream: "log", level: "info", attempt: 0, line: "values loaded from ci.yaml" },
  ]);
});

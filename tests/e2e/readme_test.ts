/**
 * The README is a contract, checked here block by block:
 *
 * - every ```lua block is a workflow that `validate` accepts (a block marked
 *   ```lua fragment is a piece of one, and is skipped, counted);
 * - every ```console block is a transcript: each `$ ...` line is run by /bin/sh,
 *   `sloth-runner` being the real executable (or entry point), and what it writes
 *   to stdout (`2>&1` in the line adds stderr) must be what the README shows below
 *   it, compared after durations, ports and the temporary directory are made
 *   neutral and runs of spaces are made one. In the expected text, a line `...`
 *   stands for any number of lines, and `[..]` for any text within a line.
 *
 * A transcript is prepared by an HTML comment just above its fence:
 * `<!-- readme-test: files=NAME workflow agent -->` copies
 * tests/fixtures/readme/NAME/ into its directory, writes the nearest ```lua block
 * above it as workflow.lua, and starts an agent (127.0.0.1:50051 in the commands
 * becomes its address). ```console capture blocks (live-view captures from a
 * terminal) are skipped, counted: tests/e2e/progress_test.ts checks the live view.
 */
import assert from "node:assert/strict";
import { startAgent } from "../_helpers/agent.ts";
import { startFleet } from "../_helpers/fleet.ts";
import { executable, FIXTURES, ROOT, tempWorkspace } from "../_helpers/mod.ts";

interface Block {
  lang: string;
  flags: string[];
  line: number;
  text: string;
  directive: Map<string, string | true>;
}

function blocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const found: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)(.*)$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]);
    // The comment just above the fence (deno fmt puts a blank line between them).
    const above = lines[start - 1] === "" ? lines[start - 2] : lines[start - 1];
    const comment = /^<!-- readme-test: (.*) -->$/.exec(above ?? "");
    const directive = new Map<string, string | true>();
    for (const word of comment?.[1].trim().split(/\s+/) ?? []) {
      const [key, value] = word.split("=");
      directive.set(key, value ?? true);
    }
    found.push({
      lang: open[1],
      flags: open[2].trim().split(/\s+/).filter(Boolean),
      line: start + 1,
      text: body.join("\n"),
      directive,
    });
  }
  return found;
}

const README = await Deno.readTextFile(`${ROOT}/README.md`);
/** Where a transcript's `fleet=N` agents listen (127.0.0.0/8 is all this machine). */
const FLEET_PREFIX = "127.0.90";
const BLOCKS = blocks(README);
const LUA = BLOCKS.filter((b) => b.lang === "lua");
const CONSOLE = BLOCKS.filter((b) => b.lang === "console");

Deno.test("README: every lua block is a workflow validate accepts (fragments are counted and skipped)", async () => {
  const fragments = LUA.filter((b) => b.flags.includes("fragment"));
  const whole = LUA.filter((b) => !b.flags.includes("fragment"));
  assert.ok(whole.length >= 2, "the README shows whole workflows");
  for (const block of whole) {
    await using ws = await tempWorkspace({ "workflow.lua": block.text });
    // `files=NAME` (an inventory, say) is there for validate too.
    const files = block.directive.get("files");
    if (typeof files === "string") copyDir(`${FIXTURES}/readme/${files}`, ws.dir);
    const run = await shell("sloth-runner validate -f workflow.lua 2>&1", ws.dir);
    assert.equal(run.code, 0, `README.md:${block.line}: validate said:\n${run.output}`);
  }
  console.log(`${whole.length} lua blocks validated, ${fragments.length} fragments skipped`);
});

Deno.test("README: every console transcript prints what the README shows", async () => {
  const captures = CONSOLE.filter((b) => b.flags.includes("capture"));
  const transcripts = CONSOLE.filter((b) => !b.flags.includes("capture"));
  assert.ok(transcripts.length >= 5, `only ${transcripts.length} transcripts`);
  for (const block of transcripts) await checkTranscript(block);
  console.log(
    `${transcripts.length} transcripts run, ${captures.length} live-view captures skipped`,
  );
});

async function checkTranscript(block: Block): Promise<void> {
  await using ws = await tempWorkspace();
  const files = block.directive.get("files");
  if (typeof files === "string") copyDir(`${FIXTURES}/readme/${files}`, ws.dir);
  if (block.directive.has("workflow")) {
    const above = LUA.filter((b) => b.line < block.line).at(-1);
    assert.ok(above, `README.md:${block.line}: no lua block above`);
    await Deno.writeTextFile(`${ws.dir}/workflow.lua`, above.text);
  }
  await using agent = block.directive.has("agent")
    ? await startAgent()
    : { address: "", [Symbol.asyncDispose]: () => Promise.resolve() };
  // `fleet=N`: N agents where the README puts them, 127.0.0.2:50051 and on, are started
  // on 127.0.90.2 and on, one free port: the commands and files are rewritten to them,
  // and what the commands print is written back.
  const count = Number(block.directive.get("fleet") ?? 0);
  await using fleet = count
    ? await startFleet(FLEET_PREFIX, count, { token: false })
    : { port: 0, [Symbol.asyncDispose]: () => Promise.resolve() };
  const toFleet = (text: string) =>
    fleet.port ? text.replace(/127\.0\.0\.(\d+):50051/g, `${FLEET_PREFIX}.$1:${fleet.port}`) : text;
  const fromFleet = (text: string) =>
    fleet.port
      ? text.replace(
        new RegExp(`${FLEET_PREFIX.replaceAll(".", "\\.")}\\.(\\d+):${fleet.port}`, "g"),
        "127.0.0.$1:50051",
      )
      : text;
  if (fleet.port) {
    for (const entry of Deno.readDirSync(ws.dir)) {
      if (!entry.isFile) continue;
      const path = `${ws.dir}/${entry.name}`;
      Deno.writeTextFileSync(path, toFleet(Deno.readTextFileSync(path)));
    }
  }
  for (const step of steps(block.text)) {
    const command = agent.address
      ? step.command.replaceAll("127.0.0.1:50051", agent.address)
      : toFleet(step.command);
    const run = await shell(command, ws.dir);
    const actual = neutral(fromFleet(run.output), ws.dir);
    const expected = neutral(step.expected, ws.dir);
    assert.ok(
      matches(expected, actual),
      `README.md:${block.line}: $ ${step.command}\n--- the README shows\n${
        expected.join("\n")
      }\n--- it printed\n${actual.join("\n")}`,
    );
  }
}

/** `$ command` lines and the output under each. */
function steps(text: string): { command: string; expected: string }[] {
  const out: { command: string; expected: string[] }[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("$ ")) out.push({ command: line.slice(2), expected: [] });
    else out.at(-1)?.expected.push(line);
  }
  return out.map((s) => ({ command: s.command, expected: s.expected.join("\n") }));
}

/** A `sloth-runner` on PATH that runs the real one, as the tests start it. */
const BIN = await (async () => {
  const dir = await Deno.makeTempDir({ prefix: "sloth-readme-bin-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  const run = executable("sloth-runner", []);
  const quoted = [run.command, ...run.args].map((a) => `'${a.replaceAll("'", "'\\''")}'`);
  await Deno.writeTextFile(`${dir}/sloth-runner`, `#!/bin/sh\nexec ${quoted.join(" ")} "$@"\n`);
  await Deno.chmod(`${dir}/sloth-runner`, 0o755);
  return dir;
})();

/** A README command line, run by /bin/sh in `cwd`: its stdout (stderr is dropped unless redirected). */
async function shell(line: string, cwd: string): Promise<{ code: number; output: string }> {
  const output = await new Deno.Command("/bin/sh", {
    args: ["-c", `exec 2>/dev/null; ${line}`],
    cwd,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0", PATH: `${BIN}:${Deno.env.get("PATH")}` },
    stdin: "null",
  }).output();
  return { code: output.code, output: new TextDecoder().decode(output.stdout) };
}

/** What varies from run to run, made neutral; trailing blank lines dropped. */
function neutral(text: string, dir: string): string[] {
  const lines = text
    .replaceAll(dir, "<dir>")
    .replace(/\b\d+(\.\d+)?(ms|s)\b/g, "<duration>")
    .replace(/127\.0\.0\.1:\d+/g, "127.0.0.1:<port>")
    .split("\n")
    .map((line) => line.replace(/\s+/g, " ").trimEnd());
  while (lines.length && lines.at(-1) === "") lines.pop();
  return lines;
}

/** Whether `actual` matches `expected`, where `...` is any lines and `[..]` any text. */
function matches(expected: string[], actual: string[]): boolean {
  const patterns = expected.map((line) =>
    line === "..." ? undefined : new RegExp(
      "^" + line.split("[..]").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(
        ".*",
      ) + "$",
    )
  );
  const memo = new Map<string, boolean>();
  const at = (i: number, j: number): boolean => {
    const key = `${i},${j}`;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let result: boolean;
    if (i === patterns.length) result = j === actual.length;
    else if (patterns[i] === undefined) {
      result = at(i + 1, j) || (j < actual.length && at(i, j + 1));
    } else result = j < actual.length && patterns[i]!.test(actual[j]) && at(i + 1, j + 1);
    memo.set(key, result);
    return result;
  };
  return at(0, 0);
}

function copyDir(from: string, to: string): void {
  for (const entry of Deno.readDirSync(from)) {
    const source = `${from}/${entry.name}`;
    const target = `${to}/${entry.name}`;
    if (entry.isDirectory) {
      Deno.mkdirSync(target, { recursive: true });
      copyDir(source, target);
    } else Deno.copyFileSync(source, target);
  }
}

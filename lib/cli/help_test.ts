import assert from "node:assert/strict";
import type { Command } from "@commander-js/extra-typings";
import { buildProgram } from "./mod.ts";

function commands(command: Command<unknown[], Record<string, unknown>>): Command[] {
  // deno-lint-ignore no-explicit-any
  const children = command.commands as any as Command[];
  return [command as Command, ...children.flatMap((c) => commands(c as never))];
}

function helpOf(command: Command): string {
  let text = "";
  command.configureOutput({ writeOut: (s) => text += s, writeErr: (s) => text += s });
  command.outputHelp();
  return text;
}

Deno.test("every command and option has a description, and every command's help ends with an example", () => {
  const program = buildProgram({
    out: () => {},
    err: () => {},
    color: false,
    cwd: "/",
  }, () => {});
  const all = commands(program as never);
  assert.ok(all.length >= 10, all.map((c) => c.name()).join(" "));
  for (const command of all) {
    const name = command.name();
    assert.ok(command.description().length > 10, `${name}: no description`);
    for (const option of command.options) {
      assert.ok((option.description ?? "").length > 5, `${name} ${option.flags}: no description`);
    }
    for (const argument of command.registeredArguments) {
      assert.ok(argument.description.length > 5, `${name} <${argument.name()}>: no description`);
    }
    assert.match(helpOf(command), /^(Examples?|Getting started)[^:\n]*:$/m, `${name} --help`);
  }
});

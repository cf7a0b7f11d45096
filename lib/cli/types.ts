/** `sloth-runner types`: LuaLS annotations so editors complete and check workflow files. */
import { luaAnnotations } from "../dsl/mod.ts";
import { ExitCode, SlothError } from "../errors.ts";
import type { Io } from "./io.ts";

export const DEFAULT_TYPES_FILE = ".sloth/sloth.lua";

export interface TypesOptions {
  /** Where to write; `-` for stdout. */
  output: string;
}

export async function typesCommand(io: Io, options: TypesOptions): Promise<number> {
  const text = luaAnnotations();
  if (options.output === "-") {
    io.out(text);
    return ExitCode.ok;
  }
  const file = absolute(io.cwd, options.output);
  const dir = file.slice(0, file.lastIndexOf("/")) || "/";
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(file, text);
  } catch (error) {
    throw new SlothError("usage", `cannot write ${options.output}: ${(error as Error).message}`, {
      hint: "pass --output with a file you can write, or --output - for stdout",
    });
  }
  io.out(`wrote ${options.output}\n`);
  // An editor finds the annotations through .luarc.json (VS Code's Lua extension, Neovim, …).
  const library = relative(io.cwd, dir);
  const luarc = `${io.cwd}/.luarc.json`;
  const config = {
    "runtime.version": "Lua 5.4",
    "workspace.library": [library],
  };
  try {
    await Deno.writeTextFile(luarc, JSON.stringify(config, null, 2) + "\n", { createNew: true });
    io.out(`wrote .luarc.json (Lua 5.4, library ${library}): editors that use LuaLS now see it\n`);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    if (await listsLibrary(luarc, library)) {
      io.out(`.luarc.json already lists ${library} in "workspace.library"\n`);
    } else {
      io.out(
        `.luarc.json exists and was left alone: make sure its "workspace.library" lists "${library}"\n`,
      );
    }
  }
  return ExitCode.ok;
}

function absolute(cwd: string, path: string): string {
  return path.startsWith("/") ? path : `${cwd}/${path}`;
}

function relative(cwd: string, dir: string): string {
  return dir === cwd ? "." : dir.startsWith(`${cwd}/`) ? dir.slice(cwd.length + 1) : dir;
}

/** Whether a .luarc.json names `library` in workspace.library (flat or nested key). */
async function listsLibrary(file: string, library: string): Promise<boolean> {
  try {
    const config = JSON.parse(await Deno.readTextFile(file));
    const list = config["workspace.library"] ?? config.workspace?.library;
    return Array.isArray(list) && list.includes(library);
  } catch {
    return false;
  }
}

/** Exact pictures of a directory tree, for tests that must tell "as before" from "as after". */

/**
 * Every path under `dir` (directories too, empty ones included) with its type,
 * permission bits and content or target: `file 644 <content>`, `dir 755`,
 * `symlink -> target`. Names in `skip` are left out at any depth.
 */
export function treeSnapshot(dir: string, skip: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const decoder = new TextDecoder();
  const walk = (full: string, rel: string) => {
    const names = [...Deno.readDirSync(full)].map((e) => e.name).sort();
    for (const name of names) {
      if (skip.includes(name)) continue;
      const path = rel ? `${rel}/${name}` : name;
      const info = Deno.lstatSync(`${full}/${name}`);
      const mode = ((info.mode ?? 0) & 0o777).toString(8);
      if (info.isSymlink) out[path] = `symlink -> ${Deno.readLinkSync(`${full}/${name}`)}`;
      else if (info.isDirectory) {
        out[path] = `dir ${mode}`;
        walk(`${full}/${name}`, path);
      } else out[path] = `file ${mode} ${decoder.decode(Deno.readFileSync(`${full}/${name}`))}`;
    }
  };
  walk(dir, "");
  return out;
}

/** Paths under `dir` whose name matches `pattern`, at any depth. */
export function findNames(dir: string, pattern: RegExp): string[] {
  const found: string[] = [];
  const walk = (full: string, rel: string) => {
    for (const entry of Deno.readDirSync(full)) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (pattern.test(entry.name)) found.push(path);
      if (entry.isDirectory) walk(`${full}/${entry.name}`, path);
    }
  };
  walk(dir, "");
  return found;
}

/** A copy of `from` at `to` (which must not exist): files, directories, symlinks and modes. */
export function copyTree(from: string, to: string): void {
  const info = Deno.lstatSync(from);
  if (info.isSymlink) Deno.symlinkSync(Deno.readLinkSync(from), to);
  else if (info.isFile) {
    Deno.copyFileSync(from, to);
    Deno.chmodSync(to, (info.mode ?? 0o644) & 0o777);
  } else {
    Deno.mkdirSync(to, { mode: 0o700 });
    for (const entry of Deno.readDirSync(from)) {
      copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
    // Last: a read-only directory had to be filled first.
    Deno.chmodSync(to, (info.mode ?? 0o755) & 0o777);
  }
}

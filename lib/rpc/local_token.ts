/**
 * Agents on loopback without a token are still not open to every local user: the
 * agent makes a random token and writes it where only its own user can read it
 * (a 0700 directory, a 0600 file). A master of the same user finds it by port
 * and sends it; anyone else is refused. Set a token explicitly to share an agent.
 */
import { hostOf } from "./tls.ts";
import { isLoopbackHost } from "../model/mod.ts";

export function localTokenDir(): string {
  const runtime = Deno.env.get("XDG_RUNTIME_DIR");
  if (runtime) return `${runtime}/sloth-runner`;
  return `${Deno.env.get("HOME") ?? "/tmp"}/.local/state/sloth-runner`;
}

/** `localhost` is whatever loopback address the agent bound, so files are keyed by address. */
export function localTokenPath(host: string, port: number): string {
  const name = host === "localhost" ? "127.0.0.1" : host;
  return `${localTokenDir()}/agent-${name.replaceAll(":", "_")}-${port}.token`;
}

export function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, "");
}

/** Writes the token of an agent listening on `host:port`; returns the file. */
export async function writeLocalToken(host: string, port: number, token: string): Promise<string> {
  const dir = localTokenDir();
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  const path = localTokenPath(host, port);
  await Deno.writeTextFile(path, token + "\n", { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  return path;
}

export { isLoopbackHost };

/** The token a same-user agent on loopback left for us, if `address` is such an agent. */
export function readLocalToken(address: string): string | undefined {
  const host = hostOf(address);
  if (!isLoopbackHost(host)) return undefined;
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const hosts = host === "localhost" ? ["127.0.0.1", "::1"] : [host];
  for (const candidate of hosts) {
    try {
      const token = Deno.readTextFileSync(localTokenPath(candidate, port)).trim();
      if (token) return token;
    } catch {
      // Not this one.
    }
  }
  return undefined;
}

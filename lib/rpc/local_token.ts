/**
 * Agents on loopback without a token are still not open to every local user: the
 * agent makes a random token and writes it where only its own user can read it
 * (a 0700 directory, a 0600 file). A master of the same user finds it by port
 * and sends it; anyone else is refused. Set a token explicitly to share an agent.
 */
import { hostOf } from "./tls.ts";

export function localTokenDir(): string {
  const runtime = Deno.env.get("XDG_RUNTIME_DIR");
  if (runtime) return `${runtime}/sloth-runner`;
  return `${Deno.env.get("HOME") ?? "/tmp"}/.local/state/sloth-runner`;
}

export function localTokenPath(port: number): string {
  return `${localTokenDir()}/agent-${port}.token`;
}

/** Makes the token for an agent listening on `port`; returns it and where it is. */
export async function writeLocalToken(port: number): Promise<{ token: string; path: string }> {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const token = btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, "");
  const dir = localTokenDir();
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  const path = localTokenPath(port);
  await Deno.writeTextFile(path, token + "\n", { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  return { token, path };
}

export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The token a same-user agent on loopback left for us, if `address` is such an agent. */
export function readLocalToken(address: string): string | undefined {
  if (!isLoopbackHost(hostOf(address))) return undefined;
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  try {
    return Deno.readTextFileSync(localTokenPath(port)).trim() || undefined;
  } catch {
    return undefined;
  }
}

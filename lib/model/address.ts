/** Agent addresses: `host:port`, `[v6]:port`; one reading for the workflow, the CLI and `new`. */

/** The shape of an address, whatever its port. */
const SHAPE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;

/** `host:port` with a port from 1 to 65535, or undefined. `host` keeps its brackets. */
export function parseAddress(text: string): { host: string; port: number } | undefined {
  const match = SHAPE.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535 ? { host: match[1], port } : undefined;
}

/** Whether `text` looks like host:port at all (its port may still be out of range). */
export function hasAddressShape(text: string): boolean {
  return SHAPE.test(text);
}

export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" ||
    /^127\.\d+\.\d+\.\d+$/.test(host);
}

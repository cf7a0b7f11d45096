/** `1048576`, `512k`, `100M`, `2G`, `1TiB` (powers of 1024); undefined if not a size. */
export function parseSize(value: string): number | undefined {
  const match = /^(\d+)\s*([kKmMgGtT]?)(i?[bB])?$/.exec(value.trim());
  if (!match) return undefined;
  const power = " kmgt".indexOf(match[2].toLowerCase() || " ");
  return Number(match[1]) * 1024 ** power;
}

/** `1048576`, `512k`, `100M`, `2G`, `1TiB` (powers of 1024); undefined if not a size. */
export function parseSize(value: string): number | undefined {
  const match = /^(\d+)\s*([kKmMgGtT]?)(i?[bB])?$/.exec(value.trim());
  if (!match) return undefined;
  const power = " kmgt".indexOf(match[2].toLowerCase() || " ");
  return Number(match[1]) * 1024 ** power;
}

/** `150 MiB`, `1.5 GiB`, `12 KiB`, `300 bytes`: a size for people, in powers of 1024. */
export function formatSize(bytes: number): string {
  const units = ["GiB", "MiB", "KiB"];
  for (let i = 0; i < units.length; i++) {
    const unit = 1024 ** (units.length - i);
    if (bytes >= unit) {
      // Rounded down: a size just over a limit never shows as the limit itself rounded up.
      const n = bytes / unit;
      return `${n >= 100 ? Math.floor(n) : Math.floor(n * 10) / 10} ${units[i]}`;
    }
  }
  return `${bytes} bytes`;
}

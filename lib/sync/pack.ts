/** Packing a list of workspace entries into a tar stream, read as it is made. */
import { create } from "tar";

/** Each regular file is stored whole: an archive of ours never holds hard links. */
const noHardLinks = {
  get: () => undefined,
  set() {
    return this;
  },
  has: () => false,
} as unknown as Map<`${number}:${number}`, string>;

/**
 * The tar stream of `paths` (relative to `root`, in the order given; directories
 * are stored without their contents). Symlinks are stored as symlinks.
 */
export function packPaths(root: string, paths: string[]): AsyncIterable<Uint8Array> {
  // An empty list is no bytes at all: unpack() reads that as an empty archive.
  if (paths.length === 0) return emptyStream();
  return create(
    {
      cwd: root,
      // Not `portable`: it rounds modes (664 becomes 644), and modes must survive.
      follow: false,
      noDirRecurse: true,
      linkCache: noHardLinks,
    },
    // node-tar reads a name starting with "@" as another archive to splice in.
    paths.map((path) => `./${path}`),
  ) as unknown as AsyncIterable<Uint8Array>;
}

async function* emptyStream(): AsyncIterable<Uint8Array> {}

/** Re-cuts a stream into chunks of at most `size` bytes, for gRPC messages. */
export async function* rechunk(
  source: AsyncIterable<Uint8Array>,
  size: number,
): AsyncIterable<Uint8Array> {
  for await (const chunk of source) {
    for (let offset = 0; offset < chunk.length; offset += size) {
      yield chunk.subarray(offset, Math.min(offset + size, chunk.length));
    }
  }
}

/**
 * How much data may cross between Lua and the host (host.ts, prelude.ts): what
 * crosses is copied into JavaScript memory, which Lua's own memory limit
 * (SLOTH_LUA_MEMORY) does not cover, and a JavaScript heap that runs out ends
 * the whole process. No imports: pool.ts reads the limit in the main thread.
 */

/** The environment variable that sets the data limit (pool.ts reads it). */
export const DATA_LIMIT_ENV = "SLOTH_LUA_DATA_LIMIT";

/**
 * Bytes one value may carry (a JSON text, a file read, a response body, a
 * table's estimated size). Measured: 64 MiB of `{},` parses to 1.5 GB of
 * JavaScript objects, well under a heap's ~4 GB.
 */
export const DEFAULT_DATA_LIMIT = 64 * 1024 * 1024;

/**
 * YAML gets this share of the data limit: parsing it takes ~250 bytes of memory
 * per byte of text (measured: 4 MiB of `- {}` lines, 1 GB), JSON ~25.
 */
export const YAML_SHARE = 16;

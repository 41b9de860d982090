/** Bumped by hand on release; `micro version` prints it with the Deno and V8 versions. */
export const VERSION = "0.1.0";

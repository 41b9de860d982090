/**
 * The V8 flags every micro process that may fork the engine runs with (tools/build.sh bakes
 * these in; core/store/rmtree.ts microExe passes them to the micro processes it starts).
 *
 * The engine's child and the watchdog are copies of micro that run JavaScript until their
 * execve (DESIGN.md §4), and in a copy nothing may be compiled: compiling allocates through
 * malloc, whose lock another thread of micro may have held at the instant of the copy, and
 * the copy then waits on it forever. So:
 * - `--single-threaded`: no V8 helper thread holds a heap lock at the clone;
 * - `--no-lazy`: every function is compiled when the bundle is (and kept in the code cache),
 *   not on its first call, which for the child's code is in the child;
 * - `--no-flush-bytecode`: nor dropped later (a `run` that pulls an image for minutes);
 * - `--no-sparkplug`, `--no-maglev`, `--no-turbofan`: no tier-up, which V8 otherwise does
 *   in the child for functions the parent made hot (measured with
 *   `--trace-baseline-batch-compilation` and `--trace-opt`: a batch of six and `r` marked).
 * The cost, measured by bench/start on a quiet host: about 6 ms a run and 18 ms a `plan`
 * (bench/README.md).
 *
 * And `--min-semi-space-size=4` (MB), for speed: a run allocates about 3 MB, which V8's
 * default 1 MB semi-spaces collected twice, 3 to 5 ms a scavenge on the one thread; with 4 MB
 * a run, a plan and a hardened run do not collect at all (`--trace-gc`). New space still
 * grows and shrinks as V8 sees fit above that (a long attached run that relays much output).
 *
 * And `--expose-gc`, for memory: `compactHeap` below.
 *
 * And `--smi-string-cache-size=256`, `--double-string-cache-size=256`, for memory: V8 keeps
 * the strings of numbers it converted in two caches of 128 entries, and at the first
 * collision grows each to its full size, 8192 and 4096 entries (131 and 65 kB), which an
 * attached run then holds for as long as its container runs (and every run has such a
 * collision). 256 keeps them at 4 kB each (V8 rounds a size up to a power of two, and
 * aborts when that is not above 128); a miss only converts the number again.
 */
export const V8_FLAGS =
  "--single-threaded,--no-lazy,--no-flush-bytecode,--no-sparkplug,--no-maglev,--no-turbofan,--min-semi-space-size=4,--expose-gc,--smi-string-cache-size=256,--double-string-cache-size=256";

/**
 * Deno's own flags for micro's bundle, one list for the launcher (tools/build.sh reads this
 * line) and for the micro processes micro starts (core/store/rmtree.ts). Above all
 * `--no-config`: Deno otherwise looks for a deno.json from the bundle's directory up, and a
 * cache under a sticky directory (/tmp) would take another user's `/tmp/deno.json`, whose
 * import map could put their code in place of micro's (reproduced).
 */
export const BUNDLE_FLAGS =
  "--no-prompt --quiet --no-config --no-lock --cached-only --no-remote --no-npm";

/** How long an attached container runs before micro gives back its start-up garbage. */
export const COMPACT_AFTER_MS = 500;

/**
 * Gives back to the kernel what starting a container left in micro's heap (`--expose-gc`
 * above): the young generation a run fills (see `--min-semi-space-size`) and the pages of
 * the modules' garbage. Measured on an attached `sleep`: the parent's `Private_Dirty` 14.8
 * → 13.5 MB (bench/README.md, thirteenth session); a plain major GC gives back nothing: the
 * "last-resort" flavour shrinks the spaces too. It takes about 30 ms on the one thread, so
 * it runs only once a container has run for
 * COMPACT_AFTER_MS (a `/bin/true` never pays it), and only from the parent: never in a
 * forked copy, where collecting may wait on a lock another thread held at the clone.
 * False when V8 collected nothing (a micro process started without these flags).
 */
export function compactHeap(sys: { trimMalloc(): void }): boolean {
  const gc = (globalThis as { gc?: (o: Record<string, string>) => void }).gc;
  gc?.({ type: "major", execution: "sync", flavor: "last-resort" });
  sys.trimMalloc();
  return gc !== undefined;
}

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
 */
export const V8_FLAGS =
  "--single-threaded,--no-lazy,--no-flush-bytecode,--no-sparkplug,--no-maglev,--no-turbofan,--min-semi-space-size=4";

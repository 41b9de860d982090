/**
 * Runs of `micro run --rm IMAGE /bin/true` in one process, one after another (bench/warm
 * says why): each run's milliseconds on a line of stdout, `INDEX MS`.
 *
 *   deno run -A --config deno.json --v8-flags=FLAGS bench/warm.ts IMAGE RUNS [PROFILE]
 */
import { RunSignals } from "../core/signals.ts";
import { gcState } from "../commands/_gc.ts";

const [image, runs, profile = "default"] = Deno.args;
const { runCommand } = await import("../core/run.ts");
for (let i = 0; i < Number(runs); i++) {
  const t = performance.now();
  // What commands/run.ts does for a run: its listeners, the state sweep, the run.
  const signals = new RunSignals();
  let rc: number;
  try {
    await gcState();
    rc = await runCommand(["run", "--rm", "--profile", profile, image, "/bin/true"], signals);
  } finally {
    signals.remove();
  }
  if (rc !== 0) throw new Error(`run ${i} exited ${rc}`);
  console.log(`${i} ${(performance.now() - t).toFixed(2)}`);
}

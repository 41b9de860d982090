/**
 * Runs of `micro run --rm IMAGE /bin/true` in one process, one after another (bench/warm
 * says why): each run's milliseconds on a line of stdout, `INDEX MS`.
 *
 *   deno run -A --config deno.json --v8-flags=FLAGS bench/warm.ts IMAGE RUNS [PROFILE]
 */
import { RunSignals } from "../core/signals.ts";

const [image, runs, profile = "default"] = Deno.args;
const { runCommand } = await import("../core/run.ts");
for (let i = 0; i < Number(runs); i++) {
  const t = performance.now();
  const signals = new RunSignals();
  const argv = ["run", "--rm", "--profile", profile, image, "/bin/true"];
  const rc = await runCommand(argv, signals);
  if (rc !== 0) throw new Error(`run ${i} exited ${rc}`);
  console.log(`${i} ${(performance.now() - t).toFixed(2)}`);
}

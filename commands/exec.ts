/** `micro exec`: the logic is in core/exec/. */
import { warmDone, warmUp } from "../core/cgroups/warm.ts";
import { RunSignals } from "../core/signals.ts";

export async function exec(argv: string[]): Promise<number> {
  // Listening before anything starts, as `micro run` (core/signals.ts).
  const signals = new RunSignals();
  try {
    // It joins the container's cgroups: on v1, their wait started now (core/cgroups/warm.ts).
    if (!argv.includes("--help")) await warmUp();
    const { execCommand } = await import("../core/exec/mod.ts");
    return await execCommand(argv, signals);
  } finally {
    signals.remove();
    void warmDone();
  }
}

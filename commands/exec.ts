/** `micro exec`: the logic is in core/exec/. */
import { warmAttach, warmDone } from "../core/cgroups/warm.ts";
import { RunSignals } from "../core/signals.ts";
import { openLibc } from "../core/sys/libc.ts";

export async function exec(argv: string[]): Promise<number> {
  // Listening before anything starts, as `micro run` (core/signals.ts).
  const signals = new RunSignals();
  const sys = openLibc();
  try {
    // It joins the container's cgroups: on v1, their wait started now (core/cgroups/warm.ts).
    const { VFORK_CODE, vforkUsable } = await import("../core/engine/vfork.ts");
    if (!argv.includes("--help") && vforkUsable(sys)) warmAttach(sys, VFORK_CODE());
    const { execCommand } = await import("../core/exec/mod.ts");
    return await execCommand(argv, signals);
  } finally {
    signals.remove();
    void warmDone();
  }
}

/** `micro exec`: the logic is in core/exec/. */
import { RunSignals } from "../core/signals.ts";

export async function exec(argv: string[]): Promise<number> {
  // Listening before anything starts, as `micro run` (core/signals.ts).
  const signals = new RunSignals();
  try {
    const { execCommand } = await import("../core/exec/mod.ts");
    return await execCommand(argv, signals);
  } finally {
    signals.remove();
  }
}

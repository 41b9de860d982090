/**
 * The phase trace: with `MICRO_TRACE=1` micro prints, when it exits, how many milliseconds
 * each phase of the command took, to stderr (bench/start reads it). Off, it costs one
 * environment read at start-up and a branch per mark.
 *
 * A phase is the time since the previous `mark`; a `span` (measured with `now`) is a piece
 * of work inside a phase, printed on its own line and taken out of that phase, so the
 * phases add up to the total. Spans do not nest.
 */

/** Whether MICRO_TRACE=1 (read once). */
export const TRACING = readFlag();

function readFlag(): boolean {
  try {
    return Deno.env.get("MICRO_TRACE") === "1";
  } catch {
    return false;
  }
}

const rows: [string, number][] = [];
/** Spans of the current phase, by name: [ms, count]. */
const spans = new Map<string, [number, number]>();
let last = 0;
let inner = 0;

/** The clock for a span, or 0 when not tracing. */
export function now(): number {
  return TRACING ? performance.now() : 0;
}

/**
 * Ends the current phase, naming it: its spans first (one line per name, `×N` when there
 * were several), then the phase itself without them.
 */
export function mark(name: string): void {
  if (!TRACING) return;
  const t = performance.now();
  for (const [span, [ms, n]] of spans) rows.push([n > 1 ? `${span} ×${n}` : span, ms]);
  spans.clear();
  rows.push([name, t - last - inner]);
  last = t;
  inner = 0;
}

/** Records a span that began at `start` (from `now`) and ends here. */
export function span(name: string, start: number): void {
  if (!TRACING) return;
  const d = performance.now() - start;
  const s = spans.get(name);
  if (s) {
    s[0] += d;
    s[1]++;
  } else spans.set(name, [d, 1]);
  inner += d;
}

/** Starts the trace anew (a serve worker's next command: core/serve/worker.ts). */
export function resetTrace(): void {
  rows.length = 0;
  spans.clear();
  last = performance.now();
  inner = 0;
}

/** The rows so far (for tests). */
export function traced(): readonly [string, number][] {
  return rows;
}

/**
 * Prints the trace: one `micro: trace: PHASE MS` line per phase and span, then the total
 * since Deno's time origin (the runtime's own start before it is not seen from here).
 */
export function printTrace(): void {
  if (!TRACING || rows.length === 0) return;
  mark("exit");
  const lines = rows.map(([name, ms]) => `micro: trace: ${name.padEnd(36)} ${ms.toFixed(2)} ms`);
  lines.push(`micro: trace: ${"total".padEnd(36)} ${last.toFixed(2)} ms`);
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(lines.join("\n") + "\n"));
  } catch { /* stderr closed: nothing to tell */ }
}

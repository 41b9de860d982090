/**
 * Signals sent to micro during a run. `main.ts` starts listening before a `run` does anything
 * (before the state dir, the cgroups or the child exist), so a signal never finds micro with
 * its default action halfway through set-up. What happens to a signal depends on when:
 *
 * - before the command runs (set-up, or a child that has not exec'd yet): INT, TERM, HUP and
 *   QUIT stop the run. A child that exists is killed; micro removes what it made and exits
 *   128+N. USR1 and USR2 are held and delivered once the command runs; WINCH is dropped
 *   (the window size is copied when the terminal is made).
 * - while the command runs: INT, TERM, HUP, QUIT, USR1 and USR2 go to the container's init;
 *   WINCH resizes the container's terminal when it has one (the kernel then signals its
 *   foreground group), else it goes to init too.
 * - after init was reaped, while micro drains the output: INT, TERM, HUP and QUIT end the
 *   drain at once (a consumer that never reads cannot keep micro alive).
 *
 * Before Deno runs micro's code, signals have their default action; nothing exists yet then.
 */

export const FORWARDED_SIGNALS: Deno.Signal[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGWINCH",
];

export const SIGNUM: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
  SIGWINCH: 28,
};

/** Signals that stop a run that has not started, and end a drain. */
const STOPPING = new Set([1, 2, 3, 15]);

type Phase = "setup" | "child" | "running" | "draining";

/** What signals do is up to the run's phase; the engine moves it along. */
export class RunSignals {
  private phase: Phase = "setup";
  private pid = 0;
  private kill: (pid: number, sig: number) => void = () => {};
  private resize: (() => void) | null = null;
  private readonly held: number[] = [];
  private readonly handlers: [Deno.Signal, () => void][] = [];
  private wake: () => void = () => {};
  /** The first stopping signal received while no command ran (0: none). */
  stopSignal = 0;
  /** Resolves when a stopping signal arrives before the command runs or during a drain. */
  stopped: Promise<void>;

  constructor() {
    this.stopped = new Promise((r) => this.wake = r);
    for (const s of FORWARDED_SIGNALS) {
      const h = () => this.deliver(SIGNUM[s]);
      try {
        Deno.addSignalListener(s, h);
        this.handlers.push([s, h]);
      } catch { /* a signal Deno will not watch: leave it */ }
    }
  }

  /** Delivers a signal as if it had been received (tests, and the listeners above). */
  deliver(n: number): void {
    if (this.phase === "running") {
      if (n === SIGNUM.SIGWINCH && this.resize) this.resize();
      else this.kill(this.pid, n);
      return;
    }
    if (STOPPING.has(n)) {
      if (this.stopSignal === 0) this.stopSignal = n;
      // A child still starting dies now (it may have just exec'd: killed all the same).
      if (this.phase === "child") this.kill(this.pid, 9);
      this.wake();
    } else if (n !== SIGNUM.SIGWINCH && this.phase !== "draining") {
      this.held.push(n);
    }
  }

  /** The child exists but has not exec'd yet. */
  child(pid: number, kill: (pid: number, sig: number) => void): void {
    this.phase = "child";
    this.pid = pid;
    this.kill = kill;
    if (this.stopSignal) kill(pid, 9);
  }

  /**
   * The child has exec'd or is gone: it is not killed from here on (it may be reaped any
   * moment, and a reaped pid may be reused). The engine checks `stopSignal` next.
   */
  settled(): void {
    this.phase = "setup";
  }

  /** The command runs: signals go to it now, those held first. */
  running(resize: (() => void) | null): void {
    this.phase = "running";
    this.resize = resize;
    for (const n of this.held.splice(0)) this.kill(this.pid, n);
  }

  /** Init was reaped: a stopping signal now ends the drain of its output. */
  draining(): void {
    this.phase = "draining";
  }

  remove(): void {
    for (const [s, h] of this.handlers) Deno.removeSignalListener(s, h);
    this.handlers.length = 0;
  }
}

export function signalName(n: number): string {
  return Object.keys(SIGNUM).find((k) => SIGNUM[k] === n) ?? `signal ${n}`;
}

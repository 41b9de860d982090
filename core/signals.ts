/**
 * Signals sent to micro during a run. `main.ts` starts listening before a `run` does anything
 * (before the state dir, the cgroups or the child exist), so a signal never finds micro with
 * its default action halfway through set-up. What happens to a signal depends on when:
 *
 * - before the command runs (set-up, or a child that has not exec'd yet): INT, TERM, HUP and
 *   QUIT stop the run. A child that exists is killed; micro removes what it made and exits
 *   128+N. USR1 and USR2 are held and delivered once the command runs; WINCH is dropped
 *   (the window size is copied when the terminal is made).
 * - while the command runs: INT, HUP, QUIT, USR1 and USR2 go to the container's init;
 *   WINCH resizes the container's terminal when it has one (the kernel then signals its
 *   foreground group), else it goes to init too. TERM stops the container as `docker stop`
 *   does: the stop signal (`--stop-signal`, else the image's StopSignal, else TERM) goes to
 *   init, and SIGKILL follows after the stop timeout (`--stop-timeout`, default 10 s) unless
 *   init has exited by then (an init that ignores the stop signal cannot keep micro up).
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

/** Every signal by name, without its SIG prefix (the same numbers on x86_64 and aarch64). */
const ALL_SIGNALS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  IOT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  POLL: 29,
  PWR: 30,
  SYS: 31,
};
/** glibc's SIGRTMIN (two real-time signals are the C library's own) and SIGRTMAX. */
const RTMIN = 34;
const RTMAX = 64;

/**
 * A signal as Docker's `--stop-signal` and an image's StopSignal spell it: `SIGTERM`,
 * `TERM`, `sigterm`, `15`, `SIGRTMIN+3`, `RTMAX-1`. undefined when it is none.
 */
export function parseSignal(text: string): number | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n >= 1 && n <= RTMAX ? n : undefined;
  }
  const name = text.toUpperCase().replace(/^SIG/, "");
  const rt = /^RT(MIN|MAX)(?:([+-])(\d+))?$/.exec(name);
  if (rt) {
    const off = rt[2] ? (rt[2] === "+" ? 1 : -1) * Number(rt[3]) : 0;
    const n = (rt[1] === "MIN" ? RTMIN : RTMAX) + off;
    return n >= RTMIN && n <= RTMAX ? n : undefined;
  }
  return Object.hasOwn(ALL_SIGNALS, name) ? ALL_SIGNALS[name] : undefined;
}

/** Docker's default stop timeout, in seconds. */
export const DEFAULT_STOP_TIMEOUT = 10;

/**
 * A stop timeout as `--stop-timeout` and `stop -t`/`restart -t` take it: whole seconds from
 * the stop signal to SIGKILL, -1 for never; undefined when it is none.
 */
export function parseStopTimeout(text: string): number | undefined {
  if (!/^-?\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= -1 && Number.isSafeInteger(n) ? n : undefined;
}

/** Signals that stop a run that has not started, and end a drain. */
const STOPPING = new Set([1, 2, 3, 15]);

type Phase = "setup" | "child" | "running" | "draining";

/** RunSignals made in this process so far (core/serve/worker.ts). */
let made = 0;

/**
 * How many RunSignals this process has made: a serve worker that sees none made during a
 * command knows no listener of the command's took its signals (core/serve/worker.ts).
 */
export function runSignalsMade(): number {
  return made;
}

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
  /** What SIGTERM to micro sends the running container's init, and when SIGKILL follows. */
  private stop = { signal: 15, timeoutMs: DEFAULT_STOP_TIMEOUT * 1000 };
  private killTimer: number | undefined;
  /** Set timers (tests pass a fake clock). */
  private readonly timers: {
    set: (fn: () => void, ms: number) => number;
    clear: (id: number) => void;
  };
  /** Resolves when a stopping signal arrives before the command runs or during a drain. */
  stopped: Promise<void>;

  constructor(timers?: RunSignals["timers"]) {
    this.timers = timers ??
      { set: (fn, ms) => setTimeout(fn, ms) as unknown as number, clear: (id) => clearTimeout(id) };
    this.stopped = new Promise((r) => this.wake = r);
    made++;
    for (const s of FORWARDED_SIGNALS) {
      const h = () => this.deliver(SIGNUM[s]);
      try {
        Deno.addSignalListener(s, h);
        this.handlers.push([s, h]);
      } catch { /* a signal Deno will not watch: leave it */ }
    }
  }

  /**
   * `docker stop`'s signal and timeout (seconds, -1: no SIGKILL) for SIGTERM while the
   * command runs.
   */
  stopWith(signal: number, timeoutSeconds: number): void {
    this.stop = { signal, timeoutMs: timeoutSeconds < 0 ? -1 : timeoutSeconds * 1000 };
  }

  /** Delivers a signal as if it had been received (tests, and the listeners above). */
  deliver(n: number): void {
    if (this.phase === "running") {
      if (n === SIGNUM.SIGWINCH && this.resize) this.resize();
      else if (n === SIGNUM.SIGTERM) this.stopContainer();
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

  /** The stop signal now, SIGKILL after the timeout (once), while init runs. */
  private stopContainer(): void {
    this.kill(this.pid, this.stop.signal);
    if (this.stop.timeoutMs < 0 || this.killTimer !== undefined) return;
    this.killTimer = this.timers.set(() => {
      if (this.phase === "running") this.kill(this.pid, 9);
    }, this.stop.timeoutMs);
  }

  /** Init was reaped: a stopping signal now ends the drain of its output. */
  draining(): void {
    this.phase = "draining";
    this.clearTimer();
  }

  private clearTimer(): void {
    if (this.killTimer !== undefined) this.timers.clear(this.killTimer);
    this.killTimer = undefined;
  }

  remove(): void {
    this.clearTimer();
    for (const [s, h] of this.handlers) Deno.removeSignalListener(s, h);
    this.handlers.length = 0;
  }
}

export function signalName(n: number): string {
  return Object.keys(SIGNUM).find((k) => SIGNUM[k] === n) ?? `signal ${n}`;
}

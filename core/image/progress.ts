/**
 * Pull progress for people: on a terminal one line per blob, redrawn in place (as
 * `docker pull` does); otherwise plain lines, one each time a blob changes state, so a log
 * stays readable.
 */
import type { ProgressEvent } from "./registry.ts";

export interface ProgressRenderer {
  /** Pass as `PullOptions.onProgress`. */
  onProgress(e: ProgressEvent): void;
  /** Draws the final state (call once the pull ended, whichever way). */
  finish(): void;
}

export interface RendererOptions {
  /** Where the text goes (default: stderr). */
  write?: (s: string) => void;
  /** Redraw in place (default: whether stderr is a terminal). */
  terminal?: boolean;
  /** Columns for the bar line (default: the terminal's, else 80). */
  columns?: number;
  /** Least time between two redraws, ms (default 100). */
  intervalMs?: number;
}

/** `12.3MB` (decimal units, as Docker prints them). */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)}${units[u]}`;
}

const STATE_WORD: Record<ProgressEvent["state"], string> = {
  waiting: "Waiting",
  downloading: "Downloading",
  retrying: "Retrying",
  downloaded: "Download complete",
  extracting: "Extracting",
  done: "Pull complete",
  exists: "Already exists",
};

/** The short id Docker shows: 12 hex digits of the digest. */
export function shortDigest(digest: string): string {
  return digest.slice(digest.indexOf(":") + 1, digest.indexOf(":") + 13);
}

/** One terminal line: `abcdef123456: Downloading [=====>     ]  12.3MB/45.6MB`. */
export function formatProgressLine(e: ProgressEvent, columns = 80): string {
  const head = `${shortDigest(e.digest)}: ${STATE_WORD[e.state]}`;
  if ((e.state !== "downloading" && e.state !== "extracting") || !e.total) {
    return head.slice(0, columns);
  }
  const counts = `${formatBytes(e.done)}/${formatBytes(e.total)}`;
  const width = Math.max(10, Math.min(50, columns - head.length - counts.length - 5));
  const filled = Math.min(width, Math.floor((e.done / e.total) * width));
  const bar = "=".repeat(Math.max(0, filled - 1)) + (filled > 0 ? ">" : "") +
    " ".repeat(width - filled);
  return `${head} [${bar}] ${counts}`.slice(0, columns);
}

/** One plain line for a state change, or undefined when nothing worth a line happened. */
export function formatPlainLine(e: ProgressEvent): string | undefined {
  const id = `${e.kind} ${shortDigest(e.digest)}`;
  const size = e.total !== undefined ? ` (${formatBytes(e.total)})` : "";
  switch (e.state) {
    case "downloading":
      return `${id}: downloading${size}${e.done > 0 ? ` from ${formatBytes(e.done)}` : ""}`;
    case "retrying":
      return `${id}: retrying after ${formatBytes(e.done)}: ${e.message ?? "error"}`;
    case "downloaded":
      return `${id}: downloaded${size}`;
    case "extracting":
      return `${id}: extracting`;
    case "done":
      return `${id}: done${size}`;
    case "exists":
      return `${id}: already exists`;
    default:
      return undefined;
  }
}

export function progressRenderer(opts: RendererOptions = {}): ProgressRenderer {
  const encoder = new TextEncoder();
  const write = opts.write ?? ((s: string) => {
    const b = encoder.encode(s);
    let n = 0;
    while (n < b.length) n += Deno.stderr.writeSync(b.subarray(n));
  });
  const terminal = opts.terminal ?? Deno.stderr.isTerminal();
  const columns = opts.columns ??
    (terminal
      ? (() => {
        try {
          return Deno.consoleSize().columns;
        } catch {
          return 80;
        }
      })()
      : 80);
  const interval = opts.intervalMs ?? 100;

  if (!terminal) {
    const lastState = new Map<string, string>();
    return {
      onProgress(e) {
        const key = `${e.kind}:${e.digest}`;
        if (lastState.get(key) === e.state && e.state !== "retrying") return;
        lastState.set(key, e.state);
        const line = formatPlainLine(e);
        if (line) write(line + "\n");
      },
      finish() {},
    };
  }

  // Terminal: rows in first-seen order (layers and config; manifests are instant).
  const rows = new Map<string, ProgressEvent>();
  let drawn = 0;
  let lastDraw = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const draw = () => {
    timer = undefined;
    lastDraw = Date.now();
    let out = drawn > 0 ? `\x1b[${drawn}A` : "";
    for (const e of rows.values()) out += `\r\x1b[2K${formatProgressLine(e, columns - 1)}\n`;
    drawn = rows.size;
    write(out);
  };
  return {
    onProgress(e) {
      if (e.kind === "manifest" || e.kind === "index") return;
      rows.set(e.digest, e);
      const wait = interval - (Date.now() - lastDraw);
      if (e.state === "done" || e.state === "exists" || wait <= 0) {
        if (timer !== undefined) clearTimeout(timer);
        draw();
      } else if (timer === undefined) {
        timer = setTimeout(draw, wait);
      }
    },
    finish() {
      if (timer !== undefined) clearTimeout(timer);
      if (rows.size) draw();
    },
  };
}

/** The pull progress lines: a bar per layer on a terminal, plain lines otherwise. */
import assert from "node:assert/strict";
import {
  formatBytes,
  formatPlainLine,
  formatProgressLine,
  progressRenderer,
} from "../../core/image/progress.ts";
import type { ProgressEvent } from "../../core/image/registry.ts";

const DIG = "sha256:0123456789abcdef" + "0".repeat(48);
const ev = (p: Partial<ProgressEvent>): ProgressEvent => ({
  digest: DIG,
  kind: "layer",
  state: "downloading",
  done: 0,
  total: 1000,
  ...p,
});

Deno.test("progress: bytes in Docker's decimal units", () => {
  assert.equal(formatBytes(999), "999B");
  assert.equal(formatBytes(1500), "1.50kB");
  assert.equal(formatBytes(12_345_678), "12.3MB");
  assert.equal(formatBytes(123_456_789), "123MB");
});

Deno.test("progress: the terminal line has the short id, a bar and the counts", () => {
  const line = formatProgressLine(ev({ done: 500 }), 80);
  assert.match(line, /^0123456789ab: Downloading \[=+> +\] 500B\/1.00kB$/);
  assert.ok(line.length <= 80);
  assert.equal(
    formatProgressLine(ev({ state: "done", done: 1000 })),
    "0123456789ab: Pull complete",
  );
});

Deno.test("progress: plain mode prints one line per state change", () => {
  const out: string[] = [];
  const r = progressRenderer({ terminal: false, write: (s) => out.push(s) });
  r.onProgress(ev({ state: "waiting" }));
  r.onProgress(ev({ done: 10 }));
  r.onProgress(ev({ done: 20 }));
  r.onProgress(ev({ state: "retrying", done: 20, message: "connection closed" }));
  r.onProgress(ev({ done: 20 }));
  r.onProgress(ev({ state: "done", done: 1000 }));
  r.finish();
  assert.deepEqual(out, [
    "layer 0123456789ab: downloading (1.00kB) from 10B\n",
    "layer 0123456789ab: retrying after 20B: connection closed\n",
    "layer 0123456789ab: downloading (1.00kB) from 20B\n",
    "layer 0123456789ab: done (1.00kB)\n",
  ]);
  assert.equal(formatPlainLine(ev({ state: "exists" })), "layer 0123456789ab: already exists");
});

Deno.test("progress: terminal mode redraws its rows in place", () => {
  const out: string[] = [];
  const r = progressRenderer({
    terminal: true,
    columns: 80,
    intervalMs: 0,
    write: (s) => out.push(s),
  });
  r.onProgress(ev({ done: 100 }));
  r.onProgress(ev({ digest: DIG.replace("0123", "ffff"), done: 0 }));
  r.onProgress(ev({ state: "done", done: 1000 }));
  r.finish();
  const last = out.at(-1)!;
  assert.ok(last.startsWith("\x1b[2A"));
  assert.match(last, /0123456789ab: Pull complete/);
  assert.match(last, /ffff456789ab: Downloading/);
});

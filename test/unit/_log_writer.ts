/**
 * A worker for the log rotation test: writes numbered lines into a json-file log with a
 * tiny max-size as fast as it can, so rotations happen while the test reads, until told
 * to stop; then answers with the count written. `lock: false` rotates without the
 * directory's lock, as the writer does once a reader held it past ROTATE_WAIT_MS.
 */
import { JsonLog } from "../../core/supervisor/logs.ts";
import { openLibc } from "../../core/sys/libc.ts";

const self = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (m: unknown) => void;
};
const enc = new TextEncoder();
let stop = false;
self.onmessage = async (e: MessageEvent) => {
  if (e.data === "stop") {
    stop = true;
    return;
  }
  const { path, maxFile, lock } = e.data as { path: string; maxFile: number; lock: boolean };
  const sys = lock ? openLibc() : undefined;
  const log = new JsonLog(path, { maxSize: 600, maxFile }, () => new Date(), sys);
  let i = 0;
  while (!stop) {
    for (let k = 0; k < 50; k++) log.write("stdout", enc.encode(`n${i++}\n`));
    if (i === 50) self.postMessage("writing");
    // let the stop message in
    await new Promise((r) => setTimeout(r, 0));
  }
  log.close();
  self.postMessage(i);
};

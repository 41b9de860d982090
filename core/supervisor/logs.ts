/**
 * A detached container's logs in Docker's json-file format: one JSON object per line,
 * `{"log":"text\n","stream":"stdout","time":"2026-01-02T03:04:05.678Z"}`, in
 * `ROOT/containers/<id>/<id>-json.log`, rotated at `max-size` into `.1` ... `.N-1`
 * (`max-file` files in all), as Docker's `--log-opt max-size=10m --log-opt max-file=3`.
 *
 * Memory is bounded: a line longer than LINE_MAX is written as partial entries (no newline
 * in "log", as Docker's 16 KiB split), and the supervisor reads the next chunk of a pipe
 * only after the last one is written (pumps.ts), so a container that writes faster than
 * the disk blocks on its full pipe instead of growing micro.
 */
import { MicroError } from "../errors.ts";
import { C, cstr, type Stat, type Sys } from "../sys/mod.ts";

export interface LogOptions {
  /** Bytes before rotation; 0: never rotated. */
  maxSize: number;
  /** Files kept, the current one included (1: truncated at max-size). */
  maxFile: number;
}

/** How long a rotation waits for readers to let go of the log directory's lock. */
export const ROTATE_WAIT_MS = 50;
/** What the rotation waits on between its tries (nothing wakes it: a 1 ms sleep). */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** A partial line longer than this is written as an entry of its own (Docker: 16 KiB). */
export const LINE_MAX = 16 * 1024;

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** `--log-opt KEY=VALUE` (repeatable): max-size and max-file, as Docker's json-file. */
export function parseLogOpts(opts: string[]): LogOptions {
  const out: LogOptions = { maxSize: 0, maxFile: 1 };
  let fileGiven = false;
  for (const o of opts) {
    const eq = o.indexOf("=");
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? "" : o.slice(eq + 1);
    if (key === "max-size") {
      const m = /^(\d+)([bkmg]?)$/i.exec(value);
      if (!m || Number(m[1]) <= 0) {
        throw new MicroError(`option "--log-opt max-size=${value}": not a size`, {
          hint: "give a positive size such as 10m, 512k or 1g",
        });
      }
      out.maxSize = Number(m[1]) * UNITS[m[2].toLowerCase()];
    } else if (key === "max-file") {
      if (!/^\d+$/.test(value) || Number(value) < 1) {
        throw new MicroError(`option "--log-opt max-file=${value}": not a count`, {
          hint: "give a whole number of files, 1 or more",
        });
      }
      out.maxFile = Number(value);
      fileGiven = true;
    } else {
      throw new MicroError(`option "--log-opt ${o}": unknown log option "${key}"`, {
        hint: "micro's json-file logs take max-size=SIZE and max-file=N",
      });
    }
  }
  if (fileGiven && out.maxFile > 1 && out.maxSize === 0) {
    throw new MicroError(`option "--log-opt max-file" needs max-size`, {
      hint: "add --log-opt max-size=10m (as Docker)",
    });
  }
  return out;
}

export function logPath(recordDir: string): string {
  const id = recordDir.slice(recordDir.lastIndexOf("/") + 1);
  return `${recordDir}/${id}-json.log`;
}

const enc = new TextEncoder();

/** One JSON line of the log. */
export function entry(stream: string, text: string, time: Date): string {
  return JSON.stringify({ log: text, stream, time: time.toISOString() }) + "\n";
}

/**
 * The writer: entries appended to the current file, rotated before one would overflow it.
 *
 * Rotation takes the log directory's flock exclusively: a reader (openLogSet) holds it
 * shared while it opens the files, so it never opens some before a rotation and some after.
 * A reader holds it for the few opens only; the writer tries for up to ROTATE_WAIT_MS (one
 * loop serves every container's log: it must not wait on a reader stopped while it holds
 * the lock) and then rotates without it, so max-size always holds; such a reader finds the
 * names moved once it runs again and opens the set anew (openLogSet).
 */
export class JsonLog {
  private file: Deno.FsFile;
  private size: number;
  /** The directory, read-only, for its flock (-1: no Sys given, no lock). */
  private readonly dirFd: number;
  /** The unfinished line of each stream (at most LINE_MAX bytes). */
  private readonly carry = new Map<string, Uint8Array>();
  private readonly decoder = new TextDecoder();

  constructor(
    readonly path: string,
    private readonly opts: LogOptions,
    private clock = () => new Date(),
    private readonly sys?: Sys,
  ) {
    this.file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
    this.size = this.file.statSync().size;
    this.dirFd = sys ? openLogDir(sys, path.slice(0, path.lastIndexOf("/")) || "/") : -1;
  }

  /**
   * Appends a chunk of `stream`'s bytes, on the calling thread: the supervisor's one loop
   * writes every container's logs, and an async write would hold a thread of Deno's small
   * blocking pool per container.
   */
  write(stream: string, chunk: Uint8Array): void {
    this.append(this.split(stream, chunk));
  }

  /** What is left of each stream's last line, as partial entries (at the end). */
  flush(): void {
    const lines: string[] = [];
    for (const [stream, rest] of this.carry) {
      if (rest.length) lines.push(entry(stream, this.decoder.decode(rest), this.clock()));
    }
    this.carry.clear();
    this.append(lines);
  }

  private split(stream: string, chunk: Uint8Array): string[] {
    const out: string[] = [];
    const time = this.clock();
    let rest: Uint8Array = this.carry.get(stream) ?? new Uint8Array(0);
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(10, from);
      const end = nl < 0 ? chunk.length : nl + 1;
      const piece = chunk.subarray(from, end);
      const joined = rest.length ? concat(rest, piece) : piece;
      if (nl < 0) {
        // An unfinished line waits for its end, up to LINE_MAX bytes.
        let k = 0;
        while (joined.length - k >= LINE_MAX) {
          out.push(entry(stream, this.decoder.decode(joined.subarray(k, k + LINE_MAX)), time));
          k += LINE_MAX;
        }
        rest = joined.slice(k);
        break;
      }
      for (let k = 0; k < joined.length; k += LINE_MAX) {
        out.push(entry(stream, this.decoder.decode(joined.subarray(k, k + LINE_MAX)), time));
      }
      rest = new Uint8Array(0);
      from = end;
      if (from >= chunk.length) break;
    }
    this.carry.set(stream, rest);
    return out;
  }

  /** The lines in as few writes as rotation allows (one per chunk read, mostly). */
  private append(lines: string[]): void {
    let batch = "";
    let batchSize = 0;
    // A rotation that failed (no room for a new file) is tried again at the next chunk.
    let failed = false;
    const out = () => {
      if (!batchSize) return;
      const bytes = enc.encode(batch);
      for (let off = 0; off < bytes.length;) off += this.file.writeSync(bytes.subarray(off));
      this.size += bytes.length;
      batch = "";
      batchSize = 0;
    };
    for (const line of lines) {
      const n = enc.encode(line).length;
      const size = this.size + batchSize;
      if (!failed && this.opts.maxSize > 0 && size > 0 && size + n > this.opts.maxSize) {
        out();
        failed = !this.rotate();
      }
      batch += line;
      batchSize += n;
    }
    out();
  }

  /**
   * path.N-2 → path.N-1, ..., path → path.1, and a new empty path; with max-file=1 a new
   * empty file renamed over path (not truncated in place: a reader keeps what it opened).
   * Under the directory's lock (see the class); false when it could not be done.
   */
  private rotate(): boolean {
    let locked = false;
    if (this.dirFd >= 0) {
      // performance.now(): a wall clock stepped back does not lengthen the wait.
      for (const until = performance.now() + ROTATE_WAIT_MS;;) {
        locked = this.sys!.flock(this.dirFd, C.LOCK_EX | C.LOCK_NB) === 0;
        if (locked || performance.now() >= until) break;
        // Asleep, not spinning: on a busy host the reader holding the lock needs a CPU to
        // finish its opens (a spin that took it made the rotation go ahead without the lock,
        // and the reader see two moments).
        Atomics.wait(PAUSE, 0, 0, 1);
      }
    }
    try {
      // The full file stays open until its successor is: a disk that has no room for a new
      // file keeps the log going in the full one (rotated again at the next write).
      const n = this.opts.maxFile;
      for (let k = n - 1; k >= 1; k--) {
        const from = k === 1 ? this.path : `${this.path}.${k - 1}`;
        try {
          Deno.renameSync(from, `${this.path}.${k}`);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
      if (n === 1) {
        const fresh = `${this.path}.new`;
        Deno.openSync(fresh, { write: true, create: true, truncate: true, mode: 0o600 }).close();
        Deno.renameSync(fresh, this.path);
      }
      const next = Deno.openSync(this.path, { append: true, create: true, mode: 0o600 });
      this.file.close();
      this.file = next;
      this.size = 0;
      return true;
    } catch {
      return false;
    } finally {
      if (locked) this.sys!.flock(this.dirFd, C.LOCK_UN);
    }
  }

  close(): void {
    try {
      this.flush();
    } finally {
      try {
        this.file.close();
      } finally {
        if (this.dirFd >= 0) this.sys!.close(this.dirFd);
      }
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** An entry read back. */
export interface LogEntry {
  log: string;
  stream: string;
  time: string;
}

/** The files of a log, oldest first (the rotated ones, then the current one). */
export function logFiles(path: string): string[] {
  const rotated: [number, string][] = [];
  const dir = path.slice(0, path.lastIndexOf("/"));
  const base = path.slice(path.lastIndexOf("/") + 1);
  try {
    for (const e of Deno.readDirSync(dir)) {
      const m = e.isFile && e.name.startsWith(base + ".")
        ? /^\.(\d+)$/.exec(e.name.slice(base.length))
        : null;
      if (m) rotated.push([Number(m[1]), `${dir}/${e.name}`]);
    }
  } catch { /* no directory: no logs */ }
  rotated.sort((a, b) => b[0] - a[0]);
  return [...rotated.map(([, p]) => p), path];
}

/** Parses one line of a log file; null for a line that is not an entry. */
export function parseEntry(line: string): LogEntry | null {
  try {
    const e = JSON.parse(line);
    if (typeof e?.log !== "string" || typeof e.stream !== "string" || typeof e.time !== "string") {
      return null;
    }
    return e as LogEntry;
  } catch {
    return null;
  }
}

/**
 * Reads a file from `offset` in chunks, calling `each` per complete line; returns the
 * offset after the last complete line (a line being written is read again next time).
 */
export function readLines(file: Deno.FsFile, offset: number, each: (line: string) => void): number {
  const buf = new Uint8Array(65536);
  const dec = new TextDecoder();
  let carry: Uint8Array = new Uint8Array(0);
  let pos = offset;
  let done = offset;
  file.seekSync(offset, Deno.SeekMode.Start);
  for (;;) {
    const n = file.readSync(buf);
    if (n === null || n === 0) break;
    pos += n;
    let data: Uint8Array = carry.length ? concat(carry, buf.subarray(0, n)) : buf.subarray(0, n);
    let from = 0;
    for (;;) {
      const nl = data.indexOf(10, from);
      if (nl < 0) break;
      each(dec.decode(data.subarray(from, nl)));
      from = nl + 1;
    }
    done = pos - (data.length - from);
    data = data.slice(from);
    // A line longer than a megabyte is no entry of ours: skipped.
    carry = data.length > 1 << 20 ? new Uint8Array(0) : data;
  }
  return done;
}

/**
 * The log file `name` in the directory `dirFd` as an O_PATH fd: the name right in that
 * directory (no link followed, nothing above), and only a regular file (a FIFO there
 * would block `micro logs`, a link would read whatever it points at). -1 when it is not
 * there or is not a regular file.
 */
function findLog(sys: Sys, dirFd: number, name: string): number {
  const resolve = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
  const fd = sys.openat2(dirFd, cstr(name), C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0, resolve);
  if (fd < 0) return -1;
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  if (sys.fstat(fd, st) < 0 || (st.mode & C.S_IFMT) !== C.S_IFREG) {
    sys.close(fd);
    return -1;
  }
  return fd;
}

/**
 * The log file `name` in `dirFd` (findLog), opened once for reading: the O_PATH fd checked
 * is reopened through /proc/self/fd, the very file checked, never a name looked up again.
 * null when it is not there or is not a regular file.
 */
export function openLog(sys: Sys, dirFd: number, name: string): Deno.FsFile | null {
  const fd = findLog(sys, dirFd, name);
  if (fd < 0) return null;
  try {
    return Deno.openSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  } finally {
    sys.close(fd);
  }
}

/** The inode that `name` in `dirFd` is now (findLog); -1 for none. */
function logIno(sys: Sys, dirFd: number, name: string): number {
  const fd = findLog(sys, dirFd, name);
  if (fd < 0) return -1;
  const id = new Float64Array(2);
  try {
    return sys.fstatId(fd, id) < 0 ? -2 : id[1];
  } finally {
    sys.close(fd);
  }
}

/** How many times openLogSet opens the set again when a rotation moved it meanwhile. */
export const SNAPSHOT_TRIES = 20;

/**
 * Every file of the log `base` in `dirFd` (openLogDir), oldest first: `.maxFile-1` ... `.1`
 * and the current one, one moment's. Opened one by one while a rotation happens, the set
 * mixed two moments: the rotated file read before it and the new, empty current one after
 * it made `logs --tail 1` print a line older than one printed seconds before.
 *
 * So each name is looked up again once all are open, and the set opened again when any
 * is another file now (a rotation renames every name forward, and the fds held keep their
 * inodes from reuse, so names unchanged mean no rotation in between), or when the set is
 * one a rotation leaves halfway (whole). The directory's shared flock, which the writer
 * takes exclusively to rotate (JsonLog), makes a retry rare; it cannot be relied on alone:
 * the writer waits only ROTATE_WAIT_MS for it (one loop serves every container's log), and
 * a reader on a busy host can be off its CPU longer than that while it holds it. The fds
 * keep what they opened after the lock.
 */
export function openLogSet(sys: Sys, dirFd: number, base: string, maxFile: number): Deno.FsFile[] {
  const names: string[] = [];
  for (let k = Math.max(1, maxFile) - 1; k >= 0; k--) names.push(k ? `${base}.${k}` : base);
  for (let tries = 1;; tries++) {
    const files: (Deno.FsFile | null)[] = [];
    let still = false;
    let gapless = false;
    const locked = sys.flock(dirFd, C.LOCK_SH) === 0;
    try {
      for (const name of names) files.push(openLog(sys, dirFd, name));
      // Looked up again before the lock is let go: a writer that takes it cannot rotate
      // between the opens and the looks.
      gapless = whole(files);
      still = unmoved(sys, dirFd, names, files);
    } catch (e) {
      for (const f of files) f?.close();
      throw e;
    } finally {
      if (locked) sys.flock(dirFd, C.LOCK_UN);
    }
    const opened = files.filter((f): f is Deno.FsFile => f !== null);
    // The last try keeps what it has: a log rotated this fast is read as it was. A gap that
    // stays (a file removed by hand, or a rotation that once had no room for its new file)
    // is one too, after a few tries: a rotation's own gap lasts microseconds.
    if (still && (gapless || tries >= GAP_TRIES) || tries >= SNAPSHOT_TRIES) return opened;
    for (const f of opened) f.close();
    // a rotation under way: let it finish
    sys.sleep(1);
  }
}

/** How many times openLogSet opens a set with a gap again before it reads it as it is. */
const GAP_TRIES = 3;

/**
 * No file missing between two that are there, nor the current one while a rotated one is:
 * what a rotation makes halfway (its renames done one by one, the new current file made
 * last). A log with no file at all (none written yet) is whole.
 */
function whole(files: (Deno.FsFile | null)[]): boolean {
  const first = files.findIndex((f) => f !== null);
  return first < 0 || files.slice(first).every((f) => f !== null);
}

/** Every name still the file opened for it (or still none). */
function unmoved(sys: Sys, dirFd: number, names: string[], files: (Deno.FsFile | null)[]) {
  return names.every((name, i) => logIno(sys, dirFd, name) === (files[i]?.statSync().ino ?? -1));
}

/**
 * Where `logs -f` is: the file it reads, held open (its inode cannot be reused while it is,
 * and what is left in it stays readable after it is rotated out), and the offset read.
 */
export interface FollowPos {
  file: Deno.FsFile | null;
  ino: number;
  offset: number;
}

/** Nothing read yet. */
export const START: FollowPos = { file: null, ino: -1, offset: 0 };

/**
 * One look of `micro logs` (the first from `START`, then each of `-f`'s): every whole line
 * written since `pos`, oldest first, across any number of rotations. The set is one
 * moment's (openLogSet); the file that is `pos`'s is read from `pos.offset` (from
 * `pos.file` itself when it is no longer kept), the newer ones whole. The returned position holds the newest file open; `pos.file` is closed
 * when it is not that one.
 */
export function followStep(
  sys: Sys,
  dirFd: number,
  base: string,
  maxFile: number,
  pos: FollowPos,
  each: (line: string) => void,
): FollowPos {
  const files = openLogSet(sys, dirFd, base, maxFile);
  let next = pos;
  try {
    const inos = files.map((f) => f.statSync().ino ?? -1);
    const at = pos.file ? inos.indexOf(pos.ino) : -1;
    if (pos.file && at < 0 && files.length) readLines(pos.file, pos.offset, each);
    for (let k = Math.max(at, 0); k < files.length; k++) {
      const offset = readLines(files[k], k === at ? pos.offset : 0, each);
      next = { file: files[k], ino: inos[k], offset };
    }
  } finally {
    for (const f of files) if (f !== next.file) f.close();
    if (pos.file && pos.file !== next.file) pos.file.close();
  }
  return next;
}

/**
 * The directory `dir`, read-only (an O_PATH fd cannot be flocked), for openLog and the
 * rotation lock; -errno when it cannot be opened.
 */
export function openLogDir(sys: Sys, dir: string): number {
  return sys.open(cstr(dir), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
}

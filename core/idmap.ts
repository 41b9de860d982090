/**
 * Rootless id maps, as podman makes them: container root is the caller, container ids 1..N
 * are the caller's subordinate ids from /etc/subuid and /etc/subgid, and the setuid helpers
 * newuidmap/newgidmap (Debian's `uidmap`) write the maps, since only they may map ids the
 * caller does not own. Without a range or without the helpers, the caller alone is mapped.
 *
 * Parsing and building maps is pure; `probeRootlessIds` is the only I/O (the host probe and
 * the store call it), reading the host files with the bounded regular-file reader.
 */
import { ACCOUNTS_CAP, FileRefused, readRegularFile } from "./files.ts";
import type { HostInfo } from "./plugin.ts";
import { hasNamespace, type IdMapping, type Spec } from "./spec.ts";
import { C, cstr, type Stat, type Sys } from "./sys/mod.ts";

export interface IdRange {
  start: number;
  count: number;
}

/** What a non-root caller may map: its subordinate ranges and the helpers that map them. */
export interface RootlessIds {
  /** The caller's name in the host's /etc/passwd ("" when it has none). */
  user: string;
  /** The caller's primary gid in /etc/passwd (newgidmap maps only that one outside a range). */
  passwdGid?: number;
  subuid: IdRange[];
  subgid: IdRange[];
  /** Paths of the setuid-root helpers; absent when not installed so. */
  newuidmap?: string;
  newgidmap?: string;
}

/** The ids mapped by default above container root, as podman: 65536. */
export const ROOTLESS_SIZE = 65536;

/** The kernel takes at most 340 lines in a uid_map (Linux 4.15+). */
const MAX_EXTENTS = 340;

/** The highest valid id: (uid_t)-1 is "no id". */
const MAX_ID = 4294967294;

/**
 * The ranges of `name` (or of the numeric `uid`) in the text of /etc/subuid or /etc/subgid,
 * in file order. shadow-utils' format, `owner:start:count`, one per line; an owner is a user
 * name or a decimal uid. Lines that do not parse (comments, blanks, bad numbers, a count of 0,
 * a range past the last id) are skipped, as shadow-utils skips them.
 */
export function parseSubids(text: string, name: string, uid: number): IdRange[] {
  const out: IdRange[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length !== 3 || !/^[0-9]{1,10}$/.test(f[1]) || !/^[0-9]{1,10}$/.test(f[2])) continue;
    if (f[0] !== String(uid) && (f[0] === "" || f[0] !== name)) continue;
    const start = Number(f[1]);
    const count = Number(f[2]);
    if (count === 0 || start + count - 1 > MAX_ID) continue;
    out.push({ start, count });
  }
  return out;
}

/**
 * The id map of a rootless run: `0 <own> 1`, then container ids from 1 over `ranges` in
 * order until `size` ids are mapped. The caller's own id is cut out of a range that holds it
 * (the kernel refuses overlapping lines); at most 340 lines.
 */
export function buildMap(own: number, ranges: IdRange[], size: number): IdMapping[] {
  const map: IdMapping[] = [{ containerID: 0, hostID: own, size: 1 }];
  let next = 1;
  let left = size;
  const pieces = ranges.flatMap((r) =>
    own >= r.start && own < r.start + r.count
      ? [
        { start: r.start, count: own - r.start },
        { start: own + 1, count: r.start + r.count - own - 1 },
      ].filter((p) => p.count > 0)
      : [r]
  );
  for (const p of pieces) {
    if (left <= 0 || map.length >= MAX_EXTENTS) break;
    const n = Math.min(p.count, left);
    map.push({ containerID: next, hostID: p.start, size: n });
    next += n;
    left -= n;
  }
  return map;
}

/** The maps for a rootless caller, or why only the caller's own ids can be mapped. */
export type RootlessMaps =
  | { uid: IdMapping[]; gid: IdMapping[]; helpers: { newuidmap: string; newgidmap: string } }
  | { reason: string };

/**
 * The rootless maps for `uid`/`gid` given what the probe found; `size` ids above root
 * (the user plugin's `size`, default 65536).
 */
export function rootlessMaps(
  uid: number,
  gid: number,
  ids: RootlessIds | undefined,
  size = ROOTLESS_SIZE,
): RootlessMaps {
  if (!ids) return { reason: "the subordinate ids were not probed" };
  const who = ids.user ? `"${ids.user}"` : `uid ${uid}`;
  const missing = [
    ids.subuid.length ? "" : "/etc/subuid",
    ids.subgid.length ? "" : "/etc/subgid",
  ].filter((x) => x);
  if (missing.length) return { reason: `no range for ${who} in ${missing.join(" and ")}` };
  if (!ids.newuidmap || !ids.newgidmap) {
    const which = [ids.newuidmap ? "" : "newuidmap", ids.newgidmap ? "" : "newgidmap"]
      .filter((x) => x).join(" and ");
    return { reason: `${which} not found (installed by root) in PATH or /usr/bin` };
  }
  return {
    uid: buildMap(uid, ids.subuid, size),
    gid: buildMap(gid, ids.subgid, size),
    helpers: { newuidmap: ids.newuidmap, newgidmap: ids.newgidmap },
  };
}

/** The one-line warning for a rootless run that maps only the caller. */
export function singleIdWarning(reason: string): string {
  return `only your own uid and gid are mapped (${reason}): files of other owners show as ` +
    "nobody and --user must be root; add ranges to /etc/subuid and /etc/subgid and install " +
    "newuidmap and newgidmap (Debian: uidmap), as for podman";
}

/** A map as uid_map text (and as newuidmap's arguments, space separated). */
export function mapText(map: IdMapping[]): string {
  return map.map((m) => `${m.containerID} ${m.hostID} ${m.size}`).join(" ");
}

/** The host id of container id `id` under `map`, or undefined when it is not mapped. */
export function hostIdOf(map: IdMapping[], id: number): number | undefined {
  for (const m of map) {
    if (id >= m.containerID && id < m.containerID + m.size) return m.hostID + id - m.containerID;
  }
  return undefined;
}

/** How many container ids from 0 up are mapped without a gap. */
export function mappedCount(map: IdMapping[]): number {
  let n = 0;
  for (;;) {
    const m = map.find((x) => n >= x.containerID && n < x.containerID + x.size);
    if (!m) return n;
    n = m.containerID + m.size;
  }
}

/** The name and primary gid of `uid` in the text of /etc/passwd. */
export function passwdEntry(text: string, uid: number): { name: string; gid: number } | null {
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 4 && f[2] === String(uid) && /^[0-9]+$/.test(f[3])) {
      return { name: f[0], gid: Number(f[3]) };
    }
  }
  return null;
}

/**
 * A helper installed by root: a regular file owned by root that others may run. Its
 * privilege is setuid root (Debian) or file capabilities (Fedora); without either it fails
 * when it writes the map, and says so.
 */
function rootHelper(sys: Sys, path: string): boolean {
  const fd = sys.open(cstr(path), C.O_PATH | C.O_CLOEXEC, 0);
  if (fd < 0) return false;
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  const rc = sys.fstat(fd, st);
  sys.close(fd);
  return rc >= 0 && (st.mode & C.S_IFMT) === C.S_IFREG && st.uid === 0 && (st.mode & 0o001) !== 0;
}

/** The first root-installed `name` in PATH's absolute directories, else in /usr/bin. */
export function findHelper(
  sys: Sys,
  name: string,
  path = Deno.env.get("PATH") ?? "",
): string | undefined {
  const dirs = [...path.split(":").filter((d) => d.startsWith("/")), "/usr/bin"];
  for (const d of dirs) {
    const p = `${d.replace(/\/+$/, "")}/${name}`;
    if (rootHelper(sys, p)) return p;
  }
  return undefined;
}

/** Where the host files are (tests point them at their own). */
export interface IdFiles {
  passwd?: string;
  subuid?: string;
  subgid?: string;
  path?: string;
}

/**
 * What the caller `uid` may map: its name (host /etc/passwd), its ranges in /etc/subuid and
 * /etc/subgid (missing files: none), and the helpers. Each file is read as a regular file
 * of at most 1 MiB; a file that is something else is treated as having no range for it.
 */
export function probeRootlessIds(sys: Sys, uid: number, files: IdFiles = {}): RootlessIds {
  const read = (f: string) => {
    try {
      return readRegularFile(sys, f, ACCOUNTS_CAP);
    } catch (e) {
      if (e instanceof FileRefused) return "";
      throw e;
    }
  };
  const entry = passwdEntry(read(files.passwd ?? "/etc/passwd"), uid);
  const user = entry?.name ?? "";
  const ids: RootlessIds = {
    user,
    subuid: parseSubids(read(files.subuid ?? "/etc/subuid"), user, uid),
    subgid: parseSubids(read(files.subgid ?? "/etc/subgid"), user, uid),
  };
  if (entry) ids.passwdGid = entry.gid;
  if (ids.subuid.length && ids.subgid.length) {
    const u = findHelper(sys, "newuidmap", files.path);
    const g = findHelper(sys, "newgidmap", files.path);
    if (u) ids.newuidmap = u;
    if (g) ids.newgidmap = g;
  }
  return ids;
}

/**
 * For unpacking layers rootless (the store): the maps a rootless run of `uid`/`gid` uses,
 * so layer owners land where the container will see them (container id N → the host id
 * the map gives); null when only the caller can be mapped (then squash to the caller,
 * and warn once with `singleIdWarning(reason)`).
 */
export function rootlessIdMap(
  sys: Sys,
  uid = Deno.uid() ?? 0,
  gid = Deno.gid() ?? 0,
  size = ROOTLESS_SIZE,
  files: IdFiles = {},
): RootlessIdMap | { reason: string } {
  const maps = rootlessMaps(uid, gid, probeRootlessIds(sys, uid, files), size);
  if ("reason" in maps) return maps;
  return { ...maps, size: Math.min(mappedCount(maps.uid), mappedCount(maps.gid)) };
}

/** A rootless run's maps, their helpers, and how many ids from 0 are mapped. */
export interface RootlessIdMap {
  uid: IdMapping[];
  gid: IdMapping[];
  helpers: { newuidmap: string; newgidmap: string };
  size: number;
}

/**
 * The maps of a run whose caller is not root, in a user namespace, without maps of its own:
 * the helpers' maps, or the reason only the caller is mapped. null for any other run.
 */
export function runRootlessMaps(spec: Spec, host: HostInfo): RootlessMaps | null {
  if (host.uid === 0 || !hasNamespace(spec, "user") || spec.linux.uidMappings.length) return null;
  return rootlessMaps(host.uid, host.gid, host.rootlessIds, spec.micro.userSize ?? ROOTLESS_SIZE);
}

/** Whether the run's user namespace maps only the caller (setgroups denied, root only). */
export function mapsOnlyCaller(spec: Spec, host: HostInfo): boolean {
  if (host.uid === 0 || !hasNamespace(spec, "user")) return false;
  const maps = runRootlessMaps(spec, host);
  return maps === null || "reason" in maps;
}

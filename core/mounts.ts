/**
 * Docker's spellings of mounts, shared by the flags (`-v`, `--tmpfs`, `--mount`) and the
 * profile keys that mean the same (`mount.binds`, `mount.tmpfs`, `mount.mounts`), so a
 * flag and its profile form always become the same spec entry. Pure: no I/O.
 */
import { parseSize } from "./cgroups/units.ts";
import { cleanPath } from "./paths.ts";
import type { MountFlag } from "./ops.ts";
import type { Mount } from "./spec.ts";

/**
 * The mount options that are flags (runc's parseMountOptions): what each sets, what each
 * clears. The r- forms (`rro`, `rnosuid`...) mean the same as the plain ones: micro gives a
 * bind's flags to every mount below it too (mount_setattr AT_RECURSIVE), and a new file
 * system has nothing below it yet.
 */
const FLAG_TABLE: [names: string[], flag: MountFlag, on: boolean][] = [
  [["ro", "rro"], "MS_RDONLY", true],
  [["rw", "rrw"], "MS_RDONLY", false],
  [["nosuid", "rnosuid"], "MS_NOSUID", true],
  [["suid", "rsuid"], "MS_NOSUID", false],
  [["nodev", "rnodev"], "MS_NODEV", true],
  [["dev", "rdev"], "MS_NODEV", false],
  [["noexec", "rnoexec"], "MS_NOEXEC", true],
  [["exec", "rexec"], "MS_NOEXEC", false],
  [["noatime", "rnoatime"], "MS_NOATIME", true],
  [["atime", "ratime"], "MS_NOATIME", false],
  [["nodiratime", "rnodiratime"], "MS_NODIRATIME", true],
  [["diratime", "rdiratime"], "MS_NODIRATIME", false],
  [["relatime", "rrelatime"], "MS_RELATIME", true],
  [["norelatime", "rnorelatime"], "MS_RELATIME", false],
  [["strictatime", "rstrictatime"], "MS_STRICTATIME", true],
  [["nostrictatime", "rnostrictatime"], "MS_STRICTATIME", false],
  [["nosymfollow", "rnosymfollow"], "MS_NOSYMFOLLOW", true],
  [["symfollow", "rsymfollow"], "MS_NOSYMFOLLOW", false],
  [["sync"], "MS_SYNCHRONOUS", true],
  [["async"], "MS_SYNCHRONOUS", false],
  [["dirsync"], "MS_DIRSYNC", true],
  [["mand"], "MS_MANDLOCK", true],
  [["nomand"], "MS_MANDLOCK", false],
  [["lazytime"], "MS_LAZYTIME", true],
  [["nolazytime"], "MS_LAZYTIME", false],
  [["iversion"], "MS_I_VERSION", true],
  [["noiversion"], "MS_I_VERSION", false],
  [["silent"], "MS_SILENT", true],
  [["loud"], "MS_SILENT", false],
  [["bind"], "MS_BIND", true],
];
const FLAG_OPTIONS = new Map<string, [MountFlag, boolean]>();
for (const [names, flag, on] of FLAG_TABLE) for (const n of names) FLAG_OPTIONS.set(n, [flag, on]);

/**
 * Propagation options, applied once the mount is attached. `private` and `rprivate` are
 * what every mount in the container already is (its root is made rprivate first), so they
 * cost no call.
 */
const PROPAGATION: Record<string, MountFlag[]> = {
  shared: ["MS_SHARED"],
  rshared: ["MS_SHARED", "MS_REC"],
  slave: ["MS_SLAVE"],
  rslave: ["MS_SLAVE", "MS_REC"],
  unbindable: ["MS_UNBINDABLE"],
  runbindable: ["MS_UNBINDABLE", "MS_REC"],
  private: [],
  rprivate: [],
};

/** Whether `o` is a mount option micro applies as a flag or a propagation. */
export function isFlagOption(o: string): boolean {
  return FLAG_OPTIONS.has(o) || o in PROPAGATION || o === "rbind" || o === "defaults";
}

/** Mount options that hold for the whole file system, not for one mount of it. */
export const SUPERBLOCK_OPTIONS = new Set([
  "sync",
  "dirsync",
  "mand",
  "lazytime",
  "iversion",
  "silent",
]);

/**
 * OCI (and Docker) mount options → the mount's flags, its propagation and the data string
 * the file system gets (what is not a flag). Later options win over earlier ones, as with
 * mount(8).
 */
export function splitMountOptions(
  options: readonly string[],
): { flags: MountFlag[]; propagation: MountFlag[]; data: string[] } {
  const on = new Set<MountFlag>();
  let propagation: MountFlag[] = [];
  const data: string[] = [];
  for (const o of options) {
    const f = FLAG_OPTIONS.get(o);
    if (f) {
      if (f[1]) on.add(f[0]);
      else on.delete(f[0]);
      // One atime mode: the last one given.
      if (f[1] && ATIME.includes(f[0])) { for (const a of ATIME) if (a !== f[0]) on.delete(a); }
    } else if (o === "rbind") {
      on.add("MS_BIND").add("MS_REC");
    } else if (o in PROPAGATION) {
      propagation = PROPAGATION[o];
    } else if (o !== "defaults") data.push(o);
  }
  return { flags: [...on], propagation, data };
}
const ATIME: MountFlag[] = ["MS_NOATIME", "MS_RELATIME", "MS_STRICTATIME"];

/** Docker's `bind-propagation` values (rprivate, its default, is what every mount is). */
const DOCKER_PROPAGATION = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];

/** A container path: absolute, no `..`, never the root itself. */
export function destReason(v: string): string | undefined {
  if (!v.startsWith("/") || v.split("/").includes("..")) {
    return "must be an absolute path without '..'";
  }
  return cleanPath(v) === "/" ? "a mount on / would replace the container's root" : undefined;
}

/** A volume name, as Docker's: it becomes a directory of micro's store. */
export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** Flags a tmpfs takes, with the option that undoes each (Docker's --tmpfs list). */
const TMPFS_FLAGS: Record<string, [flag: string, on: boolean]> = {
  ro: ["ro", true],
  rw: ["ro", false],
  noexec: ["noexec", true],
  exec: ["noexec", false],
  nosuid: ["nosuid", true],
  suid: ["nosuid", false],
  nodev: ["nodev", true],
  dev: ["nodev", false],
};
const TMPFS_KNOWN = "size, mode, uid, gid, ro, rw, exec, noexec, suid, nosuid, dev, nodev";

/**
 * A tmpfs's options as Docker's `--tmpfs PATH:OPTS` takes them, over `defaults` (Docker's
 * are noexec, nosuid, nodev): size in bytes or with k, m, g; mode in octal (1777 unless
 * given, the kernel's default, made explicit); uid and gid as numbers inside the container.
 */
export function tmpfsOptions(opts: string[], defaults: string[]): string[] | string {
  const flags = new Map<string, boolean>(defaults.map((d) => [d, true]));
  const data: Record<string, string> = { mode: "1777" };
  for (const o of opts) {
    if (o === "") continue;
    const eq = o.indexOf("=");
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? undefined : o.slice(eq + 1);
    if (value === undefined && TMPFS_FLAGS[key]) {
      flags.set(...TMPFS_FLAGS[key]);
      continue;
    }
    switch (value === undefined ? "" : key) {
      case "size": {
        const n = parseSize(value!);
        if (n === undefined || n === 0 || /\./.test(value!)) {
          return `invalid tmpfs size "${value}": expected bytes, or a number with k, m or g`;
        }
        data.size = String(n);
        break;
      }
      case "mode":
        if (!/^[0-7]{1,4}$/.test(value!)) return `invalid tmpfs mode "${value}": expected octal`;
        data.mode = value!.replace(/^0+(?=.)/, "");
        break;
      case "uid":
      case "gid":
        if (!/^\d{1,10}$/.test(value!) || Number(value) > 0xfffffffe) {
          return `invalid tmpfs ${key} "${value}": expected a number`;
        }
        data[key] = String(Number(value));
        break;
      default:
        return `unknown tmpfs option "${o}" (known: ${TMPFS_KNOWN})`;
    }
  }
  const out = ["ro", "nosuid", "nodev", "noexec"].filter((f) => flags.get(f));
  for (const k of ["mode", "size", "uid", "gid"]) if (data[k]) out.push(`${k}=${data[k]}`);
  return out;
}

/** Docker's defaults for `--tmpfs` and `--mount type=tmpfs`. */
export const DOCKER_TMPFS = ["noexec", "nosuid", "nodev"];

/** `PATH[:OPTS]` (Docker's `--tmpfs`) → a tmpfs mount, or the reason it is refused. */
export function parseTmpfs(text: string, defaults = DOCKER_TMPFS): Mount | string {
  const colon = text.indexOf(":");
  const path = colon < 0 ? text : text.slice(0, colon);
  const bad = destReason(path);
  if (bad) return `the container path "${path}": ${bad}`;
  const options = tmpfsOptions(colon < 0 ? [] : text.slice(colon + 1).split(","), defaults);
  if (typeof options === "string") return options;
  return { destination: cleanPath(path), type: "tmpfs", source: "tmpfs", options };
}

/**
 * `HOST:CTR[:ro|rw]` (a bind), `NAME:CTR[:ro|rw]` (a named volume) or `CTR` alone (an
 * anonymous volume), as Docker's `-v`.
 */
export function parseVolumeFlag(v: string): Mount | string {
  const parts = v.split(":");
  if (parts.length > 3) return "a volume is HOST:CONTAINER[:ro|rw], NAME:CONTAINER or CONTAINER";
  if (parts.length === 1) return volumeMount("", parts[0], false);
  const [source, destination, mode = "rw"] = parts;
  if (mode !== "ro" && mode !== "rw") return `the mode "${mode}" must be ro or rw`;
  if (!source.startsWith("/")) return volumeMount(source, destination, mode === "ro");
  return bindMount(source, destination, mode === "ro");
}

function bindMount(source: string, destination: string, ro: boolean): Mount | string {
  if (!source.startsWith("/") || source.split("/").includes("..")) {
    return `the host path "${source}" must be absolute, without '..'`;
  }
  const bad = destReason(destination);
  if (bad) return `the container path "${destination}": ${bad}`;
  return {
    destination: cleanPath(destination),
    type: "bind",
    source,
    options: ro ? ["rbind", "ro"] : ["rbind"],
  };
}

/**
 * A volume: `source` is its name (a directory of micro's store, made on first use), or ""
 * for an anonymous one (a directory of the container's, gone with the container).
 */
function volumeMount(name: string, destination: string, ro: boolean): Mount | string {
  if (name !== "" && !VOLUME_NAME.test(name)) {
    return `invalid volume name "${name}": letters, digits, _ . and -, starting with a ` +
      `letter or digit (a host path must be absolute)`;
  }
  const bad = destReason(destination);
  if (bad) return `the container path "${destination}": ${bad}`;
  return {
    destination: cleanPath(destination),
    type: "volume",
    source: name,
    options: ro ? ["rbind", "ro"] : ["rbind"],
  };
}

const BOOL: Record<string, boolean> = {
  "": true,
  "true": true,
  "1": true,
  false: false,
  "0": false,
};

/**
 * Docker's long form, `type=bind|tmpfs|volume,source=,target=,...` (`src`, `dst`,
 * `destination`, `ro`/`readonly`, `bind-propagation=`, `tmpfs-size=`, `tmpfs-mode=`,
 * `volume-nocopy`). Unknown keys are refused.
 */
export function parseMountFlag(text: string): Mount | string {
  const kv: Record<string, string> = {};
  for (const field of text.split(",")) {
    if (field === "") continue;
    const eq = field.indexOf("=");
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? "" : field.slice(eq + 1);
    const name = ({ src: "source", dst: "target", destination: "target", ro: "readonly" } as Record<
      string,
      string
    >)[key] ?? key;
    if (name in kv) return `"${key}" is given twice`;
    kv[name] = value;
  }
  const type = kv.type ?? "volume";
  const known: Record<string, string[]> = {
    bind: ["type", "source", "target", "readonly", "bind-propagation"],
    volume: ["type", "source", "target", "readonly", "volume-nocopy"],
    tmpfs: ["type", "target", "tmpfs-size", "tmpfs-mode", "readonly"],
  };
  if (!known[type]) return `unknown mount type "${type}" (bind, volume or tmpfs)`;
  for (const k of Object.keys(kv)) {
    if (!known[type].includes(k)) {
      return `unknown key "${k}" for type=${type} (known: ${known[type].join(", ")})`;
    }
  }
  if (!kv.target) return "a mount needs target=PATH (or dst=, destination=)";
  const ro = BOOL[kv.readonly ?? "false"];
  if (ro === undefined) return `readonly takes true or false, got "${kv.readonly}"`;
  if (type === "tmpfs") {
    const opts = [...(ro ? ["ro"] : [])];
    if (kv["tmpfs-size"] !== undefined) opts.push(`size=${kv["tmpfs-size"]}`);
    if (kv["tmpfs-mode"] !== undefined) opts.push(`mode=${kv["tmpfs-mode"]}`);
    return parseTmpfs(`${kv.target}:${opts.join(",")}`);
  }
  if (type === "bind") {
    const p = kv["bind-propagation"];
    if (p !== undefined && !DOCKER_PROPAGATION.includes(p)) {
      return `bind-propagation=${p}: expected one of ${DOCKER_PROPAGATION.join(", ")}`;
    }
    if (!kv.source) return "a bind needs source=HOST_PATH";
    const m = bindMount(kv.source, kv.target, ro);
    return typeof m === "string" || !p ? m : { ...m, options: [...m.options, p] };
  }
  // Nothing is copied into a new volume from the image (volume-nocopy is how micro works).
  if (kv["volume-nocopy"] !== undefined && BOOL[kv["volume-nocopy"]] === undefined) {
    return `volume-nocopy takes true or false, got "${kv["volume-nocopy"]}"`;
  }
  return volumeMount(kv.source ?? "", kv.target, ro);
}

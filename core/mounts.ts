/**
 * Docker's spellings of mounts, shared by the flags (`-v`, `--tmpfs`, `--mount`) and the
 * profile keys that mean the same (`mount.binds`, `mount.tmpfs`, `mount.mounts`), so a
 * flag and its profile form always become the same spec entry. Pure: no I/O.
 */
import { parseSize } from "./cgroups/units.ts";
import { cleanPath } from "./paths.ts";
import type { Mount } from "./spec.ts";

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
    if (p !== undefined && p !== "rprivate" && p !== "private") {
      return `bind-propagation=${p} is not supported: micro makes every mount private ` +
        `(rprivate, as Docker's default)`;
    }
    if (!kv.source) return "a bind needs source=HOST_PATH";
    return bindMount(kv.source, kv.target, ro);
  }
  // Nothing is copied into a new volume from the image (volume-nocopy is how micro works).
  if (kv["volume-nocopy"] !== undefined && BOOL[kv["volume-nocopy"]] === undefined) {
    return `volume-nocopy takes true or false, got "${kv["volume-nocopy"]}"`;
  }
  return volumeMount(kv.source ?? "", kv.target, ro);
}

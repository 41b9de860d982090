/**
 * Profiles: YAML files that choose the plugins and their options (DESIGN.md §1, step 2).
 *
 * A profile has `description`, `extends` (names or paths), `process` (the core's process
 * options) and one section per plugin. A section that is present turns its plugin on unless
 * it says `enabled: false`; an absent section leaves the plugin as the layers below left it
 * (off when no layer names it). Layers merge left to right: maps deep-merge, later wins,
 * lists and scalars are replaced; `KEY+: [...]` appends to the inherited list `KEY`
 * instead, and the command-line layer appends to `mount.binds`, `mount.tmpfs` and the
 * other lists in APPENDED (like Docker's `-v`).
 *
 * Built-in profiles are embedded (`profiles/_embedded.ts`), parsed already: resolving them
 * needs no YAML parser. Files are read only when named, and parsing them needs the `yaml`
 * library, which is loaded on demand (`core/yaml.ts`): `loadYamlFor(refs)` before
 * `resolveProfile(refs)`, `loadYaml()` before `showProfile`.
 */
import { RLIMITS } from "./sys/mod.ts";
import { MicroError, MicroErrors } from "./errors.ts";
import { FileRefused, formatSize, readRegularFile, TEXT_CAP } from "./files.ts";
import { openLibc } from "./sys/libc.ts";
import type { Plugin } from "./plugin.ts";
import { clonePlain, setKey } from "./spec.ts";
import {
  APPEND_SUFFIX,
  isPlainObject,
  issueLine,
  type KeyPath,
  type Locate,
  showValue,
  validate,
} from "./schema.ts";
import type { ObjectSchema, Schema } from "./schema_types.ts";
import { lineAt, type LineTree, loadYaml, type ParsedYaml, parseYaml } from "./yaml.ts";
import { EMBEDDED, EMBEDDED_PARSED } from "../profiles/_embedded.ts";

export { loadYaml };

/** What this module needs of a plugin: its name and the schema of its options. */
export type PluginSchema = Pick<Plugin, "name" | "schema">;

/** The profile used when no `--profile` is given. */
export const DEFAULT_PROFILE = "default";

/** The label of the command-line layer in messages. */
export const COMMAND_LINE = "command line";

/** `unlimited` in a resolved rlimit (RLIM_INFINITY, all ones as an unsigned 64-bit value). */
export const RLIM_INFINITY = -1;

/** The rlimits a profile may set, by their short names (`nofile` is RLIMIT_NOFILE). */
export const RLIMIT_NAMES: readonly string[] = Object.keys(RLIMITS).sort();

export interface Rlimit {
  /** RLIM_INFINITY (-1) for `unlimited`. */
  soft: number;
  hard: number;
}

export interface ProcessOptions {
  env: Record<string, string>;
  /** As written: `1000`, `1000:1000`, `app`, `app:staff`; resolved against the image later. */
  user?: string;
  /** Used when `user` is not set and the image's /etc/passwd has this name. */
  defaultUser?: string;
  /** Supplementary groups, names or numbers, as written. */
  groups: string[];
  cwd?: string;
  noNewPrivileges: boolean;
  /** Run micro's init as PID 1, which runs the command as its child (`--init`). */
  init: boolean;
  /** By short name (`nofile`); the kernel's name is `RLIMIT_` + the name upper-cased. */
  rlimits: Record<string, Rlimit>;
  /** The command's /proc/PID/oom_score_adj (-1000..1000). */
  oomScoreAdj?: number;
}

export interface Section {
  enabled: boolean;
  /** The plugin's options, without `enabled`. */
  options: Record<string, unknown>;
}

export interface ResolvedProfile {
  description?: string;
  process: ProcessOptions;
  /** One entry for every plugin passed in, enabled or not. */
  sections: Record<string, Section>;
}

export interface Resolved {
  profile: ResolvedProfile;
  /** The layers applied, bottom first: `builtin:default`, `./web.yaml`, `command line`. */
  sources: string[];
}

export interface ResolveOptions {
  /**
   * Reads a profile file; the bounded regular-file reader (TEXT_CAP) unless a test passes
   * another.
   */
  readFile?: (path: string) => string;
  /**
   * The built-in profiles, name → YAML; the embedded ones unless a test passes others (only
   * the embedded ones come parsed already).
   */
  builtins?: Record<string, string>;
}

// --- the process section ---------------------------------------------------------------

const ID_PART = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const MAX_ID = 2 ** 32 - 2;

function checkId(part: string): string | undefined {
  if (!ID_PART.test(part)) return "expected a name or a number";
  if (/^[0-9]+$/.test(part) && Number(part) > MAX_ID) return `id is larger than ${MAX_ID}`;
  return undefined;
}

function checkUser(v: string): string | undefined {
  const parts = v.split(":");
  if (parts.length > 2) return "expected UID[:GID] or NAME[:GROUP]";
  for (const p of parts) {
    if (checkId(p)) return "expected UID[:GID] or NAME[:GROUP]";
  }
  return undefined;
}

/** Parses `SOFT[:HARD]` (numbers or `unlimited`); a reason string when it is bad. */
export function parseRlimit(v: string | number): Rlimit | string {
  if (typeof v === "number") return { soft: v, hard: v };
  const parts = v.split(":");
  if (parts.length > 2) return 'expected SOFT[:HARD], each a number or "unlimited"';
  const nums: number[] = [];
  for (const p of parts) {
    if (p === "unlimited") nums.push(RLIM_INFINITY);
    else if (/^[0-9]+$/.test(p) && Number.isSafeInteger(Number(p))) nums.push(Number(p));
    else return 'expected SOFT[:HARD], each a number or "unlimited"';
  }
  const [soft, hard = soft] = nums;
  const big = (n: number) => n === RLIM_INFINITY ? Infinity : n;
  if (big(soft) > big(hard)) return "the soft limit is larger than the hard limit";
  return { soft, hard };
}

function checkRlimit(v: string): string | undefined {
  const r = parseRlimit(v);
  return typeof r === "string" ? r : undefined;
}

const ID_VALUE: Schema = {
  type: "oneOf",
  options: [
    { type: "string", check: checkId },
    { type: "integer", min: 0, max: MAX_ID },
  ],
};

/** The `process` section: options of the container's process, which the core applies. */
export const PROCESS_SCHEMA: ObjectSchema = {
  type: "object",
  doc: "the container's process",
  fields: {
    env: {
      type: "map",
      doc: "environment variables",
      values: { type: "string" },
      keyCheck: (k) =>
        k === "" ? "the name is empty" : k.includes("=") ? 'the name contains "="' : undefined,
    },
    user: {
      type: "oneOf",
      doc: "UID[:GID] or NAME[:GROUP]",
      options: [{ type: "string", check: checkUser }, { type: "integer", min: 0, max: MAX_ID }],
    },
    defaultUser: {
      type: "string",
      doc: "user to run as when no user is given and the image has this name",
      check: checkUser,
    },
    groups: { type: "list", doc: "supplementary groups, names or numbers", items: ID_VALUE },
    cwd: {
      type: "string",
      doc: "working directory",
      check: (v) => v.startsWith("/") ? undefined : "expected an absolute path",
    },
    noNewPrivileges: { type: "boolean", doc: "set no_new_privs before exec" },
    init: {
      type: "boolean",
      doc: "run an init as PID 1 that forwards signals to the command and reaps zombies",
    },
    oomScoreAdj: {
      type: "integer",
      min: -1000,
      max: 1000,
      doc: "the command's oom_score_adj (lowering it needs CAP_SYS_RESOURCE)",
    },
    rlimits: {
      type: "map",
      doc: "resource limits: NAME: SOFT[:HARD] (numbers or unlimited)",
      keyCheck: (k) =>
        RLIMIT_NAMES.includes(k)
          ? undefined
          : `unknown rlimit: expected one of ${RLIMIT_NAMES.map((n) => `"${n}"`).join(", ")}`,
      values: {
        type: "oneOf",
        options: [{ type: "string", check: checkRlimit }, { type: "integer", min: 0 }],
      },
    },
  },
};

/** The schema of a whole profile layer for these plugins. */
export function profileSchema(plugins: readonly PluginSchema[]): ObjectSchema {
  const fields: Record<string, Schema> = {
    description: { type: "string" },
    extends: {
      type: "oneOf",
      options: [{ type: "string" }, { type: "list", items: { type: "string" } }],
    },
    process: PROCESS_SCHEMA,
  };
  for (const p of plugins) {
    fields[p.name] = {
      type: "object",
      doc: p.schema.doc,
      fields: { ...p.schema.fields, enabled: { type: "boolean" } },
    };
  }
  return { type: "object", fields };
}

// --- paths (small, so the binary's start-up does not load node:path) --------------------

/** Normalizes a POSIX path: no `.` segments, `..` folded where it can be. */
export function normalizePath(path: string): string {
  const abs = path.startsWith("/");
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (seg !== ".." || !abs) out.push(seg);
  }
  const body = out.join("/");
  return abs ? `/${body}` : body || ".";
}

function dirname(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function joinPath(dir: string, path: string): string {
  return normalizePath(path.startsWith("/") ? path : `${dir}/${path}`);
}

// --- loading ---------------------------------------------------------------------------

/** A built-in profile is named without a `/` and without a `.yaml`/`.yml` suffix. */
export function isBuiltinName(ref: string): boolean {
  return !ref.includes("/") && !/\.ya?ml$/.test(ref);
}

/** Profile layers accept `KEY+` (append to an inherited list). */
const APPEND = { appendKeys: true };

/** The most profiles one `--profile` may stack through `extends` (itself included). */
export const MAX_EXTENDS_DEPTH = 16;

interface Layer {
  label: string;
  data: Record<string, unknown>;
}

interface Source {
  /** `builtin:NAME` or the path as given (joined to the extending file's directory). */
  label: string;
  /** Identity for cycles and repeats: `builtin:NAME` or the absolute path. */
  id: string;
  /** Directory that relative `extends` paths start from. */
  dir: string;
  text: string;
  /** The text parsed already (JSON of a `ParsedYaml`): the embedded built-ins. */
  parsed?: string;
}

/** The line (1-based) of the node at a key path: the key's line for a map entry. */
function locator(lines: LineTree): Locate {
  return (path: KeyPath) => {
    const line = lineAt(lines, path);
    return line === undefined ? undefined : { line };
  };
}

/** The embedded parse of a built-in (JSON of a `ParsedYaml`), when there is one. */
export function preparsed(builtins: Record<string, string>, name: string): string | undefined {
  return builtins === EMBEDDED && Object.hasOwn(EMBEDDED_PARSED, name)
    ? EMBEDDED_PARSED[name]
    : undefined;
}

function readError(e: unknown): string {
  if (e instanceof FileRefused) {
    return e.errno === undefined
      ? `${e.reason} (give a regular file of at most ${formatSize(TEXT_CAP)})`
      : e.reason;
  }
  if (e instanceof Deno.errors.NotFound) return "no such file";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

class Loader {
  readonly errors: MicroError[] = [];
  readonly layers: Layer[] = [];
  readonly #done = new Set<string>();
  readonly #schema: ObjectSchema;
  readonly #plugins: readonly PluginSchema[];
  readonly #readFile: (path: string) => string;
  readonly #builtins: Record<string, string>;

  constructor(plugins: readonly PluginSchema[], opts: ResolveOptions) {
    this.#plugins = plugins;
    this.#schema = profileSchema(plugins);
    this.#readFile = opts.readFile ?? ((path) => readRegularFile(openLibc(), path, TEXT_CAP));
    this.#builtins = opts.builtins ?? EMBEDDED;
  }

  /**
   * Finds a profile by reference. `from` is the extending profile, or undefined for a
   * `--profile`; `fail` reports a problem in the extending profile's terms.
   */
  find(ref: string, from: Source | undefined, fail: (reason: string) => void): Source | null {
    if (isBuiltinName(ref)) {
      const text = Object.hasOwn(this.#builtins, ref) ? this.#builtins[ref] : undefined;
      if (text === undefined) {
        const known = Object.keys(this.#builtins).sort().map((n) => `"${n}"`).join(", ");
        const what = from
          ? `unknown built-in profile ${showValue(ref)}`
          : "no such built-in profile";
        fail(`${what}: expected one of ${known}`);
        return null;
      }
      const parsed = preparsed(this.#builtins, ref);
      return { label: `builtin:${ref}`, id: `builtin:${ref}`, dir: ".", text, parsed };
    }
    const label = from ? joinPath(from.dir, ref) : ref;
    try {
      const text = this.#readFile(label);
      return { label, id: joinPath(Deno.cwd(), label), dir: dirname(label), text };
    } catch (e) {
      fail(from ? `cannot read ${showValue(label)}: ${readError(e)}` : readError(e));
      return null;
    }
  }

  /** Loads a profile and what it extends, depth first, each profile once. */
  load(src: Source, chain: Source[]): void {
    if (this.#done.has(src.id)) return;
    const label = `profile ${src.label}`;
    const parsed: ParsedYaml = src.parsed !== undefined
      ? JSON.parse(src.parsed)
      : parseYaml(src.text);
    if ("errors" in parsed) {
      for (const { line, reason } of parsed.errors) {
        this.errors.push(new MicroError(`${label} (line ${line}): invalid yaml: ${reason}`));
      }
      this.#done.add(src.id);
      return;
    }
    const locate = locator(parsed.lines);
    let data: unknown = parsed.data;
    if (data === null || data === undefined) data = {};
    if (isPlainObject(data)) data = this.#normalize(data);
    const found = validate(data, this.#schema, label, locate, [], APPEND);
    this.errors.push(...found);
    if (!isPlainObject(data)) {
      this.#done.add(src.id);
      return;
    }

    const ext = data.extends;
    const refs = typeof ext === "string" ? [ext] : Array.isArray(ext) ? ext : [];
    refs.forEach((ref, i) => {
      if (typeof ref !== "string") return;
      const at: KeyPath = typeof ext === "string" ? ["extends"] : ["extends", i];
      const fail = (reason: string) =>
        this.errors.push(new MicroError(issueLine(label, { path: at, reason }, locate)));
      const next = this.find(ref, src, fail);
      if (!next) return;
      const loop = [...chain, src].findIndex((s) => s.id === next.id);
      if (loop >= 0) {
        const names = [...chain, src].slice(loop).map((s) => s.label);
        fail(`cycle: ${[...names, next.label].join(" -> ")}`);
        return;
      }
      if (chain.length + 2 > MAX_EXTENDS_DEPTH) {
        const names = [...chain, src, next].map((s) => s.label);
        fail(
          `extends too deep: more than ${MAX_EXTENDS_DEPTH} profiles in a chain ` +
            `(${names[0]} -> ... -> ${names[names.length - 1]}): flatten some of them`,
        );
        return;
      }
      this.load(next, [...chain, src]);
    });
    this.#done.add(src.id);
    if (found.length === 0) this.layers.push({ label: src.label, data });
  }

  /** The command-line layer: validated like a profile, with no lines. */
  addFlags(layer: Record<string, unknown>): void {
    const data = this.#normalize(layer);
    const found = validate(data, this.#schema, COMMAND_LINE, undefined, [], APPEND);
    this.errors.push(...found);
    if (found.length === 0) this.layers.push({ label: COMMAND_LINE, data });
  }

  /** An empty plugin section (`pid:`) is an enabled one; `enabled` defaults to true. */
  #normalize(data: Record<string, unknown>): Record<string, unknown> {
    const out = { ...data };
    for (const p of this.#plugins) {
      if (!Object.hasOwn(out, p.name)) continue;
      const section = out[p.name] ?? {};
      out[p.name] = isPlainObject(section)
        ? Object.hasOwn(section, "enabled") ? { ...section } : { ...section, enabled: true }
        : section;
    }
    if (out.process === null) out.process = {};
    return out;
  }
}

// --- merging ---------------------------------------------------------------------------

/** Lists the command-line layer appends to instead of replacing. */
const APPENDED = new Set([
  "mount.binds",
  "mount.tmpfs",
  "caps.add",
  "caps.drop",
  "cgroups.devices",
  "cgroups.deviceReadBps",
  "cgroups.deviceWriteBps",
  "cgroups.deviceReadIops",
  "cgroups.deviceWriteIops",
]);

/**
 * Deep-merges `over` onto `base`: maps merge, later wins; lists and scalars replace, except
 * that `KEY+: [...]` appends to the list `KEY` of `base` (validation allows `KEY+` only
 * beside a list field, so a key ending with `+` whose value is a list is always an append)
 * and that the lists named in `append` are appended to as well.
 */
export function mergeLayers(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
  append: ReadonlySet<string> = new Set(),
  path = "",
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, v] of Object.entries(over)) {
    const adds = key.length > 1 && key.endsWith(APPEND_SUFFIX) && Array.isArray(v);
    const k = adds ? key.slice(0, -APPEND_SUFFIX.length) : key;
    const at = path ? `${path}.${k}` : k;
    const old = Object.hasOwn(out, k) ? out[k] : undefined;
    let merged: unknown;
    // A map replacing nothing (or a scalar) is still walked, so its own `KEY+` lists land.
    if (isPlainObject(v)) merged = mergeLayers(isPlainObject(old) ? old : {}, v, append, at);
    else if (Array.isArray(old) && Array.isArray(v) && (adds || append.has(at))) {
      merged = [...old, ...clonePlain(v)];
    } else merged = clonePlain(v);
    setKey(out, k, merged);
  }
  return out;
}

function toProcess(raw: unknown): ProcessOptions {
  const p = isPlainObject(raw) ? raw : {};
  const rlimits: Record<string, Rlimit> = {};
  for (const [name, v] of Object.entries((p.rlimits ?? {}) as Record<string, string | number>)) {
    rlimits[name] = parseRlimit(v) as Rlimit;
  }
  const out: ProcessOptions = {
    env: { ...(p.env ?? {}) as Record<string, string> },
    groups: ((p.groups ?? []) as (string | number)[]).map(String),
    noNewPrivileges: p.noNewPrivileges === true,
    init: p.init === true,
    rlimits,
  };
  if (p.user !== undefined) out.user = String(p.user);
  if (p.defaultUser !== undefined) out.defaultUser = String(p.defaultUser);
  if (p.cwd !== undefined) out.cwd = p.cwd as string;
  if (p.oomScoreAdj !== undefined) out.oomScoreAdj = p.oomScoreAdj as number;
  return out;
}

// --- the API ---------------------------------------------------------------------------

/**
 * Whether resolving these references needs the yaml library: a file, or a built-in that
 * has no embedded parse or extends (at any depth) one of those.
 */
export function needsYaml(refs: readonly string[], opts: ResolveOptions = {}): boolean {
  const builtins = opts.builtins ?? EMBEDDED;
  const seen = new Set<string>();
  const needs = (ref: string): boolean => {
    if (!isBuiltinName(ref)) return true;
    if (seen.has(ref) || !Object.hasOwn(builtins, ref)) return false;
    seen.add(ref);
    const json = preparsed(builtins, ref);
    if (json === undefined) return true;
    const parsed: ParsedYaml = JSON.parse(json);
    const data = "data" in parsed && isPlainObject(parsed.data) ? parsed.data : {};
    const ext = data.extends;
    const next = typeof ext === "string" ? [ext] : Array.isArray(ext) ? ext : [];
    return next.some((r) => typeof r === "string" && needs(r));
  };
  return (refs.length > 0 ? refs : [DEFAULT_PROFILE]).some(needs);
}

/** Loads the yaml library when `resolveProfile(refs)` needs it (see `needsYaml`). */
export async function loadYamlFor(
  refs: readonly string[],
  opts: ResolveOptions = {},
): Promise<void> {
  if (needsYaml(refs, opts)) await loadYaml();
}

/**
 * Resolves `--profile` references (left to right; `default` when there are none) and the
 * command-line layer into one validated profile. Every problem found is thrown together:
 * a `MicroError` when there is one, `MicroErrors` when there are several.
 */
export function resolveProfile(
  refs: readonly string[],
  flagLayer: Record<string, unknown> | null,
  plugins: readonly PluginSchema[],
  opts: ResolveOptions = {},
): Resolved {
  const loader = new Loader(plugins, opts);
  for (const ref of refs.length > 0 ? refs : [DEFAULT_PROFILE]) {
    const label = isBuiltinName(ref) ? `profile builtin:${ref}` : `profile ${ref}`;
    const src = loader.find(ref, undefined, (reason) => {
      loader.errors.push(new MicroError(`${label}: ${reason}`));
    });
    if (src) loader.load(src, []);
  }
  if (flagLayer && Object.keys(flagLayer).length > 0) loader.addFlags(flagLayer);
  if (loader.errors.length === 1) throw loader.errors[0];
  if (loader.errors.length > 1) throw new MicroErrors(loader.errors);

  let merged: Record<string, unknown> = {};
  for (const layer of loader.layers) {
    merged = mergeLayers(merged, layer.data, layer.label === COMMAND_LINE ? APPENDED : undefined);
  }
  const sections: Record<string, Section> = {};
  for (const p of plugins) {
    const raw = merged[p.name];
    if (!isPlainObject(raw)) {
      sections[p.name] = { enabled: false, options: {} };
      continue;
    }
    const { enabled, ...options } = raw;
    sections[p.name] = { enabled: enabled !== false, options };
  }
  const profile: ResolvedProfile = typeof merged.description === "string"
    ? { description: merged.description, process: toProcess(merged.process), sections }
    : { process: toProcess(merged.process), sections };
  return { profile, sources: loader.layers.map((l) => l.label) };
}

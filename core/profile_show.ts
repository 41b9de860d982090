/**
 * `micro profile list` and `micro profile show` (and `micro doctor`'s list): apart from
 * core/profile.ts, which every run loads (a module a run loads costs it in proportion to its
 * size: core/v8.ts).
 */
import { isPlainObject } from "./schema.ts";
import { yaml } from "./yaml.ts";
import { EMBEDDED } from "../profiles/_embedded.ts";
import {
  type PluginSchema,
  preparsed,
  type Resolved,
  type ResolveOptions,
  resolveProfile,
  RLIM_INFINITY,
  type Rlimit,
} from "./profile.ts";

/** The built-in profiles with their descriptions, by name. */
export function listProfiles(
  builtins: Record<string, string> = EMBEDDED,
): { name: string; description: string }[] {
  return Object.keys(builtins).sort().map((name) => {
    const json = preparsed(builtins, name);
    const data = json !== undefined
      ? (JSON.parse(json) as { data?: unknown }).data
      : yaml().parseDocument(builtins[name]).toJS();
    const description = isPlainObject(data) && typeof data.description === "string"
      ? data.description
      : "";
    return { name, description };
  });
}

function rlimitText(r: Rlimit): string {
  const t = (n: number) => n === RLIM_INFINITY ? "unlimited" : String(n);
  return r.soft === r.hard ? t(r.soft) : `${t(r.soft)}:${t(r.hard)}`;
}

/**
 * A resolved profile as YAML, itself a valid profile (for `micro profile show`; the yaml
 * library must be loaded).
 */
export function profileToYaml(resolved: Resolved): string {
  const { profile, sources } = resolved;
  const p = profile.process;
  const process: Record<string, unknown> = {};
  if (Object.keys(p.env).length > 0) process.env = p.env;
  if (p.user !== undefined) process.user = p.user;
  if (p.defaultUser !== undefined) process.defaultUser = p.defaultUser;
  if (p.groups.length > 0) process.groups = p.groups;
  if (p.cwd !== undefined) process.cwd = p.cwd;
  if (p.noNewPrivileges) process.noNewPrivileges = true;
  if (p.init) process.init = true;
  if (Object.keys(p.rlimits).length > 0) {
    process.rlimits = Object.fromEntries(
      Object.entries(p.rlimits).map(([k, r]) => [k, rlimitText(r)]),
    );
  }
  const doc: Record<string, unknown> = {};
  if (profile.description !== undefined) doc.description = profile.description;
  doc.process = process;
  const off: string[] = [];
  for (const [name, s] of Object.entries(profile.sections)) {
    if (s.enabled) doc[name] = s.options;
    else off.push(name);
  }
  let text = `# resolved from: ${sources.join(", ")}\n`;
  if (off.length > 0) text += `# disabled: ${off.join(", ")}\n`;
  return text + yaml().stringify(doc, { lineWidth: 0 });
}

/** `micro profile show NAME...`: the resolved profile as YAML text. */
export function showProfile(
  refs: string | readonly string[],
  plugins: readonly PluginSchema[],
  opts: ResolveOptions = {},
): string {
  return profileToYaml(
    resolveProfile(typeof refs === "string" ? [refs] : refs, null, plugins, opts),
  );
}

/**
 * caps: the five capability sets, as Docker spells them. The base is Docker's default set;
 * `drop` and `add` adjust it (`ALL` allowed, names case-insensitive, with or without CAP_).
 * A non-root user loses its capabilities at exec unless they are ambient: with
 * `ambient: true`, the added ones are.
 */
import { capName, CAPS, DOCKER_DEFAULT_CAPS } from "../core/caps.ts";
import { type Op, op } from "../core/ops.ts";
import type { Plugin } from "../core/plugin.ts";
import { processUser } from "../core/process.ts";
import type { Spec } from "../core/spec.ts";

export interface CapsOptions {
  add?: string[];
  drop?: string[];
  ambient?: boolean;
}

const capList = {
  type: "list",
  items: {
    type: "string",
    check: (v: string) =>
      capName(v) ? undefined : `unknown capability "${v}" (see capabilities(7))`,
  },
} as const;

/**
 * Docker's rule: `add: [ALL]` is everything but what `drop` names; otherwise the default
 * set (none with `drop: [ALL]`) minus `drop`, plus `add` (add wins over drop).
 */
export function resolveCaps(add: readonly string[], drop: readonly string[]): string[] {
  const a = add.map((c) => capName(c)!);
  const d = drop.map((c) => capName(c)!);
  // With ALL added, everything but the drops (moby's TweakCapabilities).
  if (a.includes("ALL")) return CAPS.filter((c) => !d.includes(c));
  const base = d.includes("ALL") ? [] : DOCKER_DEFAULT_CAPS;
  const set = new Set(base.filter((c) => !d.includes(c)));
  for (const c of a) set.add(c);
  return CAPS.filter((c) => set.has(c));
}

export const caps: Plugin<CapsOptions> = {
  name: "caps",
  description: "capabilities: Docker's default set, adjusted with add and drop",
  schema: {
    type: "object",
    fields: {
      add: { ...capList, doc: "capabilities to add (or ALL)" },
      drop: { ...capList, doc: "capabilities to drop (or ALL)" },
      ambient: { type: "boolean", doc: "give a non-root user the added capabilities" },
    },
  },
  configure(o, spec) {
    const set = resolveCaps(o.add ?? [], o.drop ?? []);
    spec.process.capabilities = {
      bounding: set,
      effective: set,
      permitted: set,
      inheritable: [],
      ambient: [],
    };
    const added = (o.add ?? []).map((c) => capName(c)!).filter((c) => c !== "ALL");
    if ((o.add ?? []).some((c) => capName(c) === "ALL")) spec.micro.capsAll = true;
    spec.micro.ambientCaps = o.ambient ? added.filter((c) => set.includes(c)) : [];
  },
  plan(spec: Spec, host): Op[] {
    // ALL means every capability micro itself may hand out (as moby's privileged set).
    const held = (s: string[]) =>
      spec.micro.capsAll && host.capBounding ? s.filter((x) => host.capBounding!.includes(x)) : s;
    const all = spec.process.capabilities!;
    const c = {
      ...all,
      bounding: held(all.bounding),
      effective: held(all.effective),
      permitted: held(all.permitted),
    };
    const who = processUser(spec, host);
    // Ambient capabilities must be permitted and inheritable too.
    const ambient = who.uid !== 0 ? spec.micro.ambientCaps ?? [] : [];
    return [op("restrict", "caps", "capabilities", {
      bounding: c.bounding,
      effective: c.effective,
      permitted: c.permitted,
      inheritable: [...new Set([...c.inheritable, ...ambient])],
      ambient,
      lastCap: host.capLastCap,
    })];
  },
};

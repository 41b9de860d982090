/**
 * caps: the five capability sets, as Docker spells them. The base is Docker's default set;
 * `drop` and `add` adjust it (`ALL` allowed, names case-insensitive, with or without CAP_).
 * A non-root user loses its capabilities at exec unless they are ambient: with
 * `ambient: true`, the added ones are.
 */
import { capName, CAPS, DOCKER_DEFAULT_CAPS } from "../core/caps.ts";
import { MicroError } from "../core/errors.ts";
import { type Op, op } from "../core/ops.ts";
import type { Plugin } from "../core/plugin.ts";
import { processUser } from "../core/process.ts";
import { hasNamespace, type NamespaceType, type Spec } from "../core/spec.ts";

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

/**
 * Capabilities that act on one kind of namespace: held in the container's user namespace,
 * they count only in namespaces it owns, so with the host's they do nothing.
 */
const ACTS_ON: { type: NamespaceType; what: string; flag: string; caps: string[] }[] = [
  {
    type: "network",
    what: "network",
    flag: "a network namespace of its own with --network none",
    caps: ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW"],
  },
  {
    type: "ipc",
    what: "IPC",
    flag: "an IPC namespace of its own with the ipc plugin",
    caps: ["CAP_IPC_OWNER"],
  },
];

/**
 * Capabilities the kernel checks in the initial user namespace only (capable(), not
 * ns_capable()): in any other they do nothing (setting the clock, loading modules, raw I/O,
 * the kernel log, device nodes, audit, immutable flags, process accounting, wake alarms).
 */
const INIT_USERNS_ONLY = [
  "CAP_SYS_TIME",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_PACCT",
  "CAP_SYSLOG",
  "CAP_MKNOD",
  "CAP_LINUX_IMMUTABLE",
  "CAP_AUDIT_CONTROL",
  "CAP_AUDIT_READ",
  "CAP_AUDIT_WRITE",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
];

const named = (caps: string[]) =>
  `added ${caps.length > 1 ? "capabilities" : "capability"} ${
    caps.map((c) => c.slice(4)).join(", ")
  }`;

/**
 * Capabilities added by name (not with ALL) that could not do anything in this container:
 * it has a user namespace, and they act on a namespace that user namespace does not own.
 * Refused before the run, rather than shown in CapEff and failing at bind(2) later.
 */
export function uselessCaps(spec: Spec): MicroError[] {
  const added = spec.micro.addedCaps ?? [];
  if (!added.length || !hasNamespace(spec, "user")) return [];
  const errors: MicroError[] = [];
  for (const ns of ACTS_ON) {
    const useless = added.filter((c) => ns.caps.includes(c));
    if (!useless.length || hasNamespace(spec, ns.type)) continue;
    errors.push(
      new MicroError(
        `${named(useless)} cannot work with the host's ${ns.what} namespace: ` +
          "capabilities held in the container's user namespace do not count there",
        {
          phase: "check",
          hint: `give the container ${ns.flag}, or run without a user namespace`,
        },
      ),
    );
  }
  const never = added.filter((c) => INIT_USERNS_ONLY.includes(c));
  if (never.length) {
    errors.push(
      new MicroError(
        `${named(never)} cannot work in a user namespace: the kernel honours ` +
          `${never.length > 1 ? "them" : "it"} only in the host's`,
        { phase: "check", hint: "drop it, or use a profile without a user namespace" },
      ),
    );
  }
  return errors;
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
    spec.micro.addedCaps = set.filter((c) => added.includes(c));
  },
  check: uselessCaps,
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

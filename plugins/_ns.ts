/** Shared by the namespace plugins that only add a namespace and its clone flag. */
import { type Op, op } from "../core/ops.ts";
import { MicroError } from "../core/errors.ts";
import { hasNamespace, type NamespaceType, type Spec } from "../core/spec.ts";

export const CLONE_FLAG: Record<NamespaceType, string> = {
  mount: "CLONE_NEWNS",
  pid: "CLONE_NEWPID",
  uts: "CLONE_NEWUTS",
  ipc: "CLONE_NEWIPC",
  network: "CLONE_NEWNET",
  user: "CLONE_NEWUSER",
  cgroup: "CLONE_NEWCGROUP",
  time: "CLONE_NEWTIME",
};

export function addNamespace(spec: Spec, type: NamespaceType): void {
  if (!spec.linux.namespaces.some((n) => n.type === type)) spec.linux.namespaces.push({ type });
}

export function cloneOp(plugin: string, type: NamespaceType): Op {
  return op("clone", plugin, "namespace", { flag: CLONE_FLAG[type] });
}

/** `join`: the name of a running micro container whose namespace of this kind to join. */
export const JOIN_SCHEMA = {
  type: "string",
  doc: "join the namespace of this running micro container (--pid/--ipc/--network container:NAME)",
  check: (v: string) =>
    /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(v) ? undefined : "expected a container name",
} as const;

/** The namespaces micro joins from a running container (`container:NAME`). */
export type JoinType = "pid" | "ipc" | "network";

/** The clone phase's join: the engine enters the container's namespace around the clone. */
export function joinOp(plugin: string, type: JoinType, spec: Spec): Op {
  return op("clone", plugin, "join", {
    flag: CLONE_FLAG[type],
    container: spec.micro.join![type]!,
  });
}

/**
 * A joined namespace (`container:NAME`) cannot be combined with a user namespace of the
 * container's own: inside it micro holds no capability over the joined namespace, which
 * belongs to the host's user namespace (its /proc or /dev/mqueue could not be mounted).
 */
export function joinProblems(plugin: string, type: JoinType, spec: Spec): MicroError[] {
  const name = spec.micro.join?.[type];
  if (!name || !hasNamespace(spec, "user")) return [];
  return [
    new MicroError(
      `--${type} container:${name} cannot be used with a user namespace of the container's own`,
      {
        phase: "check",
        plugin,
        hint: "run as root with a profile without the user plugin (not hardened, not rootless)",
      },
    ),
  ];
}

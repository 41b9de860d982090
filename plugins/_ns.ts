/** Shared by the namespace plugins that only add a namespace and its clone flag. */
import { type Op, op } from "../core/ops.ts";
import type { NamespaceType, Spec } from "../core/spec.ts";

export const CLONE_FLAG: Record<NamespaceType, string> = {
  mount: "CLONE_NEWNS",
  pid: "CLONE_NEWPID",
  uts: "CLONE_NEWUTS",
  ipc: "CLONE_NEWIPC",
  network: "CLONE_NEWNET",
  user: "CLONE_NEWUSER",
  cgroup: "CLONE_NEWCGROUP",
};

export function addNamespace(spec: Spec, type: NamespaceType): void {
  if (!spec.linux.namespaces.some((n) => n.type === type)) spec.linux.namespaces.push({ type });
}

export function cloneOp(plugin: string, type: NamespaceType): Op {
  return op("clone", plugin, "namespace", { flag: CLONE_FLAG[type] });
}

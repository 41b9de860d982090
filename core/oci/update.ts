/**
 * `update`: new resources for a live container, as runc's update takes them (a JSON object
 * of the spec's linux.resources shape from -r FILE or stdin, then its flags on top), written
 * to the cgroups create recorded through the same conversions create used (cgroups/resources).
 */
import { MicroError, usageError } from "../errors.ts";
import { parseSize } from "../cgroups/units.ts";
import { type Resources, v1Writes, v2Writes } from "../cgroups/resources.ts";
import { loadOciState, ownCgroups, statusOf } from "./state.ts";

/** runc update's flags, to where they go in the resources. */
export const UPDATE_FLAGS: Record<string, string> = {
  "--memory": "memory.limit",
  "--memory-reservation": "memory.reservation",
  "--memory-swap": "memory.swap",
  "--cpu-shares": "cpu.shares",
  "--cpu-quota": "cpu.quota",
  "--cpu-period": "cpu.period",
  "--cpuset-cpus": "cpu.cpus",
  "--cpuset-mems": "cpu.mems",
  "--pids-limit": "pids.limit",
  "--blkio-weight": "blockIO.weight",
};

const MAX_JSON = 1 << 20;

/** The resources of update: the JSON (if any), then each flag given. */
export function updateResources(
  json: string | undefined,
  flags: Record<string, string>,
): Resources {
  let r: Record<string, Record<string, unknown>> = {};
  if (json !== undefined && json.trim()) {
    if (json.length > MAX_JSON) throw usageError("update: the resources JSON is over 1 MiB");
    try {
      r = JSON.parse(json);
    } catch (e) {
      throw usageError(`update: the resources are not JSON: ${(e as Error).message}`);
    }
    if (typeof r !== "object" || r === null || Array.isArray(r)) {
      throw usageError("update: the resources must be a JSON object (linux.resources' shape)");
    }
  }
  for (const [flag, value] of Object.entries(flags)) {
    const [group, key] = UPDATE_FLAGS[flag].split(".");
    let v: string | number | undefined = value;
    if (group === "memory") {
      v = value === "-1" ? -1 : parseSize(value);
    } else if (key !== "cpus" && key !== "mems") {
      v = /^-?\d+$/.test(value) ? Number(value) : undefined;
    }
    if (v === undefined) throw usageError(`update ${flag}: "${value}" is not a number or size`);
    r[group] = { ...(r[group] ?? {}), [key]: v };
  }
  const known = new Set(["memory", "cpu", "pids", "blockIO"]);
  for (const k of Object.keys(r)) {
    if (!known.has(k)) {
      throw new MicroError(
        `update: resources.${k} cannot be changed by micro on a live container`,
        {
          hint: "update memory, cpu, pids and blockIO only",
        },
      );
    }
  }
  return r as Resources;
}

/** Writes the resources into the container's own cgroups (v1: each controller's hierarchy). */
export function update(root: string, id: string, r: Resources): void {
  const { dir, state } = loadOciState(root, id);
  const status = statusOf(dir, state);
  if (status === "stopped") throw new MicroError(`update ${id}: the container is stopped`);
  const dirs = ownCgroups(state);
  // Only a v2 cgroup has cgroup.controllers; v1 dirs sit under their controller's mount.
  const v2 = dirs.length === 1 && existsFile(`${dirs[0]}/cgroup.controllers`);
  const writes = v2 ? v2Writes(r) : v1Writes(r);
  for (const w of writes) {
    const target = v2
      ? dirs[0]
      : dirs.find((d) => d.split("/")[4]?.split(",").includes(w.controller));
    if (!target) {
      throw new MicroError(
        `update ${id}: the container has no ${w.controller} cgroup for ${w.file}`,
        {
          hint: "create it with that resource set, so micro makes its cgroup",
        },
      );
    }
    try {
      Deno.writeTextFileSync(`${target}/${w.file}`, w.value);
    } catch (e) {
      throw new MicroError(
        `update ${id}: write ${target}/${w.file} ${JSON.stringify(w.value)}: ${
          (e as Error).message
        }`,
        { hint: "check the value against the cgroup's limits (and memory.limit before swap)" },
      );
    }
  }
}

function existsFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

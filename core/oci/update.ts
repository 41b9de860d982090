/**
 * `update`: new resources for a live container, as runc's update takes them (a JSON object
 * of the spec's linux.resources shape from -r FILE or stdin, then its flags on top), written
 * to the cgroups create recorded through the same conversions create used (cgroups/resources).
 */
import { MicroError, usageError } from "../errors.ts";
import { parseSize } from "../cgroups/units.ts";
import { type Resources, v1Writes, v2Ignored, v2Writes } from "../cgroups/resources.ts";
import { check, formatPath } from "../schema.ts";
import { OCI_RESOURCES } from "../../plugins/cgroups.ts";
import { loadOciState, ownCgroups, statusOf } from "./state.ts";

/** runc update's flags, to where they go in the resources. */
export const UPDATE_FLAGS: Record<string, string> = {
  "--memory": "memory.limit",
  "--memory-reservation": "memory.reservation",
  "--memory-swap": "memory.swap",
  "--cpu-shares": "cpu.shares",
  "--cpu-quota": "cpu.quota",
  "--cpu-period": "cpu.period",
  "--cpu-burst": "cpu.burst",
  "--cpu-idle": "cpu.idle",
  "--cpu-rt-period": "cpu.realtimePeriod",
  "--cpu-rt-runtime": "cpu.realtimeRuntime",
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
  // devices: runc's update does not change the device rules of a live container either.
  const known = new Set([
    "memory",
    "cpu",
    "pids",
    "blockIO",
    "hugepageLimits",
    "network",
    "rdma",
    "unified",
  ]);
  for (const k of Object.keys(r)) {
    if (!known.has(k)) {
      throw new MicroError(
        `update: resources.${k} cannot be changed by micro on a live container`,
        { hint: `update ${[...known].join(", ")} only` },
      );
    }
  }
  r = dropNulls(r) as typeof r;
  const issues = check(r, OCI_RESOURCES);
  if (issues.length) {
    const i = issues[0];
    throw usageError(
      `update: resources${i.path.length ? "." + formatPath(i.path) : ""}: ${i.reason}`,
    );
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
  if (!v2 && r.unified && Object.keys(r.unified).length) {
    throw new MicroError(`update ${id}: resources.unified: the container's cgroups are v1`, {
      hint: "unified keys need cgroup v2 (runc: cannot use unified on cgroup v1)",
    });
  }
  if (v2) {
    for (const why of v2Ignored(r)) {
      console.error(`micro: warning: update ${id}: resources.${why}: ignored (as runc)`);
    }
  }
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
    let file = `${target}/${w.file}`;
    let value = w.value;
    if (!existsFile(file)) {
      if (w.optional) continue;
      if (w.fallback && existsFile(`${target}/${w.fallback.file}`)) {
        file = `${target}/${w.fallback.file}`;
        value = w.fallback.value;
      }
    }
    try {
      // No O_CREAT: a file the kernel does not have is ENOENT, never a new file.
      Deno.writeTextFileSync(file, value, { create: false });
    } catch (e) {
      throw new MicroError(
        `update ${id}: write ${file} ${JSON.stringify(value)}: ${(e as Error).message}`,
        { hint: "check the value against the cgroup's limits (and memory.limit before swap)" },
      );
    }
  }
}

/** null is "unset" in runc's JSON, as in config.json: dropped at every level. */
function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (typeof v !== "object" || v === null) return v;
  return Object.fromEntries(
    Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, dropNulls(x)]),
  );
}

function existsFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

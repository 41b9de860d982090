/**
 * Named checks over the spec and the host probe, run before anything touches the kernel.
 * Every failing check is reported, all together (runc's validator, our one-line errors).
 */
import { MicroError } from "./errors.ts";
import { mappedCount, runRootlessMaps } from "./idmap.ts";
import type { HostInfo } from "./plugin.ts";
import { processUser } from "./process.ts";
import { hasNamespace, type Spec } from "./spec.ts";

export interface Check {
  name: string;
  /** Problems found, as errors; empty when the spec passes. */
  run(spec: Spec, host: HostInfo): MicroError[];
}

const err = (msg: string, hint?: string) => new MicroError(msg, { phase: "check", hint });

export const CHECKS: Check[] = [
  {
    name: "command",
    run: (spec) =>
      spec.process.args.length
        ? []
        : [err("no command given", "micro run [OPTIONS] [IMAGE] [--] COMMAND")],
  },
  {
    name: "image",
    run(spec, host) {
      if (host.image === "missing") {
        return [
          err(`image "${spec.root.path}" does not exist`, "IMAGE is a root filesystem directory"),
        ];
      }
      if (host.image === "other") {
        return [
          err(
            `image "${spec.root.path}" is not a directory`,
            "IMAGE is a root filesystem directory",
          ),
        ];
      }
      return [];
    },
  },
  {
    name: "bind sources",
    run: (spec, host) =>
      spec.mounts.filter((m) => m.type === "bind" && !host.sourceKinds[m.source]).map((m) =>
        err(
          `bind source "${m.source}" does not exist`,
          `create it, or fix -v ${m.source}:${m.destination}`,
        )
      ),
  },
  {
    name: "working directory",
    run: (spec) =>
      spec.process.cwd.startsWith("/")
        ? []
        : [err(`working directory "${spec.process.cwd}" is not absolute`)],
  },
  {
    name: "mount namespace",
    run: (spec) =>
      hasNamespace(spec, "mount") ? [] : [
        err(
          "the mount plugin is disabled",
          "micro needs its own mount namespace to set up the root",
        ),
      ],
  },
  {
    name: "user",
    run(spec, host) {
      try {
        const who = processUser(spec, host);
        const maps = runRootlessMaps(spec, host);
        if (maps && "reason" in maps && (who.uid !== 0 || who.gid !== 0)) {
          return [err(
            `user ${who.uid}:${who.gid} is not mapped in a rootless container (${maps.reason})`,
            "a rootless run without subordinate ids maps only your own uid as root (0): drop " +
              "--user, or add ranges to /etc/subuid and /etc/subgid and install uidmap",
          )];
        }
        if (maps && !("reason" in maps)) {
          const uids = mappedCount(maps.uid);
          const gids = mappedCount(maps.gid);
          const bad = [
            who.uid >= uids ? `uid ${who.uid}` : "",
            ...[who.gid, ...who.additionalGids].map((g) => g >= gids ? `gid ${g}` : ""),
          ].filter((x) => x);
          if (bad.length) {
            return [err(
              `${bad.join(", ")} not mapped in this rootless container (ids 0 to ${
                Math.min(uids, gids) - 1
              } are)`,
              "use a lower id, or a larger range in /etc/subuid and /etc/subgid (user plugin size)",
            )];
          }
        }
        return [];
      } catch (e) {
        if (e instanceof MicroError) return [err(e.message, e.fields.hint)];
        throw e;
      }
    },
  },
  {
    name: "hostname",
    run: (spec) =>
      spec.hostname && !hasNamespace(spec, "uts")
        ? [err("--hostname needs the uts plugin", "enable uts in the profile")]
        : [],
  },
];

export function runChecks(spec: Spec, host: HostInfo, checks: Check[] = CHECKS): MicroError[] {
  return checks.flatMap((c) => c.run(spec, host));
}

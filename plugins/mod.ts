/**
 * The plugins, in the order their ops run within a phase. `user` comes first: the child
 * must become root of its user namespace before it creates anything.
 */
import type { Plugin } from "../core/plugin.ts";
import { caps } from "./caps.ts";
import { cgroupns } from "./cgroupns.ts";
import { timens } from "./timens.ts";
import { cgroups } from "./cgroups.ts";
import { lsm } from "./lsm.ts";
import { readonly } from "./readonly.ts";
import { seccomp } from "./seccomp.ts";
import { ipc } from "./ipc.ts";
import { mount } from "./mount.ts";
import { overlay } from "./overlay.ts";
import { net } from "./net.ts";
import { bandwidth } from "./bandwidth.ts";
import { pid } from "./pid.ts";
import { user } from "./user.ts";
import { uts } from "./uts.ts";
import { sysctl } from "./sysctl.ts";

// deno-lint-ignore no-explicit-any
export const PLUGINS: Plugin<any>[] = [
  user,
  mount,
  overlay,
  pid,
  uts,
  ipc,
  net,
  bandwidth,
  cgroupns,
  timens,
  cgroups,
  readonly,
  caps,
  lsm,
  seccomp,
  sysctl,
];

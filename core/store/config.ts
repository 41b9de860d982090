/**
 * What an image's config gives a run, and how flags override it, as `docker run` does:
 *
 * - the command is Entrypoint + Cmd; a command after IMAGE replaces Cmd; `--entrypoint X`
 *   replaces Entrypoint and drops the image's Cmd; `--entrypoint ""` clears Entrypoint;
 * - Env lies under `-e` and `--env-file` (and over a profile's env: the image's PATH wins
 *   over the default profile's);
 * - WorkingDir unless `-w` (or a profile's cwd); User unless `--user` (or a profile's user),
 *   and a profile's `defaultUser` never overrides it; StopSignal is recorded.
 *
 * Pure: no I/O.
 */
import { MicroError } from "../errors.ts";
import type { ImageConfig } from "../image/registry.ts";

export interface GivenProcess {
  /** The command after IMAGE (empty: none). */
  args: string[];
  /** `--entrypoint`: undefined when not given, "" to clear. */
  entrypoint?: string;
}

export interface ImageDefaults {
  args: string[];
  /** The image's Env as a map (entries without `=` are skipped). */
  env: Record<string, string>;
  /** Absolute; undefined when the image sets none. */
  cwd?: string;
  /** undefined when the image sets none. */
  user?: string;
  stopSignal?: string;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

/** The run's command and defaults from the image config `c` and what the user gave. */
export function imageDefaults(
  c: ImageConfig["config"] | undefined,
  given: GivenProcess,
): ImageDefaults {
  const cfg = c ?? {};
  const entrypoint = given.entrypoint !== undefined
    ? (given.entrypoint === "" ? [] : [given.entrypoint])
    : strings(cfg.Entrypoint);
  const cmd = given.args.length > 0
    ? given.args
    : given.entrypoint !== undefined
    ? []
    : strings(cfg.Cmd);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new MicroError("no command: the image has no Entrypoint or Cmd", {
      hint: "give a command after the image, or --entrypoint",
    });
  }
  const env: Record<string, string> = {};
  for (const e of strings(cfg.Env)) {
    const eq = e.indexOf("=");
    if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  const out: ImageDefaults = { args, env };
  if (typeof cfg.WorkingDir === "string" && cfg.WorkingDir !== "") {
    out.cwd = cfg.WorkingDir.startsWith("/") ? cfg.WorkingDir : `/${cfg.WorkingDir}`;
  }
  if (typeof cfg.User === "string" && cfg.User !== "") out.user = cfg.User;
  if (typeof cfg.StopSignal === "string" && cfg.StopSignal !== "") {
    out.stopSignal = cfg.StopSignal;
  }
  return out;
}

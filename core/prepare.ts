/**
 * What `micro run` and `micro plan` share: request → profile → spec → checks → plan. Apart
 * from core/run.ts (the run itself) so that `micro plan` and `micro doctor` load none of the
 * engine's modules: every module a command loads is compiled in full (core/v8.ts).
 */
import { exposedPorts } from "./cni/ports.ts";
import { parseRun, type Request } from "./cli.ts";
import { runChecks } from "./checks.ts";
import { MicroError, MicroErrors } from "./errors.ts";
import { networkProbe, probeHost } from "./host.ts";
import { type OpenedImage, openImage } from "./engine/image.ts";
import type { Op } from "./ops.ts";
import { buildSpec, formatPlan, planRun } from "./plan.ts";
import { loadYamlFor, resolveProfile } from "./profile.ts";
import type { Spec } from "./spec.ts";
import { stateRoot } from "./stateroot.ts";
import { openLibc } from "./sys/libc.ts";
import { C } from "./sys/mod.ts";
import { sizeAt, typeAt } from "./files.ts";
import { mark } from "./trace.ts";
import { statLogsWith } from "./denocache.ts";
import { PLUGINS } from "../plugins/mod.ts";
import { resolveAuto } from "../plugins/net.ts";
import { containerDir, storeRoot } from "./store/paths.ts";
import { type ContainerRecord, newContainerId } from "./store/containers.ts";
import { imageDefaults } from "./store/config.ts";
import type { ImageHold } from "./store/images.ts";
import type { MergedRoot } from "./store/merged.ts";

export interface Prepared {
  req: Request;
  spec: Spec;
  ops: Op[];
  /** The run's id (state dir, cgroup, default hostname): the container's name. */
  id: string;
  /** The container's id (64 hex digits; its first 12 are the default name). */
  containerId: string;
  stateDir: string;
  /** The image directory, opened once; null without an image. */
  image: OpenedImage | null;
  /** A store image, held until the run ends (its layers stay); null otherwise. */
  stored: StoreImageUse | null;
}

/** A store image in use: its record, its layers and the view of them merged. */
export interface StoreImageUse {
  hold: ImageHold;
  view: MergedRoot;
  /** IMAGE as the user typed it. */
  ref: string;
}

/**
 * Whether IMAGE names a root filesystem directory (a path that exists as a directory, or
 * one that starts with `/`, `./` or `../`) rather than an image reference.
 */
export function isDirectoryImage(image: string, isDir = defaultIsDir): boolean {
  if (image.startsWith("/") || image === "." || image === "..") return true;
  if (image.startsWith(".") && image.includes("/")) return true;
  return isDir(image);
}

/** Through sys: a reference (alpine:3.20) is not there, and Deno's stat would throw. */
function defaultIsDir(path: string): boolean {
  return typeAt(openLibc(), path) === C.S_IFDIR;
}

/**
 * Finds (and, per `--pull`, pulls) a store image and holds it for the run. `micro plan`
 * never pulls.
 */
async function useStoreImage(root: string, req: Request): Promise<StoreImageUse> {
  const { holdImage } = await import("./store/images.ts");
  const { MergedRoot } = await import("./store/merged.ts");
  const ref = req.image!;
  const policy = req.pull ?? "missing";
  const use = (hold: ImageHold) => ({ hold, ref, view: new MergedRoot(openLibc(), hold.layers) });
  if (policy !== "always" || req.command === "plan") {
    const h = await holdImage(root, ref);
    if (h !== "missing") return use(h);
    if (policy === "never" || req.command === "plan") {
      throw new MicroError(`image "${ref}" is not in the store (${root})`, {
        hint: req.command === "plan"
          ? `pull it first: micro pull ${ref}`
          : `pull it first (micro pull ${ref}), or run with --pull=missing`,
      });
    }
  }
  const { pullToStore } = await import("./store/pull.ts");
  await pullToStore(root, ref, {
    sys: openLibc(),
    platform: req.platform,
    warn: (m) => console.error(`micro: warning: ${m}`),
  });
  const h = await holdImage(root, ref);
  if (h === "missing") {
    throw new MicroError(`image "${ref}" was removed from the store while micro started`, {
      hint: "run again",
    });
  }
  return use(h);
}

/**
 * A store image's config under the request: the command (Entrypoint + Cmd), Env under the
 * flags, WorkingDir and User unless given, StopSignal (see store/config.ts).
 */
function applyImageConfig(
  spec: Spec,
  req: Request,
  profile: { process: { cwd?: string; user?: string } },
  config: ImageHold["image"]["config"],
): void {
  const d = imageDefaults(config.config, { args: req.args, entrypoint: req.entrypoint });
  spec.process.args = d.args;
  const flags = (req.layer.process as { env?: Record<string, string> } | undefined)?.env ?? {};
  spec.process.envMap = { ...spec.process.envMap, ...d.env, ...flags };
  if (profile.process.cwd === undefined && d.cwd) spec.process.cwd = d.cwd;
  if (profile.process.user === undefined && d.user) {
    spec.process.userSpec = d.user;
    spec.process.defaultUser = undefined;
  }
  if (d.stopSignal) spec.micro.stopSignal = d.stopSignal;
  if (spec.micro.net?.publishAll) spec.micro.net.exposed = exposedPorts(config.config);
}

/** Everything up to the plan; no side effects (but loading the yaml library if needed). */
export async function prepare(argv: string[], again?: ContainerRecord): Promise<Prepared> {
  // The command binds libc anyway: the cache logs' stats at its end go through it, so that
  // no Deno stat is the process's first (0.8 ms, core/files.ts), for a plan as for a run.
  statLogsWith((path) => sizeAt(openLibc(), path));
  const req = parseRun(argv);
  mark("parse args");
  const uid = Deno.uid() ?? 0;
  const root = req.root ?? storeRoot(uid);
  const stored = req.image !== null && !isDirectoryImage(req.image)
    ? await useStoreImage(root, req)
    : null;
  if (req.image !== null && stored === null && req.args.length === 0 && !req.entrypoint) {
    throw new MicroError(`${req.command}: no command given`, {
      hint: `usage: micro ${req.command} [OPTIONS] DIRECTORY [--] COMMAND`,
    });
  }
  // Opened here once, and only used through its fd from now on (never by name again).
  const image = req.image === null || stored ? null : openImage(req.image, openLibc());
  mark("open image");
  await loadYamlFor(req.profiles);
  const { profile } = resolveProfile(req.profiles, req.layer, PLUGINS);
  mark("profile");
  // Without root, namespaces other than user need a user namespace of their own.
  if (uid !== 0 && (req.layer.user as { enabled?: boolean } | undefined)?.enabled === false) {
    throw new MicroError(`option "--userns host" needs root`, {
      hint: "a rootless container always has a user namespace of its own: drop --userns host",
    });
  }
  if (uid !== 0 && profile.sections.user) profile.sections.user.enabled = true;
  const spec = buildSpec(
    {
      image: stored ? stored.hold.layers[0] : image === null ? null : image.path,
      args: req.entrypoint ? [req.entrypoint, ...req.args] : req.args,
      terminal: req.terminal,
      stdin: req.stdin,
      remove: req.rm,
    },
    profile,
    PLUGINS,
  );
  if (stored) {
    if (!spec.root.overlay) {
      throw new MicroError(
        `image "${stored.ref}" is a store image: its layers need the overlay plugin`,
        { hint: "enable overlay in the profile (overlay: {}), or run a directory" },
      );
    }
    spec.root.layers = stored.hold.layers;
    applyImageConfig(spec, req, profile, stored.hold.image.config);
  }
  if (req.stopSignal !== undefined) spec.micro.stopSignal = req.stopSignal;
  if (req.stopTimeout !== undefined) spec.micro.stopTimeout = req.stopTimeout;
  mark("spec");
  const containerId = again?.id ?? newContainerId();
  const id = again?.runId ?? req.name ?? containerId.slice(0, 12);
  const stateDir = `${stateRoot(uid)}/${id}`;
  const host = probeHost(spec, id, stateDir, {
    landlockAbi: () => openLibc().landlockCreateRuleset(0, 1),
    imageFd: image?.fd,
    containerDir: containerDir(root, containerId),
    hostname: containerId.slice(0, 12),
    volumesDir: `${root}/volumes`,
    readImageFile: stored ? (path, cap) => stored.view.readFile(path, cap) : undefined,
    probeNetwork: await networkProbe(spec),
  });
  resolveAuto(spec, host);
  mark("host probe");
  const enabled = PLUGINS.filter((p) => spec.micro.plugins.includes(p.name));
  for (const p of enabled) await p.load?.(spec, host);
  const problems = [
    ...runChecks(spec, host),
    ...enabled.flatMap((p) => p.check?.(spec, host) ?? []),
  ];
  if (problems.length === 1) throw problems[0];
  if (problems.length > 1) throw new MicroErrors(problems);
  mark("checks");
  const ops = planRun(spec, host, PLUGINS);
  mark("plan");
  return { req, spec, ops, id, containerId, stateDir, image, stored };
}

export async function planCommand(argv: string[]): Promise<number> {
  const p = await prepare(argv);
  p.stored?.hold.release();
  if (p.image) openLibc().close(p.image.fd);
  console.log(formatPlan(p.ops).trimEnd());
  return 0;
}

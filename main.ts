/**
 * micro's entry point. It only dispatches: each command's modules are imported when that
 * command runs, so `micro version` and `micro --help` stay cheap.
 */
import { EXIT_MICRO, MicroError, MicroErrors } from "./core/errors.ts";
import { mark, printTrace } from "./core/trace.ts";
import { cachesToFold, foldCaches } from "./core/denocache.ts";

/**
 * The commands: name → the module (under commands/, one file per command group) and the
 * function that runs it. Modules are imported only when their command runs.
 */
const COMMANDS: Record<string, () => Promise<(argv: string[]) => Promise<number>>> = {
  run: async () => (await import("./commands/run.ts")).run,
  plan: async () => (await import("./commands/run.ts")).plan,
  profile: async () => (await import("./commands/profile.ts")).profile,
  // Internal: a layer unpacked inside a rootless user namespace (core/image/rootless.ts).
  "_unpack-layer": async () => (await import("./commands/_unpack.ts")).unpackLayer,
  // Internal: a store tree that holds files of the caller's subordinate ids, removed.
  "_remove-tree": async () => (await import("./commands/_unpack.ts")).removeTree,
  ps: async () => (await import("./commands/container.ts")).ps,
  rm: async () => (await import("./commands/container.ts")).rm,
  diff: async () => (await import("./commands/container.ts")).diff,
  logs: async () => (await import("./commands/lifecycle.ts")).logs,
  stop: async () => (await import("./commands/lifecycle.ts")).stop,
  kill: async () => (await import("./commands/lifecycle.ts")).kill,
  wait: async () => (await import("./commands/lifecycle.ts")).wait,
  start: async () => (await import("./commands/lifecycle.ts")).start,
  restart: async () => (await import("./commands/lifecycle.ts")).restart,
  inspect: async () => (await import("./commands/lifecycle.ts")).inspect,
  boot: async () => (await import("./commands/lifecycle.ts")).boot,
  attach: async () => (await import("./commands/attach.ts")).attach,
  // Internal: the supervisor of detached containers, and its runners (core/supervisor/).
  _supervise: async () => (await import("./commands/lifecycle.ts")).supervise,
  "_run-detached": async () => (await import("./commands/lifecycle.ts")).runDetachedWorker,
  "_start-detached": async () => (await import("./commands/lifecycle.ts")).startDetachedWorker,
  exec: async () => (await import("./commands/exec.ts")).exec,
  stats: async () => (await import("./commands/stats.ts")).stats,
  top: async () => (await import("./commands/stats.ts")).top,
  pause: async () => (await import("./commands/stats.ts")).pause,
  unpause: async () => (await import("./commands/stats.ts")).unpause,
  doctor: async () => (await import("./commands/doctor.ts")).doctor,
  pull: async () => (await import("./commands/image.ts")).pull,
  image: async () => (await import("./commands/image.ts")).image,
  images: async () => (await import("./commands/image.ts")).images,
  rmi: async () => (await import("./commands/image.ts")).rmi,
  volume: async () => (await import("./commands/volume.ts")).volume,
  network: async () => (await import("./commands/network.ts")).network,
  login: async () => (await import("./commands/login.ts")).login,
  logout: async () => (await import("./commands/login.ts")).logout,
  oci: async () => (await import("./commands/oci.ts")).oci,
  serve: async () => (await import("./commands/serve.ts")).serve,
  // Internal: a warm worker of `micro serve`; it runs its client's command with `guarded`.
  "_serve-worker": async () => (await import("./commands/serve.ts")).worker(guarded),
};

/** runc's global flags: given before the verb, the invocation is runc's (podman, containerd). */
const RUNC_GLOBALS = [
  "--root",
  "--log",
  "--log-format",
  "--debug",
  "--systemd-cgroup",
  "--rootless",
];

/**
 * Whether argv is an OCI runtime invocation for `micro oci`: the binary called by a name
 * ending in "runc" (a link `runc` or `micro-runc`: the launcher exports the name it was
 * called by as MICRO_EXE), a runc global flag first, or `--bundle`/`-b` (micro's own
 * commands have neither).
 */
function looksLikeRunc(argv: string[]): boolean {
  const exe = Deno.env.get("MICRO_EXE") ?? "";
  if (/runc$/.test(exe.slice(exe.lastIndexOf("/") + 1))) return true;
  const first = argv[0] ?? "";
  if (RUNC_GLOBALS.some((g) => first === g || first.startsWith(`${g}=`))) return true;
  if (first === "plan") return false; // micro plan --bundle DIR: the ops of a bundle
  // Among the verb's leading options only (`micro run IMAGE ls -b` is a command's flag).
  for (let k = 1; k < argv.length && argv[k].startsWith("-"); k++) {
    const a = argv[k];
    if (a === "-b" || a === "--bundle" || a.startsWith("--bundle=")) return true;
    if (RUNC_VALUE_FLAGS.includes(a)) k++;
  }
  return false;
}

/** runc's create and run flags that take a value (skipped over by looksLikeRunc). */
const RUNC_VALUE_FLAGS = ["--pid-file", "--console-socket", "--preserve-fds"];

async function main(argv: string[]): Promise<number> {
  mark("deno start to main");
  // A serve worker's client command is the one it named (run, plan or exec), never OCI.
  const client = isWorker && argv[0] !== "_serve-worker";
  if (!client && argv[0] !== "oci" && looksLikeRunc(argv)) argv = ["oci", ...argv];
  const cmd = argv[0];
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    const { HELP } = await import("./commands/help.ts");
    console.log(HELP.trimEnd());
    return cmd === undefined ? EXIT_MICRO : 0;
  }
  if (cmd === "version" || cmd === "--version" || cmd === "-v") {
    const { VERSION } = await import("./core/version.ts");
    console.log(`micro ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`);
    return 0;
  }
  // MICRO_SERVE: the command goes to a warm worker (commands/serve.ts), unless it is one; one
  // that cannot be served (no server, a refusal) runs here.
  const served = cmd === "run" || cmd === "plan" || cmd === "exec"
    ? Deno.env.get("MICRO_SERVE")
    : "";
  if (served && served !== "0" && !isWorker) {
    const serve = await import("./commands/serve.ts");
    const warmed = warm?.launcherWarming() ?? false;
    // Its launcher's warm-up, for the worker's join: reaped once done, not at this one's end.
    warm?.takeLaunched();
    const code = await serve.client(served, argv, warmed);
    if (code !== null) {
      warm?.joining(); // the worker's join is done
      return code;
    }
    // Not served: the command runs here, with a warm-up of its own (the launcher's may have
    // stopped, its writes used up, while a worker was waited for).
    void warm?.warmDone();
  }
  const load = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!load) throw new MicroError(`unknown command "${cmd}"`, { hint: 'see "micro --help"' });
  const code = await (await load())(argv);
  // Deno's caches gained pages: folded in for the next command (core/denocache.ts); a serve
  // worker's once it leaves, not between its client's command and its exit code.
  if (isWorker && cmd !== "_serve-worker") return code;
  const caches = cachesToFold();
  if (caches.length) {
    await foldCaches(caches);
    mark("deno cache fold");
  }
  return code;
}

/** A worker of `micro serve` runs its client's command here, never sends it on. */
const isWorker = Deno.args[0] === "_serve-worker";

/** `main`, its errors printed as micro's: the exit code. */
async function guarded(argv: string[]): Promise<number> {
  try {
    return await main(argv);
  } catch (e) {
    if (e instanceof MicroErrors) {
      for (const x of e.errors) console.error(`micro: ${x.line()}`);
      return EXIT_MICRO;
    } else if (e instanceof MicroError) {
      console.error(`micro: ${e.line()}`);
      return e.exitCode;
    }
    console.error(`micro: internal error: ${e instanceof Error ? e.stack : e}`);
    return EXIT_MICRO;
  }
}

/**
 * The launcher's warm-up child (MICRO_WARM: core/cgroups/warm.ts), for `run` and `exec`: out
 * of the environment before anything reads it (a served client's would go to its worker).
 */
const launched = isWorker ? undefined : Deno.env.get("MICRO_WARM");
const warm = launched === undefined ? undefined : await import("./core/cgroups/warm.ts");
if (warm) {
  Deno.env.delete("MICRO_WARM");
  await warm.fromLauncher(launched!);
}
const code = await guarded(Deno.args);
warm?.dropLaunched();
printTrace();
Deno.exit(code);

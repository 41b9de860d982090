/**
 * micro's entry point. It only dispatches: each command's modules are imported when that
 * command runs, so `micro version` and `micro --help` stay cheap.
 */
import { EXIT_MICRO, MicroError, MicroErrors } from "./core/errors.ts";
import { mark, printTrace } from "./core/trace.ts";
import { cachesToFold, foldCaches } from "./core/denocache.ts";

const HELP = `micro: a Linux container runtime

usage:
  micro run [OPTIONS] [IMAGE] [--] COMMAND [ARG...]   run COMMAND in a new container
  micro plan [OPTIONS] [IMAGE] [--] COMMAND [ARG...]  print the ops a run would execute
  micro ps [-a] [-q] [--no-trunc] [-f label=K[=V]]    running containers (-a: kept ones too)
  micro rm [-f] NAME|ID...                            remove containers (-f: running ones too)
  micro diff NAME|ID                                  a container's changes to its image
  micro run -d [OPTIONS] IMAGE COMMAND...             run in the background (supervised)
  micro attach [--detach-keys K] [--no-stdin] NAME    a detached container's stdio, here
  micro logs [-f] [--tail N] [--since T] [-t] NAME    a detached container's output
  micro stop [-t SECONDS] NAME...                     stop signal, then SIGKILL
  micro kill [-s SIGNAL] NAME...                      signal a detached container
  micro wait NAME...                                  wait for the end; print the exit code
  micro start [-a [-i]] NAME... | restart NAME...     a kept container again (detached)
  micro inspect NAME...                               containers as JSON
  micro boot                                          start --restart always/unless-stopped
  micro exec [-i] [-t] [-u USER] [-w DIR] [-e K=V] [-d] NAME|ID COMMAND...
                                                      run COMMAND in a running container
  micro stats [--no-stream] [--format json] [NAME...] CPU, memory, I/O, pids (live)
  micro top NAME|ID [ps OPTIONS]                      a container's processes
  micro pause|unpause NAME|ID...                      freeze or thaw a container
  micro doctor [--format json]                        what this host supports; which profiles run
  micro pull [OPTIONS] REFERENCE                      pull an image into the image store
  micro image ls|rm|inspect|prune|import|export       manage the image store
  micro images, micro rmi IMAGE...                    micro image ls, micro image rm
  micro volume ls [-q] | rm NAME...                   named volumes (-v NAME:PATH)
  micro network create|ls|rm|inspect                  bridge networks (--network NAME)
  micro login [-u USER] [--password-stdin] [REGISTRY] log in to a registry
  micro logout [REGISTRY]                             forget a registry's login
  micro profile list                                  the built-in profiles
  micro profile show NAME|PATH...                     a profile, resolved
  micro version (-v, --version)                       micro, Deno and V8 versions
  micro oci create|start|state|kill|delete|run|...    micro as an OCI runtime (runc's CLI)

IMAGE is a root filesystem directory or an image reference (alpine:3.20), pulled into the
store when missing; without one, the root is a tmpfs holding the host's /usr, /bin, /sbin,
/lib* and /etc read-only. See "micro run --help" for the options.
A run is kept as a container after it exits (micro ps -a, micro diff, micro rm) unless
it is given --rm.
`;

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
  if (argv[0] !== "oci" && looksLikeRunc(argv)) argv = ["oci", ...argv];
  const cmd = argv[0];
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(HELP.trimEnd());
    return cmd === undefined ? EXIT_MICRO : 0;
  }
  if (cmd === "version" || cmd === "--version" || cmd === "-v") {
    const { VERSION } = await import("./core/version.ts");
    console.log(`micro ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`);
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!load) throw new MicroError(`unknown command "${cmd}"`, { hint: 'see "micro --help"' });
  const code = await (await load())(argv);
  // Deno's caches gained pages: folded in for the next command (core/denocache.ts).
  const caches = cachesToFold();
  if (caches.length) {
    await foldCaches(caches);
    mark("deno cache fold");
  }
  return code;
}

let code: number;
try {
  code = await main(Deno.args);
} catch (e) {
  if (e instanceof MicroErrors) {
    for (const x of e.errors) console.error(`micro: ${x.line()}`);
    code = EXIT_MICRO;
  } else if (e instanceof MicroError) {
    console.error(`micro: ${e.line()}`);
    code = e.exitCode;
  } else {
    console.error(`micro: internal error: ${e instanceof Error ? e.stack : e}`);
    code = EXIT_MICRO;
  }
}
printTrace();
Deno.exit(code);

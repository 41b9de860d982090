/**
 * `micro --help`'s text: a module of its own, so that no other command loads it (main.ts
 * is every command's).
 */
export const HELP = `micro: a Linux container runtime

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
  micro serve [--socket PATH]                         keep micro warm for run, plan, exec
                                                      (clients: MICRO_SERVE=1 or the PATH)
  micro version (-v, --version)                       micro, Deno and V8 versions
  micro oci create|start|state|kill|delete|run|...    micro as an OCI runtime (runc's CLI)

IMAGE is a root filesystem directory or an image reference (alpine:3.20), pulled into the
store when missing; without one, the root is a tmpfs holding the host's /usr, /bin, /sbin,
/lib* and /etc read-only. See "micro run --help" for the options.
A run is kept as a container after it exits (micro ps -a, micro diff, micro rm) unless
it is given --rm.
`;

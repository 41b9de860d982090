/**
 * `micro run --help`'s text: a module of its own, loaded only to print it (a run's modules
 * are loaded in proportion to their size: core/v8.ts).
 */
export const RUN_HELP = `usage: micro run [OPTIONS] [IMAGE] [--] [COMMAND [ARG...]]
       micro plan [OPTIONS] [IMAGE] [--] [COMMAND [ARG...]]

Run COMMAND in a new container. IMAGE is a directory holding a root file system (a path
that exists, or starts with / or ./), or an image reference (alpine, alpine:3.20,
registry.example:5000/app@sha256:...) from the image store, pulled when missing; its
Entrypoint, Cmd, Env, WorkingDir and User are the defaults the options below override.
Without IMAGE (\`micro run -- COMMAND\`) the container sees the host's directories
read-only. \`micro plan\` prints the operations instead of running them.

Options:
      --pull missing|always|never
                            when to pull IMAGE from its registry (default: missing)
      --platform OS/ARCH    the platform to pull, e.g. linux/arm64
      --entrypoint CMD      replace the image's Entrypoint ("" clears it)
      --root DIR            the image store (default: $MICRO_ROOT, /var/lib/micro as root)
      --profile NAME|PATH   profile to apply (repeatable, left to right; default: default)
  -e, --env KEY[=VALUE]     set an environment variable (KEY alone copies micro's value)
      --env-file FILE       read KEY=VALUE lines from FILE (repeatable)
  -w, --workdir DIR         working directory inside the container (absolute)
  -u, --user UID[:GID]      user to run as: UID[:GID] or NAME[:GROUP]
      --group-add GROUP     add a supplementary group (repeatable)
      --ulimit NAME=SOFT[:HARD]
                            set a resource limit, e.g. nofile=1024:4096 (repeatable)
  -i, --interactive         keep stdin open
  -t, --tty                 allocate a terminal
      --init                run an init as PID 1 that forwards signals and reaps zombies
      --hostname NAME       container host name
      --network none|host|bridge|pasta|slirp4netns|NAME
                            none: only lo; host: the host's network; bridge: micro's own
                            network (micro0, NAT; the default as root); pasta, slirp4netns:
                            rootless networks (pasta is the rootless default where
                            installed); NAME: a CNI configuration list in the config dir;
                            container:NAME: join that running container's network
  -p, --publish [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp]
                            publish a container port (ranges: 8080-8081:80-81; repeatable)
      --dns IP              a name server for /etc/resolv.conf (repeatable)
      --dns-search DOMAIN   a search domain for /etc/resolv.conf (repeatable)
      --add-host NAME:IP    an /etc/hosts entry (repeatable)
      --ip ADDR             the container's IPv4 address on its network
  -P, --publish-all         publish the image's exposed ports on free host ports
      --cni-config-dir DIR  the CNI configuration lists (default: /etc/cni/net.d)
      --egress-rate RATE    limit traffic out of the container: 10mbit, 512kbit, 1gbit
                            (tc units; a bare number is bit/s)
      --ingress-rate RATE   limit traffic into the container, as --egress-rate
      --egress-burst SIZE, --ingress-burst SIZE
                            the limit's bucket: 32kb, 256kbit (default: 100 ms of the
                            rate, at least 32kb)
  -v, --volume HOST:CTR[:ro|rw], NAME:CTR[:ro|rw], CTR
                            bind a host path, or mount a named or anonymous volume
                            (repeatable; micro volume ls|rm)
      --mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,...]
                            Docker's long form of -v and --tmpfs (repeatable)
      --tmpfs PATH[:OPTS]   mount a tmpfs at PATH; OPTS: size=64m, mode=1777, uid=N,
                            gid=N, [no]exec, [no]suid, [no]dev, ro, rw
                            (default noexec,nosuid,nodev, mode 1777; repeatable)
      --shm-size SIZE       size of /dev/shm (default 64m)
 Resources (cgroups):
      --cpus N              CPUs the container may use, e.g. 1.5
      --cpu-shares N        relative CPU weight (cgroup v1 shares, 2-262144)
      --cpu-weight N        relative CPU weight (cgroup v2, 1-10000)
      --cpuset-cpus LIST    CPUs to run on, e.g. 0-1
      --cpuset-mems LIST    memory nodes to use
  -m, --memory SIZE         memory limit, e.g. 256m
      --memory-swap SIZE    memory plus swap (-1: unlimited swap)
      --memory-reservation SIZE
                            soft memory limit
      --pids-limit N        most processes at once (-1: unlimited)
      --blkio-weight N      relative block I/O weight (10-1000)
      --device-read-bps DEVICE:RATE, --device-write-bps DEVICE:RATE
      --device-read-iops DEVICE:N, --device-write-iops DEVICE:N
                            block I/O limits (repeatable)
      --device HOST[:CTR][:rwm]
                            add a host device (repeatable)
      --cgroup-parent PATH  the cgroup to create the container's in (default: micro)
 Security:
      --cap-add CAP         add a capability, or ALL (repeatable; CAP_ prefix optional)
      --cap-drop CAP        drop a capability, or ALL (repeatable)
      --read-only           read-only root, with tmpfs on /tmp and /run
      --security-opt OPT    no-new-privileges[=true|false], seccomp=FILE|unconfined,
                            apparmor=PROFILE, label=user:U|role:R|type:T|level:L
                            (repeatable)
      --privileged          every capability, no seccomp, no LSM, no masked or read-only
                            paths, the host's devices: UNSAFE, root on the host in all
                            but name
      --pid host|container:NAME
      --ipc host|shareable|private|container:NAME
      --uts host
      --userns host         share the host's namespace of that kind (container:NAME: join
                            the running micro container's)
      --sysctl KEY=VALUE    a namespaced sysctl, written before the command starts
                            (repeatable)
      --oom-kill-disable    no OOM killer for the container (cgroup v1 only)
      --oom-score-adj N     the command's oom_score_adj (-1000..1000)
      --stop-signal SIG     what SIGTERM to micro sends the container (default: the
                            image's StopSignal, else SIGTERM)
      --stop-timeout N      seconds from the stop signal to SIGKILL (default 10; -1: never)
 Other:
      --name NAME           name the container (unique among containers)
      --label KEY=VALUE     a label in the container's record (repeatable)
      --label-file FILE     read KEY=VALUE lines from FILE (repeatable)
      --cidfile FILE        write the container id to FILE (which must not exist)
  -a, --attach STREAM       attach only stdin, stdout or stderr (repeatable); the others
                            are /dev/null
      --json                print machine-readable output
      --rm                  remove the container when it exits (else it is kept:
                            see micro ps -a, micro diff, micro rm)
  -d, --detach              run in the background: print the id once the command runs
                            (micro ps, logs, stop, kill, wait, start, rm -f); with -i
                            and -t, micro attach connects to it (ctrl-p ctrl-q detaches)
      --log-opt KEY=VALUE   -d's json-file log: max-size=SIZE, max-file=N (repeatable)
      --restart POLICY      -d: no, on-failure[:N], always or unless-stopped
      --help                print this help
`;

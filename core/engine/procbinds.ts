/**
 * The /proc files runc lets a file be bound over (lxcfs); nothing else under /proc or /sys.
 * A module of its own: the resolver (and through it the state sweep every command runs)
 * needs this list, not the child program that child.ts compiles.
 */
export const PROC_FILE_BINDS = [
  "/proc/cpuinfo",
  "/proc/diskstats",
  "/proc/meminfo",
  "/proc/stat",
  "/proc/swaps",
  "/proc/uptime",
  "/proc/loadavg",
  "/proc/slabinfo",
  "/proc/net/dev",
  "/proc/sys/kernel/ns_last_pid",
];

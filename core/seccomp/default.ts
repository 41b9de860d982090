/**
 * The built-in `default` seccomp policy: the protection of Docker's default profile (moby's
 * profiles/seccomp/default.json), as a function of the container's capabilities.
 *
 * - Default: ERRNO(EPERM) for a syscall the policy does not allow. The compiler answers ENOSYS
 *   instead for numbers the syscall table does not know or that are newer than anything the
 *   policy names, and `clone3` answers ENOSYS, so glibc and others fall back (to `clone`,
 *   whose flags can be checked) rather than fail.
 * - Allowed: Docker's allow-list. `ptrace`, `process_vm_readv` and `process_vm_writev` are
 *   allowed as Docker does on kernels 4.8 and later (we never run on older ones).
 * - Kept out unless a capability unlocks them as in Docker: mount and the new mount API,
 *   `umount2`, `unshare`, `setns`, `clone` with namespace flags (CAP_SYS_ADMIN); `reboot`
 *   (CAP_SYS_BOOT); module loading (CAP_SYS_MODULE); `chroot` (CAP_SYS_CHROOT); `acct`
 *   (CAP_SYS_PACCT); `kcmp`, `pidfd_getfd`, `process_madvise` (CAP_SYS_PTRACE); `iopl`,
 *   `ioperm` (CAP_SYS_RAWIO); `settimeofday`, `clock_settime` (CAP_SYS_TIME); `vhangup`
 *   (CAP_SYS_TTY_CONFIG); NUMA policy calls (CAP_SYS_NICE); `syslog` (CAP_SYSLOG or
 *   CAP_SYS_ADMIN); `bpf` (CAP_BPF or CAP_SYS_ADMIN); `perf_event_open` (CAP_PERFMON or
 *   CAP_SYS_ADMIN); `open_by_handle_at` (CAP_DAC_READ_SEARCH).
 * - Never allowed: `kexec_load`, `kexec_file_load`, `keyctl`, `add_key`, `request_key`,
 *   `userfaultfd`, `swapon`, `swapoff`, `pivot_root`, `io_uring_*`, `move_pages`,
 *   `migrate_pages`, `uselib`, `ustat`, `sysfs`, `_sysctl`, `nfsservctl`, the old module
 *   calls, `vserver` and the unimplemented slots.
 * - Argument checks: `clone` only without CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|
 *   NEWCGROUP (flags are argument 0 on x86_64 and aarch64); `socket` only for Docker's address
 *   families (AF_VSOCK, AF_ALG, AF_DECnet and the like refused); `personality` only for
 *   PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the 0xffffffff query.
 *
 * Like Docker, `adjtimex` and `clock_adjtime` are allowed (the kernel itself requires
 * CAP_SYS_TIME to change the clock with them), and so is `name_to_handle_at` (harmless
 * without `open_by_handle_at`).
 */
import { capName, ENOSYS, EPERM, type SeccompPolicy, type SyscallRule } from "./policy.ts";

/** Whitespace-separated names, `#` comments to the end of a line. */
const words = (text: string) => text.replace(/#.*$/gm, "").split(/\s+/).filter(Boolean);

/** Allowed whatever the capabilities (Docker's list, 64-bit names). */
const ALLOW = words(`
  # files and directories
  access chdir chmod chown close close_range copy_file_range creat dup dup2 dup3 faccessat
  faccessat2 fadvise64 fallocate fchdir fchmod fchmodat fchmodat2 fchown fchownat fcntl fdatasync
  flock fstat fstatfs fsync ftruncate futimesat getcwd getdents getdents64 lchown link linkat
  lseek lstat mkdir mkdirat mknod mknodat name_to_handle_at newfstatat open openat openat2
  pread64 preadv preadv2 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv
  rename renameat renameat2 rmdir sendfile splice stat statfs statx symlink symlinkat sync
  sync_file_range syncfs tee truncate umask unlink unlinkat utime utimensat utimes vmsplice write
  writev cachestat statmount listmount
  # extended attributes
  fgetxattr flistxattr fremovexattr fsetxattr getxattr getxattrat lgetxattr listxattr listxattrat
  llistxattr lremovexattr lsetxattr removexattr removexattrat setxattr setxattrat
  # pipes and randomness
  pipe pipe2 getrandom
  # polling, events, asynchronous I/O
  epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
  epoll_wait_old eventfd eventfd2 fanotify_mark inotify_add_watch inotify_init inotify_init1
  inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents io_setup io_submit ioctl pause
  poll ppoll pselect6 select signalfd signalfd4 timerfd_create timerfd_gettime timerfd_settime
  # memory
  brk madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mlock mlock2 mlockall
  mmap mprotect mremap mseal msync munlock munlockall munmap pkey_alloc pkey_free pkey_mprotect
  remap_file_pages
  # processes, threads, signals
  capget capset execve execveat exit exit_group fork futex futex_requeue futex_wait futex_waitv
  futex_wake get_robust_list get_thread_area getcpu getpgid getpgrp getpid getppid getpriority
  getrlimit getrusage getsid gettid ioprio_get ioprio_set kill pidfd_open pidfd_send_signal prctl
  prlimit64 process_mrelease restart_syscall rseq rt_sigaction rt_sigpending rt_sigprocmask
  rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo
  sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
  sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
  sched_setscheduler sched_yield seccomp set_robust_list set_thread_area set_tid_address setpgid
  setpriority setrlimit setsid sigaltstack tgkill tkill uretprobe vfork wait4 waitid
  # credentials
  getegid geteuid getgid getgroups getresgid getresuid getuid setfsgid setfsuid setgid setgroups
  setregid setresgid setresuid setreuid setuid
  # time
  adjtimex alarm clock_adjtime clock_getres clock_gettime clock_nanosleep getitimer gettimeofday
  nanosleep setitimer time timer_create timer_delete timer_getoverrun timer_gettime timer_settime
  times
  # sockets (socket itself is checked below)
  accept accept4 bind connect getpeername getsockname getsockopt listen recvfrom recvmmsg recvmsg
  sendmmsg sendmsg sendto setsockopt shutdown socketpair
  # System V and POSIX IPC
  mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink msgctl msgget msgrcv
  msgsnd semctl semget semop semtimedop shmat shmctl shmdt shmget
  # system information, Landlock
  sysinfo uname landlock_add_rule landlock_create_ruleset landlock_restrict_self
  # Docker allows these on kernels ≥ 4.8, where ptrace access checks cover them
  ptrace process_vm_readv process_vm_writev
  # x86_64 only (absent from aarch64's table, so skipped there)
  arch_prctl modify_ldt
`);

/** Syscalls a capability unlocks, as in Docker's profile. */
const BY_CAP: [string, string[]][] = [
  ["CAP_DAC_READ_SEARCH", words(`open_by_handle_at`)],
  [
    "CAP_SYS_ADMIN",
    words(`
    bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie
    lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount open_tree
    perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount2 unshare
  `),
  ],
  ["CAP_SYS_BOOT", words(`reboot`)],
  ["CAP_SYS_CHROOT", words(`chroot`)],
  ["CAP_SYS_MODULE", words(`delete_module init_module finit_module`)],
  ["CAP_SYS_PACCT", words(`acct`)],
  [
    "CAP_SYS_PTRACE",
    words(`
    kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace
  `),
  ],
  ["CAP_SYS_RAWIO", words(`iopl ioperm`)],
  ["CAP_SYS_TIME", words(`settimeofday clock_settime`)],
  ["CAP_SYS_TTY_CONFIG", words(`vhangup`)],
  ["CAP_SYS_NICE", words(`get_mempolicy mbind set_mempolicy set_mempolicy_home_node`)],
  ["CAP_SYSLOG", words(`syslog`)],
  ["CAP_BPF", words(`bpf`)],
  ["CAP_PERFMON", words(`perf_event_open`)],
];

/** CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET */
export const CLONE_NAMESPACE_FLAGS = 0x7E020000;

/** Address families `socket` may create: below AF_DECnet (12), then Docker's list. */
export const SOCKET_FAMILIES_BELOW = 12;
export const SOCKET_FAMILIES = words(
  `13 14 15 16 17 18 21 22 24 26 27 28 29 30 31 32 33 35 36 39 41 42 43 44 45`,
).map(Number);

/** personality(2) values allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, query. */
export const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/**
 * The `default` policy for a container holding `caps` (names in any case, with or without
 * `CAP_`). micro's `hardened` profile passes no caps; `default` passes Docker's default set.
 */
export function defaultPolicy(caps: readonly string[]): SeccompPolicy {
  const have = new Set(caps.map(capName));
  const rules: SyscallRule[] = [{ names: [...ALLOW], action: "SCMP_ACT_ALLOW" }];
  for (const [cap, names] of BY_CAP) {
    if (have.has(cap)) rules.push({ names: [...names], action: "SCMP_ACT_ALLOW" });
  }
  if (!have.has("CAP_SYS_ADMIN")) {
    rules.push({
      names: ["clone"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
    });
    rules.push({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS });
  }
  rules.push({
    names: ["socket"],
    action: "SCMP_ACT_ALLOW",
    args: [{ index: 0, value: SOCKET_FAMILIES_BELOW, op: "SCMP_CMP_LT" }],
  });
  for (const family of SOCKET_FAMILIES) {
    rules.push({
      names: ["socket"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value: family, op: "SCMP_CMP_EQ" }],
    });
  }
  for (const persona of PERSONALITIES) {
    rules.push({
      names: ["personality"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value: persona, op: "SCMP_CMP_EQ" }],
    });
  }
  return { defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: EPERM, syscalls: rules };
}

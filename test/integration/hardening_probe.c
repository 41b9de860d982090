/*
 * hardening_probe: makes one system call the way a container escape would start, and prints
 * what the kernel answered, for test/integration/hardening_test.ts.
 *
 *   probe NAME [ARG...]   prints "NAME ok" (exit 0) or "NAME ERRNO" such as "NAME EPERM" (exit 1)
 *   probe ids             prints "RUID EUID SUID"
 *
 * Built with `gcc -static` by the test and copied into a temp copy of the test image. Every
 * call is made with raw syscall(2) (no libc fallbacks) and with arguments chosen so that it
 * does nothing harmful should a broken runtime let it through: reboot with a bad magic,
 * kexec with bad flags, settimeofday with no time, clock_settime with an invalid time, and
 * so on. A call let through answers EINVAL, EBADF, ENOENT or similar instead of EPERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

static const char *name;

static int report(long r) {
  if (r < 0) {
    const char *e = strerrorname_np(errno);
    printf("%s %s\n", name, e ? e : "E?");
    return 1;
  }
  printf("%s ok\n", name);
  return 0;
}

static const char *arg(int argc, char **argv, int i, const char *dflt) {
  return i < argc ? argv[i] : dflt;
}

/* A child that only waits to be killed, for the calls that need a second process. */
static pid_t spawn_sleeper(void) {
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) pause();
  }
  return pid;
}

static void reap(pid_t pid) {
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: probe NAME [ARG...]\n");
    return 2;
  }
  name = argv[1];
  setvbuf(stdout, NULL, _IONBF, 0);
  long r;

  if (!strcmp(name, "as") && argc > 3) { /* as UID NAME [ARG...]: drop to UID first */
    uid_t id = (uid_t)atoi(argv[2]);
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, id, id, id) < 0 ||
        syscall(SYS_setresuid, id, id, id) < 0) {
      printf("as %s\n", strerrorname_np(errno));
      return 1;
    }
    argv += 2;
    argc -= 2;
    name = argv[1];
  }

  if (!strcmp(name, "ids")) {
    uid_t ru, eu, su;
    getresuid(&ru, &eu, &su);
    printf("%u %u %u\n", ru, eu, su);
    return 0;
  }
  if (!strcmp(name, "mount"))
    return report(syscall(SYS_mount, "none", arg(argc, argv, 2, "/tmp"), "tmpfs", 0, NULL));
  if (!strcmp(name, "umount"))
    return report(syscall(SYS_umount2, arg(argc, argv, 2, "/proc"), MNT_DETACH));
  if (!strcmp(name, "unshare-user")) return report(syscall(SYS_unshare, CLONE_NEWUSER));
  if (!strcmp(name, "unshare-mnt")) return report(syscall(SYS_unshare, CLONE_NEWNS));
  if (!strcmp(name, "clone-newuser") || !strcmp(name, "clone-newns")) {
    long flags = name[9] == 'u' ? CLONE_NEWUSER : CLONE_NEWNS;
    r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) syscall(SYS_exit, 0);
    if (r > 0) waitpid(r, NULL, 0);
    return report(r);
  }
  if (!strcmp(name, "clone3")) {
    uint64_t args[11] = {0};
    args[4] = SIGCHLD; /* exit_signal */
    r = syscall(SYS_clone3, args, sizeof args);
    if (r == 0) syscall(SYS_exit, 0);
    if (r > 0) waitpid(r, NULL, 0);
    return report(r);
  }
  if (!strcmp(name, "setns")) {
    const char *path = arg(argc, argv, 2, "/proc/1/ns/mnt");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
      printf("%s open-%s\n", name, strerrorname_np(errno));
      return 1;
    }
    return report(syscall(SYS_setns, fd, 0));
  }
  if (!strcmp(name, "reboot")) /* a bad magic: EINVAL if it got past the checks */
    return report(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, 0, LINUX_REBOOT_CMD_CAD_OFF, NULL));
  if (!strcmp(name, "kexec_load")) /* bad flags: EINVAL if it got past the checks */
    return report(syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL));
  if (!strcmp(name, "kexec_file_load"))
    return report(syscall(SYS_kexec_file_load, -1, -1, 0, "", 0xdead0000UL));
  if (!strcmp(name, "init_module")) return report(syscall(SYS_init_module, NULL, 0, ""));
  if (!strcmp(name, "finit_module")) return report(syscall(SYS_finit_module, -1, "", 0));
  if (!strcmp(name, "delete_module"))
    return report(syscall(SYS_delete_module, "micro_no_such_module", O_NONBLOCK));
  if (!strcmp(name, "bpf")) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    r = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    return report(r);
  }
  if (!strcmp(name, "perf_event_open")) {
    /* Counting our own user-mode CPU clock: allowed by perf_event_paranoid <= 2. */
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof pe);
    pe.size = sizeof pe;
    pe.type = PERF_TYPE_SOFTWARE;
    pe.config = PERF_COUNT_SW_TASK_CLOCK;
    pe.exclude_kernel = 1;
    pe.exclude_hv = 1;
    pe.disabled = 1;
    return report(syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
  }
  if (!strcmp(name, "ptrace")) {
    /* PTRACE_ATTACH to the pid given, or to a child of ours. */
    pid_t child = argc > 2 ? 0 : spawn_sleeper();
    pid_t pid = argc > 2 ? (pid_t)atoi(argv[2]) : child;
    r = syscall(SYS_ptrace, PTRACE_ATTACH, pid, NULL, NULL);
    int e = errno;
    if (r == 0) {
      waitpid(pid, NULL, child ? 0 : __WALL);
      syscall(SYS_ptrace, PTRACE_DETACH, pid, NULL, NULL);
    }
    reap(child);
    errno = e;
    return report(r);
  }
  if (!strcmp(name, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring */
    return report(syscall(SYS_keyctl, 0, -3, 0));
  if (!strcmp(name, "add_key"))
    return report(syscall(SYS_add_key, "user", "micro-probe", "x", 1, -3));
  if (!strcmp(name, "request_key"))
    return report(syscall(SYS_request_key, "user", "micro-probe", NULL, 0));
  if (!strcmp(name, "open_by_handle_at")) {
    struct {
      struct file_handle fh;
      unsigned char data[128];
    } h;
    int mount_id;
    h.fh.handle_bytes = sizeof h.data;
    /* A file on tmpfs (/dev): the root may be an overlay, which gives out no handles. */
    if (syscall(SYS_name_to_handle_at, AT_FDCWD, "/dev/null", &h.fh, &mount_id, 0) < 0) {
      printf("%s name_to_handle_at-%s\n", name, strerrorname_np(errno));
      return 1;
    }
    int mfd = open("/dev", O_RDONLY | O_DIRECTORY);
    return report(syscall(SYS_open_by_handle_at, mfd, &h.fh, O_RDONLY));
  }
  if (!strcmp(name, "raw-inet")) return report(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  if (!strcmp(name, "raw-packet")) return report(socket(AF_PACKET, SOCK_RAW, htons(0x0003)));
  if (!strcmp(name, "vsock")) return report(socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
  if (!strcmp(name, "sethostname")) return report(syscall(SYS_sethostname, "probe", 5));
  if (!strcmp(name, "settimeofday")) /* no time given: sets nothing even if allowed */
    return report(syscall(SYS_settimeofday, NULL, NULL));
  if (!strcmp(name, "clock_settime")) { /* an invalid time: EINVAL if allowed */
    struct timespec ts = {0, -1};
    return report(syscall(SYS_clock_settime, CLOCK_REALTIME, &ts));
  }
  if (!strcmp(name, "mknod-block"))
    return report(syscall(SYS_mknodat, AT_FDCWD, arg(argc, argv, 2, "/tmp/blk"),
                          S_IFBLK | 0600, makedev(8, 0)));
  if (!strcmp(name, "userfaultfd")) return report(syscall(SYS_userfaultfd, 0));
  if (!strcmp(name, "swapon")) return report(syscall(SYS_swapon, "/micro-no-such-swap", 0));
  if (!strcmp(name, "acct")) return report(syscall(SYS_acct, "/micro-no-such-file"));
  if (!strcmp(name, "chroot")) return report(syscall(SYS_chroot, "/tmp"));
  if (!strcmp(name, "pivot_root")) return report(syscall(SYS_pivot_root, "/tmp", "/tmp"));
  if (!strcmp(name, "iopl")) return report(syscall(SYS_iopl, 3));
  if (!strcmp(name, "syslog")) return report(syscall(SYS_syslog, 10 /* size */, NULL, 0));
  if (!strcmp(name, "io_uring_setup")) {
    unsigned char params[120];
    memset(params, 0, sizeof params);
    return report(syscall(SYS_io_uring_setup, 1, params));
  }
  if (!strcmp(name, "personality"))
    return report(syscall(SYS_personality, strtoul(arg(argc, argv, 2, "0"), NULL, 0)));
  if (!strcmp(name, "pipe")) {
    int fds[2];
    return report(syscall(SYS_pipe, fds));
  }
  if (!strcmp(name, "pipe2")) {
    int fds[2];
    return report(syscall(SYS_pipe2, fds, O_CLOEXEC));
  }
  if (!strcmp(name, "getrandom")) {
    char buf[8];
    return report(syscall(SYS_getrandom, buf, sizeof buf, 0));
  }
  if (!strcmp(name, "setuid")) return report(syscall(SYS_setuid, 0));
  if (!strcmp(name, "chown"))
    return report(syscall(SYS_fchownat, AT_FDCWD, arg(argc, argv, 2, "/tmp"),
                          atoi(arg(argc, argv, 3, "0")), -1, 0));
  if (!strcmp(name, "bind")) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(arg(argc, argv, 2, "80")));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return report(bind(fd, (struct sockaddr *)&sa, sizeof sa));
  }
  if (!strcmp(name, "open")) /* open PATH [r|w|d]: read, write (create), directory */
  {
    const char *mode = arg(argc, argv, 3, "r");
    int flags = mode[0] == 'w'   ? O_WRONLY | O_CREAT
                : mode[0] == 'd' ? O_RDONLY | O_DIRECTORY
                                 : O_RDONLY;
    return report(syscall(SYS_openat, AT_FDCWD, arg(argc, argv, 2, "/"), flags, 0644));
  }
  fprintf(stderr, "probe: unknown call %s\n", name);
  return 2;
}

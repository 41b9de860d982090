/*
 * syscall_loop N: times N cheap system calls, four ways, and prints the cost of one call in
 * nanoseconds, one line per workload ("NAME NS"). The N calls run in 20 batches and the mean
 * of the fastest batch is printed, which leaves out what other processes did to the others.
 * bench/seccomp runs it inside containers with and without a seccomp filter; the clock is
 * read here, inside the container, so start-up is not counted. Every call is checked: a call
 * the filter refused (or any other failure) makes the program exit 1, so a number is never
 * the cost of an error path.
 *
 *   getppid      syscall(SYS_getppid): the cheapest call, no arguments
 *   read         read(2) of one byte from /dev/zero
 *   personality  personality(0xffffffff), the query: allowed only by an argument rule in
 *                Docker's profile and micro's default policy, so the kernel cannot skip the
 *                filter through its per-syscall "always allowed" cache and runs it every call
 *   mix          getppid, read, lseek, fcntl(F_GETFD), getuid, personality in turn
 *
 * First it prints the lines "Seccomp" and "Seccomp_filters" of /proc/self/status as
 * "seccomp MODE FILTERS" (e.g. "seccomp 2 1"), so the caller can check that a filter is, or is
 * not, in force.
 *
 * No vDSO calls (clock_gettime, gettimeofday, time, getcpu): they never enter the kernel.
 * Build: gcc -O2 -static -o syscall_loop syscall_loop.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { BATCHES = 20 };

static int zero_fd = -1;

static void fail(const char *what, long i) {
  perror(what);
  fprintf(stderr, "syscall_loop: %s failed at call %ld\n", what, i);
  exit(1);
}

static void loop_getppid(long n) {
  for (long i = 0; i < n; i++)
    if (syscall(SYS_getppid) < 0) fail("getppid", i);
}

static void loop_read(long n) {
  char c;
  for (long i = 0; i < n; i++)
    if (syscall(SYS_read, zero_fd, &c, 1) != 1) fail("read", i);
}

static void loop_personality(long n) {
  for (long i = 0; i < n; i++)
    if (syscall(SYS_personality, 0xffffffffUL) < 0) fail("personality", i);
}

static void loop_mix(long n) {
  char c;
  for (long i = 0; i < n; i++) {
    long r;
    switch (i % 6) {
    case 0: r = syscall(SYS_getppid); break;
    case 1: r = syscall(SYS_read, zero_fd, &c, 1) == 1 ? 0 : -1; break;
    case 2: r = syscall(SYS_lseek, zero_fd, 0L, SEEK_CUR); break;
    case 3: r = syscall(SYS_fcntl, zero_fd, F_GETFD); break;
    case 4: r = syscall(SYS_getuid); break;
    default: r = syscall(SYS_personality, 0xffffffffUL); break;
    }
    if (r < 0) fail("mix", i);
  }
}

/* "seccomp MODE FILTERS" from /proc/self/status; "seccomp ? ?" when it cannot be read. */
static void print_seccomp(void) {
  char line[256], mode[32] = "?", filters[32] = "?";
  FILE *f = fopen("/proc/self/status", "re");
  if (f) {
    while (fgets(line, sizeof line, f)) {
      sscanf(line, "Seccomp: %31s", mode);
      sscanf(line, "Seccomp_filters: %31s", filters);
    }
    fclose(f);
  }
  printf("seccomp %s %s\n", mode, filters);
  fflush(stdout);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;
  if (n <= 0) {
    fprintf(stderr, "usage: syscall_loop [N]\n");
    return 2;
  }
  print_seccomp();
  zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  if (zero_fd < 0) fail("open /dev/zero", 0);

  static const struct {
    const char *name;
    void (*run)(long);
  } loops[] = {
      {"getppid", loop_getppid},
      {"read", loop_read},
      {"personality", loop_personality},
      {"mix", loop_mix},
  };
  /* N calls in BATCHES batches; the fastest batch counts, which leaves out the batches that
   * other processes on the machine, interrupts or migrations happened to slow down. */
  long per = n / BATCHES > 0 ? n / BATCHES : 1;
  for (size_t k = 0; k < sizeof loops / sizeof loops[0]; k++) {
    loops[k].run(per); /* warm up caches and branch predictors */
    double best = -1;
    for (int b = 0; b < BATCHES; b++) {
      double t0 = now_ns();
      loops[k].run(per);
      double ns = (now_ns() - t0) / (double)per;
      if (best < 0 || ns < best) best = ns;
    }
    printf("%s %.2f\n", loops[k].name, best);
  }
  return 0;
}

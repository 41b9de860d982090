/*
 * The launcher of micro's offline single-file form for aarch64: the first bytes of dist/micro
 * on arm64 hosts
 * (tools/build.sh). A POSIX sh stub in front cost every command a shell and a stat(1), about
 * 10 ms on a host where fork and exec are slow; this program does the stub's fast path with
 * system calls only and hands everything else to the stub, which it carries.
 *
 * Fast path, the stub's to the letter (tools/build.sh says why each check is there): the
 * cache base is $MICRO_CACHE_DIR, else $XDG_CACHE_HOME/micro, else $HOME/.cache/micro, else
 * /var/cache/micro when / is the caller's (root). Every path from / down to the base is
 * lstat'ed (newfstatat without following links) and must be a directory of root's or the
 * caller's (euid), not writable by group or others unless sticky; the base and BASE/HASH
 * directories of the caller's, not writable by group or others; BASE/HASH/deno an executable
 * regular file, micro.js and lib/main.js regular files, lib a directory nobody else may
 * enter, all the caller's and writable by nobody else. Then BASE/HASH's mtime is refreshed
 * when older than 600 s (the "last started" stamp the stub's sweep reads), and Deno is
 * exec'd as the stub's launch() does: BASE/HASH/deno run FLAGS BASE/HASH/micro.js ARGS, with
 * DENO_DIR, DENO_NO_UPDATE_CHECK and MICRO_EXE set. For root whose base fails (sudo -E: a
 * $HOME of another user's), /var/cache/micro is tried next, as by the stub.
 *
 * Right before that exec, for `micro run`, `micro exec` and an OCI runtime's `run`, `exec` or
 * `create` (after runc's global flags) as root on cgroup v1, the v1 join's
 * grace period is started and kept (`warm` below; core/cgroups/warm.ts says why), and Deno
 * gets the pid of the child doing it and the write end of a pipe that stops it in MICRO_WARM
 * (a caller's MICRO_WARM never reaches it).
 *
 * Anything else (a base that is relative, not tidy, missing, or not as above; a failed exec)
 * goes to the stub: execve("/bin/sh", ["sh", "-c", STUB, SELF, ARGS...]), which checks again,
 * unpacks when needed and says what is wrong. SELF is this file's path as exec'd (AT_EXECFN,
 * made absolute with the working directory), what the stub reads the payload from.
 *
 * Data, appended by tools/mklauncher.ts after `end` (which also sets the PT_LOAD sizes to
 * cover it): HASH NUL, each Deno flag NUL, an empty string, the stub NUL.
 */
        .set BASE, 0x400000
        .set SYS_getcwd, 17
        .set SYS_statfs, 43
        .set SYS_fstatfs, 44
        .set SYS_openat, 56
        .set SYS_close, 57
        .set SYS_pipe2, 59
        .set SYS_ppoll, 73
        .set SYS_exit, 93
        .set SYS_waitid, 95
        .set SYS_clone, 220
        .set SYS_wait4, 260
        .set SYS_close_range, 436
        .set SYS_write, 64
        .set SYS_newfstatat, 79
        .set SYS_utimensat, 88
        .set SYS_exit_group, 94
        .set SYS_clock_gettime, 113
        .set SYS_geteuid, 175
        .set SYS_execve, 221
        .set AT_SYMLINK_NOFOLLOW, 0x100
        .set AT_SECURE, 23
        .set AT_EXECFN, 31
        .set STAMP, 600
        .set MAX_BASE, 3800                       /* a longer base goes to the stub */
        .set MAX_NAME, 4000                       /* and a longer AT_EXECFN */

        /* The frame (x19): slots, then buffers at multiples of 4096 (add's immediates). */
        .set F_STAT, 0                            /* 256: struct stat (the generic one) */
        .set F_TS, 256                            /* 16: struct timespec */
        .set F_VT, 272                            /* the last judged path's mtime */
        .set F_HVT, 280                           /* BASE/HASH's mtime */
        .set F_END, 288                           /* where BASE/HASH ends in F_P */
        .set F_ONLY, 296                          /* 1: $MICRO_CACHE_DIR, the only base */
        .set F_SELFP, 304                         /* SELF */
        .set F_FLAGS, 312                         /* the first Deno flag */
        .set F_NFLAGS, 320                        /* how many */
        .set F_SCRIPT, 328                        /* the stub */
        .set F_WARM, 336                          /* the warm-up child's pid, or 0 */
        .set F_WENV, 344                          /* 48: MICRO_WARM=PID,FD */
        .set F_PIPE, 392                          /* 8: its pipe (int[2]) */
        .set WARM_WRITES, 100                     /* launcher-x86_64.S's warm says why */
        .set WARM_NS, 2000000
        .set F_SELF, 4096                         /* 8192: SELF when made absolute */
        .set F_Q, 12288                           /* 4096: the base */
        .set F_P, 16384                           /* 4096: the path being checked */
        .set F_DENO, 20480                        /* 4096: BASE/HASH/deno */
        .set F_JS, 24576                          /* 4096: BASE/HASH/micro.js */
        .set F_DIR, 28672                         /* 4096: DENO_DIR=BASE/HASH/deno_dir */
        .set F_EXE, 32768                         /* 8192: MICRO_EXE=SELF */
        .set F_SIZE, 40960

        .include "elf-aarch64.inc"

/*
 * Registers kept across calls: x19 the frame, x20 the euid, x21 argv, x22 argc, x23 envp;
 * chain() also x25 to x28. Helpers may change x0 to x17; they answer 0 for yes in x0.
 */
_start:
        ldr     x22, [sp]
        add     x21, sp, #8
        add     x23, x21, x22, lsl #3
        add     x23, x23, #8
        mov     x0, x23                           /* the auxiliary vector follows envp */
1:      ldr     x1, [x0], #8
        cbnz    x1, 1b
        ldr     x24, [x21]                        /* SELF: AT_EXECFN, else argv[0] */
2:      ldp     x1, x2, [x0], #16
        cbz     x1, 3f
        cmp     x1, #AT_SECURE                    /* set-uid, set-gid, capabilities */
        b.ne    5f
        cbnz    x2, secure
5:      cmp     x1, #AT_EXECFN
        b.ne    2b
        mov     x24, x2
        b       2b
3:      sub     sp, sp, #F_SIZE
        mov     x19, sp
        str     xzr, [x19, #F_WARM]
        mov     x8, #SYS_geteuid
        svc     #0
        mov     w20, w0
        adr     x0, end                           /* the data: HASH, flags, the stub */
0:      ldrb    w2, [x0], #1
        cbnz    w2, 0b
        str     x0, [x19, #F_FLAGS]
        mov     x3, #0
6:      ldrb    w2, [x0]
        cbz     w2, 8f
        add     x3, x3, #1
7:      ldrb    w2, [x0], #1
        cbnz    w2, 7b
        b       6b
8:      str     x3, [x19, #F_NFLAGS]
        add     x0, x0, #1
        str     x0, [x19, #F_SCRIPT]

        str     x24, [x19, #F_SELFP]              /* a relative SELF: the cwd in front */
        cbz     x24, slow
        mov     x0, x24                           /* longer than F_EXE holds: the stub's */
        bl      strlen
        cmp     x0, #MAX_NAME
        b.hi    slow
        ldrb    w0, [x24]
        cmp     w0, #'/'
        b.eq    5f
        add     x0, x19, #F_SELF
        mov     x1, #4096
        mov     x8, #SYS_getcwd
        svc     #0
        cmp     x0, #0
        b.le    5f
        add     x1, x19, #F_SELF
        ldrb    w2, [x1]                          /* "(unreachable)/..." is no path */
        cmp     w2, #'/'
        b.ne    5f
        add     x0, x1, x0                        /* the cwd's NUL: a / there, unless */
        sub     x0, x0, #1                        /* the cwd is / */
        ldurb   w2, [x0, #-1]
        cmp     w2, #'/'
        b.eq    6f
        mov     w2, #'/'
        strb    w2, [x0], #1
6:      mov     x1, x24
        bl      stpcpy
        add     x0, x19, #F_SELF
        str     x0, [x19, #F_SELFP]
5:
        str     xzr, [x19, #F_ONLY]               /* the base */
        adr     x1, e_cache
        bl      getenv
        cbz     x0, 1f
        ldrb    w2, [x0]
        cbz     w2, 1f
        mov     x2, #1
        str     x2, [x19, #F_ONLY]
        mov     x1, x0
        bl      qset
        b       have
1:      adr     x1, e_xdg
        bl      getenv
        cbz     x0, 2f
        ldrb    w2, [x0]
        cbz     w2, 2f
        mov     x1, x0
        bl      qset
        adr     x1, s_micro
        bl      stpcpy
        b       have
2:      adr     x1, e_home
        bl      getenv
        cbz     x0, 3f
        ldrb    w2, [x0]
        cbz     w2, 3f
        mov     x1, x0
        bl      qset
        adr     x1, s_cache
        bl      stpcpy
        b       have
3:      bl      rootown
        cbnz    x0, slow
        adr     x1, varcache
        bl      qset
have:
        add     x1, x19, #F_Q                     /* absolute and tidy, or the stub's */
        ldrb    w0, [x1]
        cmp     w0, #'/'
        b.ne    slow
4:      ldrb    w0, [x1], #1
        cbz     w0, 7f
        cmp     w0, #'/'
        b.ne    4b
        ldrb    w0, [x1]                          /* after a /: not /, nor the end, */
        cbz     w0, slow
        cmp     w0, #'/'
        b.eq    slow
        cmp     w0, #'.'                          /* nor . or .. as a whole name */
        b.ne    4b
        ldrb    w0, [x1, #1]
        cmp     w0, #'.'
        b.ne    5f
        ldrb    w0, [x1, #2]
5:      cbz     w0, slow
        cmp     w0, #'/'
        b.eq    slow
        b       4b
7:      add     x0, x19, #F_Q
        bl      chain
        cbz     x0, launch
        ldr     x0, [x19, #F_ONLY]                /* root with another user's $HOME */
        cbnz    x0, slow
        add     x0, x19, #F_Q
        adr     x1, varcache
        bl      hasprefix
        cbnz    x0, 1f
        ldrb    w3, [x2]
        cbz     w3, slow
1:      bl      rootown
        cbnz    x0, slow
        adr     x1, varcache
        bl      qset
        add     x0, x19, #F_Q
        bl      chain
        cbnz    x0, slow

/* Deno from BASE/HASH (F_Q holds BASE; F_P BASE/HASH/lib, F_END where BASE/HASH ends). */
launch:
        ldr     x0, [x19, #F_END]
        strb    wzr, [x0]
        mov     x0, #0                            /* the stamp: CLOCK_REALTIME */
        add     x1, x19, #F_TS
        mov     x8, #SYS_clock_gettime
        svc     #0
        cbnz    x0, 1f
        ldr     x0, [x19, #F_TS]
        ldr     x1, [x19, #F_HVT]
        sub     x0, x0, x1
        cmp     x0, #STAMP
        b.lt    1f
        mov     x0, #-100                         /* AT_FDCWD; failure is no matter: */
        add     x1, x19, #F_P                     /* the stub's touch -c ... || : */
        mov     x2, #0
        mov     x3, #0
        mov     x8, #SYS_utimensat
        svc     #0
1:      bl      warm
        add     x0, x19, #F_DENO
        add     x1, x19, #F_P
        bl      stpcpy
        adr     x1, s_deno
        bl      stpcpy
        add     x0, x19, #F_JS
        add     x1, x19, #F_P
        bl      stpcpy
        adr     x1, s_js
        bl      stpcpy
        add     x0, x19, #F_DIR
        adr     x1, e_dir
        bl      stpcpy
        add     x1, x19, #F_P
        bl      stpcpy
        adr     x1, s_denodir
        bl      stpcpy
        add     x0, x19, #F_EXE
        adr     x1, e_exe
        bl      stpcpy
        ldr     x1, [x19, #F_SELFP]
        bl      stpcpy

        mov     x0, x23                           /* 8 bytes a word: envc + 1, argc, the */
2:      ldr     x1, [x0], #8                      /* flags and 9 more, rounded */
        cbnz    x1, 2b
        sub     x0, x0, x23
        ldr     x1, [x19, #F_NFLAGS]
        add     x0, x0, x1, lsl #3
        add     x0, x0, x22, lsl #3
        add     x0, x0, #9*8+15
        and     x0, x0, #-16
        sub     sp, sp, x0

        mov     x9, sp                            /* argv: deno run FLAGS micro.js ARGS */
        add     x0, x19, #F_DENO
        adr     x1, s_run
        stp     x0, x1, [x9], #16
        ldr     x1, [x19, #F_FLAGS]
        ldr     x2, [x19, #F_NFLAGS]
3:      cbz     x2, 5f
        str     x1, [x9], #8
4:      ldrb    w3, [x1], #1
        cbnz    w3, 4b
        sub     x2, x2, #1
        b       3b
5:      add     x0, x19, #F_JS
        str     x0, [x9], #8
        bl      args
        mov     x24, x9                           /* envp: the caller's but DENO_DIR, */
        mov     x10, x23                          /* DENO_NO_UPDATE_CHECK, MICRO_EXE, */
6:      ldr     x11, [x10], #8                    /* then those three */
        cbz     x11, 8f
        mov     x0, x11
        adr     x1, e_dir
        bl      hasprefix
        cbz     x0, 6b
        mov     x0, x11
        adr     x1, e_check
        bl      hasprefix
        cbz     x0, 6b
        mov     x0, x11
        adr     x1, e_exe
        bl      hasprefix
        cbz     x0, 6b
        mov     x0, x11
        adr     x1, e_warm
        bl      hasprefix
        cbz     x0, 6b
        str     x11, [x9], #8
        b       6b
8:      add     x0, x19, #F_DIR
        adr     x1, e_nocheck
        stp     x0, x1, [x9], #16
        add     x0, x19, #F_EXE
        str     x0, [x9], #8
        ldr     x1, [x19, #F_WARM]                /* and MICRO_WARM, when there is one */
        cbz     x1, 9f
        add     x0, x19, #F_WENV
        str     x0, [x9], #8
9:      str     xzr, [x9], #8
        add     x0, x19, #F_DENO
        mov     x1, sp
        mov     x2, x24
        mov     x8, #SYS_execve
        svc     #0
        /* the exec failed: the stub says why */

/* The stub: sh -c STUB SELF ARGS, with the caller's environment. */
slow:
        ldr     x0, [x19, #F_WARM]                /* Deno's exec failed after the warm-up: */
        cbz     x0, 1f                            /* its pipe is not the stub's (W stops) */
        ldr     w0, [x19, #F_PIPE+4]
        mov     x8, #SYS_close
        svc     #0
1:      lsl     x0, x22, #3                       /* argc + 5 words (argc may be 0) */
        add     x0, x0, #5*8+15
        and     x0, x0, #-16
        sub     sp, sp, x0
        mov     x9, sp
        adr     x0, s_sh
        adr     x1, s_c
        stp     x0, x1, [x9], #16
        ldr     x0, [x19, #F_SCRIPT]
        ldr     x1, [x19, #F_SELFP]
        stp     x0, x1, [x9], #16
        bl      args
        adr     x0, binsh
        mov     x1, sp
        mov     x2, x23
        mov     x8, #SYS_execve
        svc     #0
        neg     x20, x0                           /* one line with the errno */
        add     x0, x19, #F_P
        adr     x1, nosh
        bl      stpcpy
        mov     x1, x20
        bl      utoa
        adr     x1, nosh2
        bl      stpcpy
        add     x1, x19, #F_P
        sub     x2, x0, x1
        mov     x0, #2
        mov     x8, #SYS_write
        svc     #0
        mov     x0, #125
        mov     x8, #SYS_exit_group
        svc     #0

/* Set-uid, set-gid or file capabilities: the caller's environment must not pick what runs. */
secure:
        mov     x0, #2
        adr     x1, nosecure
        mov     x2, #nosecure_end - nosecure
        mov     x8, #SYS_write
        svc     #0
        mov     x0, #125
        mov     x8, #SYS_exit_group
        svc     #0

/*
 * For `micro run` and `micro exec` as root on cgroup v1: the first v1 attach's RCU grace
 * period started now (launcher-x86_64.S's warm says how, and core/cgroups/warm.ts why). Z is
 * cloned with CLONE_VM | CLONE_VFORK (arm64 has no vfork call). F_WARM: W's pid, or 0. Keeps
 * x13, x15 and x16 from the helpers.
 */
warm:
        str     xzr, [x19, #F_WARM]
        cbnz    w20, 9f                           /* root */
        mov     x16, x30
        mov     x10, #1                           /* the verb: after runc's global flags */
1:      cmp     x10, x22                          /* (OCI callers put them first) */
        b.hs    8f
        ldr     x11, [x21, x10, lsl #3]
        add     x10, x10, #1
        ldrb    w2, [x11]
        cmp     w2, #'-'
        b.ne    2f
        mov     x0, x11                           /* and one that takes a value, its value */
        adr     x1, runc_valued
        bl      oneof
        cbnz    x0, 1b
        add     x10, x10, #1
        b       1b
2:      mov     x0, x11                           /* run, exec or create */
        adr     x1, verbs
        bl      oneof
        cbnz    x0, 8f
        adr     x0, cgroupfs                      /* /sys/fs/cgroup is not cgroup2 */
        add     x1, x19, #F_STAT
        mov     x8, #SYS_statfs
        svc     #0
        cbnz    x0, 8f
        ldr     x1, [x19, #F_STAT]
        mov     x2, #0x7270
        movk    x2, #0x6367, lsl #16
        cmp     x1, x2
        b.eq    8f
        adr     x13, procs                        /* the first root cgroup.procs of */
3:      ldrb    w3, [x13]                         /* cgroupfs that opens */
        cbz     w3, 8f
        mov     x0, #-100                         /* AT_FDCWD */
        mov     x1, x13
        mov     x2, #0x8001                       /* O_WRONLY | O_NOFOLLOW (arm64's) */
        movk    x2, #0x8, lsl #16                 /* | O_CLOEXEC */
        mov     x3, #0
        mov     x8, #SYS_openat
        svc     #0
        tbnz    x0, #63, 5f
        mov     x15, x0
        add     x1, x19, #F_STAT
        mov     x8, #SYS_fstatfs
        svc     #0
        cbnz    x0, 4f
        ldr     x1, [x19, #F_STAT]
        mov     x2, #0xe0eb                       /* CGROUP_SUPER_MAGIC */
        movk    x2, #0x27, lsl #16
        cmp     x1, x2
        b.eq    6f
        mov     x2, #0x7270                       /* CGROUP2_SUPER_MAGIC */
        movk    x2, #0x6367, lsl #16
        cmp     x1, x2
        b.eq    6f
4:      mov     x0, x15
        mov     x8, #SYS_close
        svc     #0
5:      ldrb    w3, [x13], #1                     /* the next path */
        cbnz    w3, 5b
        b       3b
6:      add     x0, x19, #F_PIPE                  /* the pipe: its write end, kept */
        mov     x1, #0                            /* open across the exec, micro's */
        mov     x8, #SYS_pipe2
        svc     #0
        cbnz    x0, 7f
        ldr     w0, [x19, #F_PIPE+4]              /* a caller without stdio: not as */
        cmp     w0, #3                            /* Deno's fd 0, 1 or 2 */
        b.lo    10f
        mov     x0, #17                           /* W: a fork (SIGCHLD), the fd in x15 */
        mov     x1, #0
        mov     x2, #0
        mov     x3, #0
        mov     x4, #0
        mov     x8, #SYS_clone
        svc     #0
        cbz     x0, wchild
        tbnz    x0, #63, 10f
        str     x0, [x19, #F_WARM]
        add     x0, x19, #F_WENV
        adr     x1, e_warm
        bl      stpcpy
        ldr     x1, [x19, #F_WARM]
        bl      utoa
        mov     w1, #','
        strb    w1, [x0], #1
        ldr     w1, [x19, #F_PIPE+4]
        bl      utoa
        ldr     w0, [x19, #F_PIPE]                /* the read end is W's */
        mov     x8, #SYS_close
        svc     #0
        b       7f
10:     ldr     w0, [x19, #F_PIPE]
        mov     x8, #SYS_close
        svc     #0
        ldr     w0, [x19, #F_PIPE+4]
        mov     x8, #SYS_close
        svc     #0
7:      mov     x0, x15
        mov     x8, #SYS_close
        svc     #0
8:      mov     x30, x16
9:      ret

/*
 * W (see warm): the cgroup.procs fd in x15, F_PIPE its pipe; never returns. It keeps no fd
 * but those two (launcher-x86_64.S's wchild says why and how).
 */
wchild:
        sub     sp, sp, #512                      /* 0: siginfo, 128: pollfd, 144: timespec, */
        ldr     w12, [x19, #F_PIPE]               /* 256: Z's pid. x12 the read end, x13 */
        cmp     x15, x12                          /* the higher of the two */
        csel    x13, x15, x12, hi
        mov     x14, #0
5:      cmp     x14, x13
        b.hs    7f
        cmp     x14, x15
        b.eq    6f
        cmp     x14, x12
        b.eq    6f
        mov     x0, x14
        mov     x8, #SYS_close
        svc     #0
6:      add     x14, x14, #1
        b       5b
7:      add     x0, x13, #1
        mov     w1, #-1                           /* ~0U */
        mov     x2, #0
        mov     x8, #SYS_close_range
        svc     #0
        mov     x0, #0x4111                       /* Z: CLONE_VM | CLONE_VFORK | SIGCHLD */
        mov     x1, #0
        mov     x2, #0
        mov     x3, #0
        mov     x4, #0
        mov     x8, #SYS_clone
        svc     #0
        cbnz    x0, 1f
        mov     x8, #SYS_exit                     /* Z: exit(0) */
        svc     #0
1:      tbnz    x0, #63, 3f
        mov     x14, x0
        mov     x0, #1                            /* P_PID */
        mov     x1, x14
        mov     x2, sp
        mov     x3, #4                            /* WEXITED | WNOWAIT */
        movk    x3, #0x100, lsl #16
        mov     x4, #0
        mov     x8, #SYS_waitid
        svc     #0
        cbnz    x0, 2f
        add     x0, sp, #256
        mov     x1, x14
        add     x3, sp, #504
        bl      utoa3
        add     x1, sp, #256
        sub     x13, x0, x1                       /* its length */
        mov     x12, #WARM_WRITES
        ldr     w0, [x19, #F_PIPE]                /* pollfd: the read end, POLLIN */
        str     w0, [sp, #128]
        mov     w0, #1
        str     w0, [sp, #132]
4:      mov     x0, x15
        add     x1, sp, #256
        mov     x2, x13
        mov     x8, #SYS_write
        svc     #0
        subs    x12, x12, #1
        b.eq    2f
        str     xzr, [sp, #144]                   /* timespec: WARM_NS, set each time */
        mov     x0, #(WARM_NS & 0xffff)           /* (ppoll leaves what was not slept) */
        movk    x0, #(WARM_NS >> 16), lsl #16
        str     x0, [sp, #152]
        add     x0, sp, #128                      /* EOF (micro done), an error or a */
        mov     x1, #1                            /* signal ends it */
        add     x2, sp, #144
        mov     x3, #0
        mov     x4, #8
        mov     x8, #SYS_ppoll
        svc     #0
        cbz     x0, 4b
2:      mov     x0, x14
        mov     x1, #0
        mov     x2, #0
        mov     x3, #0
        mov     x8, #SYS_wait4
        svc     #0
3:      mov     x0, #0
        mov     x8, #SYS_exit
        svc     #0

/* x1 (a number) in decimal at x0; x0 after it (F_STAT is the scratch; utoa3's ends at x3). */
utoa:
        add     x3, x19, #F_STAT+32
utoa3:
        mov     x4, x3
        mov     x2, #10
1:      udiv    x5, x1, x2
        msub    x6, x5, x2, x1
        add     w6, w6, #'0'
        strb    w6, [x4, #-1]!
        mov     x1, x5
        cbnz    x1, 1b
2:      ldrb    w6, [x4], #1
        strb    w6, [x0], #1
        cmp     x4, x3
        b.ne    2b
        strb    wzr, [x0]
        ret

/* x0 0 when the string at x0 is one of the list at x1 (NUL-separated, an empty one last). */
oneof:
1:      ldrb    w2, [x1]
        cbz     w2, 4f
        mov     x3, x0
2:      ldrb    w2, [x1], #1
        ldrb    w4, [x3], #1
        cmp     w2, w4
        b.ne    3f
        cbnz    w2, 2b
        mov     x0, #0
        ret
3:      cbz     w2, 1b                            /* past this one's NUL already */
5:      ldrb    w2, [x1], #1                      /* the rest of this one */
        cbnz    w2, 5b
        b       1b
4:      mov     x0, #1
        ret

/* At x9: argv[1..argc-1] and a NULL; x9 after the NULL. */
args:
        mov     x3, #1
1:      cmp     x3, x22
        b.hs    2f
        ldr     x4, [x21, x3, lsl #3]
        str     x4, [x9], #8
        add     x3, x3, #1
        b       1b
2:      str     xzr, [x9], #8
        ret

/* x0: the length of the string at x0. */
strlen:
        mov     x1, x0
1:      ldrb    w2, [x1], #1
        cbnz    w2, 1b
        sub     x0, x1, x0
        sub     x0, x0, #1
        ret

/* Copies the string at x1 (its NUL too) to x0; x0 then points at the copied NUL. */
stpcpy:
1:      ldrb    w2, [x1], #1
        strb    w2, [x0], #1
        cbnz    w2, 1b
        sub     x0, x0, #1
        ret

/* x0 0 when the string at x0 starts with the one at x1; x2 then after that prefix. */
hasprefix:
        mov     x2, x0
1:      ldrb    w3, [x1], #1
        cbz     w3, 2f
        ldrb    w4, [x2], #1
        cmp     w3, w4
        b.eq    1b
        mov     x0, #1
        ret
2:      mov     x0, #0
        ret

/* x0: the value of the environment variable x1 names ("NAME="), or 0; of several, the last. */
getenv:
        mov     x5, x30
        mov     x6, x1
        mov     x7, x23
        mov     x10, #0
1:      ldr     x0, [x7], #8
        cbz     x0, 2f
        mov     x1, x6
        bl      hasprefix
        cbnz    x0, 1b
        mov     x10, x2
        b       1b
2:      mov     x0, x10
        mov     x30, x5
        ret

/* F_Q = the string at x1 (to the stub when longer than MAX_BASE); x0 at its NUL. */
qset:
        mov     x5, x30
        mov     x6, x1
        mov     x0, x1
        bl      strlen
        cmp     x0, #MAX_BASE
        b.hi    slow                              /* not returning: the stub's */
        add     x0, x19, #F_Q
        mov     x1, x6
        mov     x30, x5
        b       stpcpy

/* x0 0 when / is the caller's (the stub's [ -O / ]). */
rootown:
        mov     x0, #-100
        adr     x1, slash
        add     x2, x19, #F_STAT
        mov     x3, #0
        mov     x8, #SYS_newfstatat
        svc     #0
        cbnz    x0, 1f
        ldr     w1, [x19, #F_STAT+24]
        cmp     w1, w20
        cset    x0, ne
1:      ret

/*
 * x0 0 when the path at x0 is what w1 says ('a' above the base, 'd' and 'p' directories,
 * 'f' and 'x' files of the caller's: as the stub's judge()); F_VT its mtime.
 */
judge:
        mov     w9, w1
        mov     x1, x0
        mov     x0, #-100
        add     x2, x19, #F_STAT
        mov     x3, #AT_SYMLINK_NOFOLLOW
        mov     x8, #SYS_newfstatat
        svc     #0
        cbnz    x0, 9f
        ldr     w10, [x19, #F_STAT+16]            /* st_mode */
        ldr     w11, [x19, #F_STAT+24]            /* st_uid */
        ldr     x12, [x19, #F_STAT+88]            /* st_mtime */
        str     x12, [x19, #F_VT]
        and     w13, w10, #0xf000
        mov     w14, #0x4000                      /* a directory, */
        cmp     w9, #'f'
        b.eq    1f
        cmp     w9, #'x'
        b.ne    2f
1:      mov     w14, #0x8000                      /* or a regular file */
2:      cmp     w13, w14
        b.ne    9f
        cmp     w9, #'a'                          /* above the base, root's counts as */
        b.ne    3f                                /* the caller's */
        cbnz    w11, 3f
        mov     w11, w20
3:      cmp     w11, w20
        b.ne    9f
        mov     w15, #0x12                        /* group or others may write: only */
        tst     w10, w15                          /* a sticky directory above the base */
        b.eq    4f
        cmp     w9, #'a'
        b.ne    9f
        tst     w10, #0x200
        b.eq    9f
4:      cmp     w9, #'x'
        b.ne    5f
        tst     w10, #0x40
        b.eq    9f
5:      cmp     w9, #'p'
        b.ne    6f
        tst     w10, #0x3f
        b.ne    9f
6:      mov     x0, #0
        ret
9:      mov     x0, #1
        ret

/*
 * x0 0 when every path from / down to the base at x0 and the files of BASE/HASH are as they
 * must be (the stub's chain ... full); F_P then holds BASE/HASH/lib, F_END points after
 * BASE/HASH in it, F_HVT is BASE/HASH's mtime.
 */
chain:
        mov     x27, x30
        mov     x25, x0
        adr     x0, slash
        mov     w1, #'a'
        bl      judge
        cbnz    x0, 9f
        add     x28, x19, #F_P
        mov     w2, #'/'
        strb    w2, [x28]
        mov     x26, #1
1:      ldrb    w2, [x25, x26]
        cbz     w2, 3f
        cmp     w2, #'/'
        b.ne    2f
        strb    wzr, [x28, x26]
        mov     x0, x28
        mov     w1, #'a'
        bl      judge
        cbnz    x0, 9f
        mov     w2, #'/'
2:      strb    w2, [x28, x26]
        add     x26, x26, #1
        b       1b
3:      add     x0, x28, x26
        strb    wzr, [x0]
        str     x0, [x19, #F_END]
        mov     x0, x28
        mov     w1, #'d'
        bl      judge
        cbnz    x0, 9f
        ldr     x0, [x19, #F_END]
        mov     w2, #'/'
        strb    w2, [x0], #1
        adr     x1, end
        bl      stpcpy
        str     x0, [x19, #F_END]
        mov     x0, x28
        mov     w1, #'d'
        bl      judge
        cbnz    x0, 9f
        ldr     x0, [x19, #F_VT]
        str     x0, [x19, #F_HVT]
        adr     x1, s_deno
        mov     w3, #'x'
        bl      file
        cbnz    x0, 9f
        adr     x1, s_js
        mov     w3, #'f'
        bl      file
        cbnz    x0, 9f
        adr     x1, s_main
        mov     w3, #'f'
        bl      file
        cbnz    x0, 9f
        adr     x1, s_lib
        mov     w3, #'p'
        bl      file
9:      mov     x30, x27
        ret

/* x0 0 when BASE/HASH followed by the string at x1 is what w3 says. */
file:
        mov     x17, x30
        mov     w16, w3
        ldr     x0, [x19, #F_END]
        bl      stpcpy
        add     x0, x19, #F_P
        mov     w1, w16
        mov     x30, x17
        b       judge

        .include "launcher-data.inc"

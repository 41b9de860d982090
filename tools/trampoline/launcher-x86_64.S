/*
 * The launcher of micro's offline single-file form for x86_64: the first bytes of dist/micro
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
        .set SYS_write, 1
        .set SYS_open, 2
        .set SYS_close, 3
        .set SYS_poll, 7
        .set SYS_clone, 56
        .set SYS_vfork, 58
        .set SYS_execve, 59
        .set SYS_exit, 60
        .set SYS_wait4, 61
        .set SYS_statfs, 137
        .set SYS_fstatfs, 138
        .set SYS_waitid, 247
        .set SYS_pipe2, 293
        .set SYS_close_range, 436
        .set SYS_getcwd, 79
        .set SYS_geteuid, 107
        .set SYS_clock_gettime, 228
        .set SYS_exit_group, 231
        .set SYS_newfstatat, 262
        .set SYS_utimensat, 280
        .set AT_FDCWD, -100
        .set AT_SYMLINK_NOFOLLOW, 0x100
        .set AT_SECURE, 23
        .set AT_EXECFN, 31
        .set O_PROCS, 0xa0001                     /* O_WRONLY | O_NOFOLLOW | O_CLOEXEC */
        .set SIGCHLD, 17
        .set P_PID, 1
        .set WEXITED_WNOWAIT, 0x1000004
        .set CGROUP_MAGIC, 0x27e0eb
        .set CGROUP2_MAGIC, 0x63677270
        .set WARM_WRITES, 100                     /* a write, then one every WARM_MS at most */
        .set WARM_MS, 2                           /* (under any grace period: it stays slow) */
        .set STAMP, 600
        .set MAX_BASE, 3800                       /* a longer base goes to the stub */
        .set MAX_NAME, 4000                       /* and a longer AT_EXECFN */

        /* The frame (%rbx): buffers, then slots. */
        .set F_SELF, 0                            /* 8192: SELF when made absolute */
        .set F_Q, 8192                            /* 4096: the base */
        .set F_P, 12288                           /* 4096: the path being checked */
        .set F_DENO, 16384                        /* 4096: BASE/HASH/deno */
        .set F_JS, 20480                          /* 4096: BASE/HASH/micro.js */
        .set F_DIR, 24576                         /* 4096: DENO_DIR=BASE/HASH/deno_dir */
        .set F_EXE, 28672                         /* 8192: MICRO_EXE=SELF */
        .set F_STAT, 36864                        /* 256: struct stat */
        .set F_TS, 37120                          /* 16: struct timespec */
        .set F_VT, 37136                          /* the last judged path's mtime */
        .set F_HVT, 37144                         /* BASE/HASH's mtime */
        .set F_END, 37152                         /* where BASE/HASH ends in F_P */
        .set F_ONLY, 37160                        /* 1: $MICRO_CACHE_DIR, the only base */
        .set F_SELFP, 37168                       /* SELF */
        .set F_FLAGS, 37176                       /* the first Deno flag */
        .set F_NFLAGS, 37184                      /* how many */
        .set F_SCRIPT, 37192                      /* the stub */
        .set F_WARM, 37200                        /* the warm-up child's pid, or 0 */
        .set F_PIPE, 37208                        /* 8: its pipe (int[2]) */
        .set F_WENV, 37216                        /* 48: MICRO_WARM=PID,FD */
        .set F_SIZE, 37376

        .include "elf-x86_64.inc"

/*
 * Registers kept across calls: %rbx the frame, %r12 the euid, %r13 argv, %r14 argc, %r15
 * envp. Helpers may change %rax, %rcx, %rdx, %rsi, %rdi and %r8 to %r11.
 */
_start:
        mov     (%rsp), %r14
        lea     8(%rsp), %r13
        lea     16(%rsp,%r14,8), %r15
        mov     %r15, %rax                        /* the auxiliary vector follows envp */
1:      cmpq    $0, (%rax)
        lea     8(%rax), %rax
        jne     1b
        mov     (%r13), %rbp                      /* SELF: AT_EXECFN, else argv[0] */
2:      mov     (%rax), %rcx
        test    %rcx, %rcx
        je      3f
        cmp     $AT_EXECFN, %rcx
        jne     5f
        mov     8(%rax), %rbp
5:      cmp     $AT_SECURE, %rcx                  /* set-uid, set-gid, capabilities */
        jne     4f
        cmpq    $0, 8(%rax)
        jne     secure
4:      add     $16, %rax
        jmp     2b
3:      sub     $F_SIZE, %rsp
        mov     %rsp, %rbx
        movq    $0, F_WARM(%rbx)
        mov     $SYS_geteuid, %eax
        syscall
        mov     %eax, %r12d
        lea     end(%rip), %rdi                   /* the data: HASH, flags, the stub */
        call    strlen
        lea     1(%rdi,%rax), %rsi
        mov     %rsi, F_FLAGS(%rbx)
        xor     %ecx, %ecx
6:      cmpb    $0, (%rsi)
        je      8f
        inc     %ecx
7:      inc     %rsi
        cmpb    $0, -1(%rsi)
        jne     7b
        jmp     6b
8:      mov     %rcx, F_NFLAGS(%rbx)
        inc     %rsi
        mov     %rsi, F_SCRIPT(%rbx)

        mov     %rbp, F_SELFP(%rbx)               /* a relative SELF: the cwd in front */
        test    %rbp, %rbp
        je      slow
        mov     %rbp, %rdi                        /* longer than F_EXE holds: the stub's */
        call    strlen
        cmp     $MAX_NAME, %rax
        ja      slow
        cmpb    $'/', (%rbp)
        je      5f
        mov     $SYS_getcwd, %eax
        lea     F_SELF(%rbx), %rdi
        mov     $4096, %esi
        syscall
        test    %rax, %rax
        jle     5f
        cmpb    $'/', F_SELF(%rbx)                /* "(unreachable)/..." is no path */
        jne     5f
        lea     F_SELF-1(%rbx,%rax), %rdi         /* the cwd's NUL: a / there, unless */
        cmpb    $'/', -1(%rdi)                    /* the cwd is / */
        je      6f
        movb    $'/', (%rdi)
        inc     %rdi
6:
        mov     %rbp, %rsi
        call    stpcpy
        lea     F_SELF(%rbx), %rax
        mov     %rax, F_SELFP(%rbx)
5:

        movq    $0, F_ONLY(%rbx)                  /* the base */
        lea     e_cache(%rip), %rsi
        call    getenv
        test    %rax, %rax
        je      1f
        cmpb    $0, (%rax)
        je      1f
        movq    $1, F_ONLY(%rbx)
        mov     %rax, %rsi
        call    qset
        jmp     have
1:      lea     e_xdg(%rip), %rsi
        call    getenv
        test    %rax, %rax
        je      2f
        cmpb    $0, (%rax)
        je      2f
        mov     %rax, %rsi
        call    qset
        lea     s_micro(%rip), %rsi
        call    stpcpy
        jmp     have
2:      lea     e_home(%rip), %rsi
        call    getenv
        test    %rax, %rax
        je      3f
        cmpb    $0, (%rax)
        je      3f
        mov     %rax, %rsi
        call    qset
        lea     s_cache(%rip), %rsi
        call    stpcpy
        jmp     have
3:      call    rootown
        jne     slow
        lea     varcache(%rip), %rsi
        call    qset
have:
        lea     F_Q(%rbx), %rsi                   /* absolute and tidy, or the stub's */
        cmpb    $'/', (%rsi)
        jne     slow
4:      movb    (%rsi), %al
        test    %al, %al
        je      7f
        inc     %rsi
        cmp     $'/', %al
        jne     4b
        movb    (%rsi), %al                       /* after a /: not /, nor the end, */
        test    %al, %al
        je      slow
        cmp     $'/', %al
        je      slow
        cmp     $'.', %al                         /* nor . or .. as a whole name */
        jne     4b
        movb    1(%rsi), %al
        cmp     $'.', %al
        jne     5f
        movb    2(%rsi), %al
5:      test    %al, %al
        je      slow
        cmp     $'/', %al
        je      slow
        jmp     4b
7:      lea     F_Q(%rbx), %rdi
        call    chain
        je      launch
        cmpq    $0, F_ONLY(%rbx)                  /* root with another user's $HOME */
        jne     slow
        lea     F_Q(%rbx), %rdi
        lea     varcache(%rip), %rsi
        call    hasprefix
        jne     1f
        cmpb    $0, (%rdi)
        je      slow
1:      call    rootown
        jne     slow
        lea     varcache(%rip), %rsi
        call    qset
        lea     F_Q(%rbx), %rdi
        call    chain
        jne     slow

/* Deno from BASE/HASH (F_Q holds BASE; F_P BASE/HASH/lib, F_END where BASE/HASH ends). */
launch:
        mov     F_END(%rbx), %rax
        movb    $0, (%rax)
        mov     $SYS_clock_gettime, %eax          /* the stamp: CLOCK_REALTIME */
        xor     %edi, %edi
        lea     F_TS(%rbx), %rsi
        syscall
        test    %rax, %rax
        jne     1f
        mov     F_TS(%rbx), %rax
        sub     F_HVT(%rbx), %rax
        cmp     $STAMP, %rax
        jl      1f
        mov     $SYS_utimensat, %eax              /* failure is no matter: the stub's */
        mov     $AT_FDCWD, %edi                   /* touch -c ... || : */
        lea     F_P(%rbx), %rsi
        xor     %edx, %edx
        xor     %r10d, %r10d
        syscall
1:      call    warm
        lea     F_DENO(%rbx), %rdi
        lea     F_P(%rbx), %rsi
        call    stpcpy
        lea     s_deno(%rip), %rsi
        call    stpcpy
        lea     F_JS(%rbx), %rdi
        lea     F_P(%rbx), %rsi
        call    stpcpy
        lea     s_js(%rip), %rsi
        call    stpcpy
        lea     F_DIR(%rbx), %rdi
        lea     e_dir(%rip), %rsi
        call    stpcpy
        lea     F_P(%rbx), %rsi
        call    stpcpy
        lea     s_denodir(%rip), %rsi
        call    stpcpy
        lea     F_EXE(%rbx), %rdi
        lea     e_exe(%rip), %rsi
        call    stpcpy
        mov     F_SELFP(%rbx), %rsi
        call    stpcpy

        mov     %r15, %rax                        /* envc */
2:      cmpq    $0, (%rax)
        lea     8(%rax), %rax
        jne     2b
        sub     %r15, %rax                        /* 8 bytes a word: envc + 1, argc, */
        mov     F_NFLAGS(%rbx), %rcx              /* the flags and 9 more, rounded */
        lea     (%rax,%rcx,8), %rax
        lea     (%rax,%r14,8), %rax
        add     $9*8+15, %rax
        and     $-16, %rax
        sub     %rax, %rsp

        mov     %rsp, %rdi                        /* argv: deno run FLAGS micro.js ARGS */
        lea     F_DENO(%rbx), %rax
        mov     %rax, (%rdi)
        lea     s_run(%rip), %rax
        mov     %rax, 8(%rdi)
        add     $16, %rdi
        mov     F_FLAGS(%rbx), %rsi
        mov     F_NFLAGS(%rbx), %rcx
3:      test    %rcx, %rcx
        je      5f
        mov     %rsi, (%rdi)
        add     $8, %rdi
4:      inc     %rsi
        cmpb    $0, -1(%rsi)
        jne     4b
        dec     %rcx
        jmp     3b
5:      lea     F_JS(%rbx), %rax
        mov     %rax, (%rdi)
        add     $8, %rdi
        call    args
        mov     %rdi, %rbp
        mov     %rdi, %r8                         /* envp: the caller's but DENO_DIR, */
        mov     %r15, %r9                         /* DENO_NO_UPDATE_CHECK, MICRO_EXE, */
6:      mov     (%r9), %rdx                       /* then those three */
        test    %rdx, %rdx
        je      8f
        add     $8, %r9
        mov     %rdx, %rdi
        lea     e_dir(%rip), %rsi
        call    hasprefix
        je      6b
        mov     %rdx, %rdi
        lea     e_check(%rip), %rsi
        call    hasprefix
        je      6b
        mov     %rdx, %rdi
        lea     e_exe(%rip), %rsi
        call    hasprefix
        je      6b
        mov     %rdx, %rdi
        lea     e_warm(%rip), %rsi
        call    hasprefix
        je      6b
        mov     %rdx, (%r8)
        add     $8, %r8
        jmp     6b
8:      lea     F_DIR(%rbx), %rax
        mov     %rax, (%r8)
        lea     e_nocheck(%rip), %rax
        mov     %rax, 8(%r8)
        lea     F_EXE(%rbx), %rax
        mov     %rax, 16(%r8)
        add     $24, %r8
        cmpq    $0, F_WARM(%rbx)                  /* and MICRO_WARM, when there is one */
        je      9f
        lea     F_WENV(%rbx), %rax
        mov     %rax, (%r8)
        add     $8, %r8
9:      movq    $0, (%r8)
        mov     %rbp, %rdx                        /* envp starts after argv's NULL */
        mov     $SYS_execve, %eax
        lea     F_DENO(%rbx), %rdi
        mov     %rsp, %rsi
        syscall
        /* the exec failed: the stub says why */

/* The stub: sh -c STUB SELF ARGS, with the caller's environment. */
slow:
        cmpq    $0, F_WARM(%rbx)                  /* Deno's exec failed after the warm-up: */
        je      1f                                /* its pipe is not the stub's (W stops) */
        mov     $SYS_close, %eax
        movl    F_PIPE+4(%rbx), %edi
        syscall
1:      lea     (,%r14,8), %rax                   /* argc + 5 words (argc may be 0) */
        add     $5*8+15, %rax
        and     $-16, %rax
        sub     %rax, %rsp
        mov     %rsp, %rdi
        lea     s_sh(%rip), %rax
        mov     %rax, (%rdi)
        lea     s_c(%rip), %rax
        mov     %rax, 8(%rdi)
        mov     F_SCRIPT(%rbx), %rax
        mov     %rax, 16(%rdi)
        mov     F_SELFP(%rbx), %rax
        mov     %rax, 24(%rdi)
        add     $32, %rdi
        call    args
        mov     $SYS_execve, %eax
        lea     binsh(%rip), %rdi
        mov     %rsp, %rsi
        mov     %r15, %rdx
        syscall
        neg     %rax                              /* one line with the errno */
        mov     %rax, %r12
        lea     F_P(%rbx), %rdi
        lea     nosh(%rip), %rsi
        call    stpcpy
        mov     %r12, %rax
        call    utoa
        lea     nosh2(%rip), %rsi
        call    stpcpy
        lea     F_P(%rbx), %rsi
        mov     %rdi, %rdx
        sub     %rsi, %rdx
        mov     $SYS_write, %eax
        mov     $2, %edi
        syscall
        mov     $SYS_exit_group, %eax
        mov     $125, %edi
        syscall

/* Set-uid, set-gid or file capabilities: the caller's environment must not pick what runs. */
secure:
        mov     $SYS_write, %eax
        mov     $2, %edi
        lea     nosecure(%rip), %rsi
        mov     $nosecure_end - nosecure, %edx
        syscall
        mov     $SYS_exit_group, %eax
        mov     $125, %edi
        syscall

/*
 * For `micro run` and `micro exec` as root on cgroup v1: the first v1 attach's RCU grace
 * period started now, ~10 ms before micro could start it (core/cgroups/warm.ts says why a
 * zombie's pid written into a root cgroup.procs does it, and moves nothing). A child W (a
 * fork: this process is a few pages) vforks a child Z that exits at once, checks Z is its
 * unreaped child (waitid WNOWAIT: with SIGCHLD ignored it would be gone, its pid free), and
 * writes Z's pid into the first v1 hierarchy's root cgroup.procs (opened here, O_NOFOLLOW,
 * statfs-checked). The lock goes back to its fast mode a grace period after the last attach
 * ends, sooner than micro's join comes (its modules load meanwhile): so W writes again every
 * WARM_MS, each at once, until the pipe's write end, micro's alone, is closed (micro's
 * warm-up ends, or micro does) or WARM_WRITES are done; then it reaps Z and exits. F_WARM:
 * W's pid, or 0 when not started; MICRO_WARM=PID,FD (micro reaps W and closes FD).
 */
warm:
        movq    $0, F_WARM(%rbx)
        test    %r12d, %r12d                      /* root */
        jne     9f
        mov     $1, %ecx                          /* the verb: after runc's global flags */
1:      cmp     %r14, %rcx                        /* (OCI callers put them first) */
        jae     9f
        mov     (%r13,%rcx,8), %rdi
        inc     %rcx
        cmpb    $'-', (%rdi)
        jne     2f
        lea     runc_valued(%rip), %rsi           /* and one that takes a value, its value */
        call    oneof
        jne     1b
        inc     %rcx
        jmp     1b
2:      lea     verbs(%rip), %rsi                 /* run, exec or create */
        call    oneof
        jne     9f
        mov     $SYS_statfs, %eax                 /* /sys/fs/cgroup is not cgroup2 */
        lea     cgroupfs(%rip), %rdi
        lea     F_STAT(%rbx), %rsi
        syscall
        test    %rax, %rax
        jne     9f
        cmpq    $CGROUP2_MAGIC, F_STAT(%rbx)
        je      9f
        lea     procs(%rip), %rdx                 /* the first root cgroup.procs of */
3:      cmpb    $0, (%rdx)                        /* cgroupfs that opens */
        je      9f
        push    %rdx
        mov     $SYS_open, %eax
        mov     %rdx, %rdi
        mov     $O_PROCS, %esi
        xor     %edx, %edx
        syscall
        pop     %rdx
        test    %rax, %rax
        js      5f
        mov     %rax, %r9
        mov     $SYS_fstatfs, %eax
        mov     %r9, %rdi
        lea     F_STAT(%rbx), %rsi
        syscall
        test    %rax, %rax
        jne     4f
        cmpq    $CGROUP_MAGIC, F_STAT(%rbx)
        je      6f
        cmpq    $CGROUP2_MAGIC, F_STAT(%rbx)
        je      6f
4:      mov     $SYS_close, %eax
        mov     %r9, %rdi
        syscall
5:      inc     %rdx                              /* the next path */
        cmpb    $0, -1(%rdx)
        jne     5b
        jmp     3b
6:      mov     $SYS_pipe2, %eax                  /* the pipe: its write end, kept */
        lea     F_PIPE(%rbx), %rdi                /* open across the exec, micro's */
        xor     %esi, %esi
        syscall
        test    %rax, %rax
        jne     7f
        cmpl    $3, F_PIPE+4(%rbx)                /* a caller without stdio: not as */
        jb      8f                                /* Deno's fd 0, 1 or 2 */
        mov     $SYS_clone, %eax                  /* W: the fd in %r9 */
        mov     $SIGCHLD, %edi
        xor     %esi, %esi
        xor     %edx, %edx
        xor     %r10d, %r10d
        xor     %r8d, %r8d
        syscall
        test    %rax, %rax
        je      wchild
        js      8f
        mov     %rax, F_WARM(%rbx)
        lea     F_WENV(%rbx), %rdi
        lea     e_warm(%rip), %rsi
        call    stpcpy
        mov     F_WARM(%rbx), %rax
        call    utoa
        movb    $',', (%rdi)
        inc     %rdi
        movl    F_PIPE+4(%rbx), %eax
        call    utoa
        mov     $SYS_close, %eax                  /* the read end is W's */
        movl    F_PIPE(%rbx), %edi
        syscall
        jmp     7f
8:      mov     $SYS_close, %eax
        movl    F_PIPE(%rbx), %edi
        syscall
        mov     $SYS_close, %eax
        movl    F_PIPE+4(%rbx), %edi
        syscall
7:      mov     $SYS_close, %eax
        mov     %r9, %rdi
        syscall
9:      ret

/*
 * W (see warm): the cgroup.procs fd in %r9, F_PIPE its pipe; never returns. It keeps no fd
 * but those two (not the caller's stdio: a reader of micro's output would wait for W's end;
 * not the pipe's write end: micro's alone keeps it open): each below the higher of the two
 * closed, then the rest (close_range, Linux 5.9; before, they stay open until W exits).
 */
wchild:
        sub     $512, %rsp                        /* 0: siginfo, 128: pollfd, 256: Z's pid */
        movl    F_PIPE(%rbx), %r12d               /* the read end */
        mov     %r9, %r13                         /* the higher of the two */
        cmp     %r12, %r13
        jae     5f
        mov     %r12, %r13
5:      xor     %ebp, %ebp
6:      cmp     %r13, %rbp
        jae     7f
        cmp     %r9, %rbp
        je      8f
        cmp     %r12, %rbp
        je      8f
        mov     $SYS_close, %eax
        mov     %rbp, %rdi
        syscall
8:      inc     %rbp
        jmp     6b
7:      mov     $SYS_close_range, %eax
        lea     1(%r13), %rdi
        mov     $-1, %esi                         /* ~0U */
        xor     %edx, %edx
        syscall
        mov     $SYS_vfork, %eax
        syscall
        test    %rax, %rax
        jne     1f
        mov     $SYS_exit, %eax                   /* Z */
        xor     %edi, %edi
        syscall
1:      js      3f
        mov     %rax, %r12                        /* Z's pid */
        mov     $SYS_waitid, %eax
        mov     $P_PID, %edi
        mov     %r12, %rsi
        mov     %rsp, %rdx
        mov     $WEXITED_WNOWAIT, %r10d
        xor     %r8d, %r8d
        syscall
        test    %rax, %rax
        jne     2f
        lea     256(%rsp), %rdi
        mov     %r12, %rax
        call    utoa
        lea     256(%rsp), %rsi
        mov     %rdi, %r13
        sub     %rsi, %r13                        /* its length */
        mov     $WARM_WRITES, %ebp
4:      mov     $SYS_write, %eax
        mov     %r9, %rdi
        lea     256(%rsp), %rsi
        mov     %r13, %rdx
        syscall
        dec     %ebp
        je      2f
        movl    F_PIPE(%rbx), %eax                /* poll the read end: EOF (micro done), */
        movl    %eax, 128(%rsp)                   /* an error or a signal ends it */
        movl    $1, 132(%rsp)                     /* POLLIN */
        mov     $SYS_poll, %eax
        lea     128(%rsp), %rdi
        mov     $1, %esi
        mov     $WARM_MS, %edx
        syscall
        test    %rax, %rax
        je      4b
2:      mov     $SYS_wait4, %eax
        mov     %r12, %rdi
        xor     %esi, %esi
        xor     %edx, %edx
        xor     %r10d, %r10d
        syscall
3:      mov     $SYS_exit, %eax
        xor     %edi, %edi
        syscall

/* ZF set when the string at %rdi is one of the list at %rsi (NUL-separated, an empty one last). */
oneof:
1:      cmpb    $0, (%rsi)
        je      4f
        mov     %rdi, %r8
2:      movb    (%rsi), %al
        cmpb    (%r8), %al
        jne     3f
        test    %al, %al
        je      5f
        inc     %rsi
        inc     %r8
        jmp     2b
3:      cmpb    $0, (%rsi)                        /* the rest of this one */
        je      6f
        inc     %rsi
        jmp     3b
6:      inc     %rsi
        jmp     1b
4:      or      $1, %eax
5:      ret

/* %rax (a number) in decimal at %rdi; %rdi after it. */
utoa:
        mov     $10, %ecx
        xor     %r8d, %r8d
1:      xor     %edx, %edx
        div     %rcx
        add     $'0', %edx
        push    %rdx
        inc     %r8d
        test    %rax, %rax
        jne     1b
2:      pop     %rdx
        movb    %dl, (%rdi)
        inc     %rdi
        dec     %r8d
        jne     2b
        movb    $0, (%rdi)
        ret

/* At %rdi: argv[1..argc-1] and a NULL; %rdi after the NULL. */
args:
        mov     $1, %ecx
1:      cmp     %r14, %rcx
        jae     2f
        mov     (%r13,%rcx,8), %rax
        mov     %rax, (%rdi)
        add     $8, %rdi
        inc     %rcx
        jmp     1b
2:      movq    $0, (%rdi)
        add     $8, %rdi
        ret

/* %rax: the length of the string at %rdi. */
strlen:
        mov     %rdi, %rax
1:      cmpb    $0, (%rax)
        je      2f
        inc     %rax
        jmp     1b
2:      sub     %rdi, %rax
        ret

/* Copies the string at %rsi (its NUL too) to %rdi; %rdi then points at the copied NUL. */
stpcpy:
1:      movb    (%rsi), %al
        movb    %al, (%rdi)
        test    %al, %al
        je      2f
        inc     %rsi
        inc     %rdi
        jmp     1b
2:      ret

/* ZF set when the string at %rdi starts with the one at %rsi; %rdi then after that prefix. */
hasprefix:
1:      movb    (%rsi), %al
        test    %al, %al
        je      2f
        cmpb    (%rdi), %al
        jne     3f
        inc     %rsi
        inc     %rdi
        jmp     1b
2:      xor     %eax, %eax
3:      ret

/*
 * %rax: the value of the environment variable %rsi names ("NAME="), or 0; of several, the
 * last (as sh takes it).
 */
getenv:
        mov     %r15, %r8
        xor     %r9d, %r9d
1:      mov     (%r8), %rdi
        test    %rdi, %rdi
        je      2f
        add     $8, %r8
        push    %rsi
        call    hasprefix
        pop     %rsi
        jne     1b
        mov     %rdi, %r9
        jmp     1b
2:      mov     %r9, %rax
        ret

/* F_Q = the string at %rsi (to the stub when longer than MAX_BASE); %rdi at its NUL. */
qset:
        mov     %rsi, %rdi
        call    strlen
        cmp     $MAX_BASE, %rax
        ja      1f
        lea     F_Q(%rbx), %rdi
        jmp     stpcpy
1:      add     $8, %rsp                          /* not returning: the stub's */
        jmp     slow

/* ZF set when / is the caller's (the stub's [ -O / ]). */
rootown:
        mov     $SYS_newfstatat, %eax
        mov     $AT_FDCWD, %edi
        lea     slash(%rip), %rsi
        lea     F_STAT(%rbx), %rdx
        xor     %r10d, %r10d
        syscall
        test    %rax, %rax
        jne     1f
        cmp     F_STAT+28(%rbx), %r12d
1:      ret

/*
 * ZF set when the path at %rdi is what %esi says ('a' above the base, 'd' and 'p'
 * directories, 'f' and 'x' files of the caller's: as the stub's judge()); F_VT its mtime.
 */
judge:
        mov     %esi, %r9d
        mov     %rdi, %rsi
        mov     $SYS_newfstatat, %eax
        mov     $AT_FDCWD, %edi
        lea     F_STAT(%rbx), %rdx
        mov     $AT_SYMLINK_NOFOLLOW, %r10d
        syscall
        test    %rax, %rax
        jne     9f
        mov     F_STAT+24(%rbx), %ecx             /* st_mode */
        mov     F_STAT+28(%rbx), %r8d             /* st_uid */
        mov     F_STAT+88(%rbx), %rax             /* st_mtime */
        mov     %rax, F_VT(%rbx)
        mov     %ecx, %edx
        and     $0xf000, %edx
        mov     $0x4000, %eax                     /* a directory, */
        cmp     $'f', %r9d
        je      1f
        cmp     $'x', %r9d
        jne     2f
1:      mov     $0x8000, %eax                     /* or a regular file */
2:      cmp     %eax, %edx
        jne     9f
        cmp     $'a', %r9d                        /* above the base, root's counts as */
        jne     3f                                /* the caller's */
        test    %r8d, %r8d
        jne     3f
        mov     %r12d, %r8d
3:      cmp     %r12d, %r8d
        jne     9f
        test    $0x12, %ecx                       /* group or others may write: only */
        je      4f                                /* a sticky directory above the base */
        cmp     $'a', %r9d
        jne     9f
        test    $0x200, %ecx
        je      9f
4:      cmp     $'x', %r9d
        jne     5f
        test    $0x40, %ecx
        je      9f
5:      cmp     $'p', %r9d
        jne     6f
        test    $0x3f, %ecx
        jne     9f
6:      xor     %eax, %eax
        ret
9:      or      $1, %eax
        ret

/*
 * ZF set when every path from / down to the base at %rdi and the files of BASE/HASH are as
 * they must be (the stub's chain ... full); F_P then holds BASE/HASH/lib, F_END points after
 * BASE/HASH in it, F_HVT is BASE/HASH's mtime.
 */
chain:
        push    %rbp
        mov     %rdi, %rbp
        lea     slash(%rip), %rdi
        mov     $'a', %esi
        call    judge
        jne     9f
        movb    $'/', F_P(%rbx)
        mov     $1, %ecx
1:      movb    (%rbp,%rcx), %al
        test    %al, %al
        je      3f
        cmp     $'/', %al
        jne     2f
        movb    $0, F_P(%rbx,%rcx)
        push    %rcx
        lea     F_P(%rbx), %rdi
        mov     $'a', %esi
        call    judge
        pop     %rcx
        jne     9f
        movb    $'/', %al
2:      movb    %al, F_P(%rbx,%rcx)
        inc     %rcx
        jmp     1b
3:      lea     F_P(%rbx,%rcx), %rax
        movb    $0, (%rax)
        mov     %rax, F_END(%rbx)
        lea     F_P(%rbx), %rdi
        mov     $'d', %esi
        call    judge
        jne     9f
        mov     F_END(%rbx), %rdi
        movb    $'/', (%rdi)
        inc     %rdi
        lea     end(%rip), %rsi
        call    stpcpy
        mov     %rdi, F_END(%rbx)
        lea     F_P(%rbx), %rdi
        mov     $'d', %esi
        call    judge
        jne     9f
        mov     F_VT(%rbx), %rax
        mov     %rax, F_HVT(%rbx)
        lea     s_deno(%rip), %rsi
        mov     $'x', %edx
        call    file
        jne     9f
        lea     s_js(%rip), %rsi
        mov     $'f', %edx
        call    file
        jne     9f
        lea     s_main(%rip), %rsi
        mov     $'f', %edx
        call    file
        jne     9f
        lea     s_lib(%rip), %rsi
        mov     $'p', %edx
        call    file
9:      pop     %rbp
        ret

/* ZF set when BASE/HASH followed by the string at %rsi is what %edx says. */
file:
        push    %rdx
        mov     F_END(%rbx), %rdi
        call    stpcpy
        pop     %rsi
        lea     F_P(%rbx), %rdi
        jmp     judge

        .include "launcher-data.inc"

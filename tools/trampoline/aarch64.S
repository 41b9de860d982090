/*
 * micro's exec trampoline for aarch64: the first program the container's first process
 * runs (execveat of a sealed memfd), so that /proc/self/exe is this file while the
 * container's command is looked up, never the host's cached Deno runtime.
 *
 * Layout micro passes (argv):  "" LABEL CAND1 ... CANDn "" ARG0 ... ARGm
 * Every candidate holds a "/", so it is never empty. The report socket is at fd 3 (low
 * numbers: no fd above RLIMIT_NOFILE can be made once the command's limits are set).
 * The trampoline marks fd 3 close-on-exec and makes itself undumpable (errors ignored):
 * where the exec'ing process could read this memfd (micro makes it 0111), the exec made it
 * dumpable again, and until the command's exec nothing in the container may ptrace it (it
 * holds the report socket: a tracer could forge a record). Each "+" after argv[0]'s
 * mode ("", "init") is
 * one fd the command inherits (OCI `--preserve-fds`): with N of them, fds 3 to 2+N are the
 * command's and the report and label fds below are 3+N and 4+N instead of 3 and 4. A LABEL that is not empty is the LSM exec
 * label (AppArmor `exec PROFILE`, an SELinux context): it is written to fd 4 (the
 * child's /proc/thread-self/attr/.../exec), which is then closed, so the label applies at
 * the command's exec, not at this program's. Then it tries execve(CAND, ARGS, envp) in
 * order, as execvp does: ENOENT and ENOTDIR move on, EACCES is remembered, anything else
 * stops. If none runs it sends the 8-byte record [-4, errno] on fd 3 and exits 127;
 * if the label write fails, [-5, errno].
 * Any other layout, or no fd 3 (for example this file run again as the interpreter of
 * a `#!/proc/self/exe` script), prints one line and exits 126 with no other effect.
 *
 * Init mode (`micro run --init`): argv[0] "init" instead of "", the rest as above. The
 * program then stays the container's first process for its whole life, as Docker's
 * docker-init (tini): it makes itself undumpable (an exec of this readable memfd made it
 * dumpable again) and, where it can, a child subreaper (orphans come to it even without a
 * pid namespace), blocks every signal and forks. The child puts itself in a process group
 * of its own, makes it the terminal's foreground group when fd 0 is one (errors ignored: no
 * terminal), restores the signal mask and goes on as above (label, candidates, [-4, errno]
 * and 127).
 * The parent closes fds 3 and 4 and waits for signals: SIGCHLD reaps every child that has
 * exited; any other signal is sent on to the command. When the command has been reaped it
 * exits with its code, or 128+N when signal N killed it. If a set-up call fails (the
 * dumpable flag, the signal mask, a first try of rt_sigtimedwait and wait4, the fork, or
 * the child's mask), it sends [-6, errno] on fd 3 and exits 127.
 *
 * Assembled into core/engine/trampoline.ts by tools/gen_trampoline.ts (a flat binary: the
 * ELF header is elf-aarch64.inc's, so the bytes depend on nothing but these sources).
 */
        .set BASE, 0x400000
        .set REPORT_FD, 3
        .set LABEL_FD, 4
        .set EXEC_FAILED, -4
        .set LABEL_FAILED, -5
        .set INIT_FAILED, -6
        .set SIGCHLD, 17
        .set TIOCSPGRP, 0x5410
        .set PR_SET_DUMPABLE, 4
        .set PR_SET_CHILD_SUBREAPER, 36
        .set SYS_ioctl, 29
        .set SYS_fcntl, 25
        .set SYS_close, 57
        .set SYS_write, 64
        .set SYS_exit_group, 94
        .set SYS_execve, 221
        .set SYS_kill, 129
        .set SYS_rt_sigprocmask, 135
        .set SYS_rt_sigtimedwait, 137
        .set SYS_setpgid, 154
        .set SYS_prctl, 167
        .set SYS_getpid, 172
        .set SYS_clone, 220
        .set SYS_wait4, 260

        .include "elf-aarch64.inc"

_start:
        ldr     x19, [sp]                         /* argc */
        add     x20, sp, #8                       /* argv */
        add     x21, x20, x19, lsl #3
        add     x21, x21, #8                      /* envp */
        cmp     x19, #4
        b.lo    bad
        mov     w24, #0                           /* w24: init mode, until nolabel */
        ldr     x0, [x20]                         /* argv[0] is "" or "init", then a "+" */
        ldrb    w1, [x0]                          /* per preserved fd */
        cbz     w1, plus
        cmp     w1, #'+'
        b.eq    plus
        ldr     w1, [x0]                          /* "init" (argv's strings go on after */
        movz    w2, #0x6e69                       /* it on the stack: 4 bytes are there) */
        movk    w2, #0x7469, lsl #16
        cmp     w1, w2
        b.ne    bad
        add     x0, x0, #4
        mov     w24, #1
plus:                                             /* x27: the report fd, x28: the label's */
        mov     x27, #REPORT_FD
2:      ldrb    w1, [x0]
        cbz     w1, 1f
        cmp     w1, #'+'
        b.ne    bad
        add     x27, x27, #1
        add     x0, x0, #1
        b       2b
1:      add     x28, x27, #1
        ldr     x0, [x20, #16]                    /* at least one candidate */
        ldrb    w0, [x0]
        cbz     w0, bad
        mov     x22, #2
find:                                             /* x22: the separator's index */
        add     x22, x22, #1
        cmp     x22, x19
        b.hs    bad
        ldr     x0, [x20, x22, lsl #3]
        ldrb    w0, [x0]
        cbnz    w0, find
        add     x23, x20, x22, lsl #3
        add     x23, x23, #8                      /* the command's argv */

        mov     x0, x27                           /* fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) */
        mov     x1, #2
        mov     x2, #1
        mov     x8, #SYS_fcntl
        svc     #0
        tbnz    x0, #63, bad
        mov     x0, #PR_SET_DUMPABLE              /* prctl(PR_SET_DUMPABLE, 0): errors */
        mov     x1, #0                            /* ignored here (init checks its own) */
        mov     x8, #SYS_prctl
        svc     #0
        cbnz    w24, init

label:
        ldr     x1, [x20, #8]                     /* the label, if any */
        ldrb    w0, [x1]
        cbz     w0, nolabel
        mov     x2, x1
2:      add     x2, x2, #1
        ldrb    w0, [x2]
        cbnz    w0, 2b
        sub     x2, x2, x1
        mov     x0, x28                           /* write(LABEL_FD, label, length) */
        mov     x8, #SYS_write
        svc     #0
        tbz     x0, #63, 3f
        neg     x24, x0
        mov     w26, #LABEL_FAILED
        b       fail
3:      mov     x0, x28
        mov     x8, #SYS_close
        svc     #0
nolabel:
        mov     w24, #0                           /* w24: EACCES seen */
        mov     x25, #2                           /* x25: the candidate's index */
try:
        cmp     x25, x22
        b.hs    none
        ldr     x0, [x20, x25, lsl #3]
        mov     x1, x23
        mov     x2, x21
        mov     x8, #SYS_execve
        svc     #0
        add     x25, x25, #1
        cmn     x0, #13                           /* EACCES: remember, go on */
        b.ne    1f
        mov     w24, #13
        b       try
1:      cmn     x0, #2                            /* ENOENT */
        b.eq    try
        cmn     x0, #20                           /* ENOTDIR */
        b.eq    try
        neg     x24, x0
        b       failexec
none:
        cbnz    w24, failexec
        mov     w24, #2
failexec:
        mov     w26, #EXEC_FAILED
fail:                                             /* the record [w26, w24] */
        sub     sp, sp, #16
        str     w26, [sp]
        str     w24, [sp, #4]
        mov     x0, x27
        mov     x1, sp
        mov     x2, #8
        mov     x8, #SYS_write
        svc     #0
        mov     x0, #127
        b       leave

/*
 * Init mode. The frame: 0 every signal, 8 the mask before, 16 a status or pid, 24 a signal
 * taken before the fork, 32 siginfo, 160 a zero timeout.
 */
init:
        mov     x0, #PR_SET_DUMPABLE              /* prctl(PR_SET_DUMPABLE, 0) */
        mov     x1, #0
        mov     x8, #SYS_prctl
        svc     #0
        tbnz    x0, #63, initfail
        mov     x0, #PR_SET_CHILD_SUBREAPER       /* prctl(PR_SET_CHILD_SUBREAPER, 1), */
        mov     x1, #1                            /* needed only outside a pid namespace */
        mov     x8, #SYS_prctl                    /* (qemu-user refuses it): errors ignored */
        svc     #0
        sub     sp, sp, #176
        mov     x0, #-1
        str     x0, [sp]
        stp     xzr, xzr, [sp, #160]
        mov     x0, #2                            /* rt_sigprocmask(SIG_SETMASK, all, old, 8) */
        mov     x1, sp
        add     x2, sp, #8
        mov     x3, #8
        mov     x8, #SYS_rt_sigprocmask
        svc     #0
        tbnz    x0, #63, initfail
        /*
         * The calls the loop makes, tried once now: refused (a seccomp policy) they would
         * leave it spinning or unable to reap, so the run fails here with one line instead.
         * rt_sigtimedwait(all, NULL, zero, 8): EAGAIN, or a signal to pass on after the fork.
         */
        mov     x0, sp
        mov     x1, #0
        add     x2, sp, #160
        mov     x3, #8
        mov     x8, #SYS_rt_sigtimedwait
        svc     #0
        cmn     x0, #11
        b.eq    1f
        tbnz    x0, #63, initfail
1:      str     x0, [sp, #24]
        mov     x0, #-1                           /* wait4(-1, NULL, WNOHANG, NULL): ECHILD */
        mov     x1, #0
        mov     x2, #1
        mov     x3, #0
        mov     x8, #SYS_wait4
        svc     #0
        cmn     x0, #10
        b.ne    initfail
        mov     x0, #SIGCHLD                      /* clone(SIGCHLD, 0, 0, 0, 0): fork */
        mov     x1, #0
        mov     x2, #0
        mov     x3, #0
        mov     x4, #0
        mov     x8, #SYS_clone
        svc     #0
        tbnz    x0, #63, initfail
        cbz     x0, child
        mov     x25, x0                           /* x25: the command's pid */
        mov     x0, x27
        mov     x8, #SYS_close
        svc     #0
        mov     x0, x28
        mov     x8, #SYS_close
        svc     #0
        ldr     x1, [sp, #24]                     /* the signal taken before the fork */
        cmp     x1, #0
        b.le    2f
        mov     x0, x25
        mov     x8, #SYS_kill
        svc     #0
2:      mov     w26, #0                           /* w26: the command was reaped */
waitsig:
        mov     x0, sp                            /* rt_sigtimedwait(all, info, NULL, 8) */
        add     x1, sp, #32
        mov     x2, #0
        mov     x3, #8
        mov     x8, #SYS_rt_sigtimedwait
        svc     #0
        cmp     x0, #SIGCHLD
        b.eq    reap
        tbnz    x0, #63, waitsig                  /* EINTR */
        mov     x1, x0                            /* kill(command, signal) */
        mov     x0, x25
        mov     x8, #SYS_kill
        svc     #0
        b       waitsig
reap:
        mov     x0, #-1                           /* wait4(-1, &status, WNOHANG, NULL) */
        add     x1, sp, #16
        mov     x2, #1
        mov     x3, #0
        mov     x8, #SYS_wait4
        svc     #0
        cmp     x0, #0
        b.le    reaped                            /* none left to reap now, or ECHILD */
        cmp     x0, x25
        b.ne    reap
        ldr     w24, [sp, #16]                    /* w24: the command's status */
        mov     w26, #1
        b       reap
reaped:
        cbz     w26, waitsig
        ands    w0, w24, #0x7f                    /* killed by a signal: 128+N */
        b.eq    1f
        add     w0, w0, #128
        b       leave
1:      ubfx    w0, w24, #8, #8                   /* else its exit code */
        b       leave
child:
        mov     x0, #0                            /* setpgid(0, 0) */
        mov     x1, #0
        mov     x8, #SYS_setpgid
        svc     #0
        mov     x8, #SYS_getpid
        svc     #0
        str     w0, [sp, #16]
        mov     x0, #0                            /* ioctl(0, TIOCSPGRP, &pid), allowed */
        mov     x1, #TIOCSPGRP                    /* while SIGTTOU is blocked; ENOTTY */
        add     x2, sp, #16                       /* (no terminal) is ignored */
        mov     x8, #SYS_ioctl
        svc     #0
        mov     x0, #2                            /* rt_sigprocmask(SIG_SETMASK, old, NULL, 8) */
        add     x1, sp, #8
        mov     x2, #0
        mov     x3, #8
        mov     x8, #SYS_rt_sigprocmask
        svc     #0
        tbz     x0, #63, label
initfail:
        neg     x24, x0
        mov     w26, #INIT_FAILED
        b       fail

bad:
        mov     x0, #2
        adr     x1, msg
        mov     x2, #msglen
        mov     x8, #SYS_write
        svc     #0
        mov     x0, #126
leave:
        mov     x8, #SYS_exit_group
        svc     #0
msg:
        .ascii  "micro: exec trampoline: not started by micro\n"
        .set    msglen, . - msg
end:

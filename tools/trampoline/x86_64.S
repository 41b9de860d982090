/*
 * micro's exec trampoline for x86_64: the first program the container's first process
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
 * ELF header is elf-x86_64.inc's, so the bytes depend on nothing but these sources).
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
        .set SYS_write, 1
        .set SYS_close, 3
        .set SYS_ioctl, 16
        .set SYS_rt_sigprocmask, 14
        .set SYS_getpid, 39
        .set SYS_fork, 57
        .set SYS_wait4, 61
        .set SYS_kill, 62
        .set SYS_setpgid, 109
        .set SYS_rt_sigtimedwait, 128
        .set SYS_prctl, 157
        .set SYS_execve, 59
        .set SYS_fcntl, 72
        .set SYS_exit_group, 231

        .include "elf-x86_64.inc"

_start:
        mov     (%rsp), %r12                      /* argc */
        lea     8(%rsp), %r13                     /* argv */
        lea     16(%rsp,%r12,8), %r14             /* envp */
        cmp     $4, %r12
        jb      bad
        xor     %ebp, %ebp                        /* ebp: init mode, until nolabel */
        mov     (%r13), %rax                      /* argv[0] is "" or "init", then a "+" */
        cmpb    $0, (%rax)                        /* per preserved fd */
        je      plus
        cmpb    $'+', (%rax)
        je      plus
        cmpl    $0x74696e69, (%rax)               /* "init" (argv's strings go on after */
        jne     bad                               /* it on the stack: 4 bytes are there) */
        add     $4, %rax
        inc     %ebp
plus:                                             /* r9: the report fd, r8: the label's */
        mov     $REPORT_FD, %r9d                  /* (syscalls keep both) */
2:      cmpb    $0, (%rax)
        je      1f
        cmpb    $'+', (%rax)
        jne     bad
        inc     %r9d
        inc     %rax
        jmp     2b
1:      lea     1(%r9), %r8d
        mov     16(%r13), %rax                    /* at least one candidate */
        cmpb    $0, (%rax)
        je      bad
        mov     $2, %ebx
find:                                             /* rbx: the separator's index */
        inc     %rbx
        cmp     %r12, %rbx
        jae     bad
        mov     (%r13,%rbx,8), %rax
        cmpb    $0, (%rax)
        jne     find
        lea     8(%r13,%rbx,8), %r15              /* the command's argv */

        mov     $SYS_fcntl, %eax                  /* fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) */
        mov     %r9d, %edi
        mov     $2, %esi
        mov     $1, %edx
        syscall
        test    %rax, %rax
        js      bad
        mov     $SYS_prctl, %eax                  /* prctl(PR_SET_DUMPABLE, 0): errors */
        mov     $PR_SET_DUMPABLE, %edi            /* ignored here (init checks its own) */
        xor     %esi, %esi
        syscall
        test    %ebp, %ebp
        jnz     init

label:
        mov     8(%r13), %rsi                     /* the label, if any */
        cmpb    $0, (%rsi)
        je      nolabel
        mov     %rsi, %rdx
2:      inc     %rdx
        cmpb    $0, (%rdx)
        jne     2b
        sub     %rsi, %rdx
        mov     $SYS_write, %eax                  /* write(LABEL_FD, label, length) */
        mov     %r8d, %edi
        syscall
        test    %rax, %rax
        jns     3f
        neg     %rax
        mov     %eax, %ebp
        mov     $LABEL_FAILED, %ebx
        jmp     fail
3:      mov     $SYS_close, %eax
        mov     %r8d, %edi
        syscall
nolabel:
        xor     %ebp, %ebp                        /* ebp: EACCES seen */
        mov     $2, %r12d                         /* r12: the candidate's index */
try:
        cmp     %rbx, %r12
        jae     none
        mov     $SYS_execve, %eax
        mov     (%r13,%r12,8), %rdi
        mov     %r15, %rsi
        mov     %r14, %rdx
        syscall
        inc     %r12
        cmp     $-13, %rax                        /* EACCES: remember, go on */
        jne     1f
        mov     $13, %ebp
        jmp     try
1:      cmp     $-2, %rax                         /* ENOENT */
        je      try
        cmp     $-20, %rax                        /* ENOTDIR */
        je      try
        neg     %rax
        mov     %eax, %ebp
        jmp     failexec
none:
        test    %ebp, %ebp
        jnz     failexec
        mov     $2, %ebp
failexec:
        mov     $EXEC_FAILED, %ebx
fail:                                             /* the record [ebx, ebp] */
        sub     $16, %rsp
        mov     %ebx, (%rsp)
        mov     %ebp, 4(%rsp)
        mov     $SYS_write, %eax
        mov     %r9d, %edi
        mov     %rsp, %rsi
        mov     $8, %edx
        syscall
        mov     $127, %edi
        jmp     leave

/*
 * Init mode. The frame: 0 every signal, 8 the mask before, 16 a status or pid, 24 a signal
 * taken before the fork, 32 siginfo, 160 a zero timeout.
 */
init:
        mov     $SYS_prctl, %eax                  /* prctl(PR_SET_DUMPABLE, 0) */
        mov     $PR_SET_DUMPABLE, %edi
        xor     %esi, %esi
        syscall
        test    %rax, %rax
        js      initfail
        mov     $SYS_prctl, %eax                  /* prctl(PR_SET_CHILD_SUBREAPER, 1), */
        mov     $PR_SET_CHILD_SUBREAPER, %edi     /* needed only outside a pid namespace */
        mov     $1, %esi                          /* (qemu-user refuses it): errors ignored */
        syscall
        sub     $176, %rsp
        movq    $-1, (%rsp)
        movq    $0, 160(%rsp)
        movq    $0, 168(%rsp)
        mov     $SYS_rt_sigprocmask, %eax         /* rt_sigprocmask(SIG_SETMASK, all, old, 8) */
        mov     $2, %edi
        mov     %rsp, %rsi
        lea     8(%rsp), %rdx
        mov     $8, %r10d
        syscall
        test    %rax, %rax
        js      initfail
        /*
         * The calls the loop makes, tried once now: refused (a seccomp policy) they would
         * leave it spinning or unable to reap, so the run fails here with one line instead.
         * rt_sigtimedwait(all, NULL, zero, 8): EAGAIN, or a signal to pass on after the fork.
         */
        mov     $SYS_rt_sigtimedwait, %eax
        mov     %rsp, %rdi
        xor     %esi, %esi
        lea     160(%rsp), %rdx
        mov     $8, %r10d
        syscall
        cmp     $-11, %rax
        je      1f
        test    %rax, %rax
        js      initfail
1:      mov     %rax, 24(%rsp)
        mov     $SYS_wait4, %eax                  /* wait4(-1, NULL, WNOHANG, NULL): ECHILD */
        mov     $-1, %rdi
        xor     %esi, %esi
        mov     $1, %edx
        xor     %r10d, %r10d
        syscall
        cmp     $-10, %rax
        jne     initfail
        mov     $SYS_fork, %eax
        syscall
        test    %rax, %rax
        js      initfail
        jz      child
        mov     %rax, %r12                        /* r12: the command's pid */
        mov     $SYS_close, %eax
        mov     %r9d, %edi
        syscall
        mov     $SYS_close, %eax
        mov     %r8d, %edi
        syscall
        mov     24(%rsp), %rsi                    /* the signal taken before the fork */
        test    %rsi, %rsi
        jle     2f
        mov     %r12, %rdi
        mov     $SYS_kill, %eax
        syscall
2:      xor     %ebx, %ebx                        /* ebx: the command was reaped */
waitsig:
        mov     $SYS_rt_sigtimedwait, %eax        /* rt_sigtimedwait(all, info, NULL, 8) */
        mov     %rsp, %rdi
        lea     32(%rsp), %rsi
        xor     %edx, %edx
        mov     $8, %r10d
        syscall
        cmp     $SIGCHLD, %rax
        je      reap
        test    %rax, %rax
        js      waitsig                           /* EINTR */
        mov     %eax, %esi                        /* kill(command, signal) */
        mov     %r12, %rdi
        mov     $SYS_kill, %eax
        syscall
        jmp     waitsig
reap:
        mov     $SYS_wait4, %eax                  /* wait4(-1, &status, WNOHANG, NULL) */
        mov     $-1, %rdi
        lea     16(%rsp), %rsi
        mov     $1, %edx
        xor     %r10d, %r10d
        syscall
        test    %rax, %rax
        jle     reaped                            /* none left to reap now, or ECHILD */
        cmp     %rax, %r12
        jne     reap
        mov     16(%rsp), %ebp                    /* ebp: the command's status */
        mov     $1, %ebx
        jmp     reap
reaped:
        test    %ebx, %ebx
        jz      waitsig
        mov     %ebp, %edi
        and     $0x7f, %edi                       /* killed by a signal: 128+N */
        jz      1f
        add     $128, %edi
        jmp     leave
1:      mov     %ebp, %edi                        /* else its exit code */
        shr     $8, %edi
        and     $0xff, %edi
        jmp     leave
child:
        mov     $SYS_setpgid, %eax                /* setpgid(0, 0) */
        xor     %edi, %edi
        xor     %esi, %esi
        syscall
        mov     $SYS_getpid, %eax
        syscall
        mov     %eax, 16(%rsp)
        mov     $SYS_ioctl, %eax                  /* ioctl(0, TIOCSPGRP, &pid), allowed */
        xor     %edi, %edi                        /* while SIGTTOU is blocked; ENOTTY */
        mov     $TIOCSPGRP, %esi                  /* (no terminal) is ignored */
        lea     16(%rsp), %rdx
        syscall
        mov     $SYS_rt_sigprocmask, %eax         /* rt_sigprocmask(SIG_SETMASK, old, NULL, 8) */
        mov     $2, %edi
        lea     8(%rsp), %rsi
        xor     %edx, %edx
        mov     $8, %r10d
        syscall
        test    %rax, %rax
        jns     label
initfail:
        neg     %rax
        mov     %eax, %ebp
        mov     $INIT_FAILED, %ebx
        jmp     fail

bad:
        mov     $SYS_write, %eax
        mov     $2, %edi
        lea     msg(%rip), %rsi
        mov     $msglen, %edx
        syscall
        mov     $126, %edi
leave:
        mov     $SYS_exit_group, %eax
        syscall
msg:
        .ascii  "micro: exec trampoline: not started by micro\n"
        .set    msglen, . - msg
end:

/*
 * micro's watchdog for x86_64, for a container with a pid namespace of its own: the
 * container dies with micro even when its init clears PR_SET_PDEATHSIG. micro spawns it
 * (posix_spawn, from a sealed memfd) with fd 0 the read end of a pipe only micro writes,
 * fd 3 a pidfd of the container's init, fd 4 the run's cgroup v2 directory (or anything
 * else: then cgroup.kill is not found there) and fd 5 its v1 freezer directory (likewise).
 * micro starts it in a session of its own with every signal blocked, so that none reaches
 * it before it ignores them: it leaves micro's session (if it is not out of it already),
 * ignores every signal it can, then unblocks them (an ignored signal that stays blocked
 * would stay queued), makes itself undumpable, moves to / and closes every other fd
 * (whatever micro inherited without close-on-exec; close_range is Linux 5.9+, which the
 * container's own set-up needs as well), then blocks in read(0). A byte (micro ended normally) or an error: it exits 0 having
 * touched nothing. EOF (micro died): SIGKILL to init through the pidfd (the kernel then
 * ends every process of the pid namespace), "1" to cgroup.kill (v2: every process of the
 * cgroup), "THAWED" to freezer.state (v1: a frozen cgroup keeps a kill pending until
 * thawed), each opened through its directory's fd, without following links; then exit 0.
 *
 * Assembled into core/engine/trampoline.ts by tools/gen_trampoline.ts (a flat binary: the
 * ELF header is elf-x86_64.inc's, so the bytes depend on nothing but these sources).
 */
        .set BASE, 0x400000
        .set O_WRONLY_NOFOLLOW_CLOEXEC, 0x80000 | 0x20000 | 1
        .set EINTR, 4
        .set SYS_read, 0
        .set SYS_write, 1
        .set SYS_close, 3
        .set SYS_rt_sigaction, 13
        .set SYS_rt_sigprocmask, 14
        .set SYS_chdir, 80
        .set SYS_setsid, 112
        .set SYS_prctl, 157
        .set SYS_exit_group, 231
        .set SYS_openat, 257
        .set SYS_pidfd_send_signal, 424
        .set SYS_close_range, 436

        .include "elf-x86_64.inc"

_start:
        mov     $SYS_setsid, %eax
        syscall
        sub     $48, %rsp                         /* struct sigaction: SIG_IGN, no flags */
        movq    $1, (%rsp)
        movq    $0, 8(%rsp)
        movq    $0, 16(%rsp)
        movq    $0, 24(%rsp)
        mov     $1, %r12d                         /* every signal 1 to 64: SIGKILL and */
ignore:                                           /* SIGSTOP refuse it (EINVAL) */
        mov     $SYS_rt_sigaction, %eax
        mov     %r12d, %edi
        mov     %rsp, %rsi
        xor     %edx, %edx
        mov     $8, %r10d
        syscall
        inc     %r12d
        cmp     $64, %r12d
        jbe     ignore
        mov     $SYS_rt_sigprocmask, %eax         /* rt_sigprocmask(SIG_SETMASK, the */
        mov     $2, %edi                          /* sigaction's empty mask, NULL, 8) */
        lea     24(%rsp), %rsi
        xor     %edx, %edx
        mov     $8, %r10d
        syscall
        mov     $SYS_prctl, %eax                  /* PR_SET_DUMPABLE 0 */
        mov     $4, %edi
        xor     %esi, %esi
        syscall
        mov     $SYS_chdir, %eax
        lea     root(%rip), %rdi
        syscall
        mov     $SYS_close_range, %eax            /* close_range(6, ~0, 0): nothing else */
        mov     $6, %edi                          /* its parent left open (Linux 5.9+) */
        mov     $0xffffffff, %esi
        xor     %edx, %edx
        syscall
wait:
        mov     $SYS_read, %eax
        xor     %edi, %edi
        lea     32(%rsp), %rsi
        mov     $1, %edx
        syscall
        cmp     $-EINTR, %rax
        je      wait
        test    %rax, %rax
        jnz     done                              /* a byte, or an error: nothing to do */
        mov     $SYS_pidfd_send_signal, %eax      /* pidfd_send_signal(3, SIGKILL, 0, 0) */
        mov     $3, %edi
        mov     $9, %esi
        xor     %edx, %edx
        xor     %r10d, %r10d
        syscall
        mov     $4, %edi
        lea     kill(%rip), %rsi
        lea     one(%rip), %rbx
        mov     $1, %r13d
        call    put
        mov     $5, %edi
        lea     freezer(%rip), %rsi
        lea     thawed(%rip), %rbx
        mov     $6, %r13d
        call    put
done:
        xor     %edi, %edi
        mov     $SYS_exit_group, %eax
        syscall
/* put: openat(edi, rsi, O_WRONLY|O_NOFOLLOW|O_CLOEXEC), write r13 bytes at rbx, close */
put:
        mov     $SYS_openat, %eax
        mov     $O_WRONLY_NOFOLLOW_CLOEXEC, %edx
        xor     %r10d, %r10d
        syscall
        test    %rax, %rax
        js      1f
        mov     %rax, %r14
        mov     %eax, %edi
        mov     $SYS_write, %eax
        mov     %rbx, %rsi
        mov     %r13, %rdx
        syscall
        mov     $SYS_close, %eax
        mov     %r14d, %edi
        syscall
1:      ret
        .include "watchdog-data.inc"

/*
 * micro's watchdog for aarch64, for a container with a pid namespace of its own: the
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
 * ELF header is elf-aarch64.inc's, so the bytes depend on nothing but these sources).
 */
        .set BASE, 0x400000
        .set O_WRONLY_NOFOLLOW_CLOEXEC, 0x80000 | 0x8000 | 1
        .set EINTR, 4
        .set SYS_read, 63
        .set SYS_write, 64
        .set SYS_close, 57
        .set SYS_rt_sigaction, 134
        .set SYS_rt_sigprocmask, 135
        .set SYS_chdir, 49
        .set SYS_setsid, 157
        .set SYS_prctl, 167
        .set SYS_exit_group, 94
        .set SYS_openat, 56
        .set SYS_pidfd_send_signal, 424
        .set SYS_close_range, 436

        .include "elf-aarch64.inc"

_start:
        mov     x8, #SYS_setsid
        svc     #0
        sub     sp, sp, #48                       /* struct sigaction: SIG_IGN, no flags */
        mov     x0, #1
        stp     x0, xzr, [sp]
        stp     xzr, xzr, [sp, #16]
        mov     x19, #1                           /* every signal 1 to 64: SIGKILL and */
ignore:                                           /* SIGSTOP refuse it (EINVAL) */
        mov     x0, x19
        mov     x1, sp
        mov     x2, #0
        mov     x3, #8
        mov     x8, #SYS_rt_sigaction
        svc     #0
        add     x19, x19, #1
        cmp     x19, #64
        b.ls    ignore
        mov     x0, #2                            /* rt_sigprocmask(SIG_SETMASK, the */
        add     x1, sp, #24                       /* sigaction's empty mask, NULL, 8) */
        mov     x2, #0
        mov     x3, #8
        mov     x8, #SYS_rt_sigprocmask
        svc     #0
        mov     x0, #4                            /* PR_SET_DUMPABLE 0 */
        mov     x1, #0
        mov     x8, #SYS_prctl
        svc     #0
        adr     x0, root
        mov     x8, #SYS_chdir
        svc     #0
        mov     x0, #6                            /* close_range(6, ~0, 0): nothing else */
        mov     x1, #0xffffffff                   /* its parent left open (Linux 5.9+) */
        mov     x2, #0
        mov     x8, #SYS_close_range
        svc     #0
wait:
        mov     x0, #0
        add     x1, sp, #32
        mov     x2, #1
        mov     x8, #SYS_read
        svc     #0
        cmn     x0, #EINTR
        b.eq    wait
        cbnz    x0, done                          /* a byte, or an error: nothing to do */
        mov     x0, #3                            /* pidfd_send_signal(3, SIGKILL, 0, 0) */
        mov     x1, #9
        mov     x2, #0
        mov     x3, #0
        mov     x8, #SYS_pidfd_send_signal
        svc     #0
        mov     x0, #4
        adr     x1, kill
        adr     x20, one
        mov     x21, #1
        bl      put
        mov     x0, #5
        adr     x1, freezer
        adr     x20, thawed
        mov     x21, #6
        bl      put
done:
        mov     x0, #0
        mov     x8, #SYS_exit_group
        svc     #0
/* put: openat(x0, x1, O_WRONLY|O_NOFOLLOW|O_CLOEXEC), write x21 bytes at x20, close */
put:
        movz    x2, #(O_WRONLY_NOFOLLOW_CLOEXEC & 0xffff)
        movk    x2, #(O_WRONLY_NOFOLLOW_CLOEXEC >> 16), lsl #16
        mov     x3, #0
        mov     x8, #SYS_openat
        svc     #0
        tbnz    x0, #63, 1f
        mov     x22, x0
        mov     x1, x20
        mov     x2, x21
        mov     x8, #SYS_write
        svc     #0
        mov     x0, x22
        mov     x8, #SYS_close
        svc     #0
1:      ret
        .include "watchdog-data.inc"

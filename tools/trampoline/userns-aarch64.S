/*
 * micro's user namespace holder for aarch64: a process that only holds a new user
 * namespace, so that root's hardened runs can idmap the image with the container's maps
 * before the clone (core/engine/idmapped.ts). micro spawns it from a sealed memfd, with
 * stdin and stdout pipes: it unshares CLONE_NEWUSER, writes one byte to stdout (micro then
 * writes its uid_map and gid_map and opens /proc/PID/ns/user), and waits for EOF on stdin,
 * then exits 0. When the unshare fails it exits with the errno, having written nothing.
 * Spawned (vfork and exec), it costs micro no copy of its memory, where a fork of micro's
 * process cost about 12 ms.
 *
 * Assembled into core/engine/trampoline.ts by tools/gen_trampoline.ts (a flat binary: the
 * ELF header is elf-aarch64.inc's, so the bytes depend on nothing but these sources).
 */
        .set BASE, 0x400000
        .set CLONE_NEWUSER, 0x10000000
        .set EINTR, 4
        .set SYS_read, 63
        .set SYS_write, 64
        .set SYS_unshare, 97
        .set SYS_exit_group, 94

        .include "elf-aarch64.inc"

_start:
        mov     x0, #CLONE_NEWUSER
        mov     x8, #SYS_unshare
        svc     #0
        tbnz    x0, #63, fail
        mov     x0, #1                            /* write(1, ".", 1): ready */
        adr     x1, ready
        mov     x2, #1
        mov     x8, #SYS_write
        svc     #0
        sub     sp, sp, #16
wait:
        mov     x0, #0                            /* read(0, sp, 1) until EOF or an error */
        mov     x1, sp
        mov     x2, #1
        mov     x8, #SYS_read
        svc     #0
        cmn     x0, #EINTR
        b.eq    wait
        cmp     x0, #0
        b.gt    wait
        mov     x0, #0
        b       leave
fail:
        neg     x0, x0
leave:
        mov     x8, #SYS_exit_group
        svc     #0
ready:
        .ascii  "."
end:

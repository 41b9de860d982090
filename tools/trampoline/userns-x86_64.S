/*
 * micro's user namespace holder for x86_64: a process that only holds a new user namespace,
 * so that root's hardened runs can idmap the image with the container's maps before the
 * clone (core/engine/idmapped.ts). micro spawns it from a sealed memfd, with stdin and
 * stdout pipes: it unshares CLONE_NEWUSER, writes one byte to stdout (micro then writes
 * its uid_map and gid_map and opens /proc/PID/ns/user), and waits for EOF on stdin, then
 * exits 0. When the unshare fails it exits with the errno, having written nothing. Spawned
 * (vfork and exec), it costs micro no copy of its memory, where a fork of micro's process
 * cost about 12 ms.
 *
 * Assembled into core/engine/trampoline.ts by tools/gen_trampoline.ts (a flat binary: the
 * ELF header is elf-x86_64.inc's, so the bytes depend on nothing but these sources).
 */
        .set BASE, 0x400000
        .set CLONE_NEWUSER, 0x10000000
        .set EINTR, 4
        .set SYS_read, 0
        .set SYS_write, 1
        .set SYS_unshare, 272
        .set SYS_exit_group, 231

        .include "elf-x86_64.inc"

_start:
        mov     $SYS_unshare, %eax
        mov     $CLONE_NEWUSER, %edi
        syscall
        test    %rax, %rax
        js      fail
        mov     $SYS_write, %eax                  /* write(1, ".", 1): ready */
        mov     $1, %edi
        lea     ready(%rip), %rsi
        mov     $1, %edx
        syscall
        sub     $16, %rsp
wait:
        mov     $SYS_read, %eax                   /* read(0, sp, 1) until EOF or an error */
        xor     %edi, %edi
        mov     %rsp, %rsi
        mov     $1, %edx
        syscall
        cmp     $-EINTR, %rax
        je      wait
        test    %rax, %rax
        jg      wait
        xor     %edi, %edi
        jmp     leave
fail:
        neg     %rax
        mov     %eax, %edi
leave:
        mov     $SYS_exit_group, %eax
        syscall
ready:
        .ascii  "."
end:

/*
 * micro's vfork stub for x86_64: not a program but one function, which micro maps into its
 * own memory and calls through FFI (core/sys/libc.ts vforkExec):
 *
 * Three functions, each reached through a jump at the start of the page: vfork_exec at offset
 * 0, proc_writes at offset 8, userns_hold at offset 16.
 *
 *   long vfork_exec(long flags, int (*run)(void *), void *arg, const long block[10]);
 *
 * It clones with `flags` (CLONE_VM | CLONE_VFORK, the namespaces, SIGCHLD) on the same
 * stack; or, when block[8] is not 0, with clone3 and the 88-byte `struct clone_args` it points
 * to (the same flags, the exit signal apart, and CLONE_INTO_CGROUP with a cgroup v2 fd; its
 * stack 0: the same stack too). block[9] is clone's parent_tid (CLONE_PARENT_SETTID: the
 * kernel stores the child's pid there before the child runs). The parent sleeps until the child has exec'd or exited, then returns the child's pid
 * (or -errno). The child calls run(arg), a JavaScript callback that runs the container's
 * set-up steps in micro's own memory (micro's thread is asleep meanwhile) and returns, so that
 * V8 and Deno leave the callback as after any other. It only ever writes below the parent's
 * stack pointer, where nothing of the parent's lives. run's result: GO (0x676f, "go"): its
 * signal mask set to the empty set at block[7] (micro blocks every signal across the call and
 * the child keeps them blocked until here: one delivered in the callback would kill or stop it
 * with micro's runtime mid-call), then execveat(block[0], block[1], block[2], block[3],
 * block[4]); if that fails the errno goes into the second word of the 8-byte record at
 * block[6], which is written to fd block[5] (micro's report socket), and the child exits 1.
 * Anything else is the child's exit code; 0 (what Deno returns for a callback that threw)
 * exits 1: only GO execs.
 *
 *   long proc_writes(const long block[]);
 *
 * Run on a thread of its own (Deno's `nonblocking` FFI) while micro's thread sleeps in
 * vfork_exec: it writes the vfork child's /proc/PID files that only micro may write (its id
 * maps: the child is in a user namespace of its own and has no rights in micro's). block[0]
 * is a socket; block[1] points to the int32 pid (vfork_exec's parent_tid); block[2] the count
 * of files, then for each one its NUL-terminated name, its content and the content's length.
 * It first sends one byte on the socket (it runs: micro waits for that before it clones), then
 * waits for one byte (the child's request: it has been cloned, the pid is there), opens
 * /proc/PID and writes each file whole, in order, then sends the child 8 bytes [errno, index]
 * (0 and the count when every write succeeded). It returns 0, or ((index + 1) << 16) | errno
 * for the file that failed (index = count: /proc/PID itself), or -errno when no request came
 * (-EPIPE: end of file, the child gone without asking); then it shuts the socket down, so
 * that a child that asks later reads the end of the file instead of waiting. Sends are
 * MSG_NOSIGNAL: a peer gone is EPIPE, not a SIGPIPE.
 *
 *   long userns_hold(long flags, void *stack_top, long rfd, long wfd);
 *
 * Clones with `flags` (CLONE_VM, CLONE_NEWUSER, SIGCHLD: no CLONE_VFORK, so micro goes on at
 * once) onto the stack that ends at `stack_top`, and returns the child's pid (or -errno). The
 * child closes every fd it got but `rfd` (close_range; before Linux 5.9 only its copy of the
 * pipe's write end `wfd`), waits in a read of `rfd` (EINTR retried; nobody writes to the pipe:
 * it returns at its end) and exits 0: it holds a new user namespace for micro, which writes
 * its id maps and opens its /proc/PID/ns/user meanwhile, then closes `wfd` (micro's death
 * closes it too). It
 * touches nothing but its own stack and registers; micro blocks every signal across the
 * call, so that the child starts (and stays) with all of them blocked: no handler of micro's
 * runs on its stack.
 *
 * Assembled into core/engine/trampoline.ts by tools/gen_trampoline.ts (no ELF header: the
 * bytes are a function).
 */
        .set SYS_read, 0
        .set SYS_write, 1
        .set SYS_close, 3
        .set SYS_openat, 257
        .set SYS_sendto, 44
        .set SYS_shutdown, 48
        .set SHUT_RDWR, 2
        .set MSG_NOSIGNAL, 0x4000
        .set EINTR, 4
        .set AT_FDCWD, -100
        .set O_WRONLY_CLOEXEC, 0x80001
        .set O_PATH_DIRECTORY_CLOEXEC, 0x290000
        .set EPIPE, 32
        .set EIO, 5
        .set SYS_rt_sigprocmask, 14
        .set SIG_SETMASK, 2
        .set GO, 0x676f
        .set SYS_clone, 56
        .set SYS_clone3, 435
        .set CLONE_ARGS_SIZE, 88
        .set SYS_exit_group, 231
        .set SYS_exit, 60
        .set SYS_close_range, 436
        .set SYS_execveat, 322

        .text
        jmp     vfork_exec                        /* offset 0 */
        .balign 8
        jmp     proc_writes                       /* offset 8 */
        .balign 8
        jmp     userns_hold                       /* offset 16 */
        .balign 8
vfork_exec:
        push    %rbx
        push    %r12
        push    %r13
        push    %r14
        push    %r15                              /* rsp is 16-byte aligned from here */
        mov     %rsi, %r12                        /* run */
        mov     %rdx, %r13                        /* arg */
        mov     %rcx, %r14                        /* block */
        mov     64(%r14), %rax                    /* clone_args, or 0 */
        test    %rax, %rax
        jnz     clone3
        xor     %esi, %esi                        /* the same stack */
        mov     72(%r14), %rdx                    /* parent_tid */
        xor     %r10d, %r10d
        xor     %r8d, %r8d
        mov     $SYS_clone, %eax
        syscall
        jmp     cloned
clone3:
        mov     %rax, %rdi
        mov     $CLONE_ARGS_SIZE, %esi
        mov     $SYS_clone3, %eax
        syscall
cloned:
        test    %rax, %rax
        jnz     parent
        mov     %r13, %rdi
        call    *%r12
        cmp     $GO, %eax
        je      go
        test    %eax, %eax
        jnz     leave
        mov     $1, %eax
        jmp     leave
go:
        mov     $SIG_SETMASK, %edi
        lea     56(%r14), %rsi
        xor     %edx, %edx
        mov     $8, %r10d
        mov     $SYS_rt_sigprocmask, %eax
        syscall
        mov     (%r14), %rdi
        mov     8(%r14), %rsi
        mov     16(%r14), %rdx
        mov     24(%r14), %r10
        mov     32(%r14), %r8
        mov     $SYS_execveat, %eax
        syscall
        neg     %eax
        mov     48(%r14), %rsi
        mov     %eax, 4(%rsi)
        mov     40(%r14), %rdi
        mov     $8, %edx
        mov     $SYS_write, %eax
        syscall
        mov     $1, %eax
leave:
        mov     %eax, %edi
        mov     $SYS_exit_group, %eax
        syscall
        hlt
parent:
restore:                                          /* both functions' epilogue */
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbx
        ret

/* The frame: iovec-free reads; the path "/proc/PID" built backwards from 40(%rsp); the ack at
   48(%rsp); the request byte at 56(%rsp). r12 block, r13 dirfd, r14 file index, r15 result,
   rbx the current file's slot. */
proc_writes:
        push    %rbx
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        sub     $64, %rsp
        mov     %rdi, %r12
        movb    $1, 56(%rsp)                      /* "running" */
        lea     56(%rsp), %rsi
        mov     $1, %edx
        call    send
request:
        mov     (%r12), %rdi                      /* the request: one byte */
        lea     56(%rsp), %rsi
        mov     $1, %edx
        mov     $SYS_read, %eax
        syscall
        cmp     $-EINTR, %rax
        je      request
        test    %rax, %rax
        jg      asked
        jl      unasked
        mov     $-EPIPE, %rax
unasked:
        mov     %rax, %r15
        mov     (%r12), %rdi
        mov     $SHUT_RDWR, %esi
        mov     $SYS_shutdown, %eax
        syscall
        jmp     pw_return
asked:
        mov     8(%r12), %rax                     /* the pid, as the kernel stored it */
        mov     (%rax), %eax
        lea     40(%rsp), %rsi
        movb    $0, (%rsi)
        mov     $10, %ecx
digit:
        xor     %edx, %edx
        div     %ecx
        add     $'0', %dl
        dec     %rsi
        mov     %dl, (%rsi)
        test    %eax, %eax
        jnz     digit
        sub     $6, %rsi
        movl    $0x6f72702f, (%rsi)               /* "/pro" */
        movw    $0x2f63, 4(%rsi)                  /* "c/" */
        mov     $AT_FDCWD, %rdi
        xor     %edx, %edx
        mov     $O_PATH_DIRECTORY_CLOEXEC, %edx
        xor     %r10d, %r10d
        mov     $SYS_openat, %eax
        syscall
        mov     16(%r12), %r14                    /* index = count: /proc/PID */
        test    %rax, %rax
        js      failed
        mov     %rax, %r13
        xor     %r14d, %r14d
        lea     24(%r12), %rbx
next:
        cmp     16(%r12), %r14
        jae     written
        mov     %r13, %rdi
        mov     (%rbx), %rsi
        mov     $O_WRONLY_CLOEXEC, %edx
        xor     %r10d, %r10d
        mov     $SYS_openat, %eax
        syscall
        test    %rax, %rax
        js      failed_dir
        mov     %rax, %r15                        /* the file's fd */
        mov     %rax, %rdi
        mov     8(%rbx), %rsi
        mov     16(%rbx), %rdx
        mov     $SYS_write, %eax
        syscall
        push    %rax
        push    %rax
        mov     %r15, %rdi
        mov     $SYS_close, %eax
        syscall
        pop     %rax
        pop     %rax
        test    %rax, %rax
        js      failed_dir
        cmp     16(%rbx), %rax
        mov     $-EIO, %rcx
        cmovne  %rcx, %rax
        jne     failed_dir
        inc     %r14
        add     $24, %rbx
        jmp     next
written:
        mov     %r13, %rdi
        mov     $SYS_close, %eax
        syscall
        xor     %eax, %eax                        /* errno 0, index = count */
        mov     %r14, %rcx
        xor     %r15d, %r15d
        jmp     ack
failed_dir:
        push    %rax
        push    %rax
        mov     %r13, %rdi
        mov     $SYS_close, %eax
        syscall
        pop     %rax
        pop     %rax
failed:
        neg     %rax                              /* errno */
        mov     %r14, %rcx
        lea     1(%r14), %r15
        shl     $16, %r15
        or      %rax, %r15
ack:
        mov     %eax, 48(%rsp)
        mov     %ecx, 52(%rsp)
        lea     48(%rsp), %rsi
        mov     $8, %edx
        call    send
pw_return:
        mov     %r15, %rax
        add     $64, %rsp
        jmp     restore

/* send(rsi buf, rdx len) on the socket (block[0] in r12), MSG_NOSIGNAL; clobbers rdi, r8-r11. */
send:
        mov     (%r12), %rdi
        mov     $MSG_NOSIGNAL, %r10d
        xor     %r8d, %r8d
        xor     %r9d, %r9d
        mov     $SYS_sendto, %eax
        syscall
        ret

userns_hold:
        push    %rbx
        mov     %rdx, %r9                         /* rfd: the child has r9 too */
        mov     %rcx, %rbx                        /* wfd: and rbx (syscall clobbers rcx) */
        xor     %edx, %edx                        /* no parent_tid */
        xor     %r10d, %r10d                      /* no child_tid */
        xor     %r8d, %r8d                        /* no tls */
        mov     $SYS_clone, %eax                  /* rdi flags, rsi the child's stack */
        syscall
        test    %rax, %rax
        jnz     held                              /* micro: the pid, or -errno */
        /* The child, on its own stack: every fd it got closed but rfd (none of micro's files,
           locks or pipe ends held a moment longer by it); its copy of the write end in any
           case (a kernel without close_range). */
        test    %r9, %r9
        jz      above
        xor     %edi, %edi
        lea     -1(%r9), %rsi
        xor     %edx, %edx
        mov     $SYS_close_range, %eax
        syscall
above:
        lea     1(%r9), %rdi
        mov     $0xffffffff, %esi
        xor     %edx, %edx
        mov     $SYS_close_range, %eax
        syscall
        mov     %rbx, %rdi
        mov     $SYS_close, %eax
        syscall
hold:
        mov     %r9, %rdi
        lea     -8(%rsp), %rsi
        mov     $1, %edx
        xor     %eax, %eax                        /* SYS_read */
        syscall
        cmp     $-EINTR, %rax
        je      hold
        xor     %edi, %edi
        mov     $SYS_exit, %eax
        syscall
        hlt
held:
        pop     %rbx
        ret

/*
 * micro's vfork stub for x86_64: not a program but one function, which micro maps into its
 * own memory and calls through FFI (core/sys/libc.ts vforkExec):
 *
 *   long vfork_exec(long flags, int (*run)(void *), void *arg, const long block[9]);
 *
 * It clones with `flags` (CLONE_VM | CLONE_VFORK, the namespaces, SIGCHLD) on the same
 * stack; or, when block[8] is not 0, with clone3 and the 88-byte `struct clone_args` it points
 * to (the same flags, the exit signal apart, and CLONE_INTO_CGROUP with a cgroup v2 fd; its
 * stack 0: the same stack too). The parent sleeps until the child has exec'd or exited, then returns the child's pid
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
 * Assembled into core/engine/trampoline.ts by tools/gen_trampoline.ts (no ELF header: the
 * bytes are a function).
 */
        .set SYS_write, 1
        .set SYS_rt_sigprocmask, 14
        .set SIG_SETMASK, 2
        .set GO, 0x676f
        .set SYS_clone, 56
        .set SYS_clone3, 435
        .set CLONE_ARGS_SIZE, 88
        .set SYS_exit_group, 231
        .set SYS_execveat, 322

        .text
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
        xor     %edx, %edx
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
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbx
        ret

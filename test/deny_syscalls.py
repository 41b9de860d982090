#!/usr/bin/env python3
"""Runs a command with some system calls failing, as on a kernel that lacks them or under a
seccomp filter that refuses them (micro inside a container whose runtime's profile is old).

    deny_syscalls.py NR[,NR...] ERRNO -- COMMAND [ARG...]

Numbers, not names: x86_64 and aarch64 share the numbers of the calls added since Linux 5.1
(424 and up, pidfd_open is 434), which are the ones tests deny; older calls differ. The fds
the command is given are left as they are.
"""
import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000


def main() -> None:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    nrs = [int(n) for n in sys.argv[1].split(",")]
    errno = int(sys.argv[2])
    # Load the call's number; each match jumps to the last instruction (refuse).
    prog = [(BPF_LD_W_ABS, 0, 0, 0)]
    for i, nr in enumerate(nrs):
        prog.append((BPF_JEQ_K, len(nrs) - i, 0, nr))
    prog.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append((BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno))
    filt = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *p) for p in prog))
    fprog = ctypes.create_string_buffer(struct.pack("=H6xQ", len(prog), ctypes.addressof(filt)))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_SECCOMP): {os.strerror(ctypes.get_errno())}")
    os.execvp(sys.argv[4], sys.argv[4:])


main()

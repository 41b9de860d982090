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

        .include "elf-x86_64.inc"

_start:
        .include "watchdog-body-x86_64.inc"

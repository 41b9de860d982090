#!/bin/sh
# Run a command as root in a VM with Debian's kernel (cgroup v2 with every controller,
# AppArmor), with the host's programs and this project at their usual paths.
#
#   tools/vm/run.sh CMD [ARG...]      (after tools/vm/prepare.sh; `make test-vm` does both)
#
# CMD runs as root in the project directory, under /bin/sh, with MICRO_CGROUP=v2,
# HOME=/root (the host's, so Deno's and micro's caches are warm; writes land in the
# overlay), node_modules/.bin first in PATH and busybox's modprobe, insmod, rmmod and lsmod
# last. MICRO_BIN, MICRO_IMAGE, DENO_DIR, NO_COLOR and the variables named in VM_ENV pass
# through from this environment. The console (kernel messages and CMD's output) streams to
# stdout; the exit status is CMD's, or 125 when the VM failed (no status came back, or
# VM_TIMEOUT seconds passed: default 1500). VM_MEMORY (MiB, 2048) and VM_CPUS (2) size it.
#
# The guest has: cgroup2 alone at /sys/fs/cgroup with +cpu +cpuset +memory +pids +io in
# the root's subtree_control, AppArmor (securityfs mounted), the loop module loaded, fresh
# tmpfs on /tmp, /run and /dev/shm, only lo as network, no systemd.
#
# Nothing the guest does changes the host: it sees the host's / read-only (9p) under a
# tmpfs overlay, so it may write anywhere, project included, and every write is gone at
# power-off. The one host directory it can write is its run directory,
# .cache/vm/runs/run.XXXXXX, which carries the command in and the status out and is removed
# afterwards.
#
# Software emulation (TCG): this host's /dev/kvm is paravirtual and cannot run a stock
# kernel. Expect 30 to 80 times native for CPU-bound work.
set -eu

TIMEOUT=${VM_TIMEOUT:-1500}
MEMORY=${VM_MEMORY:-2048}
CPUS=${VM_CPUS:-2}
PASS_ENV="MICRO_BIN MICRO_IMAGE DENO_DIR NO_COLOR ${VM_ENV:-}"

die() {
  echo "vm run: $*" >&2
  exit 125
}

[ $# -gt 0 ] || die "usage: tools/vm/run.sh CMD [ARG...]"
cd "$(dirname "$0")/../.."
project=$PWD
cache=$project/.cache/vm
# The paths travel on the kernel command line, which splits on spaces.
case $project in
  *[!A-Za-z0-9_./+-]*) die "project path '$project': the kernel command line cannot carry it" ;;
esac
version=$(cat "$cache/current" 2>/dev/null) || die "no VM prepared: run tools/vm/prepare.sh"
kernel=$cache/$version/vmlinux
initrd=$cache/$version/initramfs
modules=$cache/$version/root/lib/modules/$version
if [ ! -f "$kernel" ] || [ ! -f "$initrd" ]; then
  die "VM for $version incomplete: run tools/vm/prepare.sh"
fi
command -v qemu-system-x86_64 >/dev/null ||
  die "qemu-system-x86_64 not found: run tools/vm/prepare.sh"

mkdir -p "$cache/runs"
run=$(mktemp -d "$cache/runs/run.XXXXXX")
qemu=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ -z "$qemu" ] || kill "$qemu" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# quote ARG: ARG as one sh word (the x keeps trailing newlines from $(...)).
quote() {
  quoted=$(printf '%sx' "$1" | sed "s/'/'\\\\''/g")
  printf "'%s'" "${quoted%x}"
}

{
  echo "cd $(quote "$project") || exit 125"
  echo "export HOME=/root MICRO_CGROUP=v2"
  path=$project/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  echo "export PATH=$(quote "$path:/run/micro-vm/bin")"
  for name in $PASS_ENV; do
    case $name in
      *[!A-Za-z0-9_]* | [0-9]*) die "VM_ENV: '$name' is not a variable name" ;;
    esac
    eval "set=\${$name+1} value=\${$name-}"
    # shellcheck disable=SC2154 # set and value are assigned by the eval above
    [ -z "$set" ] || echo "export $name=$(quote "$value")"
  done
  printf 'exec'
  for arg in "$@"; do
    printf ' %s' "$(quote "$arg")"
  done
  echo
} >"$run/cmd"

append="console=ttyS0 quiet lsm=landlock,lockdown,yama,apparmor apparmor=1 security=apparmor"
append="$append cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 panic=1"
append="$append micro.run=$run micro.modules=$modules micro.project=$project"

# The serial console on stdio, no display, no monitor: -nographic without its side effect
# here, SeaBIOS resetting the terminal (ESC c) and turning off its line wrap. The guest
# reads no input: stdin is /dev/null. timeout runs in its own process group, hence the
# traps above.
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg -cpu max -m "$MEMORY" -smp "$CPUS" -no-reboot -nic none \
  -display none -serial stdio -monitor none \
  -kernel "$kernel" -initrd "$initrd" -append "$append" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$run,mount_tag=results,security_model=none" \
  </dev/null &
qemu=$!
rc=0
wait "$qemu" || rc=$?
qemu=""

if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  die "timed out after $TIMEOUT s (VM_TIMEOUT): QEMU killed"
fi
[ "$rc" = 0 ] || die "QEMU failed (exit status $rc)"
[ -f "$run/status" ] || die "the guest reported no exit status (see the console above)"
status=$(cat "$run/status")
case $status in
  '' | *[!0-9]*) die "the guest reported a bad exit status '$status'" ;;
esac
exit "$status"

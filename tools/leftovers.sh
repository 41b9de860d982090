#!/bin/sh
# What a micro run or test leaves on the host, which nothing may: the cgroup directories
# micro makes (its parents `micro` and `micro-oci` and the runs under them, in every
# hierarchy), the entries of the default state roots (/run/micro, /run/micro-oci), the
# mounts under them, and links named micro*.
#
#   tools/leftovers.sh list           prints them, one per line, sorted
#   tools/leftovers.sh check BEFORE   fails, naming each, if any is new since BEFORE (a list
#                                     printed earlier: `make test` takes one before the
#                                     integration suite and checks after it)
#
# A test that leaks shows here even when it passed; see the test's cleanup, and remove the
# leftover by hand (rmdir for an empty cgroup, `micro rm -f` for a run).
set -eu

list() {
  {
    for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
      [ -d "$root" ] || continue
      for parent in micro micro-oci; do
        [ -d "$root/$parent" ] || continue
        echo "cgroup $root/$parent"
        find "$root/$parent" -mindepth 1 -maxdepth 2 -type d 2>/dev/null | sed 's/^/cgroup /'
      done
    done
    for dir in /run/micro /run/micro-oci; do
      [ -d "$dir" ] || continue
      find "$dir" -mindepth 1 -maxdepth 1 2>/dev/null | sed 's/^/state /'
    done
    awk '$5 ~ /^\/run\/micro(-oci)?\// { print "mount " $5 }' /proc/self/mountinfo
    if command -v ip >/dev/null 2>&1; then
      ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^micro/ { sub(/@.*/, "", $2); print "link " $2 }'
    fi
  } | sort -u
}

case ${1:-} in
  list) list ;;
  check)
    [ -f "${2:-}" ] || {
      echo "leftovers: no list to compare with: ${2:-}" >&2
      exit 2
    }
    new=$(list | comm -13 "$2" -)
    if [ -n "$new" ]; then
      echo "leftovers: the tests left these on the host:" >&2
      printf '%s\n' "$new" | sed 's/^/  /' >&2
      exit 1
    fi
    echo "leftovers: none"
    ;;
  *)
    echo "usage: tools/leftovers.sh list | check BEFORE" >&2
    exit 2
    ;;
esac

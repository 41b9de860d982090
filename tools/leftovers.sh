#!/bin/sh
# What a micro run or test leaves on the host, which nothing may: the cgroup directories
# micro makes (its parents `micro` and `micro-oci` and the runs under them, in every
# hierarchy), the entries of the default state roots (/run/micro, /run/micro-oci), the
# mounts under them, links named micro*, and the containers and volumes of the default
# store (/var/lib/micro: a test's run without --rm is kept there).
#
#   tools/leftovers.sh list              prints them, one per line, sorted
#   tools/leftovers.sh around CMD...     lists them, runs CMD, then fails naming each one that
#                                        is new (`make test` runs the integration suite so);
#                                        exits with CMD's status when it failed, else 1 for a
#                                        leftover. The list before is kept in a file of its
#                                        own (mktemp), never in one the checkout's owner could
#                                        have made a link or a FIFO (this runs as root)
#
# A cleanup that is still finishing (a killed run's cgroup emptying) gets 5 seconds. What
# another user starts on the host meanwhile shows too: run the suite on a host of its own.
# A test that leaks shows here even when it passed: see the test's cleanup, and remove the
# leftover by hand (rmdir for an empty cgroup, `micro rm -f` for a run).
set -eu
LC_ALL=C
export LC_ALL

list() {
  {
    for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
      [ -d "$root" ] || continue
      for parent in micro micro-oci; do
        [ -d "$root/$parent" ] || continue
        printf 'cgroup %s\n' "$root/$parent"
        find "$root/$parent" -mindepth 1 -maxdepth 2 -type d 2>/dev/null | sed 's/^/cgroup /'
      done
    done
    for dir in /run/micro /run/micro-oci; do
      [ -d "$dir" ] || continue
      find "$dir" -mindepth 1 -maxdepth 1 2>/dev/null | sed 's/^/state /'
    done
    for dir in /var/lib/micro/containers /var/lib/micro/volumes; do
      [ -d "$dir" ] || continue
      find "$dir" -mindepth 1 -maxdepth 1 ! -name '.*' 2>/dev/null | sed 's/^/store /'
    done
    awk '$5 ~ /^\/run\/micro(-oci)?\// { print "mount " $5 }' /proc/self/mountinfo
    if command -v ip >/dev/null 2>&1; then
      ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^micro/ { sub(/@.*/, "", $2); print "link " $2 }'
    fi
  } | sort -u
}

# $1: a list printed earlier. Prints what is there now and was not then.
new_since() {
  list | comm -13 "$1" -
}

case ${1:-} in
  list) list ;;
  around)
    [ $# -ge 2 ] || {
      echo "usage: tools/leftovers.sh around CMD..." >&2
      exit 2
    }
    shift
    before=$(mktemp)
    trap 'rm -f "$before"' EXIT
    list >"$before"
    status=0
    "$@" || status=$?
    new=$(new_since "$before")
    tries=0
    while [ -n "$new" ] && [ $tries -lt 10 ]; do
      sleep 0.5
      tries=$((tries + 1))
      new=$(new_since "$before")
    done
    if [ -n "$new" ]; then
      echo "leftovers: these stayed on the host after: $*" >&2
      printf '%s\n' "$new" | sed 's/^/  /' >&2
      [ $status -ne 0 ] || status=1
    else
      echo "leftovers: none"
    fi
    exit $status
    ;;
  *)
    echo "usage: tools/leftovers.sh list | around CMD..." >&2
    exit 2
    ;;
esac

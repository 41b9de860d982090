#!/bin/sh
# Build dist/micro: one executable file that needs nothing else on the host.
#
#   tools/build.sh [ENTRY]      (ENTRY defaults to main.ts; `make build` calls this)
#
# Two forms:
#  - DENORT_BIN names a denort runtime: `deno compile` with it (the normal Deno way).
#  - otherwise (no download server here): the offline single-file form. `deno bundle`
#    makes the JavaScript, and dist/micro becomes a POSIX sh stub followed by a payload:
#    the bundle, the yaml bundle and the gzip-compressed Deno runtime, each at a 4 KiB
#    block offset written into the stub. The first run extracts the payload into a
#    per-user cache directory keyed by the payload hash; later runs cost one stat(1) (of
#    every path from / to the cached files, checked to be the caller's or root's) and one
#    exec. See the stub below for the cache rules and why they are safe.
#
# The npm package yaml is bundled on its own, into micro.yaml.js next to the bundle: V8
# parses everything in a bundle at start-up, and only profile files need yaml, which
# core/yaml.ts then imports from there (deno compile: an --include'd file).
#
# Both forms bake in the same Deno flags; --v8-flags=--single-threaded is required by the
# fork engine (docs: DESIGN.md, "The fork engine").
#
# By-products: dist/micro.bundle.js and dist/micro.yaml.js (the bundles, runnable with
# `deno run dist/micro.bundle.js`) and dist/.runtime/ (the compressed runtime, reused
# while the Deno binary is unchanged).
set -eu

FLAGS="--v8-flags=--single-threaded -A --no-prompt --no-config --no-lock --quiet"
FLAGS="$FLAGS --cached-only --no-remote --no-npm"

die() {
  echo "build: $*" >&2
  exit 1
}

abspath() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}

entry=$(abspath "${1:-main.ts}")
deno=${DENO:-node_modules/.bin/deno}
case $deno in
  */*) deno=$(abspath "$deno") ;;
  *) deno=$(command -v "$deno") || die "deno not found: run 'make deps' (npm ci)" ;;
esac
cd "$(dirname "$0")/.."
[ -x "$deno" ] || die "$deno not found: run 'make deps' (npm ci)"
[ -f "$entry" ] || die "entry $entry not found"

mkdir -p dist
work=$(mktemp -d dist/.build.XXXXXX)
trap 'rm -rf "$work"' EXIT

# 0. The built-in profiles' seccomp programs, compiled now into core/seccomp/_precompiled.ts
# (rewritten only when the compiler, the default policy or a built-in profile changed), so
# a run of a built-in profile loads a program instead of compiling one.
"$deno" run --quiet --config deno.json -A tools/gen_seccomp.ts

# 1. The bundle: every module, npm packages from node_modules included, in one file; but
# yaml, which core/yaml.ts imports at run time from micro.yaml.js next to the bundle
# (YAML_BUNDLE there), as the default export of a bundle of its own.
"$deno" bundle --quiet --config deno.json --platform deno -o "$work/micro.js" "$entry"
printf '%s\n' 'import * as yaml from "yaml";' 'export default yaml;' >"$work/yaml.ts"
"$deno" bundle --quiet --config deno.json --platform deno -o "$work/micro.yaml.js" "$work/yaml.ts"
if grep -q 'Excessive alias count' "$work/micro.js"; then
  die "the yaml library is in the main bundle: import it only through core/yaml.ts"
fi
# A static import of a node: module is hoisted to the bundle's top and loads Deno's Node
# layer at every start (node:crypto: about 40 ms): load them where they are used.
if grep -qE '^import .* from "node:' "$work/micro.js"; then
  die "a static node: import in the bundle ($(grep -oE '^import .* from "node:[a-z_/]+"' "$work/micro.js" | head -1)): import it lazily"
fi
cp "$work/micro.yaml.js" "$work/yaml.js"
mv -f "$work/yaml.js" dist/micro.yaml.js
cp "$work/micro.js" "$work/bundle.js"
mv -f "$work/bundle.js" dist/micro.bundle.js

# 2a. deno compile, when a denort runtime is at hand.
if [ -n "${DENORT_BIN:-}" ]; then
  [ -f "$DENORT_BIN" ] || die "DENORT_BIN=$DENORT_BIN is not a file"
  # shellcheck disable=SC2086 # FLAGS is a list of words
  DENORT_BIN=$(abspath "$DENORT_BIN") DENO_NO_UPDATE_CHECK=1 \
    "$deno" compile $FLAGS --include "$work/micro.yaml.js" -o "$work/micro" "$work/micro.js"
  mv -f "$work/micro" dist/micro
  echo "built dist/micro (deno compile)"
  exit 0
fi

# 2b. The offline single-file form.
BLOCK=4096
sha() { sha256sum "$1" | cut -c1-64; }

# The compressed runtime is cached in dist/.runtime, keyed by the binary's identity.
real_deno=$(readlink -f "$deno")
id_now=$(stat -L -c '%d:%i:%s:%Y' "$real_deno")
mkdir -p dist/.runtime
if [ ! -f dist/.runtime/deno.gz ] || [ "$(cat dist/.runtime/id 2>/dev/null)" != "$id_now" ]; then
  # Concurrent builds each write their own files and rename them into place.
  rm -f dist/.runtime/id
  sha "$real_deno" >"$work/sha256"
  gzip -n -6 -c "$real_deno" >"$work/deno.gz"
  mv -f "$work/sha256" dist/.runtime/sha256
  mv -f "$work/deno.gz" dist/.runtime/deno.gz
  echo "$id_now" >"$work/id"
  mv -f "$work/id" dist/.runtime/id
fi
deno_sha=$(cat dist/.runtime/sha256)

# Pad the bundles with newlines (JavaScript whitespace) to whole blocks.
for f in micro.js micro.yaml.js; do
  size=$(wc -c <"$work/$f")
  pad=$(((BLOCK - size % BLOCK) % BLOCK))
  if [ "$pad" -gt 0 ]; then
    head -c "$pad" /dev/zero | tr '\0' '\n' >>"$work/$f"
  fi
done
bundle_blocks=$(($(wc -c <"$work/micro.js") / BLOCK))
bundle_sha=$(sha "$work/micro.js")
yaml_blocks=$(($(wc -c <"$work/micro.yaml.js") / BLOCK))
yaml_sha=$(sha "$work/micro.yaml.js")
hash=$(printf '%s\n' "$deno_sha" "$bundle_sha" "$yaml_sha" "$FLAGS" "stub 2" |
  sha256sum | cut -c1-16)
rt=$(printf '%s' "$deno_sha" | cut -c1-16)

# The stub. Placeholders @NAME@ are filled in below. It must stay POSIX sh (dash, busybox)
# and must end with exit: the payload follows it in the same file.
cat >"$work/stub.in" <<'STUB'
#!/bin/sh
# micro: launcher generated by tools/build.sh (offline single-file form; do not edit).
# This file is this POSIX sh stub followed by a payload: the micro bundle and the yaml
# bundle (JavaScript) and a gzip-compressed Deno runtime. The first run extracts them into
# BASE/HASH (HASH: of the payload), BASE being the first safe one of
#   $MICRO_CACHE_DIR (when set, only it), $XDG_CACHE_HOME/micro or $HOME/.cache/micro,
#   /var/cache/micro (root only), ${TMPDIR:-/tmp}/micro-UID (last resort)
# and every run then execs Deno on the bundle. Remove BASE to reclaim the space.
#
# Why it is safe: Deno runs as the caller, often root, so what it is exec'd or loaded from
# must be files nobody else can change. chain() stats every path from / down to the files
# in one stat(1), without following links (stat -c without -L), and accepts only
#  - above BASE: directories owned by root or the caller, not writable by group or others
#    unless sticky (there others cannot rename or remove entries they do not own, and the
#    entry below is checked to be root's or the caller's);
#  - BASE and BASE/HASH: directories; BASE/HASH/deno, micro.js, micro.yaml.js: regular
#    files; all owned by the caller and writable by nobody else.
# Checked from / down, each accepted path can be changed from then on only by root or the
# caller, so the names exec'd and read after the check are the very files checked: another
# user cannot race the check. The caller's uid is the owner of /proc/$$ in the same stat
# (the slow path asks id(1)). The shared runtime BASE/deno-RT is checked the same way before
# BASE/HASH/deno is made from it, and a BASE given as a path through links is used only
# when those links are root's or the caller's (so nobody can point us at another place).
set -eu
h=@HASH@
fd= um= me= why=
nl='
'
b=
if [ -n "${XDG_CACHE_HOME:-}" ]; then
  b=$XDG_CACHE_HOME/micro
elif [ -n "${HOME:-}" ]; then
  b=$HOME/.cache/micro
fi
f=${MICRO_CACHE_DIR:-$b}
if [ -z "$f" ] && [ -O / ]; then
  f=/var/cache/micro
fi
case $f in
  /* | '') ;;
  *) f=$PWD/$f ;;
esac
case $0 in
  /*) self=$0 ;;
  *) self=$PWD/$0 ;;
esac

launch() {
  d=$1
  shift
  [ -z "$fd" ] || eval "exec $fd<&-"
  [ -z "$um" ] || umask "$um"
  export DENO_DIR="$d/deno_dir" DENO_NO_UPDATE_CHECK=1 MICRO_EXE="$self"
  exec "$d/deno" run @FLAGS@ "$d/micro.js" "$@"
}

# $1: a path; $2: its "uid:hex mode" from stat; $3: what it must be: a (above BASE), l (the
# same or a link of root's or ours), d (a directory of ours), f (a regular file of ours),
# x (an executable of ours). False with why set when it is not.
judge() {
  u=${2%%:*}
  m=$((0x${2#*:}))
  t=$((m & 61440))
  if [ $3 = l ] && [ $t = 40960 ]; then
    [ "$u" = "$me" ] || [ "$u" = 0 ] || {
      why="$1 belongs to uid $u"
      return 1
    }
    return 0
  fi
  case $3 in a | l | d) w=16384 ;; *) w=32768 ;; esac
  if [ $t != $w ]; then
    if [ $t = 40960 ]; then
      why="$1 is a symbolic link"
    elif [ $w = 16384 ]; then
      why="$1 is not a directory"
    else
      why="$1 is not a regular file"
    fi
    return 1
  fi
  case $3 in a | l) [ "$u" != 0 ] || u=$me ;; esac
  if [ "$u" != "$me" ]; then
    why="$1 belongs to uid $u"
    return 1
  fi
  if [ $((m & 18)) != 0 ]; then
    case $3 in
      a | l)
        if [ $((m & 512)) = 0 ]; then
          why="$1 is writable by group or others"
          return 1
        fi
        ;;
      *)
        why="$1 is writable by group or others (chmod go-w it)"
        return 1
        ;;
    esac
  fi
  [ $3 != x ] || [ $((m & 64)) != 0 ] || {
    why="$1 is not executable"
    return 1
  }
}

# $1: an absolute path without //, . or .. (BASE); $2: full (BASE/HASH and its files too),
# base, top (every path is above BASE) or link (top, but links of root's or ours pass);
# $3: a path whose owner is the caller (the fast path's /proc/PID), else $me is the caller.
# True when every path from / down is as judge() wants.
chain() {
  c=$1 p=$1 k=$2 i=${3:-}
  set --
  while p=${p%/*} && [ -n "$p" ]; do
    set -- "$p" "$@"
  done
  set -- / "$@"
  [ -z "$c" ] || set -- "$@" "$c"
  n=$#
  [ $k != full ] || set -- "$@" "$c/$h" "$c/$h/deno" "$c/$h/micro.js" "$c/$h/micro.yaml.js"
  # shellcheck disable=SC2086 # $i: empty or one word
  if ! o=$(stat -c '%u:%f' $i "$@" 2>/dev/null); then
    for p; do
      [ -e "$p" ] || [ -L "$p" ] || break
    done
    why="cannot stat $p"
    return 1
  fi
  if [ -n "$i" ]; then
    me=${o%%:*}
    o=${o#*"$nl"}
  fi
  x=0
  for p; do
    x=$((x + 1))
    l=${o%%"$nl"*}
    o=${o#*"$nl"}
    case $k in
      link) want=l ;;
      top) want=a ;;
      *)
        if [ $x -lt $n ]; then
          want=a
        elif [ $x -le $((n + 1)) ]; then
          want=d
        elif [ $x = $((n + 2)) ]; then
          want=x
        else
          want=f
        fi
        ;;
    esac
    judge "${p:-/}" "$l" $want || return 1
  done
}

# $1: an absolute path. Sets q to it with // and /./ collapsed and no trailing / or /.;
# false with why set when it has a .. in it.
tidy() {
  q=$1
  while :; do
    case $q in
      *//*) q=${q%%//*}/${q#*//} ;;
      */./*) q=${q%%/./*}/${q#*/./} ;;
      */.) q=${q%/.} ;;
      */) q=${q%/} ;;
      *) break ;;
    esac
  done
  case $q/ in
    */../*)
      why="$1 has .. in it"
      return 1
      ;;
  esac
}

# Fast path: already extracted. Shell builtins and one stat(1) up to the exec (two for
# root when $HOME is not root's, as under sudo -E).
if [ -n "$f" ] && tidy "$f"; then
  if chain "$q" full "/proc/$$"; then
    launch "$q/$h" "$@"
  fi
  if [ -z "${MICRO_CACHE_DIR:-}" ] && [ "$q" != /var/cache/micro ] && [ -O / ] &&
    chain /var/cache/micro full "/proc/$$"; then
    launch /var/cache/micro/$h "$@"
  fi
fi

# Slow path: first run of this build for this user, or a cache directory that needs a
# closer look. Read the payload through a descriptor opened now (a free one: the caller's
# descriptors pass to micro untouched), so that a rebuild replacing this file meanwhile
# cannot mix two payloads.
src=$self
for n in 9 8 7 6 5 4 3; do
  if [ ! -e "/dev/fd/$n" ]; then
    eval "exec $n<\"\$self\"" && [ -r "/dev/fd/$n" ] && fd=$n src=/dev/fd/$n
    break
  fi
done
me=$(id -u)
um=$(umask)
umask 077
tried=

warn() {
  echo "micro: $*" >&2
}

# $1: an absolute path. Creates its missing directories (mode 0700), each in a directory
# chain() accepted first, so that no link another user planted makes us create one
# elsewhere; sets c to the path with links, . and .. resolved.
mkbase() {
  p=$1 r=
  while [ -n "$p" ] && [ ! -e "$p" ]; do
    if [ -L "$p" ]; then
      why="$p is a dangling symbolic link"
      return 1
    fi
    r=${p##*/}/$r
    p=${p%/*}
  done
  q=$p
  chain "$q" link || return 1
  c=$(cd -P "${q:-/}" && pwd -P) || {
    why="cannot enter $q"
    return 1
  }
  c=${c%/}
  [ -z "$r" ] || chain "$c" top || return 1
  while [ -n "$r" ]; do
    s=${r%%/*}
    r=${r#*/}
    case $s in
      '' | .) continue ;;
      ..)
        why="$1 has .. after a missing directory"
        return 1
        ;;
    esac
    c=$c/$s
    mkdir -m 0700 "$c" 2>/dev/null || true
    chain "$c" top || return 1
  done
}

# $1: a path in a checked BASE; $2: what it must be (as judge). False with why set when it
# is missing or not that.
own() {
  o=$(stat -c '%u:%f' "$1" 2>/dev/null) || {
    why="cannot stat $1"
    return 1
  }
  judge "$1" "$o" "$2"
}

# $1: a checked BASE. Extracts the payload into $1/$h (atomically).
extract() {
  base=$1
  d=$base/$h
  # $d is not what chain() wants (e.g. emptied by hand). Nobody else can change what is in
  # BASE: remove a link or file, and set aside a directory of ours.
  if [ -L "$d" ] || { [ -e "$d" ] && [ ! -d "$d" ]; }; then
    rm -f "$d" || return 1
  elif [ -e "$d" ]; then
    own "$d" d || {
      why="$why (remove it)"
      return 1
    }
    mv "$d" "$base/.old.$h.$$" && rm -rf "$base/.old.$h.$$" || return 1
  fi
  # The runtime is shared by every build that carries the same Deno binary.
  rt=$base/deno-@RT@
  if ! own "$rt" x; then
    rm -f "$rt.$$"
    dd if="$src" bs=4096 skip=@DSKIP@ 2>/dev/null | gzip -dc >"$rt.$$" || {
      rm -f "$rt.$$"
      why="cannot extract the Deno runtime from $self into $base"
      return 1
    }
    chmod 0755 "$rt.$$" && mv -f "$rt.$$" "$rt" || return 1
    own "$rt" x || return 1
  fi
  t=$base/.new.$h.$$
  rm -rf "$t"
  mkdir -m 0700 "$t" || return 1
  ln "$rt" "$t/deno" 2>/dev/null || cp "$rt" "$t/deno" || return 1
  dd if="$src" bs=4096 skip=@BSKIP@ count=@BCOUNT@ 2>/dev/null >"$t/micro.js" || return 1
  dd if="$src" bs=4096 skip=@YSKIP@ count=@YCOUNT@ 2>/dev/null >"$t/micro.yaml.js" || return 1
  if command -v sha256sum >/dev/null 2>&1; then
    s=$(sha256sum "$t/micro.js")
    y=$(sha256sum "$t/micro.yaml.js")
    if [ "${s%% *}" != @BSHA@ ] || [ "${y%% *}" != @YSHA@ ]; then
      rm -rf "$t"
      warn "$self is damaged (bundle checksum mismatch): build or download it again"
      exit 125
    fi
  fi
  # Atomic publish. If a concurrent first run won, mv moved our copy inside its
  # directory instead: remove that copy.
  mv "$t" "$d" 2>/dev/null || true
  rm -rf "$t" "$d/${t##*/}"
}

# $1: a candidate BASE; the rest: micro's arguments. Launches from it when it is safe, after
# extracting if needed; else returns false with why set.
try() {
  B=$1
  shift
  case $B in
    /*) ;;
    *) B=$PWD/$B ;;
  esac
  tidy "$B" || return 1
  mkbase "$q" || return 1
  B=$c
  if chain "$B" full; then
    launch "$B/$h" "$@"
  fi
  chain "$B" base || return 1
  [ -z "$tried" ] || warn "unpacking into $B, not $tried"
  extract "$B" || return 1
  chain "$B" full || return 1
  launch "$B/$h" "$@"
}

fix="set MICRO_CACHE_DIR to a directory of your own that only you can write to"
if [ -n "${MICRO_CACHE_DIR:-}" ]; then
  try "$MICRO_CACHE_DIR" "$@" ||
    warn "cannot use cache directory $MICRO_CACHE_DIR: $why: $fix"
  exit 125
fi
if [ -n "$b" ]; then
  try "$b" "$@" || tried="$b ($why)"
fi
if [ "$me" = 0 ] && [ -d /var/cache ]; then
  try /var/cache/micro "$@" || tried="${tried:+$tried, }/var/cache/micro ($why)"
fi
tmp=${TMPDIR:-/tmp}
if [ -d "$tmp" ]; then
  try "${tmp%/}/micro-$me" "$@" || tried="${tried:+$tried, }${tmp%/}/micro-$me ($why)"
else
  tried="${tried:+$tried, }${tmp%/}/micro-$me ($tmp does not exist)"
fi
warn "no safe cache directory to unpack into: tried $tried: $fix"
exit 125
STUB

# Fill in the placeholders; the stub's own size fixes the payload offsets.
stub_blocks=1
while :; do
  sed -e "s|@HASH@|$hash|g" -e "s|@RT@|$rt|g" -e "s|@FLAGS@|$FLAGS|g" \
    -e "s|@BSHA@|$bundle_sha|g" -e "s|@BCOUNT@|$bundle_blocks|g" \
    -e "s|@BSKIP@|$stub_blocks|g" \
    -e "s|@YSHA@|$yaml_sha|g" -e "s|@YCOUNT@|$yaml_blocks|g" \
    -e "s|@YSKIP@|$((stub_blocks + bundle_blocks))|g" \
    -e "s|@DSKIP@|$((stub_blocks + bundle_blocks + yaml_blocks))|g" \
    "$work/stub.in" >"$work/stub"
  [ "$(wc -c <"$work/stub")" -le $((stub_blocks * BLOCK)) ] && break
  stub_blocks=$((stub_blocks + 1))
done
size=$(wc -c <"$work/stub")
head -c $((stub_blocks * BLOCK - size)) /dev/zero | tr '\0' '\n' >>"$work/stub"

cat "$work/stub" "$work/micro.js" "$work/micro.yaml.js" dist/.runtime/deno.gz >"$work/micro"
chmod 0755 "$work/micro"
mv -f "$work/micro" dist/micro
echo "built dist/micro (offline single-file form: deno runtime + bundles)"

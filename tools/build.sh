#!/bin/sh
# Build dist/micro: one executable file that needs nothing else on the host.
#
#   tools/build.sh [ENTRY]      (ENTRY defaults to main.ts; `make build` calls this)
#
# Two forms:
#  - DENORT_BIN names a denort runtime: `deno compile` with it (the normal Deno way).
#  - otherwise (no download server here): the offline single-file form. `deno bundle`
#    makes the JavaScript, and dist/micro becomes a launcher followed by a payload: the
#    bundle, the yaml bundle and the gzip-compressed Deno runtime, each at a 4 KiB block
#    offset written into the launcher's POSIX sh stub. The first run extracts the payload
#    into a per-user cache directory keyed by the payload hash; later runs check every path
#    from / to the cached files (the caller's or root's, writable by nobody else) and exec
#    Deno. See the stub below for the cache rules and why they are safe. The launcher is a
#    small static program (tools/trampoline/launcher-ARCH.S, tools/mklauncher.ts) that does
#    the stub's fast path with system calls alone and runs the stub (sh -c) for the rest:
#    a shell and a stat(1) cost every command about 10 ms where fork and exec are slow. For
#    an architecture without one, dist/micro starts with the stub itself.
#
# V8 compiles every module it loads (core/v8.ts's --no-lazy) and a command needs only some:
# ENTRY is bundled with code splitting into lib/ (main.js and a chunk per group of modules
# that a dynamic import loads: `micro ps` loads none of the engine's), and micro.js is
# entry.ts's bundle: `micro version` without reading the rest, which it imports for every
# other command. The npm package yaml is bundled on its own, into lib/micro.yaml.js, which
# core/yaml.ts imports when a profile file needs it.
#
# Both forms bake in the same Deno flags; the V8 flags of core/v8.ts are required by the
# fork engine (docs: DESIGN.md, "The fork engine", and core/v8.ts).
#
# By-products: dist/lib/ (ENTRY's bundle, runnable with `deno run dist/lib/main.js`) and
# dist/.runtime/ (the compressed runtime, reused while the Deno binary is unchanged).
set -eu

# The V8 flags are core/v8.ts's (why: there), read from it so both stay one list.
V8_FLAGS=$(sed -n 's/^  "\(--single-threaded[^"]*\)";$/\1/p' "$(dirname "$0")/../core/v8.ts")
case $V8_FLAGS in
  --single-threaded*) ;;
  *) echo "build: no V8_FLAGS in core/v8.ts" >&2 && exit 1 ;;
esac
# Deno's flags for the bundle: core/v8.ts's BUNDLE_FLAGS (the processes micro starts use them).
BUNDLE_FLAGS=$(sed -n '/^export const BUNDLE_FLAGS =$/{n;s/^  "\(--[^"]*\)";$/\1/p;}' "$(dirname "$0")/../core/v8.ts")
case $BUNDLE_FLAGS in
  *--no-config*) ;;
  *) echo "build: no BUNDLE_FLAGS in core/v8.ts" >&2 && exit 1 ;;
esac
FLAGS="--v8-flags=$V8_FLAGS -A $BUNDLE_FLAGS"

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

# 1. The bundles: every module, npm packages from node_modules included, in lib/ (main.js,
# the entry, and its chunks); but yaml, which core/yaml.ts imports at run time from
# lib/micro.yaml.js (YAML_BUNDLE there), as the default export of a bundle of its own.
# micro.js, what Deno runs, is entry.ts's bundle, which imports lib/main.js (MAIN_BUNDLE).
# Minified (with source maps, below): V8 compiles every function a run loads, and the
# smaller text costs a run about 1.5 ms and its attached parent 0.25 MB (bench/README.md).
"$deno" bundle --quiet --config deno.json --platform deno --code-splitting --minify \
  --sourcemap=linked --outdir "$work/lib" "$entry"
name=$(basename "$entry" .ts).js
if [ "$name" != main.js ]; then
  mv "$work/lib/$name" "$work/lib/main.js"
  mv "$work/lib/$name.map" "$work/lib/main.js.map"
  sed -i "s|^//# sourceMappingURL=$name.map\$|//# sourceMappingURL=main.js.map|" "$work/lib/main.js"
fi
"$deno" bundle --quiet --config deno.json --platform deno -o "$work/micro.js" entry.ts
if grep -q '^// main.ts$' "$work/micro.js" || ! grep -q 'lib/main.js' "$work/micro.js"; then
  die "entry.ts's bundle holds main.ts, or does not import lib/main.js"
fi
printf '%s\n' 'import * as yaml from "yaml";' 'export default yaml;' >"$work/yaml.ts"
if grep -ql 'Excessive alias count' "$work"/lib/*.js; then
  die "the yaml library is in the main bundle: import it only through core/yaml.ts"
fi
# A static import of a node: module is hoisted to a bundle's top and loads Deno's Node
# layer wherever the bundle loads (node:crypto: about 40 ms): load them where they are used.
# (Minified: `import{a as b}from"node:x"`, `export*from"node:x"`, `import"node:x"`, after a
# `;` or `}` or at a line's start.)
node_import='(^|[;}])(import ?([{*][^;(]*|[A-Za-z_$][^;(]*)?from ?|export ?[{*][^;(]*from ?|import ?)"node:[a-z_/]+"'
if grep -qE "$node_import" "$work"/lib/*.js "$work/micro.js"; then
  die "a static node: import in the bundle ($(grep -ohE "$node_import" "$work"/lib/*.js "$work/micro.js" | head -1)): import it lazily"
fi
# Deno reads at start every module a literal `import("./x.js")` names, transitively: every
# command's chunks (125 files, where `micro ps` loads 35). Made non-literal, a chunk is read
# when a command imports it (resolved against the importing chunk, as before). The source
# maps follow the columns that moved (most minified chunks are one line), keep no sources
# (the repository has them) and name each `micro:PATH`, so a stack trace points into the
# repository (tools/finish_lib.ts).
"$deno" run --quiet --no-config -A tools/finish_lib.ts "$work/lib"
if grep -qE 'import\("\./' "$work"/lib/*.js; then
  die "a literal dynamic import is left in lib/ ($(grep -ohE 'import\("\./[^)]*\)' "$work"/lib/*.js | head -1))"
fi
"$deno" bundle --quiet --config deno.json --platform deno -o "$work/lib/micro.yaml.js" \
  "$work/yaml.ts"
rm -rf "$work/dist-lib" dist/micro.bundle.js dist/micro.yaml.js
cp -R "$work/lib" "$work/dist-lib"
rm -rf dist/lib
mv -f "$work/dist-lib" dist/lib

# 2a. deno compile, when a denort runtime is at hand.
if [ -n "${DENORT_BIN:-}" ]; then
  [ -f "$DENORT_BIN" ] || die "DENORT_BIN=$DENORT_BIN is not a file"
  # shellcheck disable=SC2086 # FLAGS is a list of words
  DENORT_BIN=$(abspath "$DENORT_BIN") DENO_NO_UPDATE_CHECK=1 \
    "$deno" compile $FLAGS --include "$work/lib" -o "$work/micro" "$work/micro.js"
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

# lib/ as one ustar archive, the same bytes for the same files (names sorted, owner 0, mode
# 0600, time 0): the stub unpacks it once with tar(1).
(cd "$work/lib" && LC_ALL=C tar --format=ustar --owner=0 --group=0 --numeric-owner \
  --mode=0600 --mtime=@0 -cf ../lib.tar $(LC_ALL=C ls))
# Pad the entry with newlines (JavaScript whitespace), the archive with zeros (tar's end),
# to whole blocks.
for f in micro.js lib.tar; do
  size=$(wc -c <"$work/$f")
  pad=$(((BLOCK - size % BLOCK) % BLOCK))
  if [ "$pad" -gt 0 ] && [ "$f" = micro.js ]; then
    head -c "$pad" /dev/zero | tr '\0' '\n' >>"$work/$f"
  elif [ "$pad" -gt 0 ]; then
    head -c "$pad" /dev/zero >>"$work/$f"
  fi
done
bundle_blocks=$(($(wc -c <"$work/micro.js") / BLOCK))
bundle_sha=$(sha "$work/micro.js")
main_blocks=$(($(wc -c <"$work/lib.tar") / BLOCK))
main_sha=$(sha "$work/lib.tar")
hash=$(printf '%s\n' "$deno_sha" "$bundle_sha" "$main_sha" "$FLAGS" "stub 5" |
  sha256sum | cut -c1-16)
rt=$(printf '%s' "$deno_sha" | cut -c1-16)

# The stub. Placeholders @NAME@ are filled in below. It must stay POSIX sh (dash, busybox)
# and must end with exit: the payload follows it in the same file. The launcher runs it as
# `sh -c STUB SELF ARGS...` ($0 is then this file, as when the kernel runs it as a script).
cat >"$work/stub.in" <<'STUB'
#!/bin/sh
# micro: launcher generated by tools/build.sh (offline single-file form; do not edit).
# This file is a launcher (a static program doing the fast path below; on some architectures
# none) and this POSIX sh stub followed by a payload: the entry bundle (JavaScript), an
# archive of the program's modules (lib/) and a gzip-compressed Deno runtime. The first run extracts them into
# BASE/HASH (HASH: of the payload), BASE being the first safe one of
#   $MICRO_CACHE_DIR (when set, only it), $XDG_CACHE_HOME/micro or $HOME/.cache/micro,
#   /var/cache/micro (root only), ${TMPDIR:-/tmp}/micro-UID (last resort)
# and every run then execs Deno on the bundle.
#
# Concurrent first runs: one unpacks, holding flock(1) on BASE/.lock (opened only when
# BASE is checked, verified to be our own regular file), the others wait and use its result.
# Unpacking goes to a temp dir renamed into place, so a killed run never leaves a version
# that is used. A BASE where files cannot be executed (noexec) is refused before unpacking.
# Cleanup: after unpacking a version (under the lock), sweep() removes what micro made in
# BASE and no longer needs: other versions (16 hex digits) not started from in the last
# GRACE seconds and not the executable of a running process, runtimes (deno-16 hex) no
# version links, and temp entries of dead processes; never anything else, never through a
# link. The fast path refreshes its version's mtime (the "last started" stamp) when older
# than STAMP seconds: a touch(1) at most that often, nothing on the other runs.
#
# Why it is safe: Deno runs as the caller, often root, so what it is exec'd or loaded from
# must be files nobody else can change. chain() stats every path from / down to the files
# in one stat(1), without following links (stat -c without -L), and accepts only
#  - above BASE: directories owned by root or the caller, not writable by group or others
#    unless sticky (there others cannot rename or remove entries they do not own, and the
#    entry below is checked to be root's or the caller's);
#  - BASE and BASE/HASH: directories; BASE/HASH/deno, micro.js, lib/main.js: regular
#    files; all owned by the caller and writable by nobody else; BASE/HASH/lib, which holds
#    the program's modules: a directory of the caller's that nobody else may even enter
#    (mode 0700), so that no other user can change what is in it.
# Checked from / down, each accepted path can be changed from then on only by root or the
# caller, so the names exec'd and read after the check are the very files checked: another
# user cannot race the check. The caller's uid is the owner of /proc/$$ in the same stat
# (the slow path asks id(1)). The shared runtime BASE/deno-RT is checked the same way before
# BASE/HASH/deno is made from it, and a BASE given as a path through links is used only
# when those links are root's or the caller's (so nobody can point us at another place).
set -eu
h=@HASH@
fd= lk= um= me= why= only=
now=0 vt=0
STAMP=600 GRACE=3600
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
  [ -z "$lk" ] || eval "exec $lk>&-"
  [ -z "$um" ] || umask "$um"
  export DENO_DIR="$d/deno_dir" DENO_NO_UPDATE_CHECK=1 MICRO_EXE="$self"
  unset MICRO_WARM # the launcher's alone (launcher-ARCH.S warm)
  exec "$d/deno" run @FLAGS@ "$d/micro.js" "$@"
}

# $1: a path; $2: its "uid:hex mode:mtime" from stat; $3: what it must be: a (above BASE),
# l (the same or a link of root's or ours), d (a directory of ours), f (a regular file of
# ours), x (an executable of ours), p (a directory of ours that only we may enter). False
# with why set when it is not.
judge() {
  u=${2%%:*}
  m=${2#*:}
  m=$((0x${m%%:*}))
  t=$((m & 61440))
  if [ $3 = l ] && [ $t = 40960 ]; then
    [ "$u" = "$me" ] || [ "$u" = 0 ] || {
      why="$1 belongs to uid $u"
      return 1
    }
    return 0
  fi
  case $3 in a | l | d | p) w=16384 ;; *) w=32768 ;; esac
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
  [ $3 != p ] || [ $((m & 63)) = 0 ] || {
    why="$1 is open to group or others (chmod 0700 it)"
    return 1
  }
}

# $1: a checked BASE whose $h chain() just accepted (vt, now). Stamps the version as started
# from, at most every STAMP seconds, so that sweep() in another build's run leaves it alone.
stamp() {
  [ $((now - vt)) -lt $STAMP ] || touch -c "$1/$h" 2>/dev/null || :
}

# $1: an absolute path without //, . or .. (BASE); $2: full (BASE/HASH and its files too),
# base, top (every path is above BASE) or link (top, but links of root's or ours pass);
# $3: a path whose owner is the caller and whose mtime is now (/proc/$$), else $me is the
# caller. True when every path from / down is as judge() wants; with full, vt is then the
# mtime of BASE/HASH (when it was last started from).
chain() {
  c=$1 p=$1 k=$2 i=${3:-}
  set --
  while p=${p%/*} && [ -n "$p" ]; do
    set -- "$p" "$@"
  done
  set -- / "$@"
  [ -z "$c" ] || set -- "$@" "$c"
  n=$#
  [ $k != full ] ||
    set -- "$@" "$c/$h" "$c/$h/deno" "$c/$h/micro.js" "$c/$h/lib/main.js" "$c/$h/lib"
  # shellcheck disable=SC2086 # $i: empty or one word
  if ! o=$(stat -c '%u:%f:%Y' $i "$@" 2>/dev/null); then
    for p; do
      [ -e "$p" ] || [ -L "$p" ] || break
    done
    why="cannot stat $p"
    return 1
  fi
  if [ -n "$i" ]; then
    me=${o%%:*}
    l=${o%%"$nl"*}
    now=${l##*:}
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
          vt=${l##*:}
        elif [ $x = $((n + 2)) ]; then
          want=x
        elif [ $x = $((n + 5)) ]; then
          want=p
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
# root when $HOME is not root's, as under sudo -E). The launcher in front did the same with
# system calls before it ran this stub; here it covers a base the launcher leaves to the
# stub (relative, or with // or /./ in it) and the form without a launcher.
if [ -n "$f" ] && tidy "$f"; then
  if chain "$q" full "/proc/$$"; then
    stamp "$q"
    launch "$q/$h" "$@"
  fi
  if [ -z "${MICRO_CACHE_DIR:-}" ] && [ "$q" != /var/cache/micro ] && [ -O / ] &&
    chain /var/cache/micro full "/proc/$$"; then
    stamp /var/cache/micro
    launch /var/cache/micro/$h "$@"
  fi
fi

# Sets n to a descriptor number the caller did not pass us (and not $fd); empty if none.
freefd() {
  for n in 9 8 7 6 5 4 3; do
    [ "$n" = "$fd" ] || [ -e "/proc/self/fd/$n" ] || return 0
  done
  n=
}

# Slow path: first run of this build for this user, or a cache directory that needs a
# closer look. Read the payload through a descriptor opened now (a free one: the caller's
# descriptors pass to micro untouched), so that a rebuild replacing this file meanwhile
# cannot mix two payloads.
src=$self
freefd
if [ -n "$n" ]; then
  eval "exec $n<\"\$self\"" && [ -r "/proc/self/fd/$n" ] && fd=$n src=/proc/self/fd/$n
fi
me=$(id -u)
now=$(stat -c %Y "/proc/$$" 2>/dev/null) || now=0
um=$(umask)
umask 077
tried=

warn() {
  echo "micro: $*" >&2
}

# $1: an absolute path. Creates its missing directories (mode 0700), each in a directory
# chain() accepted first, so that no link another user planted makes us create one
# elsewhere; sets c to the path with links, . and .. resolved. With only set
# ($MICRO_CACHE_DIR), only the last one: a missing parent is more likely a typo or an
# unmounted disk than a wish.
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
  case $only$r in
    1*?/?*)
      why="${p:-/}/${r%%/*} does not exist"
      return 1
      ;;
  esac
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
  o=$(stat -c '%u:%f:%Y' "$1" 2>/dev/null) || {
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
  dd if="$src" bs=4096 skip=@MSKIP@ count=@MCOUNT@ 2>/dev/null >"$t/lib.tar" || return 1
  if command -v sha256sum >/dev/null 2>&1; then
    s=$(sha256sum "$t/micro.js")
    m=$(sha256sum "$t/lib.tar")
    if [ "${s%% *}" != @BSHA@ ] || [ "${m%% *}" != @MSHA@ ]; then
      rm -rf "$t"
      warn "$self is damaged (bundle checksum mismatch): build or download it again"
      exit 125
    fi
  fi
  command -v tar >/dev/null 2>&1 || {
    rm -rf "$t"
    why="tar(1) is needed once, to unpack micro's modules: install tar"
    return 1
  }
  # The archive's files are 0600 and root's (the caller's when root extracts; tar gives
  # them to the caller otherwise), in a directory only the caller may enter.
  mkdir -m 0700 "$t/lib" && tar -xf "$t/lib.tar" -C "$t/lib" && rm -f "$t/lib.tar" ||
    return 1
  # Atomic publish. If a concurrent first run won (one without flock(1), or an older
  # launcher), mv moved our copy inside its directory instead: remove that copy.
  mv "$t" "$d" 2>/dev/null || true
  rm -rf "$t" "$d/${t##*/}"
}

# $1: a checked BASE. False, with why set, when files there cannot be executed (a noexec
# mount, or a policy): an empty file of ours is run, which the shell runs as an empty script
# when the kernel lets it be executed (ENOEXEC) and fails to run when not (EACCES). Checked
# before unpacking, so that such a BASE is refused at once rather than unpacked into.
runnable() {
  e=$1/.exec.$$
  rm -f "$e"
  if ! { : >"$e" && chmod 0700 "$e"; } 2>/dev/null; then
    rm -f "$e"
    why="cannot write in $1"
    return 1
  fi
  if "$e" 2>/dev/null; then
    rm -f "$e"
    return 0
  fi
  rm -f "$e"
  # Name the mount when it is noexec: the longest mount point above $1 (later lines win:
  # they are mounted on top).
  mp= mo=
  while read -r _ _ _ _ m o _; do
    case $1/ in
      "${m%/}"/*) [ ${#m} -lt ${#mp} ] || mp=$m mo=$o ;;
    esac
  done </proc/self/mountinfo 2>/dev/null || :
  case ,$mo, in
    *,noexec,*)
      why="$1 is on a file system mounted noexec ($mp): programs cannot run from it"
      ;;
    *) why="files in $1 cannot be executed" ;;
  esac
  return 1
}

# $1: a checked BASE. Takes BASE/.lock (flock(1), exclusive), waiting while another run
# unpacks there. The file is opened only if it is not a link (a link there could only be
# root's or ours: it is removed), then checked to be our own private regular file and the
# very file opened. Without flock(1) (util-linux, busybox) or when it fails, runs go
# unlocked, each unpacking into a temp dir of its own.
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  l=$1/.lock
  if [ -L "$l" ]; then
    rm -f "$l" || {
      why="cannot remove the link $l"
      return 1
    }
  fi
  freefd
  [ -n "$n" ] || return 0
  # command: a failed redirection must not end the shell (as it would for plain exec).
  eval "command exec $n>>\"\$l\"" 2>/dev/null || {
    why="cannot open $l"
    return 1
  }
  lk=$n
  if ! own "$l" f; then
    unlock
    return 1
  fi
  if [ "$(stat -c %d:%i "$l")" != "$(stat -L -c %d:%i "/proc/self/fd/$lk")" ]; then
    unlock
    why="$l was replaced while being opened"
    return 1
  fi
  # A file system without flock (ENOLCK), or a flock(1) that fails: unlocked, as without it.
  flock -x "$lk" 2>/dev/null || unlock
}

unlock() {
  [ -z "$lk" ] || eval "exec $lk>&-"
  lk=
}

# $1: a checked BASE, locked, now holding this build's version. Removes what micro made
# there and no longer needs: only entries named as micro names them, only the caller's,
# never through a link (rm -r does not follow links), a version only after renaming it
# aside (a run checking it meanwhile sees it whole or not at all). Kept: versions started from in the
# last GRACE seconds (their mtime, see stamp()) or holding the executable of a running
# process (a long run; micro also runs its Deno again by path for rootless unpacking), and
# temp entries whose process (the number at the end) is alive.
sweep() {
  sb=$1
  x='[0-9a-f]'
  x=$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x
  set --
  for e in "$sb"/* "$sb"/.[!.]*; do
    n=${e##*/}
    case $n in
      $x | deno-$x) ;;
      .new.$x.[0-9]* | .old.$x.[0-9]* | deno-$x.[0-9]* | .exec.[0-9]*)
        case ${n##*.} in *[!0-9]*) continue ;; esac
        ;;
      *) continue ;;
    esac
    [ "$n" != "$h" ] && [ "$n" != "deno-@RT@" ] || continue
    set -- "$@" "$e"
  done
  [ $# -gt 0 ] || return 0
  o=$(stat -c '%u:%f:%Y:%h:%n' "$@" 2>/dev/null) || :
  busy=$(ls -l /proc/[0-9]*/exe 2>/dev/null) || :
  runtimes=
  while [ -n "$o" ]; do
    l=${o%%"$nl"*}
    case $o in *"$nl"*) o=${o#*"$nl"} ;; *) o= ;; esac
    u=${l%%:*} l=${l#*:}
    m=$((0x${l%%:*})) l=${l#*:}
    y=${l%%:*} l=${l#*:}
    k=${l%%:*} e=${l#*:}
    n=${e##*/}
    [ "$u" = "$me" ] || continue
    case $n in
      $x)
        [ $((m & 61440)) = 16384 ] && [ $((y + GRACE)) -lt "$now" ] || continue
        case $busy in *" -> $e/"*) continue ;; esac
        mv "$e" "$sb/.old.$n.$$" 2>/dev/null && rm -rf "$sb/.old.$n.$$" || :
        ;;
      deno-$x)
        [ $((m & 61440)) = 32768 ] && runtimes="$runtimes $n"
        ;;
      *)
        [ -d "/proc/${n##*.}" ] || rm -rf "$e" || :
        ;;
    esac
  done
  # A runtime no version links to (once those above are gone). Versions unpacked where
  # hard links fail have a copy of their own and do not need it either.
  for n in $runtimes; do
    l=$(stat -c '%u:%f:%h' "$sb/$n" 2>/dev/null) || continue
    [ "${l%%:*}" = "$me" ] && [ "${l##*:}" = 1 ] && rm -f "$sb/$n" || :
  done
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
    stamp "$B"
    launch "$B/$h" "$@"
  fi
  chain "$B" base || return 1
  runnable "$B" || return 1
  lock "$B" || return 1
  # Another run may have unpacked it while we waited.
  if chain "$B" full; then
    unlock
    launch "$B/$h" "$@"
  fi
  [ -z "$tried" ] || warn "unpacking into $B, not $tried"
  extract "$B" || {
    unlock
    return 1
  }
  sweep "$B"
  unlock
  chain "$B" full || return 1
  launch "$B/$h" "$@"
}

fix="set MICRO_CACHE_DIR to a directory of your own that only you can write to,"
fix="$fix on a file system that allows running programs"
if [ -n "${MICRO_CACHE_DIR:-}" ]; then
  only=1
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

# The launcher for the runtime's architecture (its ELF header's e_machine).
case $(od -An -tu2 -j18 -N2 "$real_deno" | tr -d ' ') in
  62) arch=x86_64 ;;
  183) arch=aarch64 ;;
  *) arch=none ;;
esac

# Fill in the placeholders; the launcher's and the stub's own size fix the payload offsets.
stub_blocks=1
while :; do
  sed -e "s|@HASH@|$hash|g" -e "s|@RT@|$rt|g" -e "s|@FLAGS@|$FLAGS|g" \
    -e "s|@BSHA@|$bundle_sha|g" -e "s|@BCOUNT@|$bundle_blocks|g" \
    -e "s|@BSKIP@|$stub_blocks|g" \
    -e "s|@MSHA@|$main_sha|g" -e "s|@MCOUNT@|$main_blocks|g" \
    -e "s|@MSKIP@|$((stub_blocks + bundle_blocks))|g" \
    -e "s|@DSKIP@|$((stub_blocks + bundle_blocks + main_blocks))|g" \
    "$work/stub.in" >"$work/stub.sh"
  # shellcheck disable=SC2086 # FLAGS is a list of words (not patterns: set -f)
  (set -f && "$deno" run --quiet --config deno.json -A tools/mklauncher.ts "$arch" "$hash" \
    "$work/stub.sh" "$work/stub" $FLAGS)
  [ "$(wc -c <"$work/stub")" -le $((stub_blocks * BLOCK)) ] && break
  stub_blocks=$((stub_blocks + 1))
done
size=$(wc -c <"$work/stub")
head -c $((stub_blocks * BLOCK - size)) /dev/zero | tr '\0' '\n' >>"$work/stub"

cat "$work/stub" "$work/micro.js" "$work/lib.tar" dist/.runtime/deno.gz >"$work/micro"
chmod 0755 "$work/micro"
mv -f "$work/micro" dist/micro
echo "built dist/micro (offline single-file form: deno runtime + bundles)"

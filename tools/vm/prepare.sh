#!/bin/sh
# Prepare the test VM: QEMU, Debian's kernel as an uncompressed vmlinux, and an initramfs.
#
#   tools/vm/prepare.sh        (`make test-vm` calls this, then tools/vm/run.sh)
#
# Idempotent: everything goes under .cache/vm/ and is rebuilt only when missing or when its
# inputs changed; a warm run costs an apt-cache query and a few checksums, and prints
# nothing. The VM itself is described in tools/vm/run.sh and tools/vm/init.
#
#   .cache/vm/current              the kernel version run.sh boots (e.g. 6.1.0-41-amd64)
#   .cache/vm/VERSION/root/        the kernel .deb unpacked (dpkg -x), with modules.dep
#   .cache/vm/VERSION/vmlinux      the uncompressed kernel, booted through its PVH entry
#   .cache/vm/VERSION/initramfs    busybox, the virtio 9p and overlay modules, tools/vm/init
#   .cache/vm/apparmor/root/       the apparmor .deb unpacked (dpkg -x): the guest runs its
#                                  sbin/apparmor_parser (test/integration/apparmor_test.ts)
#   .cache/vm/apparmor/version     the package version unpacked there
#
# Measured here: booting vmlinux takes about half the time the bzImage does under TCG (no
# real-mode setup and no xz decompression in emulation).
set -eu

PACKAGES="qemu-system-x86 busybox-static"
# The modules /init loads before it can reach the host's files (their dependencies come
# from modules.dep).
MODULES="virtio_pci 9pnet_virtio 9p overlay"
BUSYBOX=/bin/busybox

die() {
  echo "vm prepare: $*" >&2
  exit 1
}

say() {
  echo "vm prepare: $*" >&2
}

cd "$(dirname "$0")/../.."
cache=$PWD/.cache/vm
here=$PWD/tools/vm
mkdir -p "$cache"
# One prepare at a time (two test runs may start together); the lock goes with the process.
exec 9>"$cache/.lock"
flock 9

installed() {
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
  [ "$status" = "install ok installed" ]
}

# 1. Packages: QEMU without its recommends (no GUI, no firmware bundles), busybox-static.
missing=""
for pkg in $PACKAGES; do
  installed "$pkg" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || die "missing packages:$missing (run as root to install them)"
  say "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# 2. The kernel: the exact package linux-image-amd64 depends on, downloaded, not installed.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}
pkg=$(kernel_package)
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(kernel_package)
fi
[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (apt-cache depends)"
version=${pkg#linux-image-}
dir=$cache/$version
mkdir -p "$dir"

if [ ! -f "$dir/root/.unpacked" ]; then
  rm -rf "$dir/deb" "$dir/root"
  mkdir -p "$dir/deb"
  say "downloading $pkg"
  if ! (cd "$dir/deb" && apt-get download -q "$pkg" >/dev/null 2>&1); then
    # The lists may name a version the mirror no longer has: refresh them once.
    apt-get update -qq
    (cd "$dir/deb" && apt-get download -q "$pkg" >/dev/null) || die "apt-get download $pkg failed"
  fi
  deb=$(find "$dir/deb" -name "${pkg}_*.deb" | head -n 1)
  [ -n "$deb" ] || die "apt-get download $pkg left no .deb in $dir/deb"
  dpkg -x "$deb" "$dir/root"
  rm -rf "$dir/deb"
  [ -d "$dir/root/lib/modules/$version" ] || die "$pkg has no lib/modules/$version"
  # The .deb ships no modules.dep (the package's postinst runs depmod): make one for the
  # whole tree, which the guest also uses (modprobe, and the kernel's own module loading).
  "$BUSYBOX" depmod -b "$dir/root" "$version"
  touch "$dir/root/.unpacked"
fi
moddir=$dir/root/lib/modules/$version

# 3. vmlinux, as the kernel's scripts/extract-vmlinux does: find each compression format's
# magic in the bzImage, decompress from there, keep the first result that is an ELF file.
is_elf() {
  [ -s "$1" ] && [ "$(head -c 4 "$1")" = "$(printf '\177ELF')" ]
}

# try_decompress MAGIC PLACEHOLDER COMMAND...: MAGIC in tr's escapes; PLACEHOLDER is
# MAGIC's length minus one of characters. tr turns each MAGIC into a newline followed by
# PLACEHOLDER (and every other newline into '='), so grep -b gives the byte offset of each
# occurrence plus one: tail -c +OFFSET starts exactly at the magic.
try_decompress() {
  magic=$1 placeholder=$2
  shift 2
  command -v "$1" >/dev/null 2>&1 || return 1
  for pos in $(tr "$magic\n$placeholder" "\n$placeholder=" <"$image" |
    LC_ALL=C grep -abo "^$placeholder" | cut -d: -f1); do
    tail -c "+$pos" "$image" | "$@" >"$dir/vmlinux.tmp" 2>/dev/null || true
    if is_elf "$dir/vmlinux.tmp"; then
      mv "$dir/vmlinux.tmp" "$dir/vmlinux"
      return 0
    fi
  done
  return 1
}

if ! is_elf "$dir/vmlinux"; then
  image=$dir/root/boot/vmlinuz-$version
  [ -f "$image" ] || die "$pkg has no boot/vmlinuz-$version"
  try_decompress '\3757zXZ\000' abcde xz -dcq --single-stream ||
    try_decompress '(\265/\375' xxx zstd -dcq ||
    try_decompress '\037\213\010' xy gzip -dcq ||
    try_decompress '\002!L\030' xxx lz4 -dcq ||
    try_decompress ']\000\000\000' xxx xz -dcq --format=lzma ||
    try_decompress 'BZh' xy bzip2 -dcq ||
    try_decompress '\211\114\132' xy lzop -dcq ||
    { rm -f "$dir/vmlinux.tmp"; die "no compressed kernel found in $image"; }
  say "extracted $dir/vmlinux ($(($(wc -c <"$dir/vmlinux") / 1048576)) MiB)"
fi

# 4. The initramfs: busybox, the modules above with their dependencies, /init. Rebuilt when
# busybox, the init script, this script or the kernel changed.
stamp="$(sha256sum "$BUSYBOX" "$here/init" "$here/prepare.sh" | cut -d' ' -f1 | tr '\n' ' ')"
stamp="$stamp$version"
if [ ! -f "$dir/initramfs" ] || [ "$(cat "$dir/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  tmp=$(mktemp -d "$cache/initramfs.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin" "$tmp/dev" "$tmp/proc" "$tmp/sys" "$tmp/mnt" "$tmp/lib/modules/$version"
  cp "$BUSYBOX" "$tmp/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    case $applet in
      busybox | */* | '') continue ;; # linking "busybox" would replace the binary itself
    esac
    ln -s busybox "$tmp/bin/$applet"
  done
  ln -s bin "$tmp/sbin"
  # The kernel opens /dev/console for init before /init can mount devtmpfs.
  mknod -m 0600 "$tmp/dev/console" c 5 1
  cp "$here/init" "$tmp/init"
  chmod 0755 "$tmp/init"

  # modules.dep lines read "kernel/a/b.ko: kernel/c.ko kernel/d.ko" with every dependency.
  files=""
  for module in $MODULES; do
    line=$(grep -E "/${module}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true)
    [ -n "$line" ] || die "module $module not found in $moddir/modules.dep"
    files="$files ${line%%:*} ${line#*:}"
  done
  for file in $files; do
    mkdir -p "$tmp/lib/modules/$version/$(dirname "$file")"
    cp "$moddir/$file" "$tmp/lib/modules/$version/$file"
  done
  "$BUSYBOX" depmod -b "$tmp" "$version"

  (cd "$tmp" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) |
    gzip -1 >"$dir/initramfs.tmp"
  mv "$dir/initramfs.tmp" "$dir/initramfs"
  echo "$stamp" >"$dir/initramfs.stamp"
  rm -rf "$tmp"
  trap - EXIT
  say "built $dir/initramfs ($(($(wc -c <"$dir/initramfs") / 1024)) KiB)"
fi

# 5. apparmor_parser for the guest's AppArmor tests: the apparmor package, downloaded and
# unpacked, not installed (this host has no AppArmor). The guest sees the project, so it
# runs .cache/vm/apparmor/root/sbin/apparmor_parser from there; the parser links only libc
# (checked with ldd below). Fetched again when apt's candidate version changes.
apparmor_version() {
  apt-cache policy apparmor 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '^(none)$' |
    head -n 1
}
aa=$cache/apparmor
aa_version=$(apparmor_version)
if [ -z "$aa_version" ]; then
  apt-get update -qq
  aa_version=$(apparmor_version)
fi
[ -n "$aa_version" ] || die "apt knows no candidate for the package apparmor (apt-cache policy)"
if [ ! -f "$aa/root/.unpacked" ] || [ "$(cat "$aa/version" 2>/dev/null)" != "$aa_version" ]; then
  rm -rf "$aa"
  mkdir -p "$aa/deb"
  say "downloading apparmor $aa_version"
  if ! (cd "$aa/deb" && apt-get download -q "apparmor=$aa_version" >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$aa/deb" && apt-get download -q "apparmor=$aa_version" >/dev/null) ||
      die "apt-get download apparmor=$aa_version failed"
  fi
  deb=$(find "$aa/deb" -name 'apparmor_*.deb' | head -n 1)
  [ -n "$deb" ] || die "apt-get download apparmor left no .deb in $aa/deb"
  dpkg -x "$deb" "$aa/root"
  rm -rf "$aa/deb"
  parser=$aa/root/sbin/apparmor_parser
  [ -x "$parser" ] || die "the apparmor package has no sbin/apparmor_parser"
  # The guest runs the host's libraries: every one the parser needs must be on the host.
  lacking=$(ldd "$parser" | sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' | tr '\n' ' ')
  [ -z "$lacking" ] || die "$parser needs libraries this host lacks: $lacking"
  echo "$aa_version" >"$aa/version"
  touch "$aa/root/.unpacked"
fi

if [ "$(cat "$cache/current" 2>/dev/null)" != "$version" ]; then
  echo "$version" >"$cache/current"
  # A kernel update leaves the previous one behind (about 450 MB): remove it.
  for old in "$cache"/*-amd64; do
    [ "$old" = "$dir" ] || rm -rf "$old"
  done
fi

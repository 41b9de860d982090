#!/bin/sh
# Make a small root filesystem from busybox-static for demos and tests.
#
#   tools/mkimage.sh DIR
#
# DIR gets bin/busybox with one symlink per applet, the usual top-level directories,
# and etc/passwd, etc/group, etc/hostname. Everything is owned by 0:0 except home/app
# (1000:1000). The image is rebuilt only when it is missing, when /bin/busybox changed
# or when this script's layout version changed; otherwise the script returns at once.
set -eu

LAYOUT=1 # bump when the layout below changes
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() {
  echo "mkimage: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: tools/mkimage.sh DIR"
dir=${1%/}
[ -n "$dir" ] || die "refusing to use / as the image directory"
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install busybox-static (tools/install-test-deps.sh)"
[ "$(id -u)" = 0 ] || die "must run as root (the image's files are owned by 0:0)"

sum=$(sha256sum "$BUSYBOX")
stamp="micro image layout $LAYOUT, busybox sha256 ${sum%% *}"
if [ -f "$dir/etc/micro-image" ] && [ -x "$dir/bin/busybox" ] &&
  [ "$(cat "$dir/etc/micro-image")" = "$stamp" ]; then
  exit 0
fi

tmp="$dir.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"
mkdir -p "$tmp"
cd "$tmp"

mkdir -p bin etc proc sys dev tmp root home/app usr/bin var run
chmod 0755 bin etc proc sys dev root home home/app usr usr/bin var run
chmod 1777 tmp
chmod 0700 root

cp "$BUSYBOX" bin/busybox
chmod 0755 bin/busybox
for applet in $(bin/busybox --list); do
  case $applet in
    busybox | */* | '') continue ;;
  esac
  ln -sf busybox "bin/$applet"
done
[ -L bin/sh ] || ln -s busybox bin/sh

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
EOF
echo micro >etc/hostname
echo "$stamp" >etc/micro-image
chmod 0644 etc/passwd etc/group etc/hostname etc/micro-image

chown -R 0:0 .
chown 1000:1000 home/app
cd - >/dev/null

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "mkimage: built $dir ($(find "$dir/bin" -type l | wc -l) busybox applets)"

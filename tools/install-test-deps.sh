#!/bin/sh
# Install the Debian packages the test suite needs, and only those that are missing.
# Quiet and idempotent: prints nothing when everything is already installed.
set -eu

# busybox-static: the demo/test image (tools/mkimage.sh)
# iproute2: ip, tc (net and bandwidth tests)
# util-linux: script, unshare, setpriv
# procps: ps, pgrep
# python3: helper scripts in tests
# binutils, binutils-aarch64-linux-gnu: the exec trampoline's committed bytes are checked
#   against tools/trampoline/*.S; qemu-user-static runs the aarch64 one (test/unit/trampoline_test.ts)
# attr, libcap2-bin: getfattr/setfattr, getcap/setcap (layer unpack tests: xattrs, file caps)
# docker-registry, skopeo: the loopback registry the image pull tests fill and pull from
# openssl: the test CA, server certs and the token signing key
# apache2-utils: htpasswd (bcrypt) for the registry's basic auth
# uidmap: newuidmap/newgidmap, the setuid helpers of rootless runs with subordinate ids
# podman: the reference the image store's unpacked trees are compared with
# mmdebstrap: the Debian root (nginx-light) of the real-service test (test/integration/nginx_test.ts)
# containernetworking-plugins, iptables, curl: micro's bridge network, its NAT and published
#   ports (test/integration/network_test.ts, inside namespaces the tests make)
# iperf3: the bandwidth plugin's measured rates (test/integration/bandwidth_test.ts)
# passt, slirp4netns: the rootless networks pasta and slirp4netns (test/integration/usernet_test.ts)
PACKAGES="busybox-static iproute2 util-linux procps python3 attr libcap2-bin"
PACKAGES="$PACKAGES binutils binutils-aarch64-linux-gnu qemu-user-static"
PACKAGES="$PACKAGES docker-registry skopeo openssl apache2-utils uidmap podman"
PACKAGES="$PACKAGES containerd strace"
PACKAGES="$PACKAGES mmdebstrap containernetworking-plugins iptables curl iperf3 passt slirp4netns"

installed() {
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
  [ "$status" = "install ok installed" ]
}

missing=""
for pkg in $PACKAGES; do
  installed "$pkg" || missing="$missing $pkg"
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: missing packages:$missing (run as root to install them)" >&2
  exit 1
fi

echo "install-test-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null

# micro: build, test image, tests, benchmark, demo.
#
#   make build   dist/micro, one executable file (tools/build.sh)
#   make image   dist/image, a busybox root filesystem (tools/mkimage.sh)
#   make test    what CI runs (.ci/run): TEST_COMMANDS below, after build and image, then
#                test-vm (the cgroup v2 suite in a QEMU guest), reported apart
#   make bench   start-up (/bin/true) and seccomp cost: micro against crun, runc and bubblewrap
#   make demo    one hardened container
#   make deps    node_modules (npm ci) when missing or when package-lock.json changed

DENO ?= node_modules/.bin/deno
IMAGE := dist/image
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo "sudo ")

# The test suite, one command per line, run in this order by `make test` (and so by CI).
# The integration tests need root.
define TEST_COMMANDS
$(DENO) fmt --check
$(DENO) lint
$(DENO) check main.ts
$(DENO) test -A test/unit/
$(SUDO)tools/leftovers.sh around $(DENO) test -A test/integration/
endef

# The integration tests find the binary and the image here.
export MICRO_BIN := $(CURDIR)/dist/micro
export MICRO_IMAGE := $(CURDIR)/$(IMAGE)

# Only the default DENO comes from npm; another one (DENO=deno) is used as it is.
DENO_DEP := $(filter node_modules/.bin/deno,$(DENO))

.PHONY: build deps image test test-vm test-commands bench demo clean

build: $(DENO_DEP)
	tools/build.sh

deps: node_modules/.package-lock.json

# npm writes node_modules/.package-lock.json last, so it is newer than package-lock.json
# after every successful install.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci

node_modules/.bin/deno: node_modules/.package-lock.json
	@test -x $@ || { echo "$@ missing after npm ci" >&2; exit 1; }

image:
	tools/mkimage.sh $(IMAGE)

test:
	tools/install-test-deps.sh
	$(MAKE) --no-print-directory build image
	$(TEST_COMMANDS)
	@echo "== cgroup v2 suite in a QEMU guest (reported apart) =="
	$(MAKE) --no-print-directory test-vm

# The cgroup v2 suite, in a VM: Debian's kernel under QEMU (TCG), with every v2 controller
# (tools/vm/run.sh). VM_TESTS runs in the guest as root, in this directory, with
# MICRO_CGROUP=v2; --no-check as type checking under emulation takes a minute and the
# host's tests already do it.
VM_TESTS ?= $(DENO) test -A --no-check test/integration/cgroups_test.ts test/integration/apparmor_test.ts \
	test/integration/cgroupfs_test.ts test/integration/trace_test.ts test/integration/oci_sched_test.ts \
	test/integration/oci_resources_test.ts
test-vm:
	tools/vm/prepare.sh && tools/vm/run.sh $(VM_TESTS)

# Print the test commands (for the README).
export TEST_COMMANDS
test-commands:
	@printf '%s\n' "$$TEST_COMMANDS"

bench:
	tools/install-test-deps.sh
	$(MAKE) --no-print-directory build image
	bench/start
	bench/seccomp

demo:
	tools/install-test-deps.sh
	$(MAKE) --no-print-directory build image
	dist/micro run --rm --profile hardened $(IMAGE) /bin/sh -c 'echo hello from $$(hostname); id; cat /proc/self/uid_map'

clean:
	rm -rf dist

# rawprobe's build plumbing.
#
# Nothing here is needed to USE rawprobe: the wheel ships the compiled BPF
# objects (prebuilt/) and `make test` runs against committed objects.  clang
# is only needed to change BPF sources:
#
#   make bpf             compile rawprobe/bpf_src/*.bpf.c and tests/bpf/*.bpf.c into build/
#   make prebuilt        refresh prebuilt/ (objects + manifest.json) from the sources
#   make check-prebuilt  rebuild and verify prebuilt/ is what the sources build to (CI)
#   make check-repro     build twice, from checkouts at different paths: byte-identical?
#   make test-objects    rebuild the committed tests/bpf/*.bpf.o beside their sources
#                        (only those older than their source; `make -B test-objects`: all)
#   make check-test-objects  are the committed tests/bpf/*.bpf.o what their sources build to?
#   make test            python3 -m pytest -q tests (installs missing packages, mounts tracefs/bpffs)
#   make vmtest          the tests marked `vm`, under a second kernel in qemu
#   make bench           every tools/bench_*.py
#   make mutate [MODULES=...]  mutation testing (mutmut) of the modules in tools/mutate.py, score per module
#   make run [ARGS=...]  python3 -m rawprobe $(ARGS): no ARGS runs the demo
#   make wheel           the wheel, into build/dist/
#   make base-image      localhost/rawprobe-base: a Debian base built offline with mmdebstrap
#   make image [BASE=localhost/rawprobe-base]  the container image rawprobe:VERSION
#                        (default base: the official slim Python image, from its registry)
#   make seccomp-profile build/rawprobe-seccomp.json: podman's default seccomp profile,
#                        with bpf(2) under CAP_BPF and perf_event_open(2) under CAP_PERFMON
#
# Reproducibility: every object is compiled from inside its source directory
# with that directory mapped to "." (-ffile-prefix-map), so no absolute path
# of the checkout ends up in DWARF, BTF or __FILE__, and the same clang
# produces the same bytes from any checkout location.  The interceptor's
# objects are also stripped of DWARF (BTF and .BTF.ext stay: the loader needs
# only those), as libbpf-based projects do.

CLANG      ?= clang-19
LLVM_STRIP ?= llvm-strip-19
BPFTOOL    ?= bpftool
PYTHON     ?= python3
# UAPI <asm/...> headers on Debian/Ubuntu x86-64 (linux-libc-dev).
ARCH_INCLUDE ?= /usr/include/x86_64-linux-gnu

BUILD       := build
PREBUILT    := prebuilt
BPF_SRC_DIR := rawprobe/bpf_src
TEST_BPF_DIR := tests/bpf

# Flags every BPF object gets; test objects get exactly these.
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -I$(ARCH_INCLUDE)
# The interceptor also needs BPF ISA v3: atomic fetch-add/cmpxchg on map
# values whose result is used (kernel 5.12+), and 32-bit jumps (5.1+).
MAIN_CFLAGS := -mcpu=v3 -Wall -Wextra -Wno-unused-parameter -Werror

BPF_SOURCES  := $(sort $(wildcard $(BPF_SRC_DIR)/*.bpf.c))
BPF_OBJECTS  := $(patsubst $(BPF_SRC_DIR)/%.c,$(BUILD)/%.o,$(BPF_SOURCES))
TEST_SOURCES := $(sort $(wildcard $(TEST_BPF_DIR)/*.bpf.c))
TEST_BUILT   := $(patsubst %.c,$(BUILD)/%.o,$(TEST_SOURCES))
TEST_OBJECTS := $(TEST_SOURCES:.c=.o)
# Test sources may include a vmlinux.h generated from this machine's kernel
# (never committed); only those depend on it.
VMLINUX_USERS := $(shell grep -l '"vmlinux.h"' $(TEST_SOURCES) /dev/null 2>/dev/null)
BENCH_SCRIPTS := $(sort $(wildcard tools/bench_*.py))

.DEFAULT_GOAL := help
.PHONY: help bpf main-objects prebuilt check-prebuilt check-repro test-objects check-test-objects \
        test vmtest bench mutate run clean deps-run deps-test mounts vmtest-setup \
        wheel base-image image seccomp-profile

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

bpf: main-objects $(TEST_BUILT)

main-objects: $(BPF_OBJECTS)

# $(call bpf_cc,SOURCE,OUTPUT,EXTRA_FLAGS): compile from the source's own
# directory, which is mapped to "."; write clang's dependency file (paths
# relative to that directory) beside OUTPUT.
define bpf_cc
	@mkdir -p $(dir $(2))
	cd $(dir $(1)) && $(CLANG) $(BPF_CFLAGS) $(3) \
	    -ffile-prefix-map=$(abspath $(dir $(1)))=. \
	    -MD -MT $(2) -MF $(abspath $(2)).d \
	    -c $(notdir $(1)) -o $(abspath $(2))
endef

# Coarse but sure: an object depends on every C file and header of its
# directory (intercept_fentry.bpf.c includes intercept.bpf.c).  The exact
# inputs, for the manifest, come from clang's dependency file (X.o.d).
BPF_DIR_INPUTS  := $(wildcard $(BPF_SRC_DIR)/*.c $(BPF_SRC_DIR)/*.h)
TEST_DIR_INPUTS := $(wildcard $(TEST_BPF_DIR)/*.h)

$(BUILD)/%.bpf.o: $(BPF_SRC_DIR)/%.bpf.c $(BPF_DIR_INPUTS)
	$(call bpf_cc,$<,$@,$(MAIN_CFLAGS))
	$(LLVM_STRIP) -g $@

$(BUILD)/$(TEST_BPF_DIR)/%.bpf.o: $(TEST_BPF_DIR)/%.bpf.c $(TEST_DIR_INPUTS)
	$(call bpf_cc,$<,$@)

test-objects: $(TEST_OBJECTS)

$(TEST_BPF_DIR)/%.bpf.o: $(TEST_BPF_DIR)/%.bpf.c $(TEST_DIR_INPUTS)
	$(call bpf_cc,$<,$@)
	@rm -f $@.d

$(patsubst %.c,$(BUILD)/%.o,$(VMLINUX_USERS)) $(VMLINUX_USERS:.c=.o): | $(BUILD)/vmlinux.h
$(patsubst %.c,$(BUILD)/%.o,$(VMLINUX_USERS)) $(VMLINUX_USERS:.c=.o): \
    BPF_CFLAGS += -I$(if $(filter /%,$(BUILD)),$(BUILD),../../$(BUILD))

$(BUILD)/vmlinux.h:
	@mkdir -p $(BUILD)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

check-test-objects:
	rm -f $(TEST_BUILT)
	$(MAKE) --no-print-directory $(TEST_BUILT)
	@bad=0; for o in $(TEST_OBJECTS); do \
	    if ! cmp -s $$o $(BUILD)/$$o; then \
	        echo "check-test-objects: $$o is not what $${o%.o}.c builds to: run \`make -B $$o\` and commit it" >&2; bad=1; \
	    fi; \
	done; \
	if [ $$bad = 0 ]; then echo "check-test-objects: $(words $(TEST_OBJECTS)) objects match their sources"; fi; \
	exit $$bad

prebuilt: main-objects
	$(PYTHON) tools/prebuilt.py update --dest $(PREBUILT) --src-dir $(BPF_SRC_DIR) --clang $(CLANG) \
	    --cflags "$(BPF_CFLAGS) $(MAIN_CFLAGS)" $(BPF_OBJECTS)

# Always recompiles: a stale build/ must not hide a mismatch.
check-prebuilt:
	rm -f $(BPF_OBJECTS)
	$(MAKE) --no-print-directory main-objects
	$(PYTHON) tools/prebuilt.py check --dest $(PREBUILT) --src-dir $(BPF_SRC_DIR) --clang $(CLANG) \
	    $(BPF_OBJECTS)

# Two fresh builds from copies of the sources at different paths must be
# byte-identical to each other and to build/.
REPRO_DIRS := $(BUILD)/repro/a $(BUILD)/repro/b/checkout-elsewhere
check-repro: main-objects
	rm -rf $(BUILD)/repro
	@set -e; for d in $(REPRO_DIRS); do \
	    mkdir -p $$d/$(BPF_SRC_DIR); \
	    cp $(BPF_SRC_DIR)/*.c $(BPF_SRC_DIR)/*.h $$d/$(BPF_SRC_DIR)/; \
	    $(MAKE) --no-print-directory -s -C $$d -f $(abspath $(firstword $(MAKEFILE_LIST))) \
	        BUILD=out main-objects; \
	done
	@set -e; for o in $(notdir $(BPF_OBJECTS)); do \
	    for d in $(REPRO_DIRS); do cmp $(BUILD)/$$o $$d/out/$$o; done; \
	    echo "reproducible: $$o"; \
	done
	rm -rf $(BUILD)/repro

# A fresh machine: install what is missing (editable, so tests import this
# tree), and mount tracefs/bpffs when root and not mounted yet.
PIP_INSTALL := $(PYTHON) -m pip install -q --disable-pip-version-check
deps-run:
	@$(PYTHON) -c "import cffi, elftools" 2>/dev/null || \
	    $(PIP_INSTALL) -e . || PIP_BREAK_SYSTEM_PACKAGES=1 $(PIP_INSTALL) -e .
deps-test:
	@$(PYTHON) -c "import cffi, elftools, pytest, hypothesis, prometheus_client" 2>/dev/null || \
	    $(PIP_INSTALL) -e '.[test,metrics]' || \
	    PIP_BREAK_SYSTEM_PACKAGES=1 $(PIP_INSTALL) -e '.[test,metrics]'
mounts:
	@if [ "$$(id -u)" = 0 ]; then \
	    mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; \
	    mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf; \
	fi

test: deps-test mounts
	python3 -m pytest -q tests

# The tests marked `vm`, in qemu under Debian's 6.1 kernel (VM_KERNEL=6.12 for the other).
# Only files holding `vm` tests go to pytest in the VM (collecting the others costs
# about a minute under TCG); plugin auto-loading is off there, because hypothesis's
# pytest plugin imports hypothesis at the end of every session (~30 s in the guest).
VM_KERNEL     ?= 6.1
VM_TEST_FILES  = $(shell grep -l 'mark\.vm' tests/test_*.py)
vmtest:
	$(PYTHON) tools/vmtest.py --kernel $(VM_KERNEL) --env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 -- \
	    python3 -m pytest -q -rs -m vm $(PYTEST_ARGS) $(VM_TEST_FILES)

vmtest-setup:
	$(PYTHON) tools/vmtest.py --setup

bench:
	@if [ -z "$(BENCH_SCRIPTS)" ]; then echo "make bench: no tools/bench_*.py yet" >&2; exit 1; fi
	@set -e; for s in $(BENCH_SCRIPTS); do echo "== $$s"; $(PYTHON) $$s; done

# Mutation testing: slow (minutes to hours per module), so neither in `make test` nor in CI.
# AGAIN=1 reruns only the last run's survivors of MODULES against the tests as they are.
# mutmut is pinned and installed here only, into a venv that sees the test
# dependencies; tools/mutate.py says which tests run against which module.
MUTMUT_VERSION := 3.8.1
MUTATE_VENV    := $(BUILD)/mutate-venv
MODULES        ?=
AGAIN          ?=
mutate: deps-test mounts
	@test -x $(MUTATE_VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(MUTATE_VENV)
	@$(MUTATE_VENV)/bin/python -c "import mutmut, sys; sys.exit(mutmut.__version__ != '$(MUTMUT_VERSION)')" \
	    2>/dev/null || $(MUTATE_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	    mutmut==$(MUTMUT_VERSION)
	nice -n 19 $(MUTATE_VENV)/bin/python tools/mutate.py $(if $(AGAIN),--again) $(MODULES)

run: deps-run mounts
	$(PYTHON) -m rawprobe $(ARGS)

# ---- the container image (deploy/; README, "Containers") ----
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DIST      := $(BUILD)/dist
PODMAN    ?= podman
IMAGE     ?= rawprobe:$(VERSION)
BASE      ?= docker.io/library/python:3.12-slim
# The offline base: Debian's essential set plus Python and the wheel's two
# dependencies, as Debian packages; merged /usr without the usrmerge package
# (which pulls in perl), no documentation.  The root file system tarball is
# kept in BASE_CACHE under a name keyed on everything that makes it, so it is
# built once (CI keeps BASE_CACHE across runs).
BASE_IMAGE    := localhost/rawprobe-base
BASE_SUITE    ?= bookworm
BASE_PACKAGES := python3-minimal,python3-cffi-backend,python3-pyelftools
BASE_OPTS     := --variant=essential --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt=path-exclude=/usr/share/man/* --dpkgopt=path-exclude=/usr/share/doc/* \
    --dpkgopt=path-include=/usr/share/doc/*/copyright --dpkgopt=path-exclude=/usr/share/locale/* \
    --dpkgopt=path-exclude=/usr/share/info/*
BASE_CACHE    ?= $(BUILD)/base
BASE_KEY       = $(shell printf '%s\n' '$(BASE_SUITE)' '$(BASE_PACKAGES)' '$(BASE_OPTS)' | sha256sum | cut -c1-16)

# Built from a copy of what the wheel holds: building in the checkout would
# leave setuptools' build/lib inside this Makefile's build/.
wheel:
	rm -rf $(BUILD)/wheel-src $(DIST)
	mkdir -p $(BUILD)/wheel-src $(DIST)
	cp pyproject.toml README.md $(BUILD)/wheel-src/
	cp -r rawprobe prebuilt $(BUILD)/wheel-src/
	find $(BUILD)/wheel-src -name __pycache__ -prune -exec rm -rf {} +
	cd $(BUILD)/wheel-src && $(PYTHON) -m pip wheel -q --no-deps --disable-pip-version-check \
	    -w $(abspath $(DIST)) .
	rm -rf $(BUILD)/wheel-src
	@ls $(DIST)/*.whl

base-image:
	@mkdir -p $(BASE_CACHE)
	@tar=$(BASE_CACHE)/rootfs-$(BASE_SUITE)-$(BASE_KEY).tar; \
	if [ -s $$tar ]; then echo "base-image: cached $$tar"; else \
	    mmdebstrap --format=tar $(BASE_OPTS) --include=$(BASE_PACKAGES) $(BASE_SUITE) $$tar.tmp && mv $$tar.tmp $$tar; \
	fi; \
	if $(PODMAN) image exists $(BASE_IMAGE):$(BASE_KEY); then echo "base-image: $(BASE_IMAGE):$(BASE_KEY) exists"; \
	else $(PODMAN) import -q $$tar $(BASE_IMAGE):$(BASE_KEY); fi; \
	$(PODMAN) tag $(BASE_IMAGE):$(BASE_KEY) $(BASE_IMAGE):latest

image: wheel
	rm -rf $(BUILD)/image && mkdir -p $(BUILD)/image
	cp $(DIST)/rawprobe-$(VERSION)-py3-none-any.whl deploy/install_wheel.py $(BUILD)/image/
	$(PODMAN) build -q --no-cache -f deploy/Containerfile --build-arg BASE=$(BASE) --build-arg VERSION=$(VERSION) \
	    --label rawprobe.source-key=$$($(PYTHON) deploy/source_key.py) -t $(IMAGE) $(BUILD)/image
	@$(PODMAN) image inspect --format '$(IMAGE): {{.Size}} bytes' $(IMAGE)

seccomp-profile:
	@mkdir -p $(BUILD)
	$(PYTHON) deploy/seccomp.py > $(BUILD)/rawprobe-seccomp.json.tmp
	mv $(BUILD)/rawprobe-seccomp.json.tmp $(BUILD)/rawprobe-seccomp.json

clean:
	rm -rf $(BUILD)

# The USDT test target, committed so the note parser's tests need no compiler
# (tests/test_stapsdt.py); tests/test_usdt.py builds its own at test time.
tests/targets/usdt_target.elf: tests/targets/usdt_target.c tests/targets/usdt_sema.c
	cd tests/targets && $(CC) -O2 -g0 -o usdt_target.elf usdt_target.c usdt_sema.c

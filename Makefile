# The two commands of the README: `make demo` and `make test`.
# Both do all set-up on a fresh Debian 12 machine run as root: apt packages,
# the virtualenv, the Cython build and the busybox bundle's rootfs.

# Debian's interpreter: the one python3-dev and python3-venv are for (a
# python3 found first on PATH, say pyenv's, would build against other
# headers), and a statically linked one that starts faster.
PYTHON ?= /usr/bin/python3
VENV    := .venv
PY      := $(VENV)/bin/python
OCIPY   := $(VENV)/bin/ocipy
STAMP   := .make

# Debian packages: the build (compiler, headers incl. the static libc for
# ocipy-init, libseccomp; musl-tools, which ocipy-init and the front-end are
# linked with: tools/cc-static), the example
# rootfs (busybox-static), the upstream runtime-spec schema the schema test
# cross-checks against, runc (the reference some tests compare with),
# iproute2 for network-namespace tests, strace for the front-end's tests,
# systemd, dbus-daemon and gdbus for the systemd cgroup driver's tests, and
# the real clients the end-to-end tests drive ocipy with (each started
# privately by the tests: the install must not start system daemons).
APT_PACKAGES := gcc libc6-dev make pkg-config python3 python3-venv python3-dev libseccomp-dev \
                busybox-static golang-github-opencontainers-specs-dev runc iproute2 procps \
                strace systemd dbus-daemon libglib2.0-bin containerd podman conmon docker.io \
                musl-tools
PIP_PACKAGES := "cython>=3.0" "setuptools>=64" wheel "jsonschema>=4" "attrs>=22" \
                "pytest>=7" "hypothesis>=6"

NATIVE_SOURCES := $(wildcard src/ocipy/_native/*.pyx src/ocipy/_native/*.pxd \
                             src/ocipy/_native/*.c src/ocipy/_native/*.h)
# setup.py's build_py turns the schema into src/ocipy/_schema_check.py
SCHEMA_SOURCES := $(wildcard src/ocipy/schema/*.json) tools/gen_validator.py
# the launcher holds ocipy's modules as static code (ocipy/_freeze.py): a
# changed module rebuilds it (until then, that module loads from its .pyc)
PY_SOURCES := $(shell find src/ocipy -name '*.py' -not -path '*/__pycache__/*')

.PHONY: demo test setup bundles bench clean FORCE

demo: setup
	@id=ocipy-demo-$$$$; $(OCIPY) run --bundle bundles/busybox $$id

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests spec-tests e2e-tests

bench: setup
	$(PY) bench/bench.py

setup: $(STAMP)/apt $(STAMP)/venv $(STAMP)/build bundles

$(STAMP)/apt:
	@mkdir -p $(STAMP)
	@missing=""; for p in $(APT_PACKAGES); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "apt-get install$$missing"; \
	    policy=/usr/sbin/policy-rc.d; made=""; \
	    if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; \
	        chmod +x $$policy; made=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing; rc=$$?; \
	    [ -z "$$made" ] || rm -f $$policy; \
	    [ $$rc -eq 0 ] || exit $$rc; \
	fi
	@touch $@

# the interpreter the venv was made with: another PYTHON makes it anew
$(STAMP)/python: FORCE
	@mkdir -p $(STAMP)
	@echo "$(PYTHON)" | cmp -s - $@ || echo "$(PYTHON)" > $@

# the interpreter and the static libpython the launcher links
# (ocipy/launcher.py), by identity: dpkg keeps a package's mtimes, so an
# upgraded library may look older than our build.  A new one rebuilds the
# launcher with it.
$(STAMP)/libpython: $(STAMP)/apt FORCE
	@mkdir -p $(STAMP)
	@$(PYTHON) -c 'import os, sys, sysconfig as s; \
	    p = os.path.join(s.get_config_var("LIBPL") or "", s.get_config_var("LIBRARY") or ""); \
	    st = os.stat(p) if os.path.isfile(p) else None; \
	    print(sys.version, p, st and (st.st_ino, st.st_size, st.st_mtime_ns))' > $@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

$(STAMP)/venv: $(STAMP)/apt $(STAMP)/python
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_PACKAGES)
	@touch $@

# .venv/bin/ocipy is the native front-end (src/ocipy/_native/frontend.c): it
# answers state/start/kill/delete itself when it can and hands everything else
# to the Python launcher, .venv/bin/ocipy-py (embedded CPython,
# src/ocipy/_native/launcher.c, built by ocipy/launcher.py).  It is built
# after pip, which writes a console script of its own at .venv/bin/ocipy.
$(STAMP)/build: $(STAMP)/venv $(NATIVE_SOURCES) $(SCHEMA_SOURCES) $(PY_SOURCES) setup.py \
                pyproject.toml tools/cc-static Makefile $(STAMP)/libpython
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) -m ocipy.launcher $(VENV)/bin/ocipy-py
	@# every module's .pyc now, timestamp-checked (what ocipy/_pycfinder.py reads):
	@# the first call after a build compiles nothing
	$(PY) -m compileall -q --invalidation-mode timestamp src/ocipy
	OCIPY_CC_GLIBC=dynamic tools/cc-static $(OCIPY).tmp -O2 -Wall \
	    -DLAUNCHER='"$(abspath $(VENV)/bin/ocipy-py)"' src/ocipy/_native/frontend.c
	mv -f $(OCIPY).tmp $(OCIPY)
	@touch $@

bundles: $(STAMP)/apt
	@sh bundles/make-rootfs.sh bundles/busybox/rootfs

clean:
	rm -rf $(STAMP) $(VENV) build src/*.egg-info bundles/*/rootfs
	find src -name '*.so' -delete
	rm -f src/ocipy/_native/spawn.c src/ocipy/_native/seccomp.c src/ocipy/_native/bpf.c
	rm -f src/ocipy/_schema_check.py

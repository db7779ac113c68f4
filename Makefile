# ngx_http_ocdz_module: build, test, demo, install.
#
#   make deps       install what building and the demo need (apt; installs
#                   missing packages only, touches nothing else)
#   make deps-test  the same plus what the whole test suite needs
#   make            build ngx_http_ocdz_module.so and the ocdz-card tool
#   make test       everything CI checks
#   make demo       the whole flow on local defaults
#   make deb        the Debian package, in build/deb/
#   make install    module, tool, schema, examples and load file under
#                   PREFIX (/usr/local), DESTDIR honoured
#
# Build against another nginx source tree with NGINX_SRC=/path/to/nginx.
#
# Nothing here runs a program of a Debian package when the Makefile is
# read: `make demo` and `make test` on a fresh machine install the
# packages first (make deps), then build in a second make.

SHELL       := /bin/bash
NGINX_SRC   ?= /usr/share/nginx/src
NGINX_BIN   ?= /usr/sbin/nginx
TOP         := $(CURDIR)
BUILD       ?= $(TOP)/build
MODULE      := $(BUILD)/ngx_http_ocdz_module.so
CC          ?= cc
EXTRA_CFLAGS ?=
EXTRA_LDFLAGS ?=

PKGS        := libcurl yajl libpq libssl libcrypto

# Expanded at their first use in a recipe, then kept (pkg-config comes
# with make deps).
PKG_CFLAGS   = $(eval PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS     = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)

CORE_SRCS   := src/core/ocdz_crypto.c src/core/ocdz_upstream.c \
	       src/core/ocdz_jwt.c src/core/ocdz_instructions.c \
	       src/core/ocdz_session.c src/core/ocdz_text.c \
	       src/core/ocdz_transition.c src/core/ocdz_buf.c \
	       src/core/ocdz_template.c src/core/ocdz_mail.c \
	       src/core/ocdz_sms.c src/core/ocdz_webhook.c \
	       src/core/ocdz_alarm.c
# ocdz_status (issue 14)
CORE_SRCS   += src/core/ocdz_metrics.c
CORE_HDRS   := $(CORE_SRCS:.c=.h)
MODULE_SRCS := ngx_http_ocdz_module.c ngx_http_ocdz_module.h \
	       $(wildcard src/nginx/*.[ch]) $(wildcard src/core/*.h) \
	       $(CORE_SRCS) config
TOOL        := $(BUILD)/ocdz-card
UNIT_TESTS  := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(wildcard t/unit/*.c))
UNIT_SCRIPTS := $(addprefix $(TOP)/,$(wildcard t/unit/*.t))

CFLAGS_TOOL  = -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	       -D_FORTIFY_SOURCE=2 -fstack-protector-strong -Isrc/core \
	       $(PKG_CFLAGS) $(EXTRA_CFLAGS)

# Debian packages: building (make, make deb) ...
DEB_BUILD   := build-essential gcc make pkg-config nginx nginx-dev libcurl4-openssl-dev \
	       libyajl-dev libpq-dev libssl-dev debhelper dpkg-dev
# ... running the demo and the functional tests ...
DEB_RUN     := postgresql postgresql-contrib perl libjson-pp-perl \
	       libio-socket-ssl-perl python3 openssl curl procps iproute2
# ... and the rest of make test: fuzzing and sanitizers, the benchmark's
# client, the fresh-machine test, the OpenAPI checks and the
# customer page's browser test
DEB_TEST    := clang libclang-rt-14-dev valgrind wrk git mmdebstrap \
	       python3-jsonschema chromium fonts-dejavu-core python3-aiosmtpd

# the module's version: NGX_HTTP_OCDZ_VERSION, the one place it is set
VERSION      = $(shell sed -n 's/^.define NGX_HTTP_OCDZ_VERSION  *"\(.*\)"/\1/p' ngx_http_ocdz_module.h)

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MODULESDIR  ?= $(PREFIX)/lib/nginx/modules
DATADIR     ?= $(PREFIX)/share/ngx_http_ocdz_module
DOCDIR      ?= $(PREFIX)/share/doc/ngx_http_ocdz_module
LOADCONFDIR ?= $(PREFIX)/share/nginx/modules-available
DESTDIR     ?=

.PHONY: all module tool unit deps deps-test test test-unit test-functional \
	test-asan test-valgrind test-static test-fresh fuzz fuzz-short demo \
	bench deb install clean build-deps-check promtool promtool-maybe

all: module tool unit

module: $(MODULE)

$(BUILD)/Makefile: config | $(BUILD)/.dir
	cd $(NGINX_SRC) && \
	if [ -f ./conf_flags ]; then . ./conf_flags; else NGX_CONF_FLAGS=--with-compat; fi && \
	./configure --with-cc-opt="-fPIC -g -O2 -Werror $(EXTRA_CFLAGS)" \
	    --with-ld-opt="-fPIC $(EXTRA_LDFLAGS)" "$${NGX_CONF_FLAGS[@]}" \
	    --add-dynamic-module=$(TOP) --builddir=$(BUILD) >$(BUILD)/configure.log 2>&1 \
	|| { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(BUILD)/Makefile $(MODULE_SRCS)
	$(MAKE) -s -f $(BUILD)/Makefile -C $(NGINX_SRC) modules

$(BUILD)/.dir:
	mkdir -p $(BUILD) $(BUILD)/unit
	touch $@

tool: $(TOOL)

$(TOOL): tools/ocdz-card.c $(CORE_SRCS) $(CORE_HDRS) | $(BUILD)/.dir build-deps-check
	$(CC) $(CFLAGS_TOOL) -o $@ tools/ocdz-card.c $(CORE_SRCS) $(PKG_LIBS) \
	    $(EXTRA_LDFLAGS)

# the libraries' development files (the module's config checks the same)
build-deps-check:
	@pkg-config --exists $(PKGS) 2>/dev/null || { \
	    echo "missing: the development files of $(PKGS) and pkg-config;" \
	         "run make deps (as root)" >&2; exit 1; }

unit: $(UNIT_TESTS)

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h t/unit/ocdz_test.h $(CORE_SRCS) \
		 $(CORE_HDRS) | $(BUILD)/.dir build-deps-check
	$(CC) $(CFLAGS_TOOL) -It/unit -o $@ $< $(CORE_SRCS) $(PKG_LIBS)

# Installs missing packages only: no upgrade, no removal, no service
# touched (.ci/install-deps).
deps:
	@.ci/install-deps $(DEB_BUILD) $(DEB_RUN)

deps-test:
	@.ci/install-deps $(DEB_BUILD) $(DEB_RUN) $(DEB_TEST)

# Every stage CI runs, the sanitizer run last: prove's summary closes it.
# The packages first, the build in a make that starts after them.
test:
	$(MAKE) deps-test
	$(MAKE) all
	$(MAKE) test-static
	$(MAKE) test-unit
	$(MAKE) fuzz-short
	$(MAKE) test-functional
	$(MAKE) test-fresh
	$(MAKE) test-asan

# the .t scripts drive the unit binaries (found through OCDZ_UNIT)
test-unit: unit
	cd t && OCDZ_UNIT=$(BUILD)/unit prove --exec '' $(UNIT_TESTS) \
	    $(UNIT_SCRIPTS)

# Two test files at a time (each starts its own PostgreSQL, nginx and
# peers on free ports; waits scale with the load): the suite twice, and
# under ASan, fits CI's time. PROVE_JOBS=1 runs them one by one.
PROVE_JOBS  ?= 2

test-functional: module tool
	cd t && OCDZ_MODULE=$(MODULE) OCDZ_TOOL=$(TOOL) prove -I lib \
	    -j$(PROVE_JOBS) $(PROVE_FLAGS) *.t

# The same suite against a module built with AddressSanitizer and
# UndefinedBehaviorSanitizer, preloaded into Debian's nginx.
ASAN_BUILD  := $(TOP)/build-asan
test-asan:
	$(MAKE) module BUILD=$(ASAN_BUILD) \
	    EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined"
	cd t && OCDZ_MODULE=$(ASAN_BUILD)/ngx_http_ocdz_module.so OCDZ_TOOL=$(TOOL) \
	    OCDZ_ASAN=1 prove -I lib -j$(PROVE_JOBS) $(PROVE_FLAGS) *.t

test-valgrind: module tool
	cd t && OCDZ_MODULE=$(MODULE) OCDZ_TOOL=$(TOOL) OCDZ_VALGRIND=1 \
	    prove -I lib $(PROVE_FLAGS) *.t

# nginx built from source with the module linked in (--add-module)
test-static:
	.ci/static-build.sh

fuzz-short:
	fuzz/run.sh $${FUZZ_SECONDS:-10}

fuzz:
	fuzz/run.sh $${FUZZ_SECONDS:-600}

# The README's commands on a Debian 12 root bootstrapped for the run
# (mmdebstrap): make demo in a clone of HEAD, the package, the runbook.
test-fresh:
	.ci/test-fresh.sh

demo:
	$(MAKE) deps
	$(MAKE) all
	perl -It/lib t/demo.pl

# promtool, for t/70-status.t's "promtool check metrics": taken out of
# Debian's prometheus package without installing it (installing the
# package would start the Prometheus service). Without it (no network,
# no package) t/70 skips that one assertion and says so.
PROMTOOL    := $(BUILD)/promtool/usr/bin/promtool
export OCDZ_PROMTOOL ?= $(PROMTOOL)

promtool: $(PROMTOOL)

$(PROMTOOL): | $(BUILD)/.dir
	rm -rf $(BUILD)/promtool
	mkdir -p $(BUILD)/promtool
	cd $(BUILD)/promtool && apt-get download prometheus && \
	    dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb

promtool-maybe:
	@$(MAKE) -s promtool || echo "promtool not available:" \
	    "t/70-status.t skips its promtool check" >&2

test-functional test-asan test-valgrind: promtool-maybe

# The benchmark (bench/run): results in bench/RESULTS.md.
bench:
	$(MAKE) deps-test
	$(MAKE) module tool
	bench/run

# libnginx-mod-http-ocdz_<version>-<revision>_<arch>.deb, built by
# dpkg-buildpackage (dh with dh-sequence-nginx) in a copy of the tree.
DEB_DIR     := $(BUILD)/deb
deb:
	@v=$$(dpkg-parsechangelog -S Version | sed 's/^[0-9]*://; s/-[^-]*$$//'); \
	[ "$$v" = "$(VERSION)" ] || { \
	    echo "debian/changelog is at $$v, NGX_HTTP_OCDZ_VERSION at" \
	         "$(VERSION): add a changelog entry for $(VERSION)" >&2; \
	    exit 1; }
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src
	tar -c --exclude-vcs --exclude=./build --exclude=./build-asan \
	    --exclude=./t/tmp --exclude=./bench/node/node_modules \
	    --exclude='__pycache__' . | tar -x -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && dpkg-buildpackage -us -uc -b
	@ls -l $(DEB_DIR)/*.deb

install: module tool
	install -d $(DESTDIR)$(MODULESDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)/examples \
	    $(DESTDIR)$(LOADCONFDIR)
	install -m 0644 $(MODULE) $(DESTDIR)$(MODULESDIR)/
	install -m 0755 $(TOOL) $(DESTDIR)$(BINDIR)/
	install -m 0644 sql/ocdz.sql $(DESTDIR)$(DATADIR)/
	install -m 0644 conf-examples/*.conf $(DESTDIR)$(DOCDIR)/examples/
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/
	echo 'load_module $(MODULESDIR)/ngx_http_ocdz_module.so;' \
	    >$(DESTDIR)$(LOADCONFDIR)/mod-http-ocdz.conf
	chmod 0644 $(DESTDIR)$(LOADCONFDIR)/mod-http-ocdz.conf

clean:
	rm -rf $(BUILD)

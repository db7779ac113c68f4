# ngx_http_ocdz_module: build, test, demo.
#
#   make deps     install what building and testing need (apt, idempotent)
#   make          build ngx_http_ocdz_module.so and the ocdz-card tool
#   make test     everything CI checks
#   make demo     the whole flow on local defaults
#
# Build against another nginx source tree with NGINX_SRC=/path/to/nginx.

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
PKG_CFLAGS   = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CORE_SRCS   := src/core/ocdz_crypto.c src/core/ocdz_upstream.c \
	       src/core/ocdz_jwt.c src/core/ocdz_instructions.c \
	       src/core/ocdz_session.c src/core/ocdz_buf.c \
	       src/core/ocdz_template.c src/core/ocdz_mail.c \
	       src/core/ocdz_sms.c src/core/ocdz_webhook.c
CORE_HDRS   := $(CORE_SRCS:.c=.h)
MODULE_SRCS := ngx_http_ocdz_module.c ngx_http_ocdz_module.h \
	       $(wildcard src/nginx/*.[ch]) $(wildcard src/core/*.h) \
	       $(CORE_SRCS) config
TOOL        := $(BUILD)/ocdz-card
UNIT_TESTS  := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(wildcard t/unit/*.c))
UNIT_SCRIPTS := $(addprefix $(TOP)/,$(wildcard t/unit/*.t))

CFLAGS_TOOL := -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	       -D_FORTIFY_SOURCE=2 -fstack-protector-strong -Isrc/core \
	       $(PKG_CFLAGS) $(EXTRA_CFLAGS)

DEB_PKGS    := nginx nginx-dev libcurl4-openssl-dev libyajl-dev libpq-dev \
	       libssl-dev pkg-config postgresql postgresql-contrib gcc \
	       make perl libjson-pp-perl libio-socket-ssl-perl python3 openssl \
	       curl wrk git \
	       clang libclang-rt-14-dev valgrind procps iproute2

.PHONY: all module tool unit deps test test-unit test-functional \
	test-asan test-valgrind test-static fuzz fuzz-short demo bench \
	clean

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

$(TOOL): tools/ocdz-card.c $(CORE_SRCS) $(CORE_HDRS) | $(BUILD)/.dir
	$(CC) $(CFLAGS_TOOL) -o $@ tools/ocdz-card.c $(CORE_SRCS) $(PKG_LIBS)

unit: $(UNIT_TESTS)

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(CORE_SRCS) $(CORE_HDRS) | $(BUILD)/.dir
	$(CC) $(CFLAGS_TOOL) -It/unit -o $@ $< $(CORE_SRCS) $(PKG_LIBS)

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@systemctl disable --now nginx >/dev/null 2>&1 || true
	@systemctl disable --now postgresql >/dev/null 2>&1 || true

# Every stage CI runs, the sanitizer run last: prove's summary closes it.
test: deps all
	$(MAKE) test-static
	$(MAKE) test-unit
	$(MAKE) fuzz-short
	$(MAKE) test-functional
	$(MAKE) test-asan

# the .t scripts drive the unit binaries (found through OCDZ_UNIT)
test-unit: unit
	cd t && OCDZ_UNIT=$(BUILD)/unit prove --exec '' $(UNIT_TESTS) \
	    $(UNIT_SCRIPTS)

test-functional: module tool
	cd t && OCDZ_MODULE=$(MODULE) OCDZ_TOOL=$(TOOL) prove -I lib $(PROVE_FLAGS) *.t

# The same suite against a module built with AddressSanitizer and
# UndefinedBehaviorSanitizer, preloaded into Debian's nginx.
ASAN_BUILD  := $(TOP)/build-asan
test-asan:
	$(MAKE) module BUILD=$(ASAN_BUILD) \
	    EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined"
	cd t && OCDZ_MODULE=$(ASAN_BUILD)/ngx_http_ocdz_module.so OCDZ_TOOL=$(TOOL) \
	    OCDZ_ASAN=1 prove -I lib $(PROVE_FLAGS) *.t

test-valgrind: module tool
	cd t && OCDZ_MODULE=$(MODULE) OCDZ_TOOL=$(TOOL) OCDZ_VALGRIND=1 \
	    prove -I lib $(PROVE_FLAGS) *.t

# nginx built from source with the module linked in (--add-module)
test-static:
	.ci/static-build.sh

fuzz-short:
	fuzz/run.sh $${FUZZ_SECONDS:-15}

fuzz:
	fuzz/run.sh $${FUZZ_SECONDS:-600}

demo: deps all
	perl -It/lib t/demo.pl

# The benchmark (bench/run): results in bench/RESULTS.md.
bench: deps module tool
	bench/run

clean:
	rm -rf $(BUILD)

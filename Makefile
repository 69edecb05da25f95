# mod_proxy_reversed — build, install, test, demo.
#   make            build the module and reversed-agent (release)
#   make install    install the module through apxs, the Debian conf files, and the agent
#   make test       every test (unit + real httpd under event/worker/prefork + Tomcat)
#   make demo       build, install, start httpd + module + agent on loopback, print a curl line
#   make demo-stop  stop the demo
#   make bench      benchmarks (not part of the tests; see bench/)

CARGO      ?= cargo
APXS       ?= apxs
PREFIX     ?= /usr/local
MODDIR     := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
CONFDIR    ?= /etc/apache2/mods-available
RELEASE    := target/release
MODULE_SO  := $(RELEASE)/libmod_proxy_reversed.so
AGENT_BIN  := $(RELEASE)/reversed-agent

.PHONY: all build install test demo demo-stop bench clean

all: build

build:
	$(CARGO) build --release --workspace

install: build
	MODDIR="$(MODDIR)" CONFDIR="$(CONFDIR)" PREFIX="$(PREFIX)" APXS="$(APXS)" \
	  apxs/install.sh "$(MODULE_SO)" "$(AGENT_BIN)"

test:
	$(CARGO) build --workspace
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2

demo: install
	scripts/demo.sh start

demo-stop:
	scripts/demo.sh stop

bench: build
	bench/run.sh

clean:
	$(CARGO) clean

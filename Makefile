# mod_proxy_reversed — build, install, test, demo.
#   make            build the module and reversed-agent (release)
#   make install    install the module through apxs, the Debian conf files, and the agent
#   make test       every test (unit + real httpd under event/worker/prefork + Tomcat)
#   make demo       build, install, start httpd + module + agent on loopback, print a curl line
#   make demo-stop  stop the demo
#   make bench      benchmarks (not part of the tests; see bench/)
#   make soak       resilience/security scenarios at full scale, with a table of figures
#   make fuzz       libFuzzer targets (cargo fuzz), FUZZ_RUNS executions each
#   make docker-images     container images (no registry: debootstrap + docker import)
#   make docker-demo       compose demo: 2 httpd, 2 Tomcat backends, a one-way firewall
#   make docker-demo-stop  remove the demo
#   make test-docker       the Docker scenarios alone (tests/docker.rs)

CARGO      ?= cargo
APXS       ?= apxs
PREFIX     ?= /usr/local
MODDIR     := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
CONFDIR    ?= /etc/apache2/mods-available
RELEASE    := target/release
MODULE_SO  := $(RELEASE)/libmod_proxy_reversed.so
AGENT_BIN  := $(RELEASE)/reversed-agent

.PHONY: all build install test soak fuzz demo demo-stop bench clean \
        docker-deps docker-images docker-demo docker-demo-stop test-docker

all: build

build:
	$(CARGO) build --release --workspace

install: build
	MODDIR="$(MODDIR)" CONFDIR="$(CONFDIR)" PREFIX="$(PREFIX)" APXS="$(APXS)" \
	  apxs/install.sh "$(MODULE_SO)" "$(AGENT_BIN)"

test:
	$(CARGO) build --workspace
	$(CARGO) build --release --workspace
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2

# The scenarios of tests/{resilience,hostile,many_to_many,netns}.rs at full
# scale (MPR_SOAK=1: 1 000 x 10 MB, 10 000 rogue dials, longer load); each
# prints "FIGURE case | figures", collected into $(SOAK_FIGURES).
SOAK_FIGURES ?= $(CURDIR)/target/soak-figures.txt
soak:
	$(CARGO) build --workspace
	@rm -f "$(SOAK_FIGURES)"
	MPR_SOAK=1 MPR_FIGURES="$(SOAK_FIGURES)" $(CARGO) test --test resilience --test hostile \
	  --test many_to_many --test netns -- --test-threads=1; st=$$?; \
	  echo; echo "=== soak figures ==="; sed 's/^soak FIGURE //' "$(SOAK_FIGURES)" 2>/dev/null \
	  | awk -F' [|] ' '{printf "%-24s %s\n", $$1, $$2}'; exit $$st

# libFuzzer targets of fuzz/ (stable toolchain: RUSTC_BOOTSTRAP=1 admits the
# sanitizer flags cargo-fuzz passes). Corpora in fuzz/corpus/<target>.
FUZZ_RUNS    ?= 1000000
FUZZ_TARGETS ?= handshake ajp_responder http_request mcmp
FUZZ_FLAGS   ?= -max_len=4096 -timeout=10 -rss_limit_mb=2048
# The fuzzed code is safe Rust (no `unsafe` in proto/ or agent/): panics are
# what is looked for, so AddressSanitizer (2.5x slower) is off by default.
FUZZ_SANITIZER ?= none
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "=== fuzz $$t: $(FUZZ_RUNS) runs ==="; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O -s $(FUZZ_SANITIZER) $$t corpus/$$t -- -runs=$(FUZZ_RUNS) $(FUZZ_FLAGS) 2>&1) \
	    | tee target/fuzz-$$t.log | grep -E "^(Done|INFO: (Loaded|seed))|ERROR|panicked|SUMMARY" ; \
	  grep -q "^Done" target/fuzz-$$t.log || { echo "fuzz $$t failed (see target/fuzz-$$t.log)"; exit 1; }; \
	done

deps:
	scripts/deps.sh

demo: deps
	$(MAKE) install
	scripts/demo.sh start

demo-stop:
	scripts/demo.sh stop

# Docker (see the README's Docker section). The images hold the release build;
# scripts/docker-engine.sh runs a private dockerd when no engine answers.
docker-deps: deps
	scripts/docker-deps.sh

docker-images: docker-deps
	$(MAKE) build
	scripts/docker-engine.sh run scripts/docker-images.sh

docker-demo: docker-deps
	$(MAKE) build
	scripts/docker-demo.sh start

docker-demo-stop:
	scripts/docker-demo.sh stop

DOCKER_FIGURES ?= $(CURDIR)/target/docker-figures.txt
test-docker: build
	@rm -f "$(DOCKER_FIGURES)"
	MPR_FIGURES="$(DOCKER_FIGURES)" $(CARGO) test --test docker -- --test-threads=1; st=$$?; \
	  echo; echo "=== docker figures ==="; cat "$(DOCKER_FIGURES)" 2>/dev/null; exit $$st

bench: build
	bench/run.sh

clean:
	$(CARGO) clean

# mod_proxy_reversed — build, install, test, demo.
#   make            build the module and reversed-agent (release)
#   make install    install the module through apxs, the Debian conf files, and the agent
#   make test       every test (unit + real httpd under event/worker/prefork + Tomcat)
#   make lint       cargo fmt --check and clippy -D warnings (CI runs it before the tests)
#   make demo       build, install, start httpd + module + agent on loopback, print a curl line
#   make demo-stop  stop the demo
#   make bench      benchmarks (not part of the tests; see bench/)
#   make tomcat-connector       the in-Tomcat reversed connector jar (javac, Debian's Tomcat 10.1 jars)
#   make tomcat-connector-test  its JUnit 4 tests (part of `make test`)
#   make soak       resilience/security scenarios at full scale, with a table of figures
#   make fuzz       libFuzzer targets (cargo fuzz), FUZZ_RUNS executions each
#   make docker-images     container images (no registry: debootstrap + docker import)
#   make docker-demo       compose demo: 2 httpd, 2 Tomcat backends, a one-way firewall
#   make docker-demo-stop  remove the demo
#   make test-docker       the Docker scenarios alone (tests/docker.rs)
#   make deb        Debian packages (debian/, debhelper) in target/deb/, checked by lintian

CARGO      ?= cargo
APXS       ?= apxs
PREFIX     ?= /usr/local
MODDIR     := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
CONFDIR    ?= /etc/apache2/mods-available
RELEASE    := target/release
MODULE_SO  := $(RELEASE)/libmod_proxy_reversed.so
AGENT_BIN  := $(RELEASE)/reversed-agent

.PHONY: all build install test lint soak fuzz demo demo-stop bench clean \
        docker-deps docker-images docker-demo docker-demo-stop test-docker \
        tomcat-connector tomcat-connector-test deb

all: build

build: tomcat-connector
	$(CARGO) build --release --workspace

install: build
	MODDIR="$(MODDIR)" CONFDIR="$(CONFDIR)" PREFIX="$(PREFIX)" APXS="$(APXS)" \
	  apxs/install.sh "$(MODULE_SO)" "$(AGENT_BIN)"
	install -d "$(PREFIX)/share/man/man1"
	"$(AGENT_BIN)" --man > "$(PREFIX)/share/man/man1/reversed-agent.1"
	@echo "installed $(PREFIX)/share/man/man1/reversed-agent.1 (man reversed-agent)"
	@if [ -d "$(dir $(TOMCAT_LIB))" ]; then \
	  install -d "$(TOMCAT_LIB)" && install -m 0644 "$(TC_JAR)" "$(TOMCAT_LIB)/$(notdir $(TC_JAR))" && \
	  echo "installed $(TOMCAT_LIB)/$(notdir $(TC_JAR)) (Tomcat's common class loader)"; \
	else \
	  echo "Tomcat is not installed here ($(dir $(TOMCAT_LIB)) missing): copy $(TC_JAR) into \$$CATALINA_HOME/lib or \$$CATALINA_BASE/lib"; \
	fi

# --- The in-Tomcat connector (tomcat-connector/): plain javac against Debian's
# Tomcat 10.1 jars, no other Java dependency. `cargo build` does not need Java.
JAVAC      ?= javac
JAVA       ?= java
JAVA_LIB   ?= /usr/share/java
# Tomcat's common class loader reads $${catalina.home}/lib (and $${catalina.base}/lib).
TOMCAT_LIB ?= /usr/share/tomcat10/lib
TC_OUT     := target/tomcat-connector
TC_JAR     := $(TC_OUT)/mod_proxy_reversed-tomcat.jar
TC_SRC     := $(shell find tomcat-connector/src/main/java -name '*.java' 2>/dev/null)
TC_TEST_SRC := $(shell find tomcat-connector/src/test/java -name '*.java' 2>/dev/null)
TC_CP      := $(JAVA_LIB)/tomcat10-coyote.jar:$(JAVA_LIB)/tomcat10-util.jar:$(JAVA_LIB)/tomcat10-juli.jar
# Embedded Tomcat for the tests (the nine jars it needs) and JUnit 4 (Debian's junit4).
TC_TEST_CP := $(TC_CP):$(JAVA_LIB)/tomcat10-catalina.jar:$(JAVA_LIB)/tomcat10-util-scan.jar:$(JAVA_LIB)/tomcat10-api.jar:$(JAVA_LIB)/tomcat10-servlet-api.jar:$(JAVA_LIB)/tomcat10-jaspic-api.jar:$(JAVA_LIB)/tomcat10-annotations-api.jar:$(JAVA_LIB)/junit4.jar:$(JAVA_LIB)/hamcrest.jar

tomcat-connector: $(TC_JAR)

$(TC_JAR): $(TC_SRC)
	@command -v $(JAVAC) >/dev/null 2>&1 || { echo "javac not found: install default-jdk-headless (and tomcat10) to build the Tomcat connector"; exit 1; }
	@test -f $(JAVA_LIB)/tomcat10-coyote.jar || { echo "$(JAVA_LIB)/tomcat10-coyote.jar not found: install tomcat10 (libtomcat10-java)"; exit 1; }
	rm -rf $(TC_OUT)/classes && mkdir -p $(TC_OUT)/classes
	$(JAVAC) --release 11 -nowarn -d $(TC_OUT)/classes -cp $(TC_CP) $(TC_SRC) 2>&1 | grep -v 'aQute.bnd.annotation' || true
	@test -f $(TC_OUT)/classes/org/proxyreversed/tomcat/ReversedEndpoint.class || { echo "javac failed"; exit 1; }
	jar --create --file $@ -C $(TC_OUT)/classes .

tomcat-connector-test: $(TC_JAR)
	@test -f $(JAVA_LIB)/junit4.jar || { echo "$(JAVA_LIB)/junit4.jar not found: install junit4"; exit 1; }
	rm -rf $(TC_OUT)/test-classes && mkdir -p $(TC_OUT)/test-classes
	$(JAVAC) --release 11 -nowarn -d $(TC_OUT)/test-classes -cp $(TC_JAR):$(TC_TEST_CP) $(TC_TEST_SRC) 2>&1 | grep -v 'aQute.bnd.annotation' || true
	cd $(CURDIR) && $(JAVA) -Djava.util.logging.config.file=tomcat-connector/src/test/logging.properties \
	  -cp $(TC_OUT)/test-classes:$(TC_JAR):$(TC_TEST_CP) org.junit.runner.JUnitCore \
	  $$(cd $(TC_OUT)/test-classes && find . -name '*Test.class' | sed 's|^\./||; s|\.class$$||; s|/|.|g' | sort)

# rustfmt (rustfmt.toml) and clippy with every warning an error (CI runs it).
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# deb first: tests/deb.rs installs target/deb/*.deb in a container.
test: tomcat-connector-test deb
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

# Debian packages: libapache2-mod-proxy-reversed and reversed-agent (debian/,
# debhelper with dh_apache2), written to $(DEB_DIR) and checked by lintian
# (errors fail; warnings are printed). -d: cargo and rustc may come from
# rustup rather than Debian packages (see debian/control's Build-Depends).
DEB_DIR ?= $(CURDIR)/target/deb
deb:
	@command -v dpkg-buildpackage >/dev/null && command -v dh_apache2 >/dev/null || \
	  { echo "install dpkg-dev, debhelper, apache2-dev (and lintian) to build the packages"; exit 1; }
	rm -rf "$(DEB_DIR)" && mkdir -p "$(DEB_DIR)"
	DEB_DESTDIR="$(DEB_DIR)" DEB_BUILD_OPTIONS="noautodbgsym $(DEB_BUILD_OPTIONS)" dpkg-buildpackage -b -us -uc -d \
	  --buildinfo-option=-u"$(DEB_DIR)" --changes-option=-u"$(DEB_DIR)" \
	  --buildinfo-file="$(DEB_DIR)/mod-proxy-reversed.buildinfo" --changes-file="$(DEB_DIR)/mod-proxy-reversed.changes"
	@ls -l "$(DEB_DIR)"/*.deb
	@if command -v lintian >/dev/null; then \
	  lintian --fail-on error --tag-display-limit 0 "$(DEB_DIR)"/*.deb; \
	else echo "lintian is not installed: packages not checked"; exit 1; fi

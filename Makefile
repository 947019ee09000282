# sepgadm — see README.md. `make test` is the one test command (CI runs it).
GO      ?= go
GOFLAGS ?=
BUILD   := build
# Packages with lab tests (files tagged //go:build lab); each becomes one guest binary.
LAB_PKGS = $(shell grep -rl --exclude-dir=.lab --exclude-dir=build --include='*_test.go' '^//go:build lab' . | xargs -r -n1 dirname | sed 's|^\./||' | sort -u)

# Host packages: PostgreSQL 15 for the test tier; qemu, debootstrap and e2fsprogs for the lab;
# chromium checks the audit HTML review; auditd brings ausearch for bench-audit (its daemon is not started).
HOST_PACKAGES := postgresql-15 postgresql-contrib postgresql-server-dev-15 qemu-system-x86 qemu-utils debootstrap e2fsprogs make gcc chromium auditd pgbouncer

.PHONY: setup all build demo policy test test-fast test-fuzz fuzz test-lab lab lab-shell lab-tests test-lab-locked lint clean

# Fuzz targets (package:Target); test-fuzz runs each for FUZZ_SHORT, fuzz for FUZZTIME.
FUZZ_TARGETS := proxy:FuzzRelay proxy:FuzzScanSQL proxy:FuzzParseConfig proxy:FuzzUserlist proxy:FuzzSCRAM proxy/wire:FuzzTracker proxy/wire:FuzzReader \
	proxy/wire:FuzzReadStartup audit:FuzzAuditReader audit:FuzzPostgresReaders secontext:FuzzParseContext \
	labels:FuzzParseSpec labels:FuzzFnmatch
FUZZ_SHORT ?= 15s
FUZZTIME ?= 5m

all: build

## setup: install the host packages the project needs (Debian 12, as root), and fetch
## PostgreSQL's core regression suite from Debian's source package (parity/fetch.sh).
setup:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(HOST_PACKAGES)
	parity/fetch.sh $(BUILD)/pgregress

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BUILD)/sepgadm ./cmd/sepgadm

## test: everything — lint, unit and PostgreSQL tier (race detector), a bounded fuzz of
## the relay and of every parser that sees untrusted input, then the lab.
test: lint test-fast test-fuzz test-lab

## test-fast: unit and PostgreSQL-tier tests on the host; no lab.
test-fast:
	$(GO) test -race -count=1 ./...

## test-fuzz: every fuzz target for FUZZ_SHORT (CI); a failure leaves its input in the
## package's testdata/fuzz, where it then runs as a seed.
test-fuzz:
	@mkdir -p $(BUILD); for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZ_SHORT))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZ_SHORT) -parallel 2 ./$${t%%:*} >$(BUILD)/fuzz.log 2>&1 || { cat $(BUILD)/fuzz.log; exit 1; }; \
	done

## chaos: TestChaos at CHAOS_STATEMENTS checked statements (default 1,000,000; make test
## runs 20,000): 24 clients of 6 contexts over a pool of 3, backends terminated, clients
## vanishing mid-transaction; fails on any answer under another label or to another request.
CHAOS_STATEMENTS ?= 1000000
.PHONY: chaos
chaos:
	@mkdir -p $(BUILD); SEPGADM_CHAOS_STATEMENTS=$(CHAOS_STATEMENTS) $(GO) test -count=1 -timeout 2h -run '^TestChaos$$' -v ./proxy/ >$(BUILD)/chaos.log 2>&1; rc=$$?; \
		grep -E '^(--- |ok|FAIL)|chaos:' $(BUILD)/chaos.log; exit $$rc

## fuzz: every fuzz target for FUZZTIME (default 5m each).
fuzz:
	$(MAKE) --no-print-directory test-fuzz FUZZ_SHORT=$(FUZZTIME)

## lab-tests: compile the lab test binaries (static, for the guest).
lab-tests:
	rm -rf $(BUILD)/lab/tests && mkdir -p $(BUILD)/lab/tests
	@test -n "$(LAB_PKGS)" || { echo "no lab test packages found" >&2; exit 1; }
	for p in $(LAB_PKGS); do \
		CGO_ENABLED=0 $(GO) test -tags lab -c -trimpath -o $(BUILD)/lab/tests/$$(echo $$p | sed 's|/|__|g').test ./$$p || exit 1; \
	done

## policy: compile the sepgadm SELinux policy module (build/policy/sepgadm.pp) with the
## lab's toolchain. Load it with semodule -i on the database host.
policy:
	lab/policy $(BUILD)/policy trusted/policy

## check-policy-os: boot the lab with only the shipped module and run the proxy as a
## systemd service in sepgadm_proxy_t; fails on any AVC denial of the proxy's domain.
.PHONY: check-policy-os
check-policy-os:
	rm -rf $(BUILD)/policy-os && lab/policy $(BUILD)/policy-os trusted/policy
	lab/run --policy $(BUILD)/policy-os --out $(BUILD)/policy-os-out trusted/testdata/os-policy-check.sh

## test-lab: run every lab test in one boot of the enforcing SELinux guest, with the
## policy module and its lab-only test module loaded.
test-lab:
	mkdir -p $(BUILD) && flock $(BUILD)/test-lab.lock $(MAKE) --no-print-directory test-lab-locked

test-lab-locked: lab-tests
	rm -rf $(BUILD)/lab/policy
	lab/policy $(BUILD)/lab/policy trusted/policy trusted/testdata/policy
	lab/run --tests $(BUILD)/lab/tests --policy $(BUILD)/lab/policy lab/tests.sh

## lab: build (or reuse the cached) lab image. Needs root.
lab:
	lab/build

## demo: the lab with the proxy in sepgadm_proxy_t, forwarded to 127.0.0.1:6432.
demo:
	lab/demo

## lab-shell: boot the lab image with an interactive root shell on this terminal.
lab-shell:
	lab/shell

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags lab ./...

clean:
	rm -rf $(BUILD)

## bench-audit: generate ~1 GiB audit.log and PostgreSQL stderr log (build/bench, not
## committed; BENCH_SIZE overrides) and time sepgadm audit against ausearch and grep
## (median of BENCH_RUNS runs each, default 3).
BENCH_SIZE ?= 1073741824
BENCH_RUNS ?= 3
.PHONY: bench-audit
bench-audit: build
	bench/audit.sh $(BUILD) $(BENCH_SIZE) $(BENCH_RUNS)

## bench-labels: in the lab, BENCH_TABLES tables x 4 columns (default 20000): time
## `sepgadm labels apply` of a spec that changes every object against the server's
## sepgsql_restorecon with the same spec, and print the ratio (target <= 2).
BENCH_TABLES ?= 20000
.PHONY: bench-labels
bench-labels:
	mkdir -p $(BUILD)
	sed 's/@TABLES@/$(BENCH_TABLES)/' bench/labels.sh >$(BUILD)/bench-labels.sh
	lab/run --timeout 2400 --out $(BUILD)/bench-labels $(BUILD)/bench-labels.sh

## bench-proxy: pgbench through PostgreSQL, PgBouncer and sepgadm (transaction mode;
## untagged, one context, a context per client) and the reference pooler (refpool), plus
## RSS with idle clients.
## BENCH_SECONDS (15), BENCH_CLIENTS (1,10,50,100) and BENCH_IDLE (10000) override;
## BENCH_FLAGS passes more flags (-rounds N, -targets ...,ref1,pgb2,loop,1p,loop1p, -by-process, -pprof PORT).
BENCH_SECONDS ?= 15
BENCH_CLIENTS ?= 1,10,50,100
BENCH_IDLE ?= 10000
.PHONY: bench-proxy
bench-proxy: build
	$(GO) run ./bench/proxy -sepgadm $(BUILD)/sepgadm -seconds $(BENCH_SECONDS) -clients $(BENCH_CLIENTS) -idle $(BENCH_IDLE) $(BENCH_FLAGS)

# imagevet: the two commands a fresh Debian 12 host needs (as root):
#   make demo   install what it needs, build the tiny fixture, run a real job end to end
#   make test   install what it needs, build every fixture, run the whole test suite
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/imagevet
FIXTURES ?= $(or $(IMAGEVET_FIXTURES),/var/cache/imagevet/fixtures)
export IMAGEVET_FIXTURES := $(FIXTURES)

.PHONY: build demo test unit setup bench fmt vet deb

build:
	$(GO) build -o $(BIN) ./cmd/imagevet

# imagevet_<version>_amd64.deb in dist/: binary, units, default settings (dpkg-deb only).
deb:
	scripts/build-deb dist

setup:
	scripts/setup-host

# Each step says how long it took: the build (Go's cache), the packages and the tiny
# fixture (scripts/setup-host --demo), the worker and the verdict (scripts/demo).
demo:
	@s=$$(date +%s); $(MAKE) --no-print-directory build; echo "demo: build took $$(( $$(date +%s) - s )) s"
	scripts/setup-host --demo tiny
	scripts/demo

# The whole suite against real libvirtd, qemu (TCG), cloud-init and nats-server.
# Packages run one at a time: their guests share two cores.
# IMAGEVET_FAULT_LIBVIRTD=1 lets the fault suite restart libvirtd (e2e/faults_test.go),
# which it does only when libvirtd runs no other machine.
test: setup build
	IMAGEVET_BIN=$(CURDIR)/$(BIN) IMAGEVET_INTEGRATION=1 IMAGEVET_FAULT_LIBVIRTD=1 $(GO) test -p 1 -count=1 -timeout 80m ./...

# Fast tests only: fakes, golden files, in-process NATS.
unit:
	$(GO) test -short ./...

bench: build
	IMAGEVET_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

fmt:
	gofmt -l . | tee /dev/stderr | (! read)

vet:
	$(GO) vet ./...

# capsa: the two commands of the README are `make demo` and `make test`.
CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all deps build release install demo test check fmt clippy unit e2e bench clean

all: build

deps:
	bash scripts/install-deps.sh

build:
	$(CARGO) build --workspace

# Two binaries: `capsa` (the front end, which also answers to argv0 capsa-runc) and the
# smaller, static `capsa-runc` that engines exec for every container operation.
release:
	$(CARGO) build --release -p capsa
	CARGO=$(CARGO) sh scripts/build-capsa-runc.sh

install: release
	install -m 0755 target/release/capsa $(PREFIX)/bin/capsa
	install -m 0755 target/release/capsa-runc $(PREFIX)/bin/capsa-runc

# Sets everything up and runs the walkthrough of the main job.
demo: deps release
	bash scripts/demo.sh target/release/capsa

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The whole suite: style gates, unit tests, then end-to-end tests (root).
test: deps fmt clippy
	$(CARGO) build --workspace
	$(CARGO) test --workspace --no-fail-fast

bench: release
	bash bench/lifecycle.sh

clean:
	$(CARGO) clean

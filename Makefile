# The two commands of the quick start, plus a few conveniences.
.PHONY: demo test build image crd fmt bench-vs-arc soak

demo:
	scripts/demo.sh

test:
	scripts/test.sh

build:
	cargo build --workspace --release

# The operator's image as an OCI archive under target/image/, without a container daemon.
image:
	scripts/image.sh

# The chaos soak on a cluster of its own (not part of `make test`):
# SOAK_MINUTES of jobs (2,000 per 30 minutes) under faults, restarts and
# evictions; prints its figures and fails when an invariant broke.
# SOAK_PROFILE=dev skips the optimized build.
SOAK_MINUTES ?= 30
SOAK_PROFILE ?= bench
soak:
	RUNNERPOOL_SOAK_MINUTES=$(SOAK_MINUTES) cargo bench --profile $(SOAK_PROFILE) --bench soak

crd:
	cargo run --quiet --bin runnerpool-operator -- crd > crds/runnerpool.yaml

fmt:
	cargo fmt --all

# Side by side with actions-runner-controller (builds ARC on first use; see
# README "Measured"). A debug build of ours unless PROFILE=release; sizes from
# RUNNERPOOL_VS_ARC_* variables.
PROFILE ?= dev
bench-vs-arc:
	cargo bench --profile $(PROFILE) --bench vs_arc

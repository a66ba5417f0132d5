# The two commands of the quick start, plus a few conveniences.
.PHONY: demo test build crd fmt

demo:
	scripts/demo.sh

test:
	scripts/test.sh

build:
	cargo build --workspace --release

crd:
	cargo run --quiet --bin runnerpool-operator -- crd > crds/runnerpool.yaml

fmt:
	cargo fmt --all

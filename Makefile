# The two commands of the quick start, plus a few conveniences.
.PHONY: demo test build image crd fmt

demo:
	scripts/demo.sh

test:
	scripts/test.sh

build:
	cargo build --workspace --release

# The operator's image as an OCI archive under target/image/, without a container daemon.
image:
	scripts/image.sh

crd:
	cargo run --quiet --bin runnerpool-operator -- crd > crds/runnerpool.yaml

fmt:
	cargo fmt --all

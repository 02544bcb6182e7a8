# DiTKit: `make demo` and `make test` work on a fresh Debian/Ubuntu machine with Swift installed.
SHELL := /bin/bash
SWIFT ?= swift
CONFIG ?= release
BIN := .build/$(CONFIG)/ditkit

# System libraries (pkg-config module -> Debian package).
PKG_CONFIG_MODULES := libzip hdf5 openblas libzstd
APT_PACKAGES := pkg-config libzip-dev libhdf5-dev libopenblas-dev libzstd-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DEMO_CHECKPOINT := Tests/Fixtures/readers/train_checkpoint.pt

.PHONY: all deps build test demo fixtures clean

all: build

## deps: install the -dev packages pkg-config cannot find (apt-get).
deps:
	@missing=0; command -v pkg-config >/dev/null || missing=1; \
	for m in $(PKG_CONFIG_MODULES); do pkg-config --exists $$m 2>/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "make deps: installing $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

## build: the ditkit executable.
build: deps
	$(SWIFT) build -c $(CONFIG) --product ditkit

## test: the whole suite.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test

## demo: the main job on the checkpoint shipped in the repository.
demo: build
	@echo "== ditkit inspect $(DEMO_CHECKPOINT)"
	@$(BIN) inspect $(DEMO_CHECKPOINT)

## fixtures: regenerate Tests/Fixtures (needs torch, timm, safetensors, diffusers, h5py; see CONTRIBUTING.md).
PYTHON ?= python3

fixtures:
	$(PYTHON) tools/make_fixtures.py

clean:
	rm -rf .build

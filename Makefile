# DiTKit: `make demo` and `make test` work on a fresh Debian/Ubuntu machine with Swift installed.
SHELL := /bin/bash
SWIFT ?= swift
CONFIG ?= release
BIN := .build/$(CONFIG)/ditkit

# System libraries (pkg-config module -> Debian package).
PKG_CONFIG_MODULES := libzip hdf5 openblas libzstd libpng
APT_PACKAGES := pkg-config libzip-dev libhdf5-dev libopenblas-dev libzstd-dev libpng-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DEMO_CHECKPOINT := Tests/Fixtures/verify/dit_verify.pt
DEMO_REFERENCE := Tests/Fixtures/verify/dit_reference.h5
DEMO_VAE := Tests/Fixtures/verify/vae_verify/diffusion_pytorch_model.safetensors
DEMO_OUT := .build/demo

.PHONY: all deps pyenv build test consumer demo bench fuzz fixtures clean

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

## pyenv: numpy, safetensors, h5py and gguf in a virtualenv outside the repository, so the
## tests can prove that real Python clients read what ditkit writes (no torch).
PYENV ?= $(HOME)/.cache/ditkit/pyenv
PYENV_PACKAGES := numpy safetensors h5py gguf jsonschema
pyenv:
	@if ! $(PYENV)/bin/python -c "import numpy, safetensors, h5py, gguf, jsonschema" 2>/dev/null; then \
	  echo "make pyenv: installing $(PYENV_PACKAGES) into $(PYENV)"; \
	  python3 -m venv $(PYENV) && $(PYENV)/bin/pip install -q --disable-pip-version-check $(PYENV_PACKAGES); \
	fi

## test: the whole suite.
test: deps pyenv
	$(SWIFT) build --build-tests
	DITKIT_PYTHON=$(PYENV)/bin/python $(SWIFT) test

## consumer: a package depending on DiTKit by version (from: a tag of this tree) builds the README's
## Swift example. `make test` only loads its package graph (unsafe flags, products); this compiles it.
consumer: deps
	tools/check_consumer.sh --build

## demo: the main job on the checkpoint shipped in the repository.
demo: build
	@mkdir -p $(DEMO_OUT)
	@echo "== ditkit inspect $(DEMO_CHECKPOINT)"
	@$(BIN) inspect $(DEMO_CHECKPOINT) | head -12
	@echo "   ..."
	@for d in f32 f16 int8; do \
	  echo "== ditkit convert $(DEMO_CHECKPOINT) -o $(DEMO_OUT)/dit-$$d.ditkit --dtype $$d --force"; \
	  $(BIN) convert $(DEMO_CHECKPOINT) -o $(DEMO_OUT)/dit-$$d.ditkit --dtype $$d --force || exit 1; \
	done
	@echo "== ditkit check $(DEMO_OUT)/dit-int8.ditkit"
	@$(BIN) check $(DEMO_OUT)/dit-int8.ditkit
	@echo "== ditkit verify $(DEMO_OUT)/dit-f32.ditkit --reference $(DEMO_REFERENCE)"
	@$(BIN) verify $(DEMO_OUT)/dit-f32.ditkit --reference $(DEMO_REFERENCE)
	@echo "== ditkit verify $(DEMO_OUT)/dit-f16.ditkit --against $(DEMO_CHECKPOINT)"
	@$(BIN) verify $(DEMO_OUT)/dit-f16.ditkit --against $(DEMO_CHECKPOINT)
	@echo "== ditkit convert $(DEMO_VAE) -o $(DEMO_OUT)/vae.ditkit --force"
	@$(BIN) convert $(DEMO_VAE) -o $(DEMO_OUT)/vae.ditkit --force
	@echo "== ditkit sample $(DEMO_OUT)/dit-int8.ditkit --vae $(DEMO_OUT)/vae.ditkit --steps 25 -o $(DEMO_OUT)/samples.png"
	@$(BIN) sample $(DEMO_OUT)/dit-int8.ditkit --vae $(DEMO_OUT)/vae.ditkit --steps 25 -o $(DEMO_OUT)/samples.png --force
	@echo "== ditkit verify $(DEMO_OUT)/dit-int8.ditkit --against $(DEMO_CHECKPOINT) --sample --vae $(DEMO_OUT)/vae.ditkit --report $(DEMO_OUT)/report.html"
	@$(BIN) verify $(DEMO_OUT)/dit-int8.ditkit --against $(DEMO_CHECKPOINT) --sample --vae $(DEMO_OUT)/vae.ditkit --report $(DEMO_OUT)/report.html --force
	@echo
	@echo "The demo model has random weights, so its samples are noise: what matters is that the int8 model"
	@echo "draws the same noise as the original. Open the report: $(CURDIR)/$(DEMO_OUT)/report.html"

## bench: full-size benchmarks against baselines measured in the same run (see BENCHMARKS.md).
bench: deps
	Benchmarks/run.sh

## fuzz: libFuzzer + ASan on every parser (FUZZ_SECONDS each, default 60; see FUZZING.md).
FUZZ_SECONDS ?= 60
fuzz:
	Fuzz/run.sh $(FUZZ_SECONDS)

## fixtures: regenerate Tests/Fixtures (needs torch, timm, safetensors, diffusers, h5py; see CONTRIBUTING.md).
PYTHON ?= python3

fixtures:
	$(PYTHON) tools/make_fixtures.py
	$(PYTHON) tools/make_torch_corpus.py

clean:
	rm -rf .build

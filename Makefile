# DiTKit: `make demo` and `make test` work on a fresh Debian/Ubuntu machine with Swift installed.
SHELL := /bin/bash
SWIFT ?= swift
CONFIG ?= release
BIN := .build/$(CONFIG)/ditkit

# System libraries (pkg-config module -> Debian package).
PKG_CONFIG_MODULES := libzip hdf5 openblas libzstd libpng libxxhash
APT_PACKAGES := pkg-config libzip-dev libhdf5-dev libopenblas-dev libzstd-dev libpng-dev libxxhash-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The demo runs on the trained digits example (examples/digits, written by tools/train_digits.py).
DIGITS := examples/digits
DEMO_DIT := $(DIGITS)/dit-digits.pt
DEMO_VAE := $(DIGITS)/vae/diffusion_pytorch_model.safetensors
DEMO_REFERENCE := $(DIGITS)/dit-digits-reference.h5
DEMO_CLASSES := 0,1,2,3,4,5,6,7,8,9
DEMO_SAMPLING := --steps 250 --cfg 4 --seed 0
DEMO_OUT := .build/demo

.PHONY: all deps pyenv build test consumer demo bench fuzz fixtures clean install uninstall install-check zoo-source

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
PYENV_PACKAGES := numpy safetensors h5py gguf jsonschema xxhash
pyenv:
	@if ! $(PYENV)/bin/python -c "import numpy, safetensors, h5py, gguf, jsonschema, xxhash" 2>/dev/null; then \
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

## demo: the main job on the trained digits model shipped in the repository: convert the DiT and its VAE
## to f32, f16 and int8, verify them, sample every digit with each, let a classifier read the samples,
## and write the report comparing the int8 model's digits with the original's. $(DEMO_OUT) is the demo's own
## scratch folder: it starts empty, so outputs of an older ditkit there cannot stop a run.
demo: build pyenv
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	@echo "== ditkit inspect $(DEMO_DIT)"
	@$(BIN) inspect $(DEMO_DIT) | head -12
	@echo "   ..."
	@for d in f32 f16 int8; do \
	  echo "== ditkit convert $(DEMO_DIT) -o $(DEMO_OUT)/digits-$$d.ditkit --dtype $$d --force"; \
	  $(BIN) convert $(DEMO_DIT) -o $(DEMO_OUT)/digits-$$d.ditkit --dtype $$d --force || exit 1; \
	  echo "== ditkit convert $(DEMO_VAE) -o $(DEMO_OUT)/digits-vae-$$d.ditkit --dtype $$d --force"; \
	  $(BIN) convert $(DEMO_VAE) -o $(DEMO_OUT)/digits-vae-$$d.ditkit --dtype $$d --force || exit 1; \
	done
	@echo "== ditkit check $(DEMO_OUT)/digits-int8.ditkit"
	@$(BIN) check $(DEMO_OUT)/digits-int8.ditkit
	@echo "== ditkit verify $(DEMO_OUT)/digits-f32.ditkit --reference $(DEMO_REFERENCE)"
	@$(BIN) verify $(DEMO_OUT)/digits-f32.ditkit --reference $(DEMO_REFERENCE)
	@echo "== ditkit verify $(DEMO_OUT)/digits-int8.ditkit --against $(DEMO_DIT)"
	@$(BIN) verify $(DEMO_OUT)/digits-int8.ditkit --against $(DEMO_DIT)
	@echo "== ditkit verify $(DEMO_OUT)/digits-vae-int8.ditkit --against $(DEMO_VAE) --size 32"
	@$(BIN) verify $(DEMO_OUT)/digits-vae-int8.ditkit --against $(DEMO_VAE) --size 32 | sed -n '1p;$$p'
	@for d in source f32 f16 int8; do \
	  if [ $$d = source ]; then m=$(DEMO_DIT); v=$(DEMO_VAE); else m=$(DEMO_OUT)/digits-$$d.ditkit; v=$(DEMO_OUT)/digits-vae-$$d.ditkit; fi; \
	  echo "== ditkit sample $$m --vae $$v --class $(DEMO_CLASSES) $(DEMO_SAMPLING) -o $(DEMO_OUT)/digits-$$d.png --each $(DEMO_OUT)/digits-$$d --force"; \
	  $(BIN) sample $$m --vae $$v --class $(DEMO_CLASSES) $(DEMO_SAMPLING) -o $(DEMO_OUT)/digits-$$d.png --each $(DEMO_OUT)/digits-$$d --force || exit 1; \
	  printf '   %s: the classifier ' $$d; \
	  $(PYENV)/bin/python tools/classify_digits.py $(DEMO_OUT)/digits-$$d | tail -1; \
	done
	@echo "== ditkit verify $(DEMO_OUT)/digits-int8.ditkit --against $(DEMO_DIT) --sample --vae $(DEMO_VAE) --classes $(DEMO_CLASSES) $(DEMO_SAMPLING) --report $(DEMO_OUT)/report.html"
	@$(BIN) verify $(DEMO_OUT)/digits-int8.ditkit --against $(DEMO_DIT) --sample --vae $(DEMO_VAE) --classes $(DEMO_CLASSES) \
	  $(DEMO_SAMPLING) --report $(DEMO_OUT)/report.html --force | tail -4
	@echo
	@echo "The digits the source model and its int8 conversion draw from the same noise are side by side in the"
	@echo "report: $(CURDIR)/$(DEMO_OUT)/report.html (grids: $(DEMO_OUT)/digits-source.png, digits-int8.png)"

## install: the release binary in $(PREFIX)/bin, the zoo (Manifests/, Checksums/) in $(PREFIX)/share/ditkit,
## where the binary looks for it, and bash/zsh/fish completions. The list of installed files is kept in
## $(PREFIX)/share/ditkit/installed-files; `make uninstall` removes exactly those (and so does a later
## `make install` before it installs). DESTDIR is honoured.
PREFIX ?= /usr/local
ROOTDIR = $(DESTDIR)$(PREFIX)
INSTALLED = share/ditkit/installed-files
ZOO_FILES = $(filter-out Manifests/schema.json,$(wildcard Manifests/*.json)) Manifests/schema.json $(wildcard Checksums/*.SHA256SUMS)
install: build
	@$(MAKE) --no-print-directory uninstall > /dev/null   # an earlier install's files, which this one replaces
	@set -e; root="$(ROOTDIR)"; list=""; \
	put() { install -d "$$root/$$(dirname "$$2")"; install -m "$$1" "$$3" "$$root/$$2"; list="$$list$$2"$$'\n'; echo "  $$root/$$2"; }; \
	put 755 bin/ditkit "$(BIN)"; \
	for f in $(ZOO_FILES); do put 644 "share/ditkit/$$f" "$$f"; done; \
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	for sh in bash zsh fish; do "$(BIN)" --generate-completion-script $$sh > "$$tmp/$$sh"; done; \
	put 644 share/bash-completion/completions/ditkit "$$tmp/bash"; \
	put 644 share/zsh/site-functions/_ditkit "$$tmp/zsh"; \
	put 644 share/fish/vendor_completions.d/ditkit.fish "$$tmp/fish"; \
	printf '%s' "$${list}$(INSTALLED)"$$'\n' > "$$tmp/installed"; put 644 $(INSTALLED) "$$tmp/installed"

## uninstall: removes exactly what `make install` installed (and folders it leaves empty).
uninstall:
	@set -e; root="$(ROOTDIR)"; \
	if [ ! -f "$$root/$(INSTALLED)" ]; then echo "make uninstall: $$root/$(INSTALLED) not found: nothing installed there"; exit 0; fi; \
	while IFS= read -r f; do \
	  [ -n "$$f" ] || continue; \
	  if [ -f "$$root/$$f" ] || [ -L "$$root/$$f" ]; then rm -f "$$root/$$f"; echo "  removed $$root/$$f"; fi; \
	  d="$$(dirname "$$f")"; \
	  while [ "$$d" != . ] && rmdir "$$root/$$d" 2>/dev/null; do d="$$(dirname "$$d")"; done; \
	done < "$$root/$(INSTALLED)"

## install-check: installs into a temporary prefix and proves the result works outside the checkout:
## `ditkit zoo list` from / without DITKIT_MANIFESTS lists the installed zoo, completions are there, and
## `make uninstall` leaves the prefix empty.
install-check: build
	@set -e; prefix="$$(mktemp -d)"; trap 'rm -rf "$$prefix"' EXIT; \
	$(MAKE) --no-print-directory install PREFIX="$$prefix" > /dev/null; \
	out="$$(cd / && env -u DITKIT_MANIFESTS "$$prefix/bin/ditkit" zoo list)"; \
	for f in Manifests/*.json; do id="$$(basename "$$f" .json)"; [ "$$id" = schema ] && continue; \
	  grep -q "^$$id " <<< "$$out" || { echo "install-check: '$$id' missing from zoo list:"; echo "$$out"; exit 1; }; done; \
	mv "$$prefix/share/ditkit/Manifests/dit-s-2.json" "$$prefix/dit-s-2.json.moved"; \
	if (cd / && env -u DITKIT_MANIFESTS "$$prefix/bin/ditkit" zoo list) | grep -q "^dit-s-2 "; then \
	  echo "install-check: zoo list did not read $$prefix/share/ditkit/Manifests"; exit 1; fi; \
	mv "$$prefix/dit-s-2.json.moved" "$$prefix/share/ditkit/Manifests/dit-s-2.json"; \
	for c in share/bash-completion/completions/ditkit share/zsh/site-functions/_ditkit share/fish/vendor_completions.d/ditkit.fish; do \
	  grep -q zoo "$$prefix/$$c" || { echo "install-check: $$c lacks the zoo command"; exit 1; }; done; \
	$(MAKE) --no-print-directory uninstall PREFIX="$$prefix" > /dev/null; \
	left="$$(find "$$prefix" -mindepth 1)"; \
	if [ -n "$$left" ]; then echo "install-check: uninstall left:"; echo "$$left"; exit 1; fi; \
	echo "install-check: ok (zoo list from / found all $$(ls Manifests | grep -vc schema) entries in $$prefix/share/ditkit; uninstall left nothing)"

## zoo-source: regenerate Sources/DiTKitZoo/BuiltinZoo.swift (the zoo compiled into ditkit) after editing
## Manifests/ or Checksums/; the test suite fails until it matches.
zoo-source:
	python3 tools/embed_zoo.py

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

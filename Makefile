# The two commands of the README: `make demo` and `make test`. Both install first (idempotent, fast when done).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
APT_STAMP := $(VENV)/.apt-installed
CHROMIUM_STAMP := $(VENV)/.chromium-installed

.PHONY: install install-demo demo test test-fast bench wheel clean help

help:
	@echo "make demo   - install, then run the embedded default recipe (tiny offline model)"
	@echo "make test   - install, then run the whole test suite"
	@echo "make bench  - run the benchmark scripts of experiments/"
	@echo "make wheel  - build dist/vita_audio-*.whl (conf/ inside): pip install it anywhere for the vita-* commands"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Debian speech tools (espeak-ng), installed once when apt is available (the corpus builder uses them).
$(APT_STAMP): | $(VENV)/bin/python
	@if ! command -v espeak-ng >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng >/dev/null; \
	  else echo "warning: espeak-ng missing and no apt-get: install it by hand for the corpus builder"; fi; \
	fi
	@touch $@

# Debian's chromium for the real-browser test of the web page (Playwright drives it; no browser download).
$(CHROMIUM_STAMP): | $(VENV)/bin/python
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: chromium missing and no apt-get: the browser test will be skipped"; fi; \
	fi
	@touch $@

# torch is pinned in the same pip command as everything else so that pip never swaps in a CUDA build.
$(STAMP): pyproject.toml | $(VENV)/bin/python $(APT_STAMP) $(CHROMIUM_STAMP)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0" -e ".[dev,speech,deepspeed,wandb,tensorboard,serve,parquet,sweep]"
	@touch $@

install: $(STAMP)

# `make demo` needs the core and the speech tools only (no browser, DeepSpeed, W&B, server or sweep plugins):
# about a minute less of a fresh machine's 30-minute budget. A full install satisfies it too.
$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python $(APT_STAMP)
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then :; else \
	  $(PIP) install -q --upgrade pip && $(PIP) install -q "torch==2.13.0" -e ".[speech,dev]"; fi
	@touch $@

install-demo: $(DEMO_STAMP)

demo: install-demo
	$(PY) -m vita_audio.cli.demo

test: install
	DS_ACCELERATOR=cpu WANDB_MODE=disabled $(PY) -m pytest -q --durations=15

test-fast: install
	DS_ACCELERATOR=cpu WANDB_MODE=disabled $(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) experiments/bench_train_step.py

# conf/ goes in as vita_audio/conf (src/vita_audio/conf links to it); setuptools' scratch build/ is removed after
wheel: | $(VENV)/bin/python
	$(PIP) wheel -q --no-deps -w dist .
	rm -rf build

clean:
	rm -rf logs outputs multirun .pytest_cache build dist
